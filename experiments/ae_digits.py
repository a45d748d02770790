"""A deterministic autoencoder on the embedded 8x8 digits, sampled from a Gaussian fitted to its
training latents (the baseline the VAE and latent diffusion improve on).

Command:
  python -m gen.main --config=experiments/ae_digits.py --workdir=runs/ae_digits
Expected on a 2-core CPU: 3.3 min wall (4,000 steps of batch 64 at ~20 steps/s). The test
digits come back near exact (recon_mse 0.00030, W/samples/step_4000_reconstructions.png); its
samples, decoded from a diagonal Gaussian over the 64 latent dimensions, are not digits
(FD-digits 450, precision 0.458, recall 0.071; seed 0): the latent distribution is far from a
diagonal Gaussian, which is what the VAE's prior and latent diffusion address.
Smoke variant: --config=experiments/ae_digits.py:smoke
"""

from experiments import ae_common, base, common


def get_config(arg: str | None = None):
  """Mean squared error, no input noise, latents 4x4x4."""
  c = base.get_config(objective='autoencoder', model='conv_autoencoder')
  ae_common.digits_autoencoder(c, latent_channels=4, num_steps=4000)
  c.autoencoder.loss = 'mse'
  c.autoencoder.noise_std = 0.0
  return common.variant(c, arg, name='ae_digits', smoke=ae_common.smoke)
