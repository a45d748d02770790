"""Gaussian-mixture data, whose denoiser, score and probability-flow map are known exactly.

For data x_0 ~ sum_k w_k N(mu_k, diag(s_k^2)) and any process x_t = alpha_t x_0 + sigma_t eps,
the noisy marginal is the mixture of N(alpha mu_k, diag(v_k)) with v_k = alpha^2 s_k^2 + sigma^2,
and Gaussian conditioning gives the exact denoiser (Tweedie's formula):

  E[x_0 | x_t] = sum_k r_k(x_t) [mu_k + alpha s_k^2 / v_k (x_t - alpha mu_k)],
  r_k(x_t) = w_k N(x_t; alpha mu_k, v_k) / sum_j w_j N(x_t; alpha mu_j, v_j),
  E[eps | x_t] = (x_t - alpha E[x_0 | x_t]) / sigma.

With one component the probability-flow ODE keeps z = (x_t - alpha_t mu) / sqrt(v_t) fixed, so
its exact solution from t to t' is x_t' = alpha_t' mu + sqrt(v_t') z. Samplers, likelihoods and
benchmarks are tested against these closed forms (the "exact model" of the samplers issue).
"""

import chex
import flax.struct
import jax
import jax.numpy as jnp

from gen.samplers.base import DenoiseFn


class GaussianMixture(flax.struct.PyTreeNode):
  """sum_k w_k N(mu_k, diag(s_k^2)) on flat D-dimensional data.

  Attributes:
    means: [K, D] component means mu_k.
    stds: [K, D] per-dimension component standard deviations s_k.
    weights: [K] mixture weights (sum to 1).
  """

  means: jax.Array
  stds: jax.Array
  weights: jax.Array

  @classmethod
  def create(cls, means, stds, weights=None) -> 'GaussianMixture':
    """Builds a mixture from means [K, D] (or [D] for one Gaussian) and stds.

    `stds` is a scalar, [K] (isotropic per component, K > 1), [D] (per dimension) or [K, D];
    weights default to uniform.
    """
    means = jnp.asarray(means, jnp.float32)
    if means.ndim == 1:
      means = means[None]
    k, d = means.shape
    stds = jnp.asarray(stds, jnp.float32)
    if stds.ndim == 1 and k > 1 and stds.shape[0] == k:
      stds = stds[:, None]
    stds = jnp.broadcast_to(stds, (k, d))
    weights = jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights, jnp.float32)
    return cls(means, stds, weights / jnp.sum(weights))

  @classmethod
  def ring(cls, num_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> 'GaussianMixture':
    """The ring of `num_modes` Gaussians (gen's ring8 toy data)."""
    angles = 2 * jnp.pi * jnp.arange(num_modes) / num_modes
    means = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
    return cls.create(means, std)

  @property
  def dim(self) -> int:
    return self.means.shape[1]

  def sample(self, key: jax.Array, num: int) -> jax.Array:
    """[num, D] samples."""
    k_comp, k_noise = jax.random.split(key)
    comp = jax.random.choice(k_comp, self.weights.shape[0], (num,), p=self.weights)
    noise = jax.random.normal(k_noise, (num, self.dim))
    return self.means[comp] + self.stds[comp] * noise

  def component_log_probs(self, x: chex.Array, alpha=1.0, sigma=0.0) -> jax.Array:
    """[B, K] log w_k + log N(x; alpha mu_k, alpha^2 s_k^2 + sigma^2) for x [B, D]."""
    alpha = jnp.reshape(jnp.asarray(alpha, jnp.float32), (-1, 1, 1))
    sigma = jnp.reshape(jnp.asarray(sigma, jnp.float32), (-1, 1, 1))
    var = jnp.square(alpha * self.stds) + jnp.square(sigma)  # [B or 1, K, D]
    diff = x[:, None, :] - alpha * self.means
    log_n = -0.5 * jnp.sum(jnp.square(diff) / var + jnp.log(2 * jnp.pi * var), axis=-1)
    return jnp.log(self.weights) + log_n

  def log_prob(self, x: chex.Array, alpha=1.0, sigma=0.0) -> jax.Array:
    """[B] log-density of x [B, D] under the data (or, given alpha, sigma, the noisy marginal)."""
    return jax.nn.logsumexp(self.component_log_probs(x, alpha, sigma), axis=-1)

  def denoiser(self, process) -> DenoiseFn:
    """The exact (x0_hat, eps_hat) of this data under `process`, for x of any shape [B, ...]."""

    def fn(x, t):
      flat = x.reshape(x.shape[0], -1)
      chex.assert_shape(flat, (None, self.dim))
      alpha, sigma = process.marginal(t)
      a, s = alpha[:, None, None], sigma[:, None, None]
      var = jnp.square(a * self.stds) + jnp.square(s)  # [B, K, D]
      resp = jax.nn.softmax(self.component_log_probs(flat, alpha, sigma), axis=-1)  # [B, K]
      cond = self.means + a * jnp.square(self.stds) / var * (flat[:, None] - a * self.means)
      x0 = jnp.einsum('bk,bkd->bd', resp, cond)
      eps = (flat - alpha[:, None] * x0) / sigma[:, None]
      return x0.reshape(x.shape), eps.reshape(x.shape)

    return fn

  def ode_map(self, process, x: chex.Array, t_from, t_to) -> jax.Array:
    """The exact probability-flow ODE solution from t_from to t_to (one component only)."""
    if self.means.shape[0] != 1:
      raise ValueError('ode_map is closed-form for a single Gaussian (K = 1) only')
    mu, s = self.means[0], self.stds[0]

    def std_and_mean(t):
      alpha, sigma = process.marginal(jnp.reshape(jnp.asarray(t), (1,)))
      return jnp.sqrt(jnp.square(alpha * s) + jnp.square(sigma)), alpha * mu

    std_from, mean_from = std_and_mean(t_from)
    std_to, mean_to = std_and_mean(t_to)
    flat = x.reshape(x.shape[0], -1)
    return (mean_to + std_to * (flat - mean_from) / std_from).reshape(x.shape)
