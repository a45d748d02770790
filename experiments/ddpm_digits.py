"""DDPM on the embedded 8x8 digits with a small U-Net.

Command:
  python -m gen.main --config=experiments/ddpm_digits.py --workdir=runs/ddpm_digits
Expected on a 2-core CPU: 11.6 min wall (6,000 steps of batch 64 at ~16 steps/s, 1,000-step
ancestral sampling for 2 pictures and the eval; measured while other runs shared the cores part of
the time); 25.4 min on 2026-11-29 with three other jobs on the two cores, of which the final
evaluation took 3.8 min. Samples are recognisable digits (W/samples/step_6000.png); sliced_w2
between 297 samples and the 297 test digits 0.071 on 2026-11-23, 0.079 in the evaluation of
2026-11-29 below (seed 0; 297 training digits vs the test digits: 0.080). The 'auto' evaluation of
2026-11-29 (seed 0, 297 samples, digits_cnn features; in brackets 297 training digits against the
test digits, then uniform noise): FD-digits 27.8 (34.0, 836), digits IS 8.11 (8.41, 2.47), KID 19.4
(42.1, 2,135), precision 0.946 (0.963), recall 0.879 (0.899), density 1.15 (1.12), coverage 0.987
(0.993), memorisation 0.387 (held-out digits 0.421), sliced_w2 0.079 (0.080), 2.87 bits/dim by the
DDPM bound (uniform: 4.09). FD and KID below the real-data floor show their sampling noise at n =
297, not a better-than-data model.
Smoke variant: --config=experiments/ddpm_digits.py:smoke
"""

from experiments import base, common


def get_config(arg: str | None = None):
  """DDPM (Ho et al. 2020): linear betas, 1,000 steps, eps prediction, ancestral sampling."""
  c = base.get_config()
  common.digits_unet(c)
  c.objective.process = 'discrete_linear'
  c.objective.num_timesteps = 1000
  c.objective.parameterization = 'eps'
  c.objective.weighting = 'eps'
  c.objective.time_sampling = 'uniform'
  c.train.num_steps = 6000
  c.train.ckpt_every = 3000
  c.train.sample_every = 3000
  c.sample.sampler = 'ddpm'
  # The digits metrics (FD-digits, IS, KID, precision/recall, density/coverage, memorisation,
  # sliced W2) and bits/dim from the DDPM bound over 17 pixel levels.
  c.eval.metrics = ('auto',)
  return common.variant(c, arg, 'ddpm_digits')
