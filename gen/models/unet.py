"""A compact DDPM/ADM-family U-Net for small images (digits 8x8, cifar10 32x32).

The layout follows DDPM (Ho et al. 2020): a stack of residual blocks per resolution, stride-2
downsampling, a middle section, and a mirrored upsampling path that concatenates every skip
activation of the downsampling path. Time conditioning uses the scale-shift GroupNorm of ADM
(Dhariwal & Nichol 2021).
"""

import math
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen.errors import ConfigError
from gen.models.embeddings import TimeEmbedding


def check_input_shape(
  shape: tuple[int, ...], ch_mult: Sequence[int], ch: int, num_groups: int
) -> None:
  """Fails with one clear line when an image of `shape` cannot go through the U-Net.

  Args:
    shape: one example's shape, (H, W, C) without the batch axis.
    ch_mult: channel multiplier per level (`model.ch_mult`).
    ch: base channels (`model.ch`).
    num_groups: GroupNorm groups (`model.num_groups`).

  Raises:
    ConfigError: the shape is not (H, W, C), H or W is not divisible by the total
      downsampling factor, or num_groups does not divide every level's channels.
  """
  shape = tuple(shape)
  if len(shape) != 3:
    raise ConfigError(
      f"model.name='unet' takes images of shape (H, W, C); got data of shape {shape} "
      "— use model.name='mlp' for points"
    )
  if not ch_mult:
    raise ConfigError('model.ch_mult must have at least one level, got ()')
  height, width, _ = shape
  downs = len(ch_mult) - 1
  factor = 2**downs
  if height % factor or width % factor:
    # The deepest usable level count is set by the largest power of two dividing H and W.
    common = math.gcd(height, width)
    max_levels = (common & -common).bit_length()
    raise ConfigError(
      f'model.ch_mult={tuple(ch_mult)} downsamples {height}x{width} images {downs} times; '
      f'H and W must be divisible by {factor} — use at most {max_levels} '
      f'level{"s" if max_levels != 1 else ""} for this size'
    )
  # Skip concatenations sum widths of `ch` and `ch * m`, so dividing each part is enough.
  for width_ in (ch, *(ch * m for m in ch_mult)):
    if width_ % num_groups:
      raise ConfigError(
        f'model.num_groups={num_groups} must divide the channels of every level '
        f'(model.ch={ch} times each of model.ch_mult={tuple(ch_mult)}); {width_} is not '
        'divisible'
      )


def _conv3x3(features: int, zero_init: bool = False) -> nn.Conv:
  """A 'SAME' 3x3 convolution; zero init makes a residual branch start as the identity."""
  init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
  return nn.Conv(features, (3, 3), padding='SAME', kernel_init=init)


class ResBlock(nn.Module):
  """Residual block with ADM scale-shift time conditioning.

  Computes
    h = Conv3x3(SiLU(GroupNorm(x)))
    h = GroupNorm(h) * (1 + scale) + shift,   [scale, shift] = Dense(SiLU(emb))
    h = Conv3x3_zero(Dropout(SiLU(h)))
    out = skip(x) + h
  where skip is a 1x1 conv when the channel count changes (Ho et al. 2020; the scale-shift
  norm is Dhariwal & Nichol 2021). The last conv starts at zero so the block starts as skip(x).

  Attributes:
    features: output channels.
    num_groups: GroupNorm groups.
    dropout: dropout rate before the last conv.
  """

  features: int
  num_groups: int = 8
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: chex.Array, emb: chex.Array, train: bool = False) -> chex.Array:
    chex.assert_rank(x, 4)  # [B, H, W, C]
    chex.assert_rank(emb, 2)  # [B, E]
    h = nn.silu(nn.GroupNorm(self.num_groups)(x))
    h = _conv3x3(self.features)(h)
    scale_shift = nn.Dense(2 * self.features)(nn.silu(emb))[:, None, None, :]
    scale, shift = jnp.split(scale_shift, 2, axis=-1)
    h = nn.GroupNorm(self.num_groups)(h) * (1 + scale) + shift
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = _conv3x3(self.features, zero_init=True)(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1))(x)
    return x + h


class Downsample(nn.Module):
  """Halves H and W with a stride-2 3x3 convolution (learned, as in DDPM)."""

  features: int

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    return nn.Conv(self.features, (3, 3), strides=(2, 2), padding='SAME')(x)


class Upsample(nn.Module):
  """Doubles H and W by nearest-neighbour resize then a 3x3 conv (avoids checkerboarding)."""

  features: int

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method='nearest')
    return _conv3x3(self.features)(x)


class UNet(nn.Module):
  """DDPM U-Net `f(x_t, t) -> [B, H, W, C]` with ADM scale-shift time conditioning.

  Level i works at resolution H / 2**i with `ch * ch_mult[i]` channels and holds
  `num_res_blocks` residual blocks on the way down and `num_res_blocks + 1` on the way up, the
  extra one consuming the downsampling activation's skip (Ho et al. 2020). The output conv is
  zero-initialised, so an untrained model predicts 0 (a safe start for eps/v/score targets).

  Attributes:
    ch: base channels.
    ch_mult: channel multiplier per level; the image is downsampled len(ch_mult) - 1 times.
    num_res_blocks: residual blocks per level on the downsampling path.
    dropout: dropout rate inside residual blocks (rng name 'dropout', only when train).
    num_groups: GroupNorm groups; must divide ch and every ch * m.
    time_dim: width of the sinusoidal time features; defaults to ch.
  """

  ch: int = 64
  ch_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 2
  dropout: float = 0.0
  num_groups: int = 8
  time_dim: int | None = None

  def _res_block(self, features: int) -> ResBlock:
    return ResBlock(features, num_groups=self.num_groups, dropout=self.dropout)

  @nn.compact
  def __call__(self, x: chex.Array, t: chex.Array, train: bool = False) -> chex.Array:
    """Applies the network.

    Args:
      x: [B, H, W, C] noisy images.
      t: [B] times or noise levels, as the objective feeds them to the sinusoidal features.
      train: enables dropout (needs the 'dropout' rng).

    Returns:
      [B, H, W, C] float32 prediction.
    """
    chex.assert_rank(x, 4)
    chex.assert_shape(t, (x.shape[0],))
    check_input_shape(x.shape[1:], self.ch_mult, self.ch, self.num_groups)
    # Conditioning vector; class embeddings, when added, are summed in here.
    emb = TimeEmbedding(self.time_dim or self.ch)(t)

    h = _conv3x3(self.ch)(x)
    skips = [h]
    for level, mult in enumerate(self.ch_mult):
      for _ in range(self.num_res_blocks):
        h = self._res_block(self.ch * mult)(h, emb, train)
        skips.append(h)
      if level != len(self.ch_mult) - 1:
        h = Downsample(h.shape[-1])(h)
        skips.append(h)

    h = self._res_block(h.shape[-1])(h, emb, train)
    h = self._res_block(h.shape[-1])(h, emb, train)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = self._res_block(self.ch * mult)(h, emb, train)
      if level != 0:
        h = Upsample(h.shape[-1])(h)
    assert not skips, 'every skip activation is consumed exactly once'

    h = nn.silu(nn.GroupNorm(self.num_groups)(h))
    out = _conv3x3(x.shape[-1], zero_init=True)(h).astype(jnp.float32)
    chex.assert_equal_shape([out, x])
    return out
