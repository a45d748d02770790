"""A VQ-VAE (van den Oord et al. 2017) on the embedded 8x8 digits: EMA codebook of 64 codes,
dead-code restarts, codebook perplexity and reconstruction error in W/eval.

Command:
  python -m gen.main --config=experiments/vqvae_digits.py --workdir=runs/vqvae_digits
Expected on a 2-core CPU: 3.2 min wall (4,000 steps of batch 64). Seed 0 on the 297 test
digits: codebook_perplexity 59.0 of 64 codes, codebook_usage 1.0 (no dead code was restarted),
recon_mse 0.0191 (on the training digits 0.00095: with 1,500 training digits the discrete
bottleneck overfits; at 1,500 steps the test error is 0.013-0.017). Its samples draw codes
independently per position, so they are not digits (FD-digits 317): the codes are for a prior
to learn (latent diffusion with --config.pretrained.autoencoder=runs/vqvae_digits).
Smoke variant: --config=experiments/vqvae_digits.py:smoke
"""

from experiments import ae_common, base, common


def get_config(arg: str | None = None):
  """64 codes of dimension 4 at 4x4 positions, the EMA codebook (decay 0.99), beta 0.25."""
  c = base.get_config(objective='vqvae', model='conv_autoencoder')
  ae_common.digits_autoencoder(c, latent_channels=4, num_steps=4000)
  c.vqvae.num_codes = 64
  c.vqvae.beta = 0.25
  c.vqvae.codebook = 'ema'
  c.vqvae.ema_decay = 0.99
  c.vqvae.dead_code_threshold = 0.03
  c.vqvae.loss = 'mse'
  return common.variant(c, arg, name='vqvae_digits', smoke=ae_common.smoke)
