"""Reverse-time SDE sampling with Euler–Maruyama (Song et al. 2021) for any continuous process.

The forward SDE dx = f_t x dt + g_t dW has the reverse dx = [f_t x - g_t^2 score(x, t)] dt +
g_t dW_bar (Anderson 1982), with score = -eps_hat / sigma_t. The final sample is the model's
x0 estimate at t_min (score_sde's "noise removal" step).
"""

import chex
import jax
import jax.numpy as jnp

from gen.samplers.ode import DenoiseFn, _bcast


def euler_maruyama_sample(
  denoise_fn: DenoiseFn, process, x_init: chex.Array, ts: chex.Array, key: jax.Array
) -> jax.Array:
  """Integrates the reverse SDE along the descending grid `ts` (NFE = len(ts))."""
  keys = jax.random.split(key, ts.shape[0] - 1)

  def body(x, inputs):
    t, t_next, k = inputs
    tb = jnp.full((x.shape[0],), t)
    _, eps = denoise_fn(x, tb)
    _, sigma = process.marginal(tb)
    f, g2 = process.sde(tb)
    score = -eps / _bcast(sigma, x)
    dt = t_next - t  # negative: time runs backwards
    drift = _bcast(f, x) * x - _bcast(g2, x) * score
    noise = jax.random.normal(k, x.shape, x.dtype)
    return x + drift * dt + jnp.sqrt(_bcast(g2, x) * -dt) * noise, None

  x, _ = jax.lax.scan(body, x_init, (ts[:-1], ts[1:], keys))
  return denoise_fn(x, jnp.full((x.shape[0],), ts[-1]))[0]
