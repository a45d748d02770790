"""GAN networks: generator/discriminator pairs for 2-D points (MLP) and images (DCGAN family).

A generator maps latents z [B, latent_dim] (and labels) to data; a discriminator maps data (and
labels) to one logit per example, [B]. Both are flax modules `f(inputs, labels=None, train=False)`.

Normalisation is a choice ('batch', 'layer', 'none'): DCGAN (Radford et al. 2016) uses batch
normalisation in both networks; WGAN-GP (Gulrajani et al. 2017) needs a discriminator without
batch statistics (its penalty is per example) and recommends layer normalisation. Spectral
normalisation (Miyato et al. 2018) wraps every discriminator layer in `flax.linen.SpectralNorm`;
its power-iteration vectors live in the 'batch_stats' collection, which the GAN objective keeps
in `TrainState.extra`, so a checkpoint restores them.

Conditioning (Mirza & Osindero 2014): the generator concatenates a learned label embedding to z;
the discriminator either concatenates a label embedding to its input ('concat': as extra
channels for images) or adds the projection term <embed(y), phi(x)> to its logit ('projection',
Miyato & Koyama 2018).
"""

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from gen.errors import ConfigError

NORMS = ('batch', 'layer', 'none')
COND_DISCRIMINATORS = ('projection', 'concat')


def check_norm(norm: str, field: str) -> None:
  if norm not in NORMS:
    raise ConfigError(f'{field}={norm!r} is unknown; choose one of {list(NORMS)}')


class _Norm(nn.Module):
  """Batch norm (batch statistics in training, running averages otherwise), layer norm over
  every feature of an example, or nothing."""

  kind: str

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == 'batch':
      return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    if self.kind == 'layer':
      return nn.LayerNorm(reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1)(x)
    return x


def _layer(layer: nn.Module, spectral_norm: bool, x, train: bool):
  """layer(x), spectrally normalised when `spectral_norm` (u and sigma in 'batch_stats')."""
  if spectral_norm:
    return nn.SpectralNorm(layer)(x, update_stats=train)
  return layer(x)


def _label_embedding(labels, num_classes: int, dim: int, name: str):
  if labels is None:
    raise ValueError(f'{name}: a conditional network (num_classes > 0) needs labels')
  chex.assert_rank(labels, 1)
  return nn.Embed(num_classes, dim, name=name)(labels)


class MLPGenerator(nn.Module):
  """z -> Dense/ReLU stack -> linear output in data space [B, out_dim].

  Attributes:
    out_dim: data dimension (2 for the toys).
    features: hidden widths.
    norm: 'batch' | 'layer' | 'none' after each hidden layer.
    num_classes: > 0 for a conditional generator (label embedding concatenated to z).
    embed_dim: width of that label embedding.
  """

  out_dim: int
  features: Sequence[int] = (256, 256, 256)
  norm: str = 'none'
  num_classes: int = 0
  embed_dim: int = 16

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    chex.assert_rank(z, 2)
    h = z
    if self.num_classes:
      h = jnp.concatenate(
        [h, _label_embedding(labels, self.num_classes, self.embed_dim, 'embed')], -1
      )
    for width in self.features:
      h = nn.relu(_Norm(self.norm)(nn.Dense(width)(h), train))
    return nn.Dense(self.out_dim)(h)


class MLPDiscriminator(nn.Module):
  """x [B, D] -> Dense/LeakyReLU(0.2) stack -> logit [B].

  Attributes:
    features: hidden widths.
    norm: 'batch' | 'layer' | 'none' after each hidden layer but the first.
    spectral_norm: spectrally normalise every Dense layer.
    num_classes: > 0 for a conditional discriminator.
    conditioning: 'projection' or 'concat' (see the module docstring).
    embed_dim: width of the 'concat' label embedding.
  """

  features: Sequence[int] = (256, 256, 256)
  norm: str = 'none'
  spectral_norm: bool = False
  num_classes: int = 0
  conditioning: str = 'projection'
  embed_dim: int = 16

  @nn.compact
  def __call__(self, x, labels=None, train: bool = False):
    chex.assert_rank(x, 2)
    sn = self.spectral_norm
    h = x
    if self.num_classes and self.conditioning == 'concat':
      h = jnp.concatenate(
        [h, _label_embedding(labels, self.num_classes, self.embed_dim, 'embed')], -1
      )
    for i, width in enumerate(self.features):
      h = _layer(nn.Dense(width), sn, h, train)
      h = nn.leaky_relu(_Norm(self.norm)(h, train) if i else h, 0.2)
    logit = _layer(nn.Dense(1), sn, h, train)[:, 0]
    if self.num_classes and self.conditioning == 'projection':
      embed = _layer(nn.Embed(self.num_classes, h.shape[-1]), sn, _checked(labels), train)
      logit = logit + jnp.sum(embed * h, axis=-1)
    return logit


