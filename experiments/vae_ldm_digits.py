"""The first stage of latent diffusion on digits (ldm_digits, ldm_cond_digits): a VAE with a small
KL weight, Rombach et al. (2022)'s "KL-regularised" autoencoder, whose posterior means are
sharp codes of the digits at about unit scale.

Command:
  python -m gen.main --config=experiments/vae_ldm_digits.py --workdir=runs/vae_ldm_digits
Expected on a 2-core CPU: 3.8 min wall (4,000 steps of batch 64 at ~18 steps/s, seed 0).
Reconstructions of the test digits are near exact: recon_mse 0.00072 (pixels in [-1, 1]), KL 155
nats per digit, so as a likelihood model it is poor (4.32 bits/dim by IWAE_100, 4.57 by the
ELBO; vae_digits: 2.14 and 2.27) and its own prior samples are blobs (FD-digits 307): it is an
encoder for ldm_digits, whose diffusion model learns the latents' distribution (latent scale
1.088).
Smoke variant: --config=experiments/vae_ldm_digits.py:smoke
"""

from experiments import ae_common, base, common


def get_config(arg: str | None = None):
  """vae_digits with beta = 0.01: reconstructions matter more than the ELBO."""
  c = base.get_config(objective='vae', model='conv_autoencoder')
  ae_common.digits_autoencoder(c, latent_channels=4, num_steps=4000)
  c.vae.beta = 0.01
  c.vae.kl_warmup_steps = 0
  c.vae.decoder = 'gaussian'
  c.vae.decoder_std = 0.0  # learned
  c.vae.likelihood.num_importance = 100
  return common.variant(c, arg, name='vae_ldm_digits', smoke=ae_common.smoke)
