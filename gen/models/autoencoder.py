"""Encoder/decoder networks: the autoencoders (AE, VAE, VQ-VAE) and latent diffusion's first stage.

Images: `ConvEncoder` maps x [B, H, W, C] to z [B, H/f, W/f, out_channels] with the
downsampling factor f = 2^(len(ch_mult) - 1), and `ConvDecoder` maps z back to [B, H, W, C].
They follow Rombach et al. (2022)'s first-stage layout without its attention: a 3x3 conv in;
per level `num_res_blocks` residual blocks at ch * ch_mult[level] channels, a stride-2 conv
between levels; a middle block; GroupNorm, SiLU and a 3x3 conv out. The decoder mirrors it with
nearest-neighbour upsampling. The blocks are the U-Net's (gen.models.unet.ResBlock without a
time embedding, Downsample, Upsample).

Vectors (2-D toys): `MLPEncoder` / `MLPDecoder`, SiLU MLPs.

An encoder's `out_channels` is the objective's choice: the latent channels for an AE or a VQ-VAE,
twice that for a VAE's Gaussian posterior (mean and log-variance).
"""

from collections.abc import Sequence

import chex
import flax.linen as nn

from gen.errors import ConfigError
from gen.models.unet import Downsample, ResBlock, Upsample, conv


def downsampling_factor(ch_mult: Sequence[int]) -> int:
  """f = 2^(levels - 1): each level after the first halves the height and width."""
  return 2 ** (len(ch_mult) - 1)


def check_conv_shape(shape: tuple[int, ...], ch: int, ch_mult: Sequence[int], num_groups: int):
  """ConfigError (naming model.conv_autoencoder.<field>) for a layout that cannot run."""
  field = 'model.conv_autoencoder'
  if len(shape) != 3:
    raise ConfigError(
      f"model.name='conv_autoencoder' takes images [H, W, C]; the data has shape {shape}: "
      "use model.name='mlp_autoencoder' for vectors"
    )
  if not ch_mult or any(m < 1 for m in ch_mult):
    raise ConfigError(f'{field}.ch_mult={tuple(ch_mult)} must be non-empty positive integers')
  f = downsampling_factor(ch_mult)
  if shape[0] % f or shape[1] % f:
    raise ConfigError(
      f'{field}.ch_mult={tuple(ch_mult)} downsamples by {f}, which must divide the image size '
      f'{shape[0]}x{shape[1]}'
    )
  bad = [ch * m for m in ch_mult if (ch * m) % num_groups]
  if bad:
    raise ConfigError(
      f'{field}.num_groups={num_groups} must divide every level width ch * ch_mult, not {bad}'
    )


class _ConvLayout(nn.Module):
  """The fields an encoder and its decoder share.

  Attributes:
    out_channels: channels of the output (z for the encoder, the data's for the decoder).
    ch, ch_mult, num_res_blocks, num_groups, dropout: the U-Net's meanings.
  """

  out_channels: int
  ch: int = 32
  ch_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 1
  num_groups: int = 8
  dropout: float = 0.0


class ConvEncoder(_ConvLayout):
  """x [B, H, W, C] -> z [B, H/f, W/f, out_channels] (module docstring)."""

  @nn.compact
  def __call__(self, x: chex.Array, train: bool = False) -> chex.Array:
    chex.assert_rank(x, 4)
    h = conv(self.ch)(x)
    for level, mult in enumerate(self.ch_mult):
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.ch * mult, self.num_groups, self.dropout)(h, None, train)
      if level < len(self.ch_mult) - 1:
        h = Downsample(self.ch * mult)(h)
    h = ResBlock(self.ch * self.ch_mult[-1], self.num_groups, self.dropout)(h, None, train)
    h = nn.silu(nn.GroupNorm(self.num_groups)(h))
    return conv(self.out_channels)(h)


