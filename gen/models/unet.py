"""A compact DDPM/ADM-family U-Net for small images (digits 8x8, cifar10 32x32).

The layout follows DDPM (Ho et al. 2020): a stack of residual blocks per resolution, stride-2
downsampling, a middle section, and a mirrored upsampling path that concatenates every skip
activation of the downsampling path. Time (and class) conditioning uses the scale-shift GroupNorm
of ADM (Dhariwal & Nichol 2021); optional multi-head self-attention at chosen resolutions follows
DDPM's 16x16 attention and ADM's multi-head variant.
"""

import collections
import math
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen.errors import ConfigError
from gen.models.conv import conv_general_dilated
from gen.models.embeddings import conditioning


def reachable_resolutions(shape: tuple[int, ...], ch_mult: Sequence[int]) -> list[int]:
  """The resolutions (heights H / 2**level) that the levels of the U-Net work at, largest first."""
  return [shape[0] // 2**level for level in range(len(ch_mult))]


def check_input_shape(
  shape: tuple[int, ...],
  ch_mult: Sequence[int],
  ch: int,
  num_groups: int,
  attn_resolutions: Sequence[int] = (),
  num_heads: int = 1,
  head_dim: int | None = None,
) -> None:
  """Fails with one clear line when an image of `shape` cannot go through the U-Net.

  Args:
    shape: one example's shape, (H, W, C) without the batch axis.
    ch_mult: channel multiplier per level (`model.unet.ch_mult`).
    ch: base channels (`model.unet.ch`).
    num_groups: GroupNorm groups (`model.unet.num_groups`).
    attn_resolutions: heights at which to add self-attention (`model.unet.attn_resolutions`).
    num_heads: attention heads (`model.unet.num_heads`), unless head_dim is set.
    head_dim: channels per attention head (`model.unet.head_dim`); overrides num_heads.

  Raises:
    ConfigError: the shape is not (H, W, C), H or W is not divisible by the total
      downsampling factor, num_groups does not divide every level's channels, an attention
      resolution is never reached, or the heads do not divide an attended level's channels.
  """
  shape = tuple(shape)
  if len(shape) != 3:
    raise ConfigError(
      f"model.name='unet' takes images of shape (H, W, C); got data of shape {shape} "
      "— use model.name='mlp' for points"
    )
  if not ch_mult:
    raise ConfigError('model.unet.ch_mult must have at least one level, got ()')
  height, width, _ = shape
  downs = len(ch_mult) - 1
  factor = 2**downs
  if height % factor or width % factor:
    # The deepest usable level count is set by the largest power of two dividing H and W.
    common = math.gcd(height, width)
    max_levels = (common & -common).bit_length()
    raise ConfigError(
      f'model.unet.ch_mult={tuple(ch_mult)} downsamples {height}x{width} images {downs} times; '
      f'H and W must be divisible by {factor} — use at most {max_levels} '
      f'level{"s" if max_levels != 1 else ""} for this size'
    )
  # Skip concatenations sum widths of `ch` and `ch * m`, so dividing each part is enough.
  for width_ in (ch, *(ch * m for m in ch_mult)):
    if width_ % num_groups:
      raise ConfigError(
        f'model.unet.num_groups={num_groups} must divide the channels of every level '
        f'(model.unet.ch={ch} times each of model.unet.ch_mult={tuple(ch_mult)}); {width_} is '
        'not divisible'
      )
  check_attn_resolutions(shape, ch_mult, ch, attn_resolutions, num_heads, head_dim)


def check_attn_resolutions(
  shape: tuple[int, ...],
  ch_mult: Sequence[int],
  ch: int,
  attn_resolutions: Sequence[int],
  num_heads: int = 1,
  head_dim: int | None = None,
) -> None:
  """Fails when an attention resolution is never reached or the heads do not split the channels.

  Raises:
    ConfigError: naming `model.unet.attn_resolutions` (with the reachable resolutions),
      `model.unet.num_heads` or `model.unet.head_dim`.
  """
  reachable = reachable_resolutions(shape, ch_mult)
  missing = [r for r in attn_resolutions if r not in reachable]
  if missing:
    raise ConfigError(
      f'model.unet.attn_resolutions={tuple(attn_resolutions)}: {missing} never reached by '
      f'{shape[0]}x{shape[1]} images with model.unet.ch_mult={tuple(ch_mult)}; the reachable '
      f'resolutions are {reachable}'
    )
  if not attn_resolutions:
    return
  if head_dim is None and num_heads < 1:
    raise ConfigError(f'model.unet.num_heads must be at least 1, got {num_heads}')
  if head_dim is not None and head_dim < 1:
    raise ConfigError(f'model.unet.head_dim must be at least 1, got {head_dim}')
  # Attention runs at the listed levels and in the middle (the deepest level's width).
  levels = [i for i, r in enumerate(reachable) if r in attn_resolutions] + [len(ch_mult) - 1]
  for level in levels:
    features = ch * ch_mult[level]
    if head_dim is not None and features % head_dim:
      raise ConfigError(
        f'model.unet.head_dim={head_dim} must divide the {features} channels at resolution '
        f'{reachable[level]}'
      )
    if head_dim is None and features % num_heads:
      raise ConfigError(
        f'model.unet.num_heads={num_heads} must divide the {features} channels at resolution '
        f'{reachable[level]}'
      )


def conv(features: int, kernel: int = 3, stride: int = 1, zero_init: bool = False) -> nn.Conv:
  """A 'SAME' `nn.Conv` whose kernel gradient is matmuls on the CPU (`gen.models.conv`).

  Zero init makes a residual branch start as the identity.
  """
  init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding='SAME',
    kernel_init=init,
    conv_general_dilated=conv_general_dilated,
  )


