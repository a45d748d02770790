"""Probability-flow ODE samplers with fixed steps (Euler, Heun) for any continuous process.

For a process with marginals x_t = alpha_t x_0 + sigma_t eps, the probability-flow ODE (Song
et al. 2021) is dx/dt = alpha'_t x0_hat(x, t) + sigma'_t eps_hat(x, t): the velocity of the
interpolant with the model's (x0, eps) held fixed. This one formula covers VP, sub-VP, VE, EDM
(where it is Karras et al.'s dx/dsigma = (x - D(x)) / sigma) and rectified flow (z - x0).
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

DenoiseFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (x, t [B]) -> x0, eps
METHODS = ('euler', 'heun')


def _bcast(c: jax.Array, x: jax.Array) -> jax.Array:
  return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def velocity(denoise_fn: DenoiseFn, process, x: jax.Array, t: jax.Array) -> jax.Array:
  """dx/dt of the probability-flow ODE at scalar time t."""
  tb = jnp.full((x.shape[0],), t)
  x0, eps = denoise_fn(x, tb)
  d_alpha, d_sigma = process.marginal_derivatives(tb)
  return _bcast(d_alpha, x) * x0 + _bcast(d_sigma, x) * eps


def ode_sample(
  denoise_fn: DenoiseFn, process, x_init: chex.Array, ts: chex.Array, method: str = 'euler'
) -> jax.Array:
  """Integrates the probability-flow ODE along the descending grid `ts`, then denoises.

  Heun (Karras et al. 2022, Algorithm 1) averages the slopes at t and t_next, falling back to
  Euler on a step that ends at t = 0. When the grid ends at t_min > 0 the result is the
  model's x0 estimate there (one Euler step to sigma = 0 for alpha = 1 processes).

  Args:
    denoise_fn: the model as (x0, eps) predictions.
    process: a continuous process (`marginal_derivatives`).
    x_init: [B, ...] samples of the prior at ts[0].
    ts: [N+1] descending times.
    method: 'euler' (NFE N) or 'heun' (NFE about 2N).

  Returns:
    [B, ...] samples.
  """
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}')

  def body(x, t_pair):
    t, t_next = t_pair
    d = velocity(denoise_fn, process, x, t)
    x_euler = x + (t_next - t) * d
    if method == 'euler':
      return x_euler, None
    d_next = velocity(denoise_fn, process, x_euler, t_next)
    x_heun = x + (t_next - t) * 0.5 * (d + d_next)
    return jnp.where(t_next > 0, x_heun, x_euler), None

  x, _ = jax.lax.scan(body, x_init, (ts[:-1], ts[1:]))
  return jnp.where(ts[-1] > 0, denoise_fn(x, jnp.full((x.shape[0],), ts[-1]))[0], x)
