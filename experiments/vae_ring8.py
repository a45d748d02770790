"""A VAE on the 2-D ring of 8 Gaussians: the model's blurry mode-averaging, next to diffusion
(ddpm_ring8 covers all 8 modes with most samples inside them).

Command:
  python -m gen.main --config=experiments/vae_ring8.py --workdir=runs/vae_ring8
Expected on a 2-core CPU: 35 s wall (5,000 steps of batch 512). The samples (draws of p(x|z))
make a blurred ring through all 8 modes: the Gaussian decoder's one learned scale is far wider
than the modes (std 0.02), and the 2-D latent's prior mass between the modes' encodings decodes
between the modes. Seed 0: modes_covered 0 of 8 and high_quality_fraction 0.108 (samples within
3 std of a mode; ddpm_ring8: 8/8 and 0.96), sliced_w2 0.193; on 1,024 test points -0.156
bits/dim by IWAE_100 against 0.273 by the ELBO; recon_mse 0.00049.
Smoke variant: --config=experiments/vae_ring8.py:smoke
"""

from experiments import ae_common, base, common


def get_config(arg: str | None = None):
  """A 2-D latent, SiLU MLPs of 256, a Gaussian decoder with a learned scale; samples are draws
  of p(x|z) (vae.sample.noise), the model's own distribution."""
  c = base.get_config(objective='vae', model='mlp_autoencoder')
  c.data.name = 'ring8'
  c.data.batch_size = 512
  c.model.mlp_autoencoder.features = (256, 256)
  c.model.mlp_autoencoder.latent_dim = 2
  c.vae.beta = 1.0
  c.vae.decoder = 'gaussian'
  c.vae.decoder_std = 0.0
  c.vae.sample.noise = True
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = 'cosine'
  c.train.num_steps = 5000
  c.train.ckpt_every = 5000
  c.train.sample_every = 2500
  c.train.ema_rate = 0.999
  c.sample.num = 2000
  c.eval.metrics = ('auto',)  # modes, high-quality fraction, sliced W2, reconstruction, bpd
  c.eval.num_samples = 2500
  c.eval.bpd_num = 1024
  return common.variant(c, arg, name='vae_ring8', smoke=ae_common.smoke)