class ConvDecoder(_ConvLayout):
  """z [B, h, w, c] -> x [B, h f, w f, out_channels]: the encoder mirrored."""

  @nn.compact
  def __call__(self, z: chex.Array, train: bool = False) -> chex.Array:
    chex.assert_rank(z, 4)
    h = conv(self.ch * self.ch_mult[-1])(z)
    h = ResBlock(self.ch * self.ch_mult[-1], self.num_groups, self.dropout)(h, None, train)
    for level in reversed(range(len(self.ch_mult))):
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.ch * self.ch_mult[level], self.num_groups, self.dropout)(h, None, train)
      if level > 0:
        h = Upsample(self.ch * self.ch_mult[level - 1])(h)
    h = nn.silu(nn.GroupNorm(self.num_groups)(h))
    return conv(self.out_channels)(h)


class MLPEncoder(nn.Module):
  """x [B, D] -> z [B, out_channels] through SiLU layers of `features` widths."""

  out_channels: int
  features: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x: chex.Array, train: bool = False) -> chex.Array:
    chex.assert_rank(x, 2)
    for width in self.features:
      x = nn.silu(nn.Dense(width)(x))
    return nn.Dense(self.out_channels)(x)


class MLPDecoder(nn.Module):
  """z [B, d] -> x [B, out_channels] through SiLU layers of `features` widths (reversed)."""

  out_channels: int
  features: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, z: chex.Array, train: bool = False) -> chex.Array:
    chex.assert_rank(z, 2)
    for width in reversed(tuple(self.features)):
      z = nn.silu(nn.Dense(width)(z))
    return nn.Dense(self.out_channels)(z)


def make_conv_pair(
  shape: tuple[int, ...],
  encoder_factor: int = 1,
  *,
  ch: int,
  ch_mult: Sequence[int],
  num_res_blocks: int,
  latent_channels: int,
  num_groups: int,
  dropout: float,
) -> tuple[nn.Module, nn.Module]:
  """(encoder, decoder) for images of `shape`; the encoder outputs `encoder_factor` *
  `latent_channels` channels (2 for a VAE's mean and log-variance)."""
  check_conv_shape(shape, ch, tuple(ch_mult), num_groups)
  if latent_channels < 1:
    raise ConfigError(f'model.conv_autoencoder.latent_channels must be >= 1, got {latent_channels}')
  kw = dict(
    ch=ch,
    ch_mult=tuple(ch_mult),
    num_res_blocks=num_res_blocks,
    num_groups=num_groups,
    dropout=dropout,
  )
  return ConvEncoder(encoder_factor * latent_channels, **kw), ConvDecoder(shape[-1], **kw)


def make_mlp_pair(
  shape: tuple[int, ...], encoder_factor: int = 1, *, features: Sequence[int], latent_dim: int
) -> tuple[nn.Module, nn.Module]:
  """(encoder, decoder) for vectors of `shape` = (D,)."""
  if len(shape) != 1:
    raise ConfigError(
      f"model.name='mlp_autoencoder' takes vectors; the data has shape {shape}: use "
      "model.name='conv_autoencoder' for images"
    )
  if latent_dim < 1:
    raise ConfigError(f'model.mlp_autoencoder.latent_dim must be >= 1, got {latent_dim}')
  features = tuple(features)
  return MLPEncoder(encoder_factor * latent_dim, features), MLPDecoder(shape[0], features)


def latent_shape(encoder: nn.Module, shape: tuple[int, ...], encoder_factor: int = 1):
  """The shape of one example's latent z (the decoder's input) for data of `shape`."""
  if isinstance(encoder, ConvEncoder):
    f = downsampling_factor(encoder.ch_mult)
    return (shape[0] // f, shape[1] // f, encoder.out_channels // encoder_factor)
  return (encoder.out_channels // encoder_factor,)


__all__ = [
  'ConvDecoder',
  'ConvEncoder',
  'MLPDecoder',
  'MLPEncoder',
  'check_conv_shape',
  'downsampling_factor',
  'latent_shape',
  'make_conv_pair',
  'make_mlp_pair',
]
