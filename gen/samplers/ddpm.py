"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) as one `lax.scan`, on any respaced
subset of the training timesteps (Nichol & Dhariwal 2021, section 4)."""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from gen.processes.discrete import DiscreteVP

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t [B,...], t [B] int) -> eps [B,...]


def respaced_timesteps(num_timesteps: int, num_steps: int) -> jax.Array:
  """`num_steps` evenly spaced integer steps from T-1 down to 0 (all T when num_steps = T)."""
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f'num_steps must be in [1, {num_timesteps}], got {num_steps}')
  return jnp.round(jnp.linspace(num_timesteps - 1, 0, num_steps)).astype(jnp.int32)


def ddpm_sample(
  eps_fn: EpsFn,
  process: DiscreteVP,
  x_T: chex.Array,
  key: jax.Array,
  timesteps: chex.Array | None = None,
) -> jax.Array:
  """Runs the reverse chain x_T -> x_0 with the noise-prediction model `eps_fn`.

  Between consecutive visited steps s > s' the chain uses the respaced variance
  beta = 1 - abar_s / abar_s' (= beta_s when s' = s - 1):
    x_s' = (x_s - beta / sqrt(1 - abar_s) eps(x_s, s)) / sqrt(1 - beta) + sqrt(beta) z,
  with z = 0 at the last step, which returns the posterior mean.

  Args:
    eps_fn: the model's noise prediction.
    process: the discrete VP process it was trained on.
    x_T: [B, ...] initial standard-normal noise.
    key: randomness for the per-step noise z.
    timesteps: descending integer steps ending at 0 (default: all T steps; NFE = its length).

  Returns:
    [B, ...] samples x_0.
  """
  abar = process.alphas_cumprod
  steps = jnp.arange(process.num_timesteps - 1, -1, -1) if timesteps is None else timesteps
  abar_next = jnp.concatenate([abar[steps[1:]], jnp.ones((1,))])  # abar of the next visited step
  betas = 1.0 - abar[steps] / abar_next
  keys = jax.random.split(key, steps.shape[0])
  last = steps.shape[0] - 1

  def body(x, inputs):
    i, t, beta, k = inputs
    eps = eps_fn(x, jnp.full((x.shape[0],), t))
    mean = (x - beta / jnp.sqrt(1.0 - abar[t]) * eps) / jnp.sqrt(1.0 - beta)
    noise = jax.random.normal(k, x.shape, x.dtype)
    return mean + jnp.where(i < last, jnp.sqrt(beta), 0.0) * noise, None

  x0, _ = jax.lax.scan(body, x_T, (jnp.arange(steps.shape[0]), steps, betas, keys))
  return x0
