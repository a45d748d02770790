"""Variance-exploding processes: the VE SDE (Song et al. 2021) and EDM's sigma-time (Karras 2022).

Both have alpha_t = 1, so x_t = x_0 + sigma_t eps and sampling starts from N(0, sigma_max^2 I).
"""

import math

import chex
import flax.struct
import jax
import jax.numpy as jnp

from gen.processes.base import ContinuousProcess, as_float


class VESDE(ContinuousProcess):
  """The VE SDE dx = sqrt(d sigma_t^2 / dt) dW (Song et al. 2021, eq. 9; NCSN's continuous limit).

  sigma_t = sigma_min (sigma_max / sigma_min)^t on t in [0, 1]. t_min is 0, where the noise is
  sigma_min > 0 rather than none: the process never reaches clean data, as in NCSN/NCSN++.

  Attributes:
    sigma_min: sigma(0).
    sigma_max: sigma(1), ideally about the largest distance between training examples
      (Song & Ermon 2020, technique 1).
  """

  sigma_min: float = flax.struct.field(pytree_node=False, default=0.01)
  sigma_max: float = flax.struct.field(pytree_node=False, default=50.0)

  @property
  def t_min(self) -> float:
    return 0.0

  @property
  def t_max(self) -> float:
    return 1.0

  @property
  def prior_std(self) -> float:
    return float(self.sigma_max)

  @property
  def _log_ratio(self) -> float:
    return math.log(self.sigma_max / self.sigma_min)

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (1, sigma_min (sigma_max / sigma_min)^t), each [B]."""
    t = as_float(t)
    return jnp.ones_like(t), self.sigma_min * jnp.exp(t * self._log_ratio)

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """alpha' = 0, sigma' = sigma_t log(sigma_max / sigma_min)."""
    alpha, sigma = self.marginal(t)
    return jnp.zeros_like(alpha), sigma * self._log_ratio

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) = (0, d sigma_t^2 / dt) = (0, 2 sigma_t^2 log(sigma_max / sigma_min))."""
    _, sigma = self.marginal(t)
    return jnp.zeros_like(sigma), 2.0 * jnp.square(sigma) * self._log_ratio

  def noise_level(self, t: chex.Array) -> jax.Array:
    """sigma_t (Karras spacing in sigma, Karras et al. 2022, Table 1 'VE')."""
    return self.marginal(t)[1]

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    return jnp.log(as_float(s) / self.sigma_min) / self._log_ratio


class EDMProcess(ContinuousProcess):
  """EDM's process (Karras et al. 2022): time is the noise level, x_t = x_0 + t eps.

  alpha_t = 1, sigma_t = t on t in [sigma_min, sigma_max]; the probability-flow ODE is
  dx/dt = -t score(x, t) (sigma(t) = t, s(t) = 1, their eq. 4 choice). `sigma_data` is the data's
  std used by the preconditioning (`parameterization.edm_preconditioning`).

  Attributes:
    sigma_min: the smallest noise level used in sampling.
    sigma_max: the largest noise level (sampling starts from N(0, sigma_max^2 I)).
    sigma_data: the std of the data distribution.
  """

  sigma_min: float = flax.struct.field(pytree_node=False, default=0.002)
  sigma_max: float = flax.struct.field(pytree_node=False, default=80.0)
  sigma_data: float = flax.struct.field(pytree_node=False, default=0.5)

  @property
  def t_min(self) -> float:
    return float(self.sigma_min)

  @property
  def t_max(self) -> float:
    return float(self.sigma_max)

  @property
  def prior_std(self) -> float:
    return float(self.sigma_max)

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (1, t), each [B]."""
    t = as_float(t)
    return jnp.ones_like(t), t

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha', sigma') = (0, 1)."""
    t = as_float(t)
    return jnp.zeros_like(t), jnp.ones_like(t)

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) = (0, d t^2 / dt) = (0, 2 t)."""
    t = as_float(t)
    return jnp.zeros_like(t), 2.0 * t

  def model_time(self, t: chex.Array) -> jax.Array:
    """1000 (ln sigma - ln sigma_min) / (ln sigma_max - ln sigma_min), in [0, 1000].

    EDM feeds c_noise = ln(sigma) / 4 (Karras et al. 2022, Table 1); this is an affine map of it
    that spans the same [0, 1000] range as DDPM's integer steps, which the sinusoidal embedding's
    frequencies are chosen for.
    """
    log_range = math.log(self.sigma_max / self.sigma_min)
    return (1000.0 * jnp.log(as_float(t) / self.sigma_min) / log_range).astype(jnp.float32)

  def noise_level(self, t: chex.Array) -> jax.Array:
    """sigma = t."""
    return as_float(t)

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    return as_float(s)
