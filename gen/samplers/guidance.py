"""Classifier guidance (Dhariwal & Nichol 2021, section 4; Song et al. 2021, eq. 14).

A noisy classifier p(y | x_t, t) steers an unconditional model towards class y. By Bayes,
grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t), and with score = -eps / sigma_t:

  eps_hat'(x, t) = eps_hat(x, t) - s sigma_t grad_x log p(y | x, t)            (their eq. 14)
  x0_hat'(x, t)  = (x - sigma_t eps_hat') / alpha_t = x0_hat + s sigma_t^2 / alpha_t grad,

where s is the guidance scale. At s = 1 and with the exact classifier and the exact
unconditional denoiser this is the exact conditional denoiser E[x_0 | x_t, y] (Tweedie's formula
for the conditional density); s > 1 sharpens p(y | x)^s. The result is a `DenoiseFn`, so every
sampler of gen.samplers runs it. NFE: each evaluation adds one classifier forward and backward
pass (not counted in a sampler's nfe, which counts denoiser calls).
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from gen.samplers.base import DenoiseFn, bcast

# log_prob_fn(x [B, ...], t [B], labels [B]) -> [B] log p(labels | x_t = x, t).
LogProbFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def classifier_guided(
  denoise_fn: DenoiseFn, process, log_prob_fn: LogProbFn, labels: chex.Array, scale: float
) -> DenoiseFn:
  """The classifier-guided denoiser of the module docstring.

  Args:
    denoise_fn: the unconditional model as (x0_hat, eps_hat).
    process: its process (for alpha_t, sigma_t).
    log_prob_fn: `log_prob_fn(x, t, labels) -> [B]` log p(y | x_t, t) of a noisy classifier (a
      flax `apply` with its parameters closed over, or a closed form); differentiated with
      `jax.grad` of the summed log-probabilities, so each example gets its own gradient.
    labels: [B] the requested classes (the batch the sampler runs).
    scale: the guidance scale s (0: unguided; 1: the conditional model).

  Returns:
    the guided DenoiseFn `fn(x, t) -> (x0_hat', eps_hat')`.
  """
  labels = jnp.asarray(labels)

  def fn(x, t):
    chex.assert_shape(labels, (x.shape[0],))
    x0, eps = denoise_fn(x, t)
    alpha, sigma = process.marginal(t)
    grad = jax.grad(lambda v: jnp.sum(log_prob_fn(v, t, labels)))(x)
    a, s = bcast(alpha, x), bcast(sigma, x)
    eps = eps - scale * s * grad
    # (x - sigma eps') / alpha, written as a correction of x0_hat: no cancellation, and a model
    # whose x0_hat is finite where alpha = 0 (rectified flow at t = 1) keeps it there.
    shift = scale * jnp.square(s) / jnp.where(a > 0, a, 1.0) * grad
    x0 = x0 + jnp.where(a > 0, shift, 0.0)
    return x0, eps

  return fn
