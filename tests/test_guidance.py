"""Classifier guidance against closed forms: with the exact noisy classifier of a Gaussian mixture
(its component responsibilities) and scale 1, the guided exact denoiser is the exact denoiser of
the requested component, and sampling with it lands in that component.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes
from gen.samplers import ddpm
from gen.samplers.analytic import GaussianMixture
from gen.samplers.base import timesteps
from gen.samplers.guidance import classifier_guided

MIX = GaussianMixture.create(
  np.array([[-1.0, 0.5], [1.5, 1.0]]), np.array([[0.5, 0.8], [0.3, 0.4]]), np.array([0.3, 0.7])
)
PROCESSES = {
  'discrete_linear': lambda: processes.make('discrete_linear'),
  'vp': lambda: processes.make('vp'),
  've': lambda: processes.make('ve', sigma_min=0.01, sigma_max=50.0),
  'rectified_flow': lambda: processes.make('rectified_flow'),
}


def _classifier(mix, process):
  """The exact noisy classifier log p(y | x_t, t) = log of the component responsibilities."""

  def log_prob(x, t, labels):
    alpha, sigma = process.marginal(t)
    logits = jax.nn.log_softmax(mix.component_log_probs(x, alpha, sigma), axis=-1)
    return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]

  return log_prob


def _times(process, key, num):
  if process.is_discrete:
    return jax.random.randint(key, (num,), 0, process.num_timesteps)
  # rectified flow's alpha vanishes at t = 1, where x0 is not identifiable from x_t
  return jax.random.uniform(key, (num,), minval=max(process.t_min, 0.01), maxval=0.99)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_scale_one_is_the_exact_conditional_denoiser(name):
  process = PROCESSES[name]()
  k_x, k_t, k_y = jax.random.split(jax.random.key(0), 3)
  num = 512
  t = _times(process, k_t, num)
  alpha, sigma = process.marginal(t)
  x = alpha[:, None] * MIX.sample(k_x, num) + sigma[:, None] * jax.random.normal(k_x, (num, 2))
  labels = jax.random.randint(k_y, (num,), 0, 2)
  guided = classifier_guided(MIX.denoiser(process), process, _classifier(MIX, process), labels, 1.0)
  x0, eps = jax.jit(guided)(x, t)
  chex.assert_shape((x0, eps), (num, 2))
  parts = [
    GaussianMixture.create(MIX.means[k], MIX.stds[k]).denoiser(process)(x, t) for k in (0, 1)
  ]
  pick = lambda i: jnp.where(labels[:, None] == 0, parts[0][i], parts[1][i])
  np.testing.assert_allclose(x0, pick(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(eps, pick(1), rtol=1e-4, atol=2e-4)
  # scale 0 is the unconditional model itself
  plain = classifier_guided(MIX.denoiser(process), process, _classifier(MIX, process), labels, 0.0)
  np.testing.assert_allclose(plain(x, t)[0], MIX.denoiser(process)(x, t)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('sampler', ['ddim', 'ddpm'])
@pytest.mark.parametrize('scale', [1.0, 3.0])
def test_guided_sampling_lands_in_the_requested_component(sampler, scale):
  """Well separated modes, the requested one the rarer (weight 0.2)."""
  mix = GaussianMixture.create(np.array([[-2.0, -2.0], [2.0, 2.0]]), 0.3, np.array([0.8, 0.2]))
  process = processes.make('vp')
  num = 2000
  labels = jnp.arange(num) % 2  # half each
  denoise = classifier_guided(
    mix.denoiser(process), process, _classifier(mix, process), labels, scale
  )
  ts = timesteps(process, 200)
  fn = ddpm.ddim_sample if sampler == 'ddim' else ddpm.ddpm_sample
  x_init = jax.random.normal(jax.random.key(1), (num, 2))
  samples = jax.jit(lambda x, k: fn(denoise, process, x, k, ts).samples)(x_init, jax.random.key(2))
  comp = jnp.argmax(mix.component_log_probs(samples), axis=-1)
  assert float(jnp.mean(comp == labels)) >= 0.995
  if scale == 1.0:  # the conditional distribution itself: N(mu_y, 0.3^2)
    for y in (0, 1):
      got = samples[labels == y]
      se = 0.3 / np.sqrt(got.shape[0])
      np.testing.assert_allclose(jnp.mean(got, axis=0), mix.means[y], atol=5 * se)
      np.testing.assert_allclose(jnp.std(got, axis=0), 0.3, rtol=0.1)
