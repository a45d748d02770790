"""A VAE (Kingma & Welling 2014) on the embedded 8x8 digits: its ELBO and importance-weighted
bits/dim next to the DDPM bound.

Command:
  python -m gen.main --config=experiments/vae_digits.py --workdir=runs/vae_digits
Expected on a 2-core CPU: 3.7 min wall (4,000 steps of batch 64, then bits/dim with k = 1,000
importance samples on 256 test digits). Seed 0, in W/eval/step_4000.json: 2.139 bits/dim by
IWAE_1000 ('bpd') and 2.275 by the ELBO ('bpd_elbo'), on the same 256 test digits and 17 levels
as ddpm_digits's DDPM bound (2.864); with --mode=eval --config.vae.likelihood.num_importance=100:
2.154. KL 19.9 nats per digit, recon_mse 0.0243 (posterior means). Its prior samples are
blurred but mostly readable digits: FD-digits 83.8, precision 0.758, recall 0.838.
Smoke variant: --config=experiments/vae_digits.py:smoke
"""

from experiments import ae_common, base, common


def get_config(arg: str | None = None):
  """beta = 1 (the ELBO), a Gaussian decoder with one learned scale, latents 4x4x4."""
  c = base.get_config(objective='vae', model='conv_autoencoder')
  ae_common.digits_autoencoder(c, latent_channels=4, num_steps=4000)
  c.vae.beta = 1.0
  c.vae.kl_warmup_steps = 0
  c.vae.decoder = 'gaussian'
  c.vae.decoder_std = 0.0  # learned
  c.vae.likelihood.num_importance = 1000
  return common.variant(c, arg, name='vae_digits', smoke=ae_common.smoke)
