"""Recipes the 2-D toy GAN experiments share (gan_ring8, gan_grid25, the WGANs): an MLP pair,
per-player optimizers, a smoke variant.

experiments/common.py's `smoke` shrinks diffusion networks; `smoke` here shrinks a `gan_mlp`
pair, keeps the batch a multiple of n_critic * pack and leaves diffusion alone. Helpers take the
config `c` (or one optimizer section) positionally and every recipe value by keyword; an
experiment ends with `common.variant(c, arg, name=..., smoke=gan_toy_common.smoke)`.
"""

import ml_collections


def toy_gan(
  c: ml_collections.ConfigDict,
  *,
  data: str,
  g_features=(128, 128, 128),
  d_features=(128, 128, 128),
  latent_dim: int = 8,
  batch_size: int = 256,
) -> None:
  """An unconditional `gan_mlp` pair (ReLU generator, LeakyReLU discriminator, no norms) on a
  2-D toy; EMA samples evaluated on 2,500 points (modes, high-quality fraction, sliced W2)."""
  c.data.name = data
  c.data.batch_size = batch_size
  c.model.name = 'gan_mlp'
  c.model.gan_mlp.g_features = tuple(g_features)
  c.model.gan_mlp.d_features = tuple(d_features)
  c.model.gan_mlp.g_norm = 'none'
  c.model.gan_mlp.d_norm = 'none'
  c.model.gan_mlp.spectral_norm = False
  c.gan.latent_dim = latent_dim
  c.train.ema_rate = 0.999
  c.sample.num = 2000
  c.sample.use_ema = True
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  c.eval.num_samples = 2500


def optimizer(
  o: ml_collections.ConfigDict,
  *,
  lr: float,
  name: str = 'adam',
  b1: float = 0.5,
  b2: float = 0.999,
  schedule: str = 'cosine',
) -> None:
  """Sets one player's optimizer section (c.optim: generator, c.gan.optim_d: discriminator)."""
  o.optimizer = name
  o.lr = lr
  o.b1 = b1
  o.b2 = b2
  o.weight_decay = 0.0
  o.warmup_steps = 0
  o.schedule = schedule
  o.grad_clip = 0.0


def intervals(c: ml_collections.ConfigDict, *, num_steps: int, evals: int = 4) -> None:
  """Runs `num_steps`, evaluating (mode coverage over training) and drawing `evals` times."""
  c.train.num_steps = num_steps
  c.train.eval_every = num_steps // evals
  c.train.sample_every = num_steps // evals
  c.train.ckpt_every = num_steps // 2


def smoke(c: ml_collections.ConfigDict) -> None:
  """The 2-D toy GAN smoke variant (seconds-long, for tests): 16-unit networks, 20 steps, few
  samples.

  Sets model.gan_mlp.g_features = (16, 16), model.gan_mlp.d_features = (16, 16),
  data.batch_size = 16 * gan.n_critic * gan.pack, train.num_steps = 20, train.log_every = 5,
  train.ckpt_every = 10, train.sample_every = 10, train.eval_every = 0, sample.num = 64,
  eval.num_samples = 256.
  """
  c.model.gan_mlp.g_features = (16, 16)
  c.model.gan_mlp.d_features = (16, 16)
  c.data.batch_size = 16 * c.gan.n_critic * c.gan.pack
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.train.eval_every = 0
  c.sample.num = 64
  c.eval.num_samples = 256
