"""Score SDE (VE) on digits with the small U-Net, reverse-SDE sampling.

Command:
  python -m gen.main --config=experiments/score_sde_ve_digits.py --workdir=runs/ve_digits
Expected on a 2-core CPU: 8.3 min wall (6,000 steps of batch 64, 1,000 Euler-Maruyama steps
per picture and for the eval). Samples are mostly recognisable digits, a little noisier than
score_sde_vp_digits; sliced_w2 0.080 against the test digits (seed 0; train vs test: 0.080).
Smoke variant: --config=experiments/score_sde_ve_digits.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """VE SDE (Song et al. 2021): sigma from 0.01 to 20, about the largest distance between two
  8x8 digits in [-1, 1] (technique 1 of Song & Ermon 2020); eps prediction."""
  c = base.get_config(objective='diffusion')
  common.digits_unet(c)
  c.diffusion.process = 've'
  c.diffusion.sigma_min = 0.01
  c.diffusion.sigma_max = 20.0
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'low_discrepancy'
  c.train.num_steps = 6000
  c.train.ckpt_every = 3000
  c.train.sample_every = 3000
  c.diffusion.sample.sampler = 'euler_maruyama'
  c.diffusion.sample.num_steps = 1000
  return common.variant(c, arg, name='score_sde_ve_digits', smoke=common.smoke)
