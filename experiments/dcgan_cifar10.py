"""DCGAN on CIFAR-10 with Radford et al.'s recipe at 32x32 (GPU/TPU).

Command (prepare the data once with `gen prepare --dataset=cifar10`):
  python -m gen.main --config=experiments/dcgan_cifar10.py --workdir=runs/dcgan_cifar10
Expected: a GPU/TPU run, not measured on a 2-core CPU; the tests compile and run one step of this
pair on CPU. For reference, DCGAN-style pairs of this size reach an Inception score of about 6.2-6.7
on CIFAR-10 (Salimans et al. 2016 / chainer-gan-lib; Miyato et al. 2018, table 2: 6.64, FID 37.7).
Smoke variant: --config=experiments/dcgan_cifar10.py:smoke
"""

from experiments import base, common, gan_common


def get_config(arg: str | None = None):
  """DCGAN (Radford et al. 2016): non-saturating loss, batch norm in both networks (not on D's
  input layer), transposed 4x4 stride-2 convolutions 4x4x512 -> 32x32, LeakyReLU 0.2 in D,
  Adam 2e-4 with b1 0.5, batch 128, z ~ N(0, I) of 100 dimensions."""
  c = base.get_config(objective='gan')
  gan_common.cifar10_dcgan(c)
  c.gan.loss = 'non_saturating'
  c.model.dcgan.g_ch = 64  # G: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 3
  c.model.dcgan.d_ch = 128  # D mirrors it: 32x32x128 (3x3) -> 16x16x128 -> 8x8x256 -> 4x4x512
  c.model.dcgan.g_norm = 'batch'
  c.model.dcgan.d_norm = 'batch'
  c.model.dcgan.spectral_norm = False
  c.model.dcgan.extra_convs = False
  c.train.num_steps = 100_000
  return common.variant(c, arg, name='dcgan_cifar10', smoke=gan_common.smoke)