class ResBlock(nn.Module):
  """Residual block with ADM scale-shift time conditioning.

  Computes
    h = Conv3x3(SiLU(GroupNorm(x)))
    h = GroupNorm(h) * (1 + scale) + shift,   [scale, shift] = Dense(SiLU(emb))
    h = Conv3x3_zero(Dropout(SiLU(h)))
    out = skip(x) + h
  where skip is a 1x1 conv when the channel count changes (Ho et al. 2020; the scale-shift
  norm is Dhariwal & Nichol 2021). The last conv starts at zero so the block starts as skip(x).
  With `emb=None` (an autoencoder's blocks: no time) the second norm has no scale-shift.

  Attributes:
    features: output channels.
    num_groups: GroupNorm groups.
    dropout: dropout rate before the last conv.
  """

  features: int
  num_groups: int = 8
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: chex.Array, emb: chex.Array | None, train: bool = False) -> chex.Array:
    chex.assert_rank(x, 4)  # [B, H, W, C]
    h = nn.silu(nn.GroupNorm(self.num_groups)(x))
    h = conv(self.features)(h)
    h = nn.GroupNorm(self.num_groups)(h)
    if emb is not None:
      chex.assert_rank(emb, 2)  # [B, E]
      scale_shift = nn.Dense(2 * self.features)(nn.silu(emb))[:, None, None, :]
      scale, shift = jnp.split(scale_shift, 2, axis=-1)
      h = h * (1 + scale) + shift
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = conv(self.features, zero_init=True)(h)
    if x.shape[-1] != self.features:
      x = conv(self.features, 1)(x)
    return x + h


class Downsample(nn.Module):
  """Halves H and W with a stride-2 3x3 convolution (learned, as in DDPM)."""

  features: int

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    return conv(self.features, 3, stride=2)(x)


class Upsample(nn.Module):
  """Doubles H and W by nearest-neighbour resize then a 3x3 conv (avoids checkerboarding)."""

  features: int

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method='nearest')
    return conv(self.features)(x)


