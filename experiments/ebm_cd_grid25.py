"""EBM on grid25 by contrastive divergence with short-run Langevin chains (Nijkamp et al. 2019).

Command:
  python -m gen.main --config=experiments/ebm_cd_grid25.py --workdir=runs/ebm_cd_grid25
Expected on a 2-core CPU: ~195 s wall (4,000 steps of batch 512 at ~20 steps/s on a shared
CPU, 40 gradient evaluations per step); EMA samples cover 25/25 modes with
high_quality_fraction 0.929 and sliced_w2 0.26 (W/eval/step_4000.json, seed 0; two draws of the
data itself are 0.23 apart). Mode counts range 62-126 of 2,500 (fair share 100): the corner
modes get the fewest.
Smoke variant (seconds, used by the tests): --config=experiments/ebm_cd_grid25.py:smoke

Recipe: as experiments/ebm_cd_ring8.py (fresh K = 40 step chains from uniform noise, sampled
the same way; a/2 = 0.025, noise_scale 0.05, i.e. per-step noise 0.011 against the modes' std
0.05; energy_alpha 0.1; Adam lr 1e-3, b1 0.5), with the noise box widened to [-4.5, 4.5]^2 to
cover the grid and twice the steps and batch.

Measured alternatives (seed 0): batch 256: 25/25, hq 0.887, sliced_w2 0.27 in 113 s; batch 256
with K = 60 (training and sampling): 25/25, hq 0.905, sliced_w2 0.25 in 125 s.
"""

from experiments import base


def get_config(arg: str | None = None):
  """Returns the ebm_cd_grid25 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config()
  c.data.name = 'grid25'
  c.data.batch_size = 512
  c.model.name = 'energy_mlp'
  c.model.energy_mlp.features = (128, 128, 128)
  c.model.energy_mlp.spectral_norm = False
  c.objective.name = 'ebm'
  c.objective.loss = 'cd'
  c.objective.energy_alpha = 0.1
  c.objective.chain_init = 'noise'  # short-run: a fresh chain from noise for every negative
  c.objective.init_range = 4.5
  c.objective.chain_steps = 40
  c.objective.sample_chain_steps = 40  # sample exactly as trained
  c.objective.step_size = 0.05
  c.objective.noise_scale = 0.05
  c.objective.chain_grad_clip = 0.0
  c.objective.mala = False
  c.optim.optimizer = 'adam'
  c.optim.lr = 1e-3
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = 'constant'
  c.optim.grad_clip = 0.0
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.ckpt_every = 4000
  c.train.sample_every = 1000
  c.train.ema_rate = 0.99
  c.sample.num = 2000
  c.sample.use_ema = True
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  c.eval.num_samples = 2500
  if arg == 'smoke':
    c.data.batch_size = 256
    c.model.energy_mlp.features = (32, 32)
    c.objective.chain_steps = 5
    c.objective.sample_chain_steps = 5
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.ckpt_every = 10
    c.train.sample_every = 10
    c.sample.num = 64
    c.eval.num_samples = 256
  elif arg:
    raise ValueError(f"experiments/ebm_cd_grid25.py: unknown variant {arg!r}; choose 'smoke'")
  return c
