"""The probability-flow map of Gaussian data, used to skip the near-Gaussian start of sampling.

For data with mean m and covariance C = V diag(c) V^T and any process x_t = alpha_t x_0 +
sigma_t eps, the noisy marginal of the Gaussian N(m, C) is N(alpha_t m, alpha_t^2 C + sigma_t^2 I)
and its probability-flow ODE keeps every eigen-coordinate of (x_t - alpha_t m), divided by its
marginal std sqrt(alpha_t^2 c + sigma_t^2), fixed. At high noise every data distribution's noisy
marginal is close to this Gaussian (its denoiser is nearly linear in x), so the map moves the
initial noise from t_max to a lower time with no network evaluation: the "analytical
teleportation" of Wang & Vastola (2024, "The hidden linear structure in score-based models and
its application"). A sampler then starts from that lower time (gen.samplers.schedule picks it
together with the rest of the schedule).
"""

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


class GaussianStats(flax.struct.PyTreeNode):
  """The data's mean and covariance, as m [D] and the eigendecomposition C = V diag(c) V^T.

  Attributes:
    mean: [D] the data mean m.
    eigvals: [D] the eigenvalues c of C (clipped at 0).
    eigvecs: [D, D] V, orthonormal columns.
  """

  mean: jax.Array
  eigvals: jax.Array
  eigvecs: jax.Array

  @classmethod
  def from_moments(cls, mean, cov) -> 'GaussianStats':
    """From a mean [D] and covariance [D, D] (eigendecomposed in float64 NumPy)."""
    cov = np.asarray(cov, np.float64)
    chex.assert_shape(cov, (np.shape(mean)[0], np.shape(mean)[0]))
    c, v = np.linalg.eigh(0.5 * (cov + cov.T))
    return cls(
      jnp.asarray(mean, jnp.float32),
      jnp.asarray(np.maximum(c, 0.0), jnp.float32),
      jnp.asarray(v, jnp.float32),
    )

  @classmethod
  def from_data(cls, data) -> 'GaussianStats':
    """From data [n, ...] (flattened): the sample mean and the (1/n) sample covariance."""
    flat = np.asarray(data, np.float64).reshape(np.shape(data)[0], -1)
    mean = flat.mean(axis=0)
    centred = flat - mean
    return cls.from_moments(mean, centred.T @ centred / flat.shape[0])

  @property
  def dim(self) -> int:
    return self.mean.shape[0]


def gaussian_flow(stats: GaussianStats, process, x: chex.Array, t_from, t_to) -> jax.Array:
  """The exact probability-flow map of Gaussian data N(m, C) from t_from to t_to (no network):

    x_to = alpha_to m + V diag(sqrt((alpha_to^2 c + sigma_to^2) / (alpha_from^2 c + sigma_from^2)))
           V^T (x - alpha_from m),

  i.e. each eigen-coordinate of (x - alpha m) keeps its ratio to the marginal std. For non-Gaussian
  data it is accurate only while the noisy marginal is close to Gaussian (high noise).

  Args:
    stats: the data's Gaussian approximation.
    process: a gen.processes process.
    x: [B, ...] states at t_from (flattened size D).
    t_from, t_to: scalar times.

  Returns:
    [B, ...] the states at t_to.
  """
  flat = x.reshape(x.shape[0], -1)
  chex.assert_shape(flat, (None, stats.dim))
  times = jnp.stack([jnp.asarray(t_from), jnp.asarray(t_to)])
  alpha, sigma = process.marginal(times)
  c = stats.eigvals
  scale = jnp.sqrt((alpha[1] ** 2 * c + sigma[1] ** 2) / (alpha[0] ** 2 * c + sigma[0] ** 2))
  w = (flat - alpha[0] * stats.mean) @ stats.eigvecs
  out = alpha[1] * stats.mean + (w * scale) @ stats.eigvecs.T
  return out.reshape(x.shape)
