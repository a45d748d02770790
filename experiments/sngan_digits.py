"""SNGAN on the embedded 8x8 digits.

Command:
  python -m gen.main --config=experiments/sngan_digits.py --workdir=runs/sngan_digits
Expected on a 2-core CPU: 3.9 min wall (3,000 steps of batch 64). sliced_w2 0.101 against the 297
test digits (seed 0; 0.139, 0.098 at steps 1,000 and 2,000; training vs test digits: 0.080).
W/samples/step_3000.png: varied digits, about half clearly recognisable, the rest grainy or
ambiguous (a pixel classifier is 77% sure on average, 94% on test digits); smooth interpolation
strip. Alternatives we measured (DiffAugment): experiments/RESULTS.md.
Smoke variant: --config=experiments/sngan_digits.py:smoke
"""

from experiments import base, common, gan_common


def get_config(arg: str | None = None):
  """SNGAN (Miyato et al. 2018): hinge loss, spectral normalisation on every discriminator layer,
  the "standard CNN" discriminator (a 3x3 convolution at every resolution, no normalisation)."""
  c = base.get_config(objective='gan')
  gan_common.digits_dcgan(c)
  c.gan.loss = 'hinge'
  c.model.dcgan.g_norm = 'batch'
  c.model.dcgan.d_norm = 'none'
  c.model.dcgan.spectral_norm = True
  c.model.dcgan.extra_convs = True
  c.model.dcgan.d_ch = 16  # sliced W2 0.100 at 4,000 steps vs 0.105 for d_ch 32, 3x faster
  c.train.num_steps = 3000
  return common.variant(c, arg, name='sngan_digits', smoke=gan_common.smoke)