def _checked(labels):
  if labels is None:
    raise ValueError('a conditional discriminator needs labels')
  return labels


def num_upsamplings(height: int) -> tuple[int, int]:
  """(start resolution, number of 2x steps): halve `height` while even and above 4
  (32 -> (4, 3), 8 -> (4, 1), 28 -> (7, 2))."""
  start, n = height, 0
  while start % 2 == 0 and start > 4:
    start, n = start // 2, n + 1
  return start, n


class DCGANGenerator(nn.Module):
  """DCGAN generator (Radford et al. 2016): z -> Dense -> [s, s, ch 2^n] -> n transposed
  convolutions (4x4, stride 2, channels halving, norm + ReLU) -> 3x3 conv -> tanh.

  Attributes:
    shape: (H, W, C) of the images; H = W = s 2^n with s = 4 (or the odd start, e.g. 7 for 28).
    ch: channels at full resolution (DCGAN: 64; the widest layer has ch 2^n).
    norm: 'batch' (DCGAN) | 'layer' | 'none'.
    num_classes, embed_dim: conditional generator (label embedding concatenated to z).
  """

  shape: tuple[int, int, int]
  ch: int = 64
  norm: str = 'batch'
  num_classes: int = 0
  embed_dim: int = 32

  @nn.compact
  def __call__(self, z, labels=None, train: bool = False):
    chex.assert_rank(z, 2)
    height, _, channels = self.shape
    start, n = num_upsamplings(height)
    h = z
    if self.num_classes:
      h = jnp.concatenate(
        [h, _label_embedding(labels, self.num_classes, self.embed_dim, 'embed')], -1
      )
    width = self.ch * 2**n
    h = nn.Dense(start * start * width)(h).reshape(z.shape[0], start, start, width)
    h = nn.relu(_Norm(self.norm)(h, train))
    for _ in range(n):
      width //= 2
      h = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding='SAME')(h)
      h = nn.relu(_Norm(self.norm)(h, train))
    return jnp.tanh(nn.Conv(channels, (3, 3), padding='SAME')(h))


class DCGANDiscriminator(nn.Module):
  """DCGAN discriminator: strided 4x4 convolutions (channels doubling, LeakyReLU 0.2, no
  pooling, no norm on the first layer) -> Dense logit [B].

  With `extra_convs` each resolution also gets a 3x3 stride-1 convolution: the "standard CNN"
  of SNGAN (Miyato et al. 2018, table 3), used with spectral normalisation.

  Attributes:
    ch: channels of the first layer.
    norm: 'batch' (DCGAN) | 'layer' (WGAN-GP) | 'none' (SNGAN).
    spectral_norm: spectrally normalise every layer.
    extra_convs: the SNGAN standard-CNN layout.
    num_classes, conditioning, embed_dim: conditional discriminator.
  """

  ch: int = 64
  norm: str = 'batch'
  spectral_norm: bool = False
  extra_convs: bool = False
  num_classes: int = 0
  conditioning: str = 'projection'
  embed_dim: int = 16

  @nn.compact
  def __call__(self, x, labels=None, train: bool = False):
    chex.assert_rank(x, 4)
    sn = self.spectral_norm
    h = x
    if self.num_classes and self.conditioning == 'concat':
      emb = _label_embedding(labels, self.num_classes, self.embed_dim, 'embed')
      emb = jnp.broadcast_to(emb[:, None, None, :], (*x.shape[:3], self.embed_dim))
      h = jnp.concatenate([h, emb], axis=-1)
    _, n = num_upsamplings(x.shape[1])
    width = self.ch
    h = nn.leaky_relu(_layer(nn.Conv(width, (3, 3), padding='SAME'), sn, h, train), 0.2)
    for _ in range(max(n, 1)):
      h = _layer(nn.Conv(width, (4, 4), strides=(2, 2), padding='SAME'), sn, h, train)
      h = nn.leaky_relu(_Norm(self.norm)(h, train), 0.2)
      width *= 2
      if self.extra_convs:
        h = _layer(nn.Conv(width, (3, 3), padding='SAME'), sn, h, train)
        h = nn.leaky_relu(_Norm(self.norm)(h, train), 0.2)
    h = h.reshape(h.shape[0], -1)
    logit = _layer(nn.Dense(1), sn, h, train)[:, 0]
    if self.num_classes and self.conditioning == 'projection':
      embed = _layer(nn.Embed(self.num_classes, h.shape[-1]), sn, _checked(labels), train)
      logit = logit + jnp.sum(embed * h, axis=-1)
    return logit


