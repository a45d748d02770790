"""Class-conditional latent diffusion on digits with classifier-free guidance: ldm_digits with
labels, as ddpm_cond_digits is ddpm_digits with labels.

Commands (the first trains the autoencoder this run reads as pretrained.autoencoder):
  python -m gen.main --config=experiments/vae_ldm_digits.py --workdir=runs/vae_ldm_digits
  python -m gen.main --config=experiments/ldm_cond_digits.py --workdir=runs/ldm_cond_digits
Expected on a 2-core CPU: 27 min wall on heavily shared cores (6,000 steps; sampling with
guidance costs two network calls per step). Every column of W/samples/step_6000.png is its
class; seed 0, 297 samples: class_agreement 1.0 (gen's digits classifier labels every sample
with its requested class), FD-digits 26.6, precision 0.997, recall 0.579 (guidance trades
recall for precision), digits IS 9.98.
Smoke variant: --config=experiments/ldm_cond_digits.py:smoke, which reads runs/vae_ldm_digits too
(train --config=experiments/vae_ldm_digits.py:smoke there first, as
tests/test_latent_diffusion.py does)
"""

from experiments import common, ddpm_cond_digits, ldm_digits
from gen import metrics as metrics_lib


def get_config(arg: str | None = None):
  """ddpm_cond_digits's recipe (10% null labels in training, guidance w = 2 at sampling) on the
  latents of ldm_digits's autoencoder."""
  c = ddpm_cond_digits.get_config()
  c.pretrained.autoencoder = ldm_digits.AUTOENCODER
  c.diffusion.latent_scale = 0.0  # measured
  # the digits metrics, and the share of samples gen's digits classifier assigns to their label
  c.eval.metrics = (*metrics_lib.DIGITS_METRICS, 'class_agreement')
  return common.variant(c, arg, name='ldm_cond_digits', smoke=common.smoke)
