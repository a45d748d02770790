"""Probability-flow ODE log-likelihoods against the closed forms of Gaussian data, and bits/dim.

The exact model of Gaussian (mixture) data (gen.samplers.analytic) has a known noisy marginal at
every time, so the ODE's log p_{t_start}(x) is checked against `log_prob(x, alpha, sigma)` at
t_start. The default prior N(0, sigma_T^2 I) ignores the data left at t_max (VP: alpha_1 x_0,
VE/EDM: the data's spread next to sigma_max), which moves each log-density by up to ~1e-2 for
data of mean ~1; the checks to 1e-3 therefore either pass the exact marginal at t_max as the
prior (`prior_log_prob`) or use centred data, for which the default prior is accurate.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen.errors import ConfigError
from gen.metrics import likelihood
from gen.processes import VESDE, VPSDE, EDMProcess, RectifiedFlow, SubVPSDE
from gen.samplers.analytic import GaussianMixture

TOL = 1e-3
# name -> (process, t_start): rectified flow starts just off its noise-free t_min = 0, where the
# exact denoiser's eps = (x - alpha x0) / sigma divides by zero.
PROCESSES = {
  'vp': (VPSDE(), None),
  'subvp': (SubVPSDE(), None),
  've': (VESDE(), None),
  'edm': (EDMProcess(), None),
  'rectified_flow': (RectifiedFlow(), 1e-3),
}


def _marginal(process, t):
  alpha, sigma = process.marginal(jnp.full((1,), t, jnp.float32))
  return alpha[0], sigma[0]


def _start(process, t_start):
  return process.t_min if t_start is None else t_start


def _noisy_points(gm, process, t_start, key, num):
  """[num, D] draws from the marginal at t_start: what log p_{t_start} is evaluated on."""
  alpha, sigma = _marginal(process, _start(process, t_start))
  k_data, k_noise = jax.random.split(key)
  return alpha * gm.sample(k_data, num) + sigma * jax.random.normal(k_noise, (num, gm.dim))


def _exact_prior(gm, process):
  alpha, sigma = _marginal(process, process.t_max)
  return lambda x: gm.log_prob(x, alpha, sigma)


def _reference(gm, process, t_start, x):
  alpha, sigma = _marginal(process, _start(process, t_start))
  return gm.log_prob(x, alpha, sigma)


def _error(gm, process, t_start, x, **kwargs):
  logp, nfe = likelihood.log_likelihood(
    gm.denoiser(process), process, x, jax.random.key(7), t_start=t_start, **kwargs
  )
  chex.assert_shape(logp, (x.shape[0],))
  assert int(nfe) > 0
  return np.abs(np.asarray(logp) - np.asarray(_reference(gm, process, t_start, x)))


# (process, D, means, stds): data N(mu, diag(s^2)) of mean ~1 in 2 to 4 dimensions.
GAUSSIANS = [
  ('vp', 2, [0.8, -1.2], [0.5, 0.3]),
  ('subvp', 3, [0.3, -0.5, 0.8], [0.5, 0.3, 0.7]),
  ('ve', 4, [1.0, -0.5, 0.2, 0.7], [0.4, 0.6, 0.3, 0.5]),
  ('edm', 3, [0.3, -0.5, 0.8], [0.5, 0.3, 0.7]),
  ('rectified_flow', 3, [0.3, -0.5, 0.8], [0.5, 0.3, 0.7]),
]


@pytest.mark.slow
@pytest.mark.parametrize('name,dim,means,stds', GAUSSIANS, ids=[g[0] for g in GAUSSIANS])
def test_gaussian_matches_closed_form(name, dim, means, stds):
  process, t_start = PROCESSES[name]
  gm = GaussianMixture.create(means, stds)
  assert gm.dim == dim
  x = _noisy_points(gm, process, t_start, jax.random.key(0), 32)
  err = _error(gm, process, t_start, x, prior_log_prob=_exact_prior(gm, process))
  assert err.max() < TOL, (name, err.max())


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 've', 'edm', 'rectified_flow'])
def test_default_prior_on_centred_data(name):
  """The default prior N(0, sigma_T^2 I) alone is accurate for data of mean 0."""
  process, t_start = PROCESSES[name]
  gm = GaussianMixture.create(jnp.zeros(3), [0.5, 0.3, 0.4])
  x = _noisy_points(gm, process, t_start, jax.random.key(1), 32)
  err = _error(gm, process, t_start, x)
  assert err.max() < TOL, (name, err.max())


MIXTURE = GaussianMixture.create(
  [[1.0, 1.0], [-1.0, -0.5], [0.5, -1.0]], jnp.asarray([0.3, 0.4, 0.35]), [0.5, 0.3, 0.2]
)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 'rectified_flow'])
def test_mixture_matches_closed_form(name):
  """A 2-D mixture: a nonlinear flow with a full Jacobian; RF's N(0, I) prior is exact."""
  process, t_start = PROCESSES[name]
  x = _noisy_points(MIXTURE, process, t_start, jax.random.key(2), 64)
  prior = _exact_prior(MIXTURE, process) if name == 'vp' else None
  err = _error(MIXTURE, process, t_start, x, trace='exact', prior_log_prob=prior)
  assert err.max() < TOL, (name, err.max())


