"""DDPM on grid25 (25 Gaussians on {-4,-2,0,2,4}^2, std 0.05) with the residual MLP.

Command:
  python -m gen.main --config=experiments/ddpm_grid25.py --workdir=runs/ddpm_grid25
Expected on a 2-core CPU: ~105 s wall (10,000 steps of batch 512); over seeds 0-4 the EMA samples
cover 25/25 modes with high_quality_fraction 0.950-0.958 and sliced_w2 0.18-0.28 (seed 0: 0.955,
0.18; two 2,500-point draws of the data itself are 0.23 apart: the mode-weight noise of 25 modes
dominates this metric).
Smoke variant: --config=experiments/ddpm_grid25.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """DDPM (Ho et al. 2020): linear betas, 1,000 steps, eps prediction, ancestral sampling."""
  c = base.get_config(objective='diffusion')
  c.data.name = 'grid25'
  common.toy_mlp(c)
  c.diffusion.process = 'discrete_linear'
  c.diffusion.num_timesteps = 1000
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'uniform'
  c.train.num_steps = 10_000
  c.train.ckpt_every = 2500
  c.train.sample_every = 5000
  c.diffusion.sample.sampler = 'ddpm'
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  return common.variant(c, arg, name='ddpm_grid25', smoke=common.smoke)
