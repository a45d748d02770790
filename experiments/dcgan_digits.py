"""DCGAN on the embedded 8x8 digits.

Command:
  python -m gen.main --config=experiments/dcgan_digits.py --workdir=runs/dcgan_digits
Expected on a 2-core CPU: 3.9 min wall (4,000 steps of batch 64 at 17.5 steps/s). sliced_w2 0.093
between 297 samples and the 297 test digits (seed 0; 0.229, 0.101, 0.097 at steps 1,000-3,000; 297
training digits vs the test digits: 0.080, ddpm_digits 0.071). W/samples/step_4000.png shows varied
digits of every class, about two thirds clearly recognisable, with noisier strokes than the data and
some blends of two digits; a logistic regression on the pixels is 81% sure of a sample's class on
average (94% of a test digit's). The interpolation strip morphs smoothly from digit to digit.
Smoke variant: --config=experiments/dcgan_digits.py:smoke
"""

from experiments import base, common, gan_common


def get_config(arg: str | None = None):
  """DCGAN (Radford et al. 2016): non-saturating loss, batch norm in both networks."""
  c = base.get_config(objective='gan')
  gan_common.digits_dcgan(c)
  c.gan.loss = 'non_saturating'
  c.model.dcgan.g_norm = 'batch'
  c.model.dcgan.d_norm = 'batch'
  c.train.num_steps = 4000
  return common.variant(c, arg, name='dcgan_digits', smoke=gan_common.smoke)
