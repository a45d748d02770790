"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as one `lax.scan`."""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from gen.processes.discrete import DiscreteVP

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [B,...], t [B] int) -> eps [B,...]


def ddpm_sample(eps_fn: EpsFn, process: DiscreteVP, x_T: chex.Array, key: jax.Array) -> jax.Array:
  """Runs the reverse chain x_T -> x_0 with the noise-prediction model `eps_fn`.

  x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps(x_t, t)) / sqrt(1 - beta_t) + sigma_t z,
  with sigma_t^2 = beta_t and z = 0 at the last step (t = 0), which returns the mean.

  Args:
    eps_fn: the model's noise prediction.
    process: the discrete VP process it was trained on.
    x_T: [B, ...] initial standard-normal noise.
    key: randomness for the per-step noise z.

  Returns:
    [B, ...] samples x_0 (NFE = process.num_timesteps).
  """
  betas = process.betas
  abar = process.alphas_cumprod
  steps = jnp.arange(process.num_timesteps - 1, -1, -1)
  keys = jax.random.split(key, process.num_timesteps)

  def body(x, inputs):
    t, k = inputs
    eps = eps_fn(x, jnp.full((x.shape[0],), t))
    mean = (x - betas[t] / jnp.sqrt(1.0 - abar[t]) * eps) / jnp.sqrt(1.0 - betas[t])
    noise = jax.random.normal(k, x.shape, x.dtype)
    x = mean + jnp.where(t > 0, jnp.sqrt(betas[t]), 0.0) * noise
    return x, None

  x0, _ = jax.lax.scan(body, x_T, (steps, keys))
  return x0
