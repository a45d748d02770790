"""SNGAN on CIFAR-10: Miyato et al. 2018's standard CNN with spectral norm and hinge (GPU/TPU).

Command (prepare the data once with `gen prepare --dataset=cifar10`):
  python -m gen.main --config=experiments/sngan_cifar10.py --workdir=runs/sngan_cifar10
Expected: a GPU/TPU run, not measured on a 2-core CPU; the tests compile and run one step of this
pair on CPU. Miyato et al. report an Inception score of 7.58 and FID 25.5 for this architecture with
the hinge loss (table 2).
Smoke variant: --config=experiments/sngan_cifar10.py:smoke
"""

from experiments import base, common, gan_common


def get_config(arg: str | None = None):
  """SN-GAN, standard CNN (Miyato et al. 2018, table 3): G z (128) -> 4x4x512 -> 8x8x256 ->
  16x16x128 -> 32x32x64 -> 3x3 conv, batch norm; D 3x3 64, 4x4/2 64, 3x3 128, 4x4/2 128, 3x3
  256, 4x4/2 256, 3x3 512 -> dense, spectral norm on every layer, no other normalisation.

  Optimiser: setting C of their table 1 (Radford et al.'s Adam: lr 2e-4, b1 0.5, b2 0.999, one
  discriminator update per generator update), batch 64.
  """
  c = base.get_config(objective='gan')
  gan_common.cifar10_dcgan(c)
  c.data.batch_size = 64
  c.gan.loss = 'hinge'
  c.gan.latent_dim = 128
  c.gan.n_critic = 1
  c.model.dcgan.g_norm = 'batch'
  c.model.dcgan.d_norm = 'none'
  c.model.dcgan.spectral_norm = True
  c.model.dcgan.extra_convs = True
  gan_common.gan_optimizers(c, lr=2e-4, b1=0.5, b2=0.999)
  c.train.num_steps = 100_000
  return common.variant(c, arg, name='sngan_cifar10', smoke=gan_common.smoke)
