"""DDPM on the embedded 8x8 digits with a small U-Net.

Command:
  python -m gen.main --config=experiments/ddpm_digits.py --workdir=runs/ddpm_digits
Expected on a 2-core CPU: 11.6 min wall (6,000 steps of batch 64 at ~16 steps/s, 1,000-step
ancestral sampling for 2 pictures and the eval). Samples are recognisable digits
(W/samples/step_6000.png); sliced_w2 between 297 samples and the 297 test digits 0.071-0.079
(seed 0; 297 training digits vs the test digits: 0.080). The 'auto' evaluation (seed 0, 297
samples, digits_cnn features): FD-digits 27.8, digits IS 8.11, KID 19.4, precision 0.946, recall
0.879, density 1.15, coverage 0.987, memorisation 0.387, sliced_w2 0.079, 2.87 bits/dim by the
DDPM bound; the same metrics of 297 training digits and of uniform noise are in
experiments/RESULTS.md. With 297 samples FD and KID can fall below the real-data values: sampling
noise, not a better-than-data model.
Smoke variant: --config=experiments/ddpm_digits.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """DDPM (Ho et al. 2020): linear betas, 1,000 steps, eps prediction, ancestral sampling."""
  c = base.get_config(objective='diffusion')
  common.digits_unet(c)
  c.diffusion.process = 'discrete_linear'
  c.diffusion.num_timesteps = 1000
  c.diffusion.parameterization = 'eps'
  c.diffusion.weighting = 'eps'
  c.diffusion.time_sampling = 'uniform'
  c.train.num_steps = 6000
  c.train.ckpt_every = 3000
  c.train.sample_every = 3000
  c.diffusion.sample.sampler = 'ddpm'
  # The digits metrics (FD-digits, IS, KID, precision/recall, density/coverage, memorisation,
  # sliced W2) and bits/dim from the DDPM bound over 17 pixel levels.
  c.eval.metrics = ('auto',)
  return common.variant(c, arg, name='ddpm_digits', smoke=common.smoke)
