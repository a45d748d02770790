"""What every continuous-time forward process shares: broadcasting, log-SNR, the SDE, time grids.

A continuous process defines q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I) through `marginal(t)`;
everything else here follows from those two functions (and their time derivatives).
"""

from typing import ClassVar

import chex
import flax.struct
import jax
import jax.numpy as jnp

from gen.errors import ConfigError

GRID_KINDS = ('uniform', 'karras')


def expand_to(coef: chex.Array, x: chex.Array) -> jax.Array:
  """Reshapes per-example coefficients [B] to [B, 1, ..., 1] to broadcast against x [B, ...]."""
  coef = jnp.asarray(coef)
  return coef.reshape(coef.shape + (1,) * (x.ndim - coef.ndim))


def as_float(t: chex.Array) -> jax.Array:
  """t as a floating array (float32, or float64 when t already is)."""
  t = jnp.asarray(t)
  return t.astype(jnp.promote_types(t.dtype, jnp.float32))


def karras_sigmas(sigma_min: float, sigma_max: float, num: int, rho: float = 7.0) -> jax.Array:
  """Karras et al. (2022), eq. 5, without the appended sigma_N = 0: `num` levels, max to min.

  sigma_i = (sigma_max^(1/rho) + i / (num - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.

  Args:
    sigma_min: the last (smallest) level.
    sigma_max: the first (largest) level.
    num: how many levels (>= 2).
    rho: the warping exponent; 7 in the paper, larger puts more steps at low noise.

  Returns:
    [num] noise levels, decreasing.
  """
  ramp = jnp.linspace(0.0, 1.0, num)
  lo, hi = jnp.asarray(sigma_min) ** (1.0 / rho), jnp.asarray(sigma_max) ** (1.0 / rho)
  return (hi + ramp * (lo - hi)) ** rho


def check_grid_args(num_steps: int, kind: str) -> None:
  """Raises ConfigError for a time grid with < 1 step or an unknown spacing."""
  if kind not in GRID_KINDS:
    raise ConfigError(f'time grid kind={kind!r} is unknown; choose one of {GRID_KINDS}')
  if int(num_steps) < 1:
    raise ConfigError(f'num_steps must be >= 1, got {num_steps}')


def marginal_derivatives_jvp(process, t: chex.Array) -> tuple[jax.Array, jax.Array]:
  """(d alpha_t / dt, d sigma_t / dt) by forward-mode differentiation of `process.marginal`."""
  t = as_float(t)
  _, tangents = jax.jvp(process.marginal, (t,), (jnp.ones_like(t),))
  return tangents


def sde_from_marginals(process, t: chex.Array) -> tuple[jax.Array, jax.Array]:
  """The linear SDE dx = f_t x dt + g_t dW whose marginals are N(alpha_t x_0, sigma_t^2 I).

  Matching d/dt of the mean and variance (Kingma et al. 2021, VDM, appendix; Song et al. 2021):
    f_t = alpha'_t / alpha_t,   g_t^2 = d sigma_t^2 / dt - 2 f_t sigma_t^2
                                      = 2 sigma_t sigma'_t - 2 (alpha'_t / alpha_t) sigma_t^2.

  Args:
    process: a continuous process.
    t: [B] times.

  Returns:
    (f_t, g_t^2), each [B].
  """
  alpha, sigma = process.marginal(t)
  dalpha, dsigma = process.marginal_derivatives(t)
  f = dalpha / alpha
  return f, 2.0 * sigma * dsigma - 2.0 * f * jnp.square(sigma)


class ContinuousProcess(flax.struct.PyTreeNode):
  """Base of the continuous-time processes (t a float in [t_min, t_max]).

  Subclasses define `t_min`, `t_max`, `prior_std`, `marginal(t)` and the pair
  `noise_level(t)` / `t_from_noise_level(s)` that fixes where Karras spacing is applied; they
  override `marginal_derivatives`, `sde` and `model_time` where a closed form is better.
  """

  is_discrete: ClassVar[bool] = False

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t), each [B]: every subclass defines it."""
    raise TypeError(f'{type(self).__name__} must define marginal(t)')

  def noise_level(self, t: chex.Array) -> jax.Array:
    """The monotone noise level in which `time_grid(kind='karras')` spaces its steps."""
    raise TypeError(f'{type(self).__name__} must define noise_level(t)')

  def t_from_noise_level(self, s: chex.Array) -> jax.Array:
    """The inverse of `noise_level`."""
    raise TypeError(f'{type(self).__name__} must define t_from_noise_level(s)')

  def add_noise(self, x0: chex.Array, t: chex.Array, eps: chex.Array) -> jax.Array:
    """x_t = alpha_t x_0 + sigma_t eps, with t [B] broadcast over x0's trailing dimensions."""
    chex.assert_equal_shape((x0, eps))
    alpha, sigma = self.marginal(t)
    return expand_to(alpha, x0) * x0 + expand_to(sigma, x0) * eps

  def log_snr(self, t: chex.Array) -> jax.Array:
    """lambda_t = log(alpha_t^2 / sigma_t^2) = 2 log(alpha_t / sigma_t) (Kingma et al. 2021)."""
    alpha, sigma = self.marginal(t)
    return 2.0 * (jnp.log(alpha) - jnp.log(sigma))

  def marginal_derivatives(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(d alpha_t / dt, d sigma_t / dt), each [B]; generic version by `jax.jvp`."""
    return marginal_derivatives_jvp(self, t)

  def sde(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(f_t, g_t^2) of the forward SDE dx = f_t x dt + g_t dW; see `sde_from_marginals`."""
    return sde_from_marginals(self, t)

  def model_time(self, t: chex.Array) -> jax.Array:
    """The network's time input: 1000 t, so t in [0, 1] spans DDPM's integer range [0, 1000]."""
    return (1000.0 * as_float(t)).astype(jnp.float32)

  def time_grid(self, num_steps: int, kind: str = 'uniform', rho: float = 7.0) -> jax.Array:
    """[num_steps + 1] times from t_max down to t_min (both included), float32.

    'uniform' spaces t evenly; 'karras' spaces `noise_level(t)` by Karras et al. (2022) eq. 5
    (without the final sigma = 0) and maps each level back to t.

    Args:
      num_steps: the number of intervals (solver steps).
      kind: 'uniform' or 'karras'.
      rho: Karras' exponent.

    Returns:
      [num_steps + 1] decreasing times.
    """
    check_grid_args(num_steps, kind)
    if kind == 'uniform':
      return jnp.linspace(self.t_max, self.t_min, num_steps + 1, dtype=jnp.float32)
    ends = jnp.asarray([self.t_max, self.t_min], jnp.float32)
    s_max, s_min = self.noise_level(ends)
    t = self.t_from_noise_level(karras_sigmas(s_min, s_max, num_steps + 1, rho))
    # Exact endpoints despite round-off in the level <-> t round trip.
    return t.astype(jnp.float32).at[0].set(self.t_max).at[-1].set(self.t_min)
