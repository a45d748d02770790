"""Variance-preserving and sub-VP SDEs with a linear beta(t) (Song et al. 2021, score SDE).

Both share beta(t) = beta_min + t (beta_max - beta_min) on t in [t_min, 1] and the mean
coefficient alpha_t = exp(-gamma_t), gamma_t = 1/2 int_0^t beta = t^2 (beta_max - beta_min) / 4 +
t beta_min / 2. They differ in the noise: VP keeps alpha^2 + sigma^2 = 1, sub-VP has
sigma_t = 1 - alpha_t^2, whose variance stays below VP's at every t.
"""

import chex
import flax.struct
import jax
import jax.numpy as jnp

from gen.processes.base import ContinuousProcess, as_float


class _LinearBeta(ContinuousProcess):
  """Shared beta(t), gamma(t) and its inverse for VPSDE and SubVPSDE."""

  beta_min: float = flax.struct.field(pytree_node=False, default=0.1)
  beta_max: float = flax.struct.field(pytree_node=False, default=20.0)
  t_min: float = flax.struct.field(pytree_node=False, default=1e-3)

  @property
  def t_max(self) -> float:
    return 1.0

  @property
  def prior_std(self) -> float:
    return 1.0

  def beta(self, t: chex.Array) -> jax.Array:
    """beta(t) = beta_min + t (beta_max - beta_min)."""
    return self.beta_min + as_float(t) * (self.beta_max - self.beta_min)

  def gamma(self, t: chex.Array) -> jax.Array:
    """gamma_t = 1/2 int_0^t beta(s) ds, so alpha_t = exp(-gamma_t)."""
    t = as_float(t)
    return 0.25 * jnp.square(t) * (self.beta_max - self.beta_min) + 0.5 * t * self.beta_min

  def t_from_gamma(self, gamma: chex.Array) -> jax.Array:
    """Positive root of gamma = a t^2 + b t, in the form that is stable when a or b is 0."""
    a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
    return 2.0 * gamma / (b + jnp.sqrt(b * b + 4.0 * a * gamma))

  def alpha(self, t: chex.Array) -> jax.Array:
    return jnp.exp(-self.gamma(t))


class VPSDE(_LinearBeta):
  """The VP SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dW (Song et al. 2021, eq. 11).

  The continuous limit of DDPM: alpha_t = exp(-t^2 (beta_max - beta_min)/4 - t beta_min/2),
  sigma_t = sqrt(1 - alpha_t^2). Karras spacing is applied to sigma_t / alpha_t, the noise level
  of the equivalent VE process x / alpha_t (Karras et al. 2022, Table 1).

  Attributes:
    beta_min: beta(0).
    beta_max: beta(1).
    t_min: the smallest time used (sigma(0) = 0 makes t = 0 singular for eps/score models).
  """

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (exp(-gamma_t), sqrt(1 - exp(-2 gamma_t))), each [B]."""
    gamma = self.gamma(t)
    return jnp.exp(-gamma), jnp.sqrt(-jnp.expm1(-2.0 * gamma))

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """alpha' = -beta alpha / 2, sigma' = beta alpha^2 / (2 sigma)."""
    alpha, sigma = self.marginal(t)
    beta = self.beta(t)
    return -0.5 * beta * alpha, 0.5 * beta * jnp.square(alpha) / sigma

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) = (-beta(t) / 2, beta(t))."""
    beta = self.beta(t)
    return -0.5 * beta, beta

  def log_snr(self, t: chex.Array) -> jax.Array:
    """lambda_t = -log(exp(2 gamma_t) - 1), stable at small t."""
    return -jnp.log(jnp.expm1(2.0 * self.gamma(t)))

  def noise_level(self, t: chex.Array) -> jax.Array:
    """sigma_t / alpha_t = sqrt(exp(2 gamma_t) - 1)."""
    return jnp.sqrt(jnp.expm1(2.0 * self.gamma(t)))

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    return self.t_from_gamma(0.5 * jnp.log1p(jnp.square(s)))


class SubVPSDE(_LinearBeta):
  """The sub-VP SDE dx = -beta(t)/2 x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dW.

  Song et al. (2021), eq. 29: same alpha_t as VP, sigma_t = 1 - alpha_t^2. Karras spacing is
  applied to sigma_t / alpha_t.

  Attributes:
    beta_min: beta(0).
    beta_max: beta(1).
    t_min: the smallest time used.
  """

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (exp(-gamma_t), 1 - exp(-2 gamma_t)), each [B]."""
    gamma = self.gamma(t)
    return jnp.exp(-gamma), -jnp.expm1(-2.0 * gamma)

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """alpha' = -beta alpha / 2, sigma' = -2 alpha alpha' = beta alpha^2."""
    alpha = self.alpha(t)
    beta = self.beta(t)
    return -0.5 * beta * alpha, beta * jnp.square(alpha)

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) = (-beta(t) / 2, beta(t) (1 - exp(-2 int_0^t beta)))."""
    beta = self.beta(t)
    return -0.5 * beta, beta * -jnp.expm1(-4.0 * self.gamma(t))

  def noise_level(self, t: chex.Array) -> jax.Array:
    """sigma_t / alpha_t = (1 - alpha_t^2) / alpha_t = 2 sinh(gamma_t)."""
    return 2.0 * jnp.sinh(self.gamma(t))

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    return self.t_from_gamma(jnp.arcsinh(0.5 * s))
