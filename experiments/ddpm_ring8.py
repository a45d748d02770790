"""DDPM on ring8 (8 Gaussians on a circle of radius 2, std 0.02) with a residual MLP.

Command:
  python -m gen.main --config=experiments/ddpm_ring8.py --workdir=runs/ddpm_ring8
Expected on a 2-core laptop CPU: WALL_TIME; EMA samples cover 8/8 modes with
high_quality_fraction HQF (W/eval/step_4000.json).
Smoke variant (seconds, used by the tests): --config=experiments/ddpm_ring8.py:smoke
"""

from experiments import base


def get_config(arg: str | None = None):
  """Returns the ddpm_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config()
  c.data.name = 'ring8'
  c.data.batch_size = 256
  c.model.name = 'mlp'
  c.model.mlp.features = (256, 256, 256)
  c.model.mlp.time_dim = 64
  c.objective.name = 'ddpm'
  c.objective.num_timesteps = 1000
  c.objective.beta_start = 1e-4
  c.objective.beta_end = 0.02
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = 'cosine'
  c.train.num_steps = 4000
  c.train.log_every = 200
  c.train.ckpt_every = 1000
  c.train.sample_every = 1000
  c.train.ema_rate = 0.995
  c.sample.sampler = 'ddpm'
  c.sample.num = 2000
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  c.eval.num_samples = 2500
  if arg == 'smoke':
    c.model.mlp.features = (32, 32)
    c.model.mlp.time_dim = 16
    c.objective.num_timesteps = 50
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.ckpt_every = 10
    c.train.sample_every = 10
    c.sample.num = 64
    c.eval.num_samples = 256
  elif arg:
    raise ValueError(f"experiments/ddpm_ring8.py: unknown variant {arg!r}; choose 'smoke'")
  return c
