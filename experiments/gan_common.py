"""Recipes the DCGAN-family experiment files share: digits and CIFAR-10 pairs, a smoke variant.

experiments/common.py's `smoke` shrinks diffusion networks (unet, mlp); `smoke` here shrinks a
GAN pair and keeps the batch a multiple of n_critic * pack, and leaves diffusion alone. Helpers
take the config `c` positionally and every recipe value by keyword; an experiment ends with
`common.variant(c, arg, name=..., smoke=gan_common.smoke)`.
"""

import ml_collections

from gen import metrics as metrics_lib


def gan_optimizers(
  c: ml_collections.ConfigDict,
  *,
  lr: float,
  b1: float = 0.5,
  b2: float = 0.999,
  lr_d: float = 0.0,
) -> None:
  """Adam for both players (lr_d: the discriminator's, default lr), constant learning rates."""
  for o, rate in ((c.optim, lr), (c.gan.optim_d, lr_d or lr)):
    o.optimizer = 'adam'
    o.lr = rate
    o.b1 = b1
    o.b2 = b2
    o.weight_decay = 0.0
    o.warmup_steps = 0
    o.schedule = 'constant'
    o.grad_clip = 0.0


def digits_dcgan(c: ml_collections.ConfigDict) -> None:
  """A DCGAN pair for the 8x8x1 digits, batch 64, evaluated like the diffusion digits experiments
  (sliced W2 of 297 samples against the 297 test digits) every 1,000 steps.

  G: z (100) -> 4x4x128 -> 8x8x64 -> 3x3 conv -> tanh; D: 3x3 conv 32 -> 4x4/2 conv 32 -> dense.
  Sized for a 2-core CPU, where the discriminator dominates the cost (it runs on the real and
  the generated batch and under the generator's gradient): d_ch 64 makes a step ~3.5x slower
  than 32; g_ch 64 costs ~40% more than 32 and lowered DCGAN's sliced W2 at 4,000 steps from
  0.098 to 0.093.
  """
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.name = 'dcgan'
  c.model.dcgan.g_ch = 64
  c.model.dcgan.d_ch = 32
  c.gan.latent_dim = 100
  gan_optimizers(c, lr=2e-4)
  c.train.ema_rate = 0.999
  c.train.sample_every = 1000
  c.train.eval_every = 1000  # a GAN's samples cost one forward pass: cheap to track
  c.train.ckpt_every = 1000
  c.sample.num = 100
  c.sample.use_ema = True
  c.eval.metrics = metrics_lib.DIGITS_METRICS  # as diffusion and EBMs on digits
  c.eval.num_samples = 297  # the size of the digits test split


def cifar10_dcgan(c: ml_collections.ConfigDict) -> None:
  """DCGAN at 32x32 (Radford et al. 2016): z (100) -> 4x4x512 -> 8x8x256 -> 16x16x128 ->
  32x32x3; the discriminator mirrors it. Adam 2e-4, b1 0.5, batch 128."""
  c.data.name = 'cifar10'
  c.data.batch_size = 128
  c.model.name = 'dcgan'
  c.model.dcgan.g_ch = 64
  c.model.dcgan.d_ch = 64
  c.gan.latent_dim = 100
  gan_optimizers(c, lr=2e-4)
  c.train.ema_rate = 0.999
  c.train.log_every = 100
  c.train.ckpt_every = 10_000
  c.train.sample_every = 5000
  c.sample.num = 64
  c.eval.metrics = ('sliced_w2',)
  c.eval.num_samples = 1000


def smoke(c: ml_collections.ConfigDict) -> None:
  """The DCGAN-family smoke variant (seconds-long, for tests): 8-channel networks, 20 steps, few
  samples.

  Sets train.num_steps = 20, train.log_every = 5, train.ckpt_every = 10,
  train.sample_every = 10, train.eval_every = 0, sample.num = 20, eval.num_samples = 64,
  model.dcgan.g_ch = 8, model.dcgan.d_ch = 8 and data.batch_size = 4 * gan.n_critic * gan.pack.
  """
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.train.eval_every = 0
  c.sample.num = 20
  c.eval.num_samples = 64
  c.model.dcgan.g_ch = 8
  c.model.dcgan.d_ch = 8
  c.data.batch_size = 4 * c.gan.n_critic * c.gan.pack
