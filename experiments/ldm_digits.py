"""Latent diffusion (Rombach et al. 2022) on digits: DDPM on the 4x4x4 posterior means of the
frozen VAE of vae_ldm_digits, decoded to pixels for every picture and metric.

Commands (the first trains the autoencoder this run reads as pretrained.autoencoder):
  python -m gen.main --config=experiments/vae_ldm_digits.py --workdir=runs/vae_ldm_digits
  python -m gen.main --config=experiments/ldm_digits.py --workdir=runs/ldm_digits
Expected on a 2-core CPU: 14 min wall on shared cores (6,000 steps; ddpm_digits on the same
machine: see experiments/RESULTS.md), of which the train step is ~0.6x ddpm_digits's
(benchmarks/latent_step.py). Recognisable digits (W/samples/step_6000.png); seed 0, 297
samples, digits_cnn features: FD-digits 29.8, precision 0.933, recall 0.788, digits IS 7.98,
sliced_w2 0.088, the measured latent scale 1.088 (logged as latent_scale).
Smoke variant: --config=experiments/ldm_digits.py:smoke, which reads runs/vae_ldm_digits too
(train --config=experiments/vae_ldm_digits.py:smoke there first, as
tests/test_latent_diffusion.py does)
"""

from experiments import common, ddpm_digits

AUTOENCODER = 'runs/vae_ldm_digits'  # relative to the folder gen.main runs in


def get_config(arg: str | None = None):
  """ddpm_digits's recipe (linear betas, 1,000 steps, eps prediction, ancestral sampling, the
  same U-Net) on the latents of AUTOENCODER, the latent scale measured on the first batch."""
  c = ddpm_digits.get_config()
  c.pretrained.autoencoder = AUTOENCODER
  c.diffusion.latent_scale = 0.0  # measured: 1 / std of the first batch's latents
  return common.variant(c, arg, name='ldm_digits', smoke=common.smoke)
