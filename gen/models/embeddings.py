"""Noise-level / time and class embeddings shared by the networks of every diffusion objective."""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen.errors import ConfigError

# The time-feature kinds TimeEmbedding accepts (`model.<name>.embedding`).
EMBEDDINGS = ('sinusoidal', 'fourier')

# Fixed seed of the Gaussian Fourier frequencies: the features are a constant of the architecture,
# identical for every init rng and never trained (score_sde fixes them by excluding them from
# the gradient; here they are not a variable at all, so no checkpoint or optimizer holds them).
_FOURIER_SEED = 0


def sinusoidal_embedding(t: chex.Array, dim: int, max_period: float = 10_000.0) -> chex.Array:
  """Transformer-style sinusoidal features of a scalar per example (Vaswani et al. 2017).

  DDPM (Ho et al. 2020) feeds the integer timestep; continuous-time models feed t in [0, 1]
  scaled by 1000 or a log-noise level. Frequencies are geometric from 1 to 1/max_period.

  Args:
    t: [B] times or noise levels.
    dim: output width (even).
    max_period: the longest period.

  Returns:
    [B, dim] embedding: cos features then sin features.
  """
  chex.assert_rank(t, 1)
  if dim % 2:
    raise ValueError(f'sinusoidal_embedding: dim must be even, got {dim}')
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def fourier_frequencies(dim: int, scale: float = 16.0) -> chex.Array:
  """The fixed Gaussian frequencies `w ~ N(0, scale^2)` of `fourier_embedding`, shape [dim // 2].

  Drawn from a constant key, so every model of the same width shares them; under jit they are a
  compile-time constant.
  """
  if dim % 2:
    raise ValueError(f'fourier_embedding: dim must be even, got {dim}')
  return scale * jax.random.normal(jax.random.key(_FOURIER_SEED), (dim // 2,), jnp.float32)


def fourier_embedding(t: chex.Array, dim: int, scale: float = 16.0) -> chex.Array:
  """Random Fourier features `[sin(2 pi w t), cos(2 pi w t)]` (Tancik et al. 2020).

  The Gaussian Fourier projection of NCSN++ (Song et al. 2021, score_sde), with the frequencies
  `w ~ N(0, scale^2)` fixed. score_sde feeds log(sigma) (order 1) with scale 16; inputs of order
  1000 (DDPM integer steps) make these features nearly random, so feed t in [0, 1] or a
  log-noise level, or lower `scale`.

  Args:
    t: [B] times or noise levels.
    dim: output width (even).
    scale: standard deviation of the frequencies.

  Returns:
    [B, dim] embedding: sin features then cos features.
  """
  chex.assert_rank(t, 1)
  freqs = fourier_frequencies(dim, scale)
  args = 2 * math.pi * t.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def check_embedding(kind: str, field: str = 'model.unet.embedding') -> None:
  """Fails with a ConfigError naming `field` when `kind` is not one of EMBEDDINGS."""
  if kind not in EMBEDDINGS:
    raise ConfigError(f'{field}={kind!r} is unknown; choose one of {list(EMBEDDINGS)}')


class TimeEmbedding(nn.Module):
  """Time features followed by a two-layer MLP (the DDPM/ADM time-embedding block).

  Attributes:
    dim: width of the features; the output is 4 * dim wide.
    kind: 'sinusoidal' (DDPM/ADM) or 'fourier' (fixed Gaussian frequencies, NCSN++).
    fourier_scale: standard deviation of the Fourier frequencies (16 as in score_sde).
  """

  dim: int
  kind: str = 'sinusoidal'
  fourier_scale: float = 16.0

  @nn.compact
  def __call__(self, t: chex.Array) -> chex.Array:
    """Maps [B] times to a [B, 4 * dim] conditioning vector."""
    check_embedding(self.kind, 'TimeEmbedding.kind')
    if self.kind == 'fourier':
      # gen's processes give model times in [0, 1000]; Gaussian Fourier features with scale 16
      # want inputs of order 1 (score_sde feeds log sigma), hence the division.
      h = fourier_embedding(t / 1000.0, self.dim, self.fourier_scale)
    else:
      h = sinusoidal_embedding(t, self.dim)
    h = nn.Dense(4 * self.dim)(h)
    h = nn.silu(h)
    return nn.Dense(4 * self.dim)(h)


class LabelEmbedding(nn.Module):
  """Learned class embedding with an extra NULL class for classifier-free guidance.

  Index `num_classes` is the NULL label (Ho & Salimans 2022): unconditional training drops
  labels to it, and guided sampling mixes the predictions for a label and for NULL. `labels=None`
  means NULL for the whole batch.

  Attributes:
    num_classes: number of real classes (> 0); the table has num_classes + 1 rows.
    features: embedding width (that of the time embedding it is added to).
  """

  num_classes: int
  features: int

  @nn.compact
  def __call__(self, labels: chex.Array | None, batch: int) -> chex.Array:
    """Maps [B] int labels in [0, num_classes] (or None) to [B, features]."""
    if labels is None:
      labels = jnp.full((batch,), self.num_classes, jnp.int32)
    chex.assert_shape(labels, (batch,))
    chex.assert_type(labels, int)
    return nn.Embed(self.num_classes + 1, self.features)(labels)


def conditioning(
  t: chex.Array,
  labels: chex.Array | None,
  *,
  dim: int,
  kind: str,
  num_classes: int,
  field: str,
) -> chex.Array:
  """The conditioning vector `TimeEmbedding(t) + LabelEmbedding(labels)`, [B, 4 * dim].

  Call inside a compact module; submodules are named 'TimeEmbedding_0' (as before labels
  existed, so unconditional checkpoints keep their layout) and 'label_embedding'.

  Args:
    t: [B] times or noise levels.
    labels: [B] int labels in [0, num_classes], or None (the NULL label when num_classes > 0).
    dim: width of the time features.
    kind: time-feature kind, one of EMBEDDINGS.
    num_classes: 0 for an unconditional model.
    field: config section for error messages, e.g. 'model.unet'.

  Raises:
    ConfigError: labels are given to an unconditional model, or kind is unknown.
  """
  check_embedding(kind, f'{field}.embedding')
  emb = TimeEmbedding(dim, kind=kind)(t)
  if num_classes > 0:
    emb = emb + LabelEmbedding(num_classes, emb.shape[-1], name='label_embedding')(
      labels, t.shape[0]
    )
  elif labels is not None:
    raise ConfigError(
      f'{field}.num_classes=0 makes an unconditional model, but labels were given; set '
      f'{field}.num_classes to the number of classes of the data'
    )
  return emb
