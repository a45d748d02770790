"""Noise-level / time embeddings shared by the networks of every diffusion-style objective."""

import math

import chex
import flax.linen as nn
import jax.numpy as jnp


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


class TimeEmbedding(nn.Module):
  """Sinusoidal features followed by a two-layer MLP (the DDPM/ADM time-embedding block)."""

  dim: int

  @nn.compact
  def __call__(self, t: chex.Array) -> chex.Array:
    h = sinusoidal_embedding(t, self.dim)
    h = nn.Dense(4 * self.dim)(h)
    h = nn.silu(h)
    return nn.Dense(4 * self.dim)(h)
