"""The diffusion loss as pure functions: the weightings w(t), the time distributions,
classifier-free guidance and gradient accumulation's micro-batches (the math: the package
docstring, gen/objectives/diffusion/__init__.py)."""

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp

WEIGHTINGS = ('eps', 'x0', 'v', 'min_snr', 'likelihood', 'edm', 'velocity')
TIME_SAMPLINGS = ('uniform', 'low_discrepancy', 'lognormal', 'logit_normal')


def loss_weight(
  weighting: str, process, t: jax.Array, min_snr_gamma: float = 5.0, sigma_data: float = 0.5
) -> jax.Array:
  """w(t) of the module docstring's table, per example [B]."""
  alpha, sigma = process.marginal(t)
  snr = jnp.square(alpha / sigma)
  if weighting == 'eps':
    return snr
  if weighting == 'x0':
    return jnp.ones_like(snr)
  if weighting == 'v':
    return jnp.square(alpha**2 + sigma**2) / sigma**2
  if weighting == 'min_snr':
    return jnp.minimum(snr, min_snr_gamma)
  if weighting == 'likelihood':
    _, g2 = process.sde(t)
    return g2 * alpha**2 / sigma**4
  if weighting == 'edm':
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
  if weighting == 'velocity':
    d_alpha, d_sigma = process.marginal_derivatives(t)
    return jnp.square(d_alpha - d_sigma * alpha / sigma)
  raise ValueError(f'unknown weighting {weighting!r}; choose one of {WEIGHTINGS}')


def denoising_loss(
  x0_fn: Callable[[jax.Array, jax.Array], jax.Array],
  process,
  x0: chex.Array,
  t: chex.Array,
  eps: chex.Array,
  weight: chex.Array,
) -> jax.Array:
  """E[ w(t) ||x0_hat(x_t, t) - x_0||^2 ] over a batch (see the module docstring).

  Args:
    x0_fn: the model as an x0 estimate, `x0_fn(x_t, t) -> [B, ...]`.
    process: the forward process.
    x0: [B, ...] clean data.
    t: [B] times (or integer steps, or sigmas: the process's own time).
    eps: [B, ...] standard-normal noise.
    weight: [B] w(t).

  Returns:
    scalar loss.
  """
  chex.assert_equal_shape((x0, eps))
  x_t = process.add_noise(x0, t, eps)
  err = jnp.square(x0_fn(x_t, t) - x0).reshape(x0.shape[0], -1).mean(axis=1)
  return jnp.mean(weight * err)


def sample_times(kind: str, process, key: jax.Array, n: int, **kw) -> jax.Array:
  """Training times t [n] in the process's own time.

  'uniform': U[t_min, t_max] (uniform integer steps for discrete processes).
  'low_discrepancy': u_i = (u + i/n) mod 1 mapped like 'uniform': one uniform draw spread
      evenly over the batch, which cuts the loss variance (Kingma et al. 2021, VDM).
  'lognormal': ln sigma ~ N(lognormal_mean, lognormal_std^2), t = sigma (EDM, Karras et al.).
  'logit_normal': t = sigmoid(N(logit_normal_mean, logit_normal_std^2)) for t in [0, 1]
      (Esser et al. 2024, SD3), clipped to [t_min, t_max].
  """
  if kind in ('uniform', 'low_discrepancy'):
    if kind == 'uniform':
      u = jax.random.uniform(key, (n,))
    else:
      u = jnp.mod(jax.random.uniform(key, ()) + jnp.arange(n) / n, 1.0)
    if process.is_discrete:
      return jnp.minimum((u * (process.t_max + 1)).astype(jnp.int32), process.t_max)
    return process.t_min + u * (process.t_max - process.t_min)
  if kind == 'lognormal':
    return jnp.exp(kw['lognormal_mean'] + kw['lognormal_std'] * jax.random.normal(key, (n,)))
  if kind == 'logit_normal':
    z = kw['logit_normal_mean'] + kw['logit_normal_std'] * jax.random.normal(key, (n,))
    return jnp.clip(jax.nn.sigmoid(z), process.t_min, process.t_max)
  raise ValueError(f'unknown time sampling {kind!r}; choose one of {TIME_SAMPLINGS}')


def guided(pred_fn, x: jax.Array, t: jax.Array, labels: jax.Array, null: int, scale: float):
  """Classifier-free guidance (Ho & Salimans 2022): uncond + w (cond - uncond).

  One batched network call evaluates the conditional and the unconditional (null label)
  prediction. Guidance is linear in the prediction, so it is the same on eps, x0, v, score or
  velocity. w = 1 is the conditional model, w = 0 the unconditional one.
  """
  both = pred_fn(
    jnp.concatenate([x, x]),
    jnp.concatenate([t, t]),
    jnp.concatenate([labels, jnp.full_like(labels, null)]),
  )
  cond, uncond = jnp.split(both, 2)
  return uncond + scale * (cond - uncond)


def micro_batches(tree: Any, k: int) -> Any:
  """[B, ...] leaves -> [k, B / k, ...], micro-batch i holding rows i, i + k, i + 2k, ...

  Strided, not contiguous: with the batch sharded over devices in contiguous blocks (of a
  multiple of k rows), each micro-batch keeps every device's share, so the compiled step needs
  no all-gather (GAN's n_critic slices do the same)."""
  return jax.tree.map(
    lambda a: jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1), tree
  )