class AttentionBlock(nn.Module):
  """Multi-head self-attention over the H*W positions, as a residual branch.

  Computes out = x + Dense_zero(MHSA(GroupNorm(x))), the attention block of DDPM (Ho et al.
  2020) with the multiple heads of ADM (Dhariwal & Nichol 2021). The output projection starts at
  zero, so the block starts as the identity.

  Attributes:
    num_heads: attention heads, unless head_dim is set.
    head_dim: channels per head; overrides num_heads (ADM's num_head_channels).
    num_groups: GroupNorm groups.
  """

  num_heads: int = 1
  head_dim: int | None = None
  num_groups: int = 8

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    chex.assert_rank(x, 4)  # [B, H, W, C]
    b, height, width, c = x.shape
    heads = c // self.head_dim if self.head_dim else self.num_heads
    if heads < 1 or c % heads:
      field = f'head_dim={self.head_dim}' if self.head_dim else f'num_heads={self.num_heads}'
      raise ConfigError(f'model.unet.{field} must split the {c} channels into whole heads')
    h = nn.GroupNorm(self.num_groups)(x).reshape(b, height * width, c)
    qkv = nn.Dense(3 * c, name='qkv')(h).reshape(b, height * width, 3, heads, c // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [B, HW, heads, C / heads]
    h = jax.nn.dot_product_attention(q, k, v).reshape(b, height * width, c)
    h = nn.Dense(c, kernel_init=nn.initializers.zeros, name='proj_out')(h)
    return x + h.reshape(b, height, width, c)


class UNet(nn.Module):
  """DDPM/ADM U-Net `f(x_t, t, labels) -> [B, H, W, C]` with scale-shift conditioning.

  Level i works at resolution H / 2**i with `ch * ch_mult[i]` channels and holds
  `num_res_blocks` residual blocks on the way down and `num_res_blocks + 1` on the way up, the
  extra one consuming the downsampling activation's skip (Ho et al. 2020). At the resolutions in
  `attn_resolutions` every residual block is followed by self-attention, and the middle section
  becomes res-block, attention, res-block (DDPM's 16x16 attention for CIFAR-10). A class
  embedding, when `num_classes > 0`, is added to the time embedding (ADM); index `num_classes`
  is the NULL label of classifier-free guidance. The output conv is zero-initialised, so an
  untrained model predicts 0 (a safe start for eps/v/score targets).

  Attributes:
    ch: base channels.
    ch_mult: channel multiplier per level; the image is downsampled len(ch_mult) - 1 times.
    num_res_blocks: residual blocks per level on the downsampling path.
    dropout: dropout rate inside residual blocks (rng name 'dropout', only when train).
    num_groups: GroupNorm groups; must divide ch and every ch * m.
    time_dim: width of the time features; defaults to ch.
    attn_resolutions: heights (H / 2**level) at which to add self-attention blocks.
    num_heads: attention heads, unless head_dim is set.
    head_dim: channels per attention head; overrides num_heads.
    mid_attention: attention between the middle res-blocks; None means "when attn_resolutions
      is not empty".
    embedding: time features, 'sinusoidal' (DDPM) or 'fourier' (NCSN++ Gaussian features).
    num_classes: classes of the labels; 0 makes an unconditional model.
    remat: recompute each residual and attention block's activations in the backward pass
      (`flax.linen.remat`) instead of keeping them: less activation memory for about one more
      forward pass. Parameter names and values are the same either way, so checkpoints
      move between the two settings.
  """

  ch: int = 64
  ch_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 2
  dropout: float = 0.0
  num_groups: int = 8
  time_dim: int | None = None
  attn_resolutions: Sequence[int] = ()
  num_heads: int = 1
  head_dim: int | None = None
  mid_attention: bool | None = None
  embedding: str = 'sinusoidal'
  num_classes: int = 0
  remat: bool = False

  @nn.compact
  def __call__(
    self,
    x: chex.Array,
    t: chex.Array,
    train: bool = False,
    labels: chex.Array | None = None,
  ) -> chex.Array:
    """Applies the network.

    Args:
      x: [B, H, W, C] noisy images.
      t: [B] times or noise levels, as the objective feeds them to the time features.
      train: enables dropout (needs the 'dropout' rng).
      labels: [B] int class labels in [0, num_classes], num_classes being the NULL label; None
        means NULL for every example. Only when num_classes > 0.

    Returns:
      [B, H, W, C] float32 prediction.
    """
    chex.assert_rank(x, 4)
    chex.assert_shape(t, (x.shape[0],))
    check_input_shape(
      x.shape[1:],
      self.ch_mult,
      self.ch,
      self.num_groups,
      self.attn_resolutions,
      self.num_heads,
      self.head_dim,
    )
    emb = conditioning(
      t,
      labels,
      dim=self.time_dim or self.ch,
      kind=self.embedding,
      num_classes=self.num_classes,
      field='model.unet',
    )
    made = collections.Counter()  # blocks made so far, per class

    def block(cls: type[nn.Module], *args) -> nn.Module:
      # Named as flax would auto-name it, so the parameters are the same with and without remat.
      name = f'{cls.__name__}_{made[cls.__name__]}'
      made[cls.__name__] += 1
      if self.remat:  # ResBlock's `train` (argument 3, counting self) must stay a Python bool
        cls = nn.remat(cls, static_argnums=(3,) if cls is ResBlock else ())
      return cls(*args, name=name)

    res_block = lambda features: block(ResBlock, features, self.num_groups, self.dropout)
    attention = lambda: block(AttentionBlock, self.num_heads, self.head_dim, self.num_groups)
    attn_at = set(self.attn_resolutions)
    mid_attention = bool(attn_at) if self.mid_attention is None else self.mid_attention

    h = conv(self.ch)(x)
    skips = [h]
    for level, mult in enumerate(self.ch_mult):
      for _ in range(self.num_res_blocks):
        h = res_block(self.ch * mult)(h, emb, train)
        if h.shape[1] in attn_at:
          h = attention()(h)
        skips.append(h)
      if level != len(self.ch_mult) - 1:
        h = Downsample(h.shape[-1])(h)
        skips.append(h)

    h = res_block(h.shape[-1])(h, emb, train)
    if mid_attention:
      h = attention()(h)
    h = res_block(h.shape[-1])(h, emb, train)

    for level, mult in reversed(list(enumerate(self.ch_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = res_block(self.ch * mult)(h, emb, train)
        if h.shape[1] in attn_at:
          h = attention()(h)
      if level != 0:
        h = Upsample(h.shape[-1])(h)
    assert not skips, 'every skip activation is consumed exactly once'

    h = nn.silu(nn.GroupNorm(self.num_groups)(h))
    out = conv(x.shape[-1], zero_init=True)(h).astype(jnp.float32)
    chex.assert_equal_shape([out, x])
    return out
