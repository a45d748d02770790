"""Score SDE (VP) on the 2-D swiss roll with the residual MLP, reverse-SDE sampling.

Command:
  python -m gen.main --config=experiments/score_sde_vp_swiss_roll.py --workdir=runs/vp_swiss
Expected on a 2-core CPU: 81 s wall (8,000 steps of batch 512, 1,000 Euler-Maruyama sampling steps);
EMA samples reach sliced_w2 0.037-0.067 against the test split over seeds 0-4 (seed 0: 0.059; two
2,500-point draws of the data itself are 0.052 apart).
Smoke variant: --config=experiments/score_sde_vp_swiss_roll.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """VP SDE (Song et al. 2021), beta in [0.1, 20], eps prediction (= sigma^2-weighted DSM)."""
  c = base.get_config(objective='diffusion')
  c.data.name = 'swiss_roll'
  common.toy_mlp(c)
  c.diffusion.process = 'vp'
  c.diffusion.beta_min = 0.1
  c.diffusion.beta_max = 20.0
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'low_discrepancy'
  c.train.num_steps = 8000
  c.train.ckpt_every = 2000
  c.train.sample_every = 4000
  c.diffusion.sample.sampler = 'euler_maruyama'
  c.diffusion.sample.num_steps = 1000
  c.eval.metrics = ('sliced_w2',)
  return common.variant(c, arg, name='score_sde_vp_swiss_roll', smoke=common.smoke)