@pytest.mark.slow
def test_hutchinson_is_unbiased():
  """On the mixture (off-diagonal Jacobian) Hutchinson's estimate is noisy but centred."""
  process, _ = PROCESSES['vp']
  fn = MIXTURE.denoiser(process)
  x = _noisy_points(MIXTURE, process, None, jax.random.key(3), 1024)
  exact, _ = likelihood.log_likelihood(fn, process, x, None, trace='exact')
  hutch, _ = likelihood.log_likelihood(fn, process, x, jax.random.key(4), trace='hutchinson')
  diff = np.asarray(hutch, np.float64) - np.asarray(exact, np.float64)
  std_err = diff.std() / math.sqrt(diff.size)
  assert diff.std() > 1e-2  # the estimate really is random here
  assert abs(diff.mean()) < 4.0 * std_err, (diff.mean(), std_err)


def test_hutchinson_is_exact_for_diagonal_jacobians():
  """Rademacher eps_i^2 = 1: for independent dimensions eps^T J eps is the trace itself."""
  process, _ = PROCESSES['vp']
  gm = GaussianMixture.create([0.3, -0.5, 0.8], [0.5, 0.3, 0.7])
  x = _noisy_points(gm, process, None, jax.random.key(5), 32)
  err = _error(gm, process, None, x, trace='hutchinson', prior_log_prob=_exact_prior(gm, process))
  assert err.max() < TOL


@pytest.mark.slow
def test_nfe_counts_network_evaluations():
  process, _ = PROCESSES['vp']
  gm = GaussianMixture.create([0.3, -0.5], [0.5, 0.3])
  base = gm.denoiser(process)
  calls = []

  def fn(x, t):
    jax.debug.callback(lambda tt: calls.append(float(tt[0])), t)
    return base(x, t)

  x = _noisy_points(gm, process, None, jax.random.key(6), 8)
  logp, nfe = likelihood.log_likelihood(fn, process, x, jax.random.key(0), trace='hutchinson')
  jax.block_until_ready(logp)
  assert int(nfe) == len(calls)
  assert min(calls) == pytest.approx(process.t_min) and max(calls) == pytest.approx(1.0)


@pytest.mark.slow
def test_jit_matches_eager_and_auto_is_exact():
  process, _ = PROCESSES['edm']
  gm = GaussianMixture.create([0.3, -0.5, 0.8], [0.5, 0.3, 0.7])
  fn = gm.denoiser(process)
  x = _noisy_points(gm, process, None, jax.random.key(8), 16)
  eager, nfe_eager = likelihood.log_likelihood(fn, process, x, None, trace='auto')
  jitted = jax.jit(lambda x: likelihood.log_likelihood(fn, process, x, None, trace='exact'))
  logp, nfe = jitted(x)
  np.testing.assert_allclose(logp, eager, rtol=0, atol=1e-4)
  assert int(nfe) == int(nfe_eager)


def test_bad_arguments():
  process, _ = PROCESSES['vp']
  fn = GaussianMixture.create([0.0, 0.0], 1.0).denoiser(process)
  with pytest.raises(ConfigError, match='trace'):
    likelihood.log_likelihood(fn, process, jnp.zeros((2, 2)), None, trace='gaussian')
  with pytest.raises(ConfigError, match='random key'):
    likelihood.log_likelihood(fn, process, jnp.zeros((2, 2)), None, trace='hutchinson')
  with pytest.raises(ConfigError, match='num_bins'):
    likelihood.bits_per_dim(jnp.zeros(2), 2, num_bins=1)


# -- bits per dimension -----------------------------------------------------------------------


def test_bits_per_dim_by_hand():
  logp = jnp.asarray([-1000.0, -500.0])
  np.testing.assert_allclose(
    likelihood.bits_per_dim(logp, 100), [1000 / (100 * math.log(2)), 500 / (100 * math.log(2))]
  )
  # 8-bit data in [-1, 1]: bin width 2/255, offset -log2(2/255) = log2(127.5).
  bpd = likelihood.bits_per_dim(logp, 100, num_bins=256)
  np.testing.assert_allclose(bpd, likelihood.bits_per_dim(logp, 100) + math.log2(127.5))
  # score_sde's offset of 7 (bins of 1/256 on [0, 1]) is log2(256/255) larger.
  score_sde = -(logp / 100) / math.log(2) + 7.0
  np.testing.assert_allclose(bpd, score_sde - math.log2(256 / 255), rtol=1e-6)
  # data_range: levels in [0, 1] have bins of 1/255: offset log2(255).
  np.testing.assert_allclose(
    likelihood.bits_per_dim(logp, 100, num_bins=256, data_range=1.0),
    likelihood.bits_per_dim(logp, 100) + math.log2(255.0),
    rtol=1e-6,
  )


