"""Discrete-time variance-preserving forward process (DDPM, Ho et al. 2020)."""

import chex
import flax.struct
import jax
import jax.numpy as jnp


class DiscreteVP(flax.struct.PyTreeNode):
  """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s).

  Attributes:
    betas: [T] per-step noise variances beta_t.
  """

  betas: jax.Array  # [T]

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  @property
  def alphas_cumprod(self) -> jax.Array:  # [T]
    return jnp.cumprod(1.0 - self.betas)

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) for integer steps t [B]."""
    abar = self.alphas_cumprod[t]
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)

  def add_noise(self, x0: chex.Array, t: chex.Array, eps: chex.Array) -> jax.Array:
    """x_t = alpha_t x_0 + sigma_t eps, broadcasting the per-example scalars over x0's shape."""
    chex.assert_equal_shape((x0, eps))
    alpha, sigma = self.marginal(t)
    expand = (slice(None),) + (None,) * (x0.ndim - 1)
    return alpha[expand] * x0 + sigma[expand] * eps


def linear_schedule(num_timesteps: int = 1000, beta_start=1e-4, beta_end=0.02) -> DiscreteVP:
  """The linear beta schedule of DDPM (Ho et al. 2020): beta from 1e-4 to 0.02 over 1,000 steps."""
  return DiscreteVP(jnp.linspace(beta_start, beta_end, num_timesteps, dtype=jnp.float32))
