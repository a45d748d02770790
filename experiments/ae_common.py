"""Recipes the autoencoder experiment files share (AE, VAE, VQ-VAE): the digits network and
its training, and the seconds-long smoke variant. Each experiment keeps its own objective
choices in view.

Helpers take the config `c` positionally and every recipe value by keyword; an experiment ends
with `common.variant(c, arg, name=..., smoke=ae_common.smoke)`.
"""

import ml_collections


def digits_autoencoder(c: ml_collections.ConfigDict, *, latent_channels: int, num_steps: int):
  """The 8x8x1 digits through a conv autoencoder with 8x8 and 4x4 levels (ch 32, one residual
  block per level): latents 4x4 x `latent_channels`. Adam 1e-3 with 200 warm-up steps and a
  cosine decay over `num_steps`, clipped at norm 1, EMA 0.999; one checkpoint at the end; the
  digits sample metrics and the reconstruction error on the 297 test digits, and (objectives
  with a likelihood) bits/dim over the 17 pixel levels on the first 256 of them."""
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.name = 'conv_autoencoder'
  m = c.model.conv_autoencoder
  m.ch = 32
  m.ch_mult = (1, 2)
  m.num_res_blocks = 1
  m.latent_channels = latent_channels
  m.num_groups = 8
  m.dropout = 0.0
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 200
  c.optim.schedule = 'cosine'
  c.optim.grad_clip = 1.0
  c.train.ema_rate = 0.999
  c.train.num_steps = num_steps
  c.train.ckpt_every = num_steps
  c.train.sample_every = num_steps // 2
  c.sample.num = 100
  c.eval.metrics = ('auto',)  # the digits metrics, 'reconstruction' and (a VAE) 'bpd'
  c.eval.num_samples = 297  # the size of the digits test split
  c.eval.bpd_num = 256  # bits/dim on the same 256 test digits as ddpm_digits's DDPM bound
  c.eval.num_bins = 17  # pixel values 0..16


def smoke(c: ml_collections.ConfigDict) -> None:
  """The autoencoder smoke variant (seconds-long, for tests): tiny networks, 20 steps.

  Sets train.num_steps = 20, train.log_every = 5, train.ckpt_every = 10,
  train.sample_every = 10, train.eval_every = 0, sample.num = 16, eval.num_samples = 64,
  eval.bpd_num = 16; then
  - model 'conv_autoencoder': data.batch_size = 16, model.conv_autoencoder.ch = 8,
    model.conv_autoencoder.num_groups = 4;
  - model 'mlp_autoencoder': data.batch_size = 256, model.mlp_autoencoder.features = (32, 32);
  - objective 'vae': vae.likelihood.num_importance = 8.
  """
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.train.eval_every = 0
  c.sample.num = 16
  c.eval.num_samples = 64
  c.eval.bpd_num = 16
  if c.model.name == 'conv_autoencoder':
    c.data.batch_size = 16
    c.model.conv_autoencoder.ch = 8
    c.model.conv_autoencoder.num_groups = 4
  else:
    c.data.batch_size = 256
    c.model.mlp_autoencoder.features = (32, 32)
  if c.objective.name == 'vae':
    c.vae.likelihood.num_importance = 8