def make_pair(
  name: str,
  shape: tuple[int, ...],
  kwargs: dict,
  num_classes: int = 0,
  conditioning: str = 'projection',
) -> tuple[nn.Module, nn.Module]:
  """(generator, discriminator) of `model.name` for examples of `shape`, checked before compiling.

  Args:
    name: 'gan_mlp' (vectors such as 2-D points) or 'dcgan' (NHWC images).
    shape: one example's shape (unpacked).
    kwargs: the `model.<name>` config section.
    num_classes: > 0 for a conditional pair.
    conditioning: the discriminator's label conditioning, one of COND_DISCRIMINATORS.
  """
  field = f'model.{name}'
  kw = dict(kwargs)
  for key in ('g_norm', 'd_norm'):
    check_norm(kw.get(key, 'none'), f'{field}.{key}')
  if conditioning not in COND_DISCRIMINATORS:
    raise ConfigError(
      f'gan.cond_discriminator={conditioning!r}; choose one of {list(COND_DISCRIMINATORS)}'
    )
  try:
    if name == 'gan_mlp':
      if len(shape) != 1:
        raise ConfigError(
          f"model.name='gan_mlp' takes vectors such as 2-D points; the data has shape {shape}: "
          "use model.name='dcgan' for images"
        )
      gen = MLPGenerator(
        out_dim=shape[0],
        features=tuple(kw.pop('g_features')),
        norm=kw.pop('g_norm'),
        num_classes=num_classes,
      )
      disc = MLPDiscriminator(
        features=tuple(kw.pop('d_features')),
        norm=kw.pop('d_norm'),
        spectral_norm=kw.pop('spectral_norm'),
        num_classes=num_classes,
        conditioning=conditioning,
      )
    elif name == 'dcgan':
      if len(shape) != 3 or shape[0] != shape[1]:
        raise ConfigError(
          f"model.name='dcgan' takes square NHWC images; the data has shape {shape}: "
          "use model.name='gan_mlp' for vectors"
        )
      if num_upsamplings(shape[0])[0] > 7:
        raise ConfigError(f"model.name='dcgan': image size {shape[0]} must be s 2^n with s <= 7")
      gen = DCGANGenerator(
        shape=tuple(shape), ch=kw.pop('g_ch'), norm=kw.pop('g_norm'), num_classes=num_classes
      )
      disc = DCGANDiscriminator(
        ch=kw.pop('d_ch'),
        norm=kw.pop('d_norm'),
        spectral_norm=kw.pop('spectral_norm'),
        extra_convs=kw.pop('extra_convs'),
        num_classes=num_classes,
        conditioning=conditioning,
      )
    else:
      raise ConfigError(f'model.name={name!r} is not a GAN pair; choose one of {list(GAN_MODELS)}')
  except KeyError as e:
    raise ConfigError(f'{field} lacks the field {e}') from None
  if kw:
    raise ConfigError(f'{field}: unknown fields {sorted(kw)}')
  return gen, disc


GAN_MODELS = ('gan_mlp', 'dcgan')
