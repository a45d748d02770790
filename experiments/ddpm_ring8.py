"""DDPM on ring8 (8 Gaussians on a circle of radius 2, std 0.02) with a residual MLP.

Command:
  python -m gen.main --config=experiments/ddpm_ring8.py --workdir=runs/ddpm_ring8
Expected on a 2-core CPU: ~2 min wall (8,000 steps of batch 512 at ~110 steps/s, plus 4 sample
pictures and the final eval); over seeds 0-4 the EMA samples cover 8/8 modes with
high_quality_fraction 0.958-0.970 and sliced_w2 0.13-0.17 (W/eval/step_8000.json; seed 0: 0.958,
0.129; two draws of the data itself are ~0.11 apart), measured with train.ema_warmup=0; with the
default warm-up, seed 0: 8/8, 0.9632, 0.1292. With --config.train.compute_dtype=bfloat16:
8/8, 0.954-0.970, 0.13-0.17 in ~140 s (bf16 is emulated on this CPU). The float32 recipe is a
seeded test in tests/test_quality_toys.py.
Smoke variant (seconds, used by the tests): --config=experiments/ddpm_ring8.py:smoke
Learning-rate sweep (`sweep()` below, 3 runs, one summary table):
  python -m launch.sweep --config=experiments/ddpm_ring8.py --workdir_root=runs/ddpm_ring8_lr
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """Returns the ddpm_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='diffusion')
  c.data.name = 'ring8'
  c.data.batch_size = 512
  c.model.name = 'mlp'
  c.model.mlp.features = (256, 256, 256)
  c.model.mlp.time_dim = 64
  c.diffusion.process = 'discrete_linear'
  c.diffusion.num_timesteps = 1000
  c.diffusion.beta_start = 1e-4
  c.diffusion.beta_end = 0.02
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'uniform'
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = 'cosine'
  c.train.num_steps = 8000
  c.train.ckpt_every = 2000
  c.train.sample_every = 2000
  c.train.ema_rate = 0.999
  c.diffusion.sample.sampler = 'ddpm'
  c.sample.num = 2000
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  c.eval.num_samples = 2500
  return common.variant(c, arg, name='ddpm_ring8', smoke=smoke)


def smoke(c) -> None:
  """Seconds-long variant for tests: data.batch_size = 256, model.mlp.features = (32, 32),
  model.mlp.time_dim = 16, diffusion.num_timesteps = 50, train.num_steps = 20,
  train.log_every = 5, train.ckpt_every = 10, train.sample_every = 10, sample.num = 64,
  eval.num_samples = 256."""
  c.data.batch_size = 256
  c.model.mlp.features = (32, 32)
  c.model.mlp.time_dim = 16
  c.diffusion.num_timesteps = 50
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.sample.num = 64
  c.eval.num_samples = 256


def sweep():
  """The learning-rate sweep that `python -m launch.sweep` runs: one override dict (dotted config
  path -> value) per run, each applied on top of `get_config(arg)`; 3e-4 ... 3e-3 brackets the
  default 1e-3 by about 3x either way."""
  return [{'optim.lr': 3e-4}, {'optim.lr': 1e-3}, {'optim.lr': 3e-3}]