@pytest.mark.parametrize('num_bins', [2, 16, 256])
def test_uniform_data_on_the_bins_gives_log2_bins(num_bins):
  """Uniform levels, dequantised, have density (num_bins Delta)^-D: exactly log2(num_bins)."""
  dim, width = 5, 2.0 / (num_bins - 1)
  levels = jax.random.randint(jax.random.key(0), (256, dim), 0, num_bins)
  u = likelihood.dequantize(jax.random.key(1), levels * width - 1.0, num_bins)
  inside = jnp.all(jnp.abs(u) <= 1.0 + width / 2, axis=1)
  logp = jnp.where(inside, -dim * math.log(num_bins * width), -jnp.inf)
  np.testing.assert_allclose(
    likelihood.bits_per_dim(logp, dim, num_bins=num_bins), math.log2(num_bins), rtol=1e-6
  )


def test_dequantize_stays_within_bins():
  num_bins, width = 256, 2.0 / 255
  levels = jax.random.randint(jax.random.key(0), (4096, 3), 0, num_bins)
  x = levels.astype(jnp.float32) * width - 1.0
  u = likelihood.dequantize(jax.random.key(1), x, num_bins)
  chex.assert_shape(u, x.shape)
  noise = np.asarray(u - x) / width
  assert np.all(np.abs(noise) <= 0.5 + 1e-4)
  np.testing.assert_array_equal(np.round((np.asarray(u) + 1.0) / width), levels)
  assert abs(noise.mean()) < 0.01 and abs(noise.var() - 1 / 12) < 0.005  # Uniform(-1/2, 1/2)


@pytest.mark.slow
def test_bits_per_dim_of_dequantised_data():
  process, _ = PROCESSES['vp']
  gm = GaussianMixture.create([0.2, -0.3], [0.5, 0.4])
  levels = jnp.clip(jnp.round((gm.sample(jax.random.key(0), 64) + 1.0) * 127.5), 0, 255)
  x = levels / 127.5 - 1.0
  key = jax.random.key(1)
  bpd, nfe = likelihood.bits_per_dim_of(
    gm.denoiser(process), process, x, key, num_bins=256, prior_log_prob=_exact_prior(gm, process)
  )
  u = likelihood.dequantize(jax.random.split(key)[0], x, 256)
  ref = likelihood.bits_per_dim(_reference(gm, process, None, u), 2, num_bins=256)
  chex.assert_shape(bpd, ())
  assert int(nfe) > 0
  assert abs(float(bpd) - float(jnp.mean(ref))) < TOL / (2 * math.log(2))


def test_discretized_gaussian_masses_sum_to_one():
  """Ho et al.'s decoder: the bin masses over all levels (outer bins open-ended) sum to 1."""
  levels = jnp.linspace(-1.0, 1.0, 17)
  for mean, std in ((0.0, 0.1), (0.93, 0.02), (-1.4, 0.5), (0.31, 1e-3)):
    logp = likelihood.discretized_gaussian_log_prob(levels, mean, std, 17)
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp))), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ddpm_bound_lies_just_above_the_exact_likelihood():
  """The DDPM variational bound with the exact denoiser of Gaussian data, against the closed
  form: a valid bound (never below the true bits/dim), tight over T = 1000 steps with sigma_t^2
  = beta_t; a wrong denoiser (x0_hat = 0) gives a far larger bound."""
  from gen.processes.discrete import linear_schedule

  process = linear_schedule(1000)
  data = GaussianMixture.create(jnp.full((1, 4), 0.3), jnp.full((1, 4), 0.5))
  x = data.sample(jax.random.key(0), 1024)
  true_bpd = float(-jnp.mean(data.log_prob(x)) / (4 * math.log(2.0)))
  results = {}
  for name, fn in (
    ('exact', data.denoiser(process)),
    ('zero', lambda xt, t: (jnp.zeros_like(xt), xt)),
  ):
    for variance in ('beta', 'beta_tilde'):
      bpd, nfe = jax.jit(
        lambda xx, k, fn=fn, v=variance: likelihood.ddpm_elbo_bits_per_dim(
          fn, process, xx, k, variance=v
        )
      )(x, jax.random.key(1))
      results[name, variance] = float(bpd)
      assert int(nfe) == 1000
  print('true', true_bpd, results)
  # Measured: true 1.085 bits/dim; bound 1.135 with sigma_t^2 = beta_t, 1.809 with beta~_t.
  # For data much wider than the early noise levels the true reverse variance is ~beta_t, so
  # beta~_t (= beta_t (t - 1) / t for small t) pays ~0.5 (t/(t-1) - 1 - log(t/(t-1))) nats per
  # dimension at each early step.
  gap_beta = results['exact', 'beta'] - true_bpd
  gap_tilde = results['exact', 'beta_tilde'] - true_bpd
  assert 0.0 <= gap_beta <= 0.1, gap_beta
  assert gap_beta < gap_tilde <= 1.0, gap_tilde
  assert min(results['zero', 'beta'], results['zero', 'beta_tilde']) > true_bpd + 100
