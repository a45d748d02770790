"""The rectified-flow / flow-matching interpolant (Liu et al. 2022; Lipman et al. 2022).

x_t = (1 - t) x_0 + t z with z ~ N(0, I): alpha_t = 1 - t, sigma_t = t on t in [0, 1]. Its
velocity dx_t/dt = z - x_0 is the regression target of rectified flow and of conditional flow
matching with the optimal-transport path (sigma_min = 0).
"""

import chex
import flax.struct
import jax
import jax.numpy as jnp

from gen.processes.base import ContinuousProcess, as_float


class RectifiedFlow(ContinuousProcess):
  """x_t = (1 - t) x_0 + t z on [t_min, t_max] (Liu et al. 2022, eq. 1).

  The equivalent SDE has f_t = -1 / (1 - t), g_t^2 = 2 t / (1 - t), singular at t = 1: flow
  samplers integrate the ODE instead. Karras spacing is applied to sigma_t = t itself, since
  sigma_t / alpha_t is infinite at t = 1.

  Attributes:
    t_min: the clean end (0).
    t_max: the noise end (1); sampling starts from N(0, I).
  """

  t_min: float = flax.struct.field(pytree_node=False, default=0.0)
  t_max: float = flax.struct.field(pytree_node=False, default=1.0)

  @property
  def prior_std(self) -> float:
    return 1.0

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (1 - t, t), each [B]."""
    t = as_float(t)
    return 1.0 - t, t

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha', sigma') = (-1, 1)."""
    t = as_float(t)
    return -jnp.ones_like(t), jnp.ones_like(t)

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) = (-1 / (1 - t), 2 t / (1 - t))."""
    t = as_float(t)
    return -1.0 / (1.0 - t), 2.0 * t / (1.0 - t)

  def noise_level(self, t: chex.Array) -> jax.Array:
    """sigma_t = t."""
    return as_float(t)

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    return as_float(s)
