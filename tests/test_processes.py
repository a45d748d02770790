"""Forward processes against their forward dynamics, closed forms, and the paper formulas."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes
from gen.errors import ConfigError
from gen.processes import base

CONTINUOUS = ('vp', 'subvp', 've', 'edm', 'rectified_flow')
DISCRETE = ('discrete_linear', 'discrete_cosine', 'discrete_scaled_linear')
X0 = np.array([-1.5, 0.0, 2.0], np.float32)


def assert_within(actual, want, tol):
  """|actual - want| < tol elementwise, with broadcasting."""
  err = np.abs(np.asarray(actual) - np.asarray(want))
  tol = np.broadcast_to(np.asarray(tol), err.shape)
  assert np.all(err < tol), f'error {err} exceeds {tol}'


def interior_times(process, num=7):
  """Times strictly inside [t_min, t_max] (RF's SDE is singular at t = 1)."""
  return jnp.linspace(process.t_min, process.t_max, num + 2)[1:-1]


def test_every_name_builds_with_defaults():
  assert set(processes.PROCESSES) == set(CONTINUOUS) | set(DISCRETE)
  for name in processes.PROCESSES:
    process = processes.make(name)
    assert process.is_discrete == (name in DISCRETE)
    assert isinstance(process.prior_std, float)


# --- Marginals against the forward dynamics (Monte Carlo) -------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 3))
def _euler_maruyama(process, ts, key, num_paths):
  """Simulates dx = f_t x dt + g_t dW from x(ts[0]) ~ q(x_t | X0); per-time mean and variance."""
  key_init, key_steps = jax.random.split(key)
  alpha0, sigma0 = process.marginal(ts[:1])
  x = alpha0 * X0 + sigma0 * jax.random.normal(key_init, (num_paths, X0.size))

  def body(x, inputs):
    t, dt, k = inputs
    f, g2 = process.sde(t[None])
    x = x + f * x * dt + jnp.sqrt(g2 * dt) * jax.random.normal(k, x.shape)
    return x, (x.mean(0), x.var(0))

  keys = jax.random.split(key_steps, ts.shape[0] - 1)
  _, (mean, var) = jax.lax.scan(body, x, (ts[:-1], jnp.diff(ts), keys))
  return mean, var  # [S, D] each, at ts[1:]


# name -> the ascending simulation grid (from the clean end) for its SDE.
SIM_GRIDS = {
  'vp': lambda p: np.linspace(0.0, 1.0, 2001),
  'subvp': lambda p: np.linspace(0.0, 1.0, 2001),
  've': lambda p: np.linspace(0.0, 1.0, 2001),
  # EDM's time is sigma in [0.002, 80]: geometric steps keep dt / t small everywhere.
  'edm': lambda p: np.geomspace(p.t_min, p.t_max, 2001),
  # f and g^2 blow up at t = 1; stop at 0.9.
  'rectified_flow': lambda p: np.linspace(0.0, 0.9, 2001),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', CONTINUOUS)
def test_sde_simulation_matches_marginal(name):
  """Euler–Maruyama paths of sde(t) have mean alpha_t x0 and variance sigma_t^2."""
  process = processes.make(name)
  num_paths = 40_000
  ts = jnp.asarray(SIM_GRIDS[name](process), jnp.float32)
  mean, var = _euler_maruyama(process, ts, jax.random.key(0), num_paths)
  for i in (len(ts) // 8, len(ts) // 2, len(ts) - 1):
    alpha, sigma = process.marginal(ts[i][None])
    # 5 Monte-Carlo standard errors, plus 1% for the Euler discretisation.
    mean_tol = 5 * sigma / math.sqrt(num_paths) + 0.01 * np.abs(X0)
    assert_within(mean[i - 1], alpha * X0, mean_tol)
    var_tol = (5 * math.sqrt(2 / num_paths) + 0.01) * sigma**2
    assert_within(var[i - 1], sigma**2, var_tol)


@functools.partial(jax.jit, static_argnums=(2,))
def _markov_chain(betas, key, num_paths):
  """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z from x_{-1} = X0; per-step mean, variance."""
  x = jnp.broadcast_to(jnp.asarray(X0), (num_paths, X0.size))

  def body(x, inputs):
    beta, k = inputs
    x = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * jax.random.normal(k, x.shape)
    return x, (x.mean(0), x.var(0))

  _, (mean, var) = jax.lax.scan(body, x, (betas, jax.random.split(key, betas.shape[0])))
  return mean, var


@pytest.mark.parametrize('name', DISCRETE)
def test_markov_chain_matches_marginal(name):
  process = processes.make(name)
  num_paths = 40_000
  mean, var = _markov_chain(process.betas, jax.random.key(1), num_paths)
  t = jnp.array([0, 10, 100, 500, 999])
  alpha, sigma = process.marginal(t)
  mean_tol = 5 * sigma[:, None] / math.sqrt(num_paths) + 1e-5
  assert_within(mean[t], alpha[:, None] * X0, mean_tol)
  var_tol = 5 * math.sqrt(2 / num_paths) * sigma[:, None] ** 2 + 1e-6
  assert_within(var[t], sigma[:, None] ** 2, var_tol)


# --- Discrete schedules against the papers -----------------------------------------------------


def test_cosine_schedule_matches_nichol_dhariwal():
  """abar_t = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) pi/2)^2 (Nichol & Dhariwal, eq. 17)."""
  process = processes.cosine_schedule(1000, s=0.008)
  f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
  want = f(np.arange(1, 1001) / 1000) / f(0.0)
  abar = np.asarray(process.alphas_cumprod)
  np.testing.assert_allclose(abar[:-1], want[:-1], rtol=2e-4, atol=1e-7)
  # f(T) = 0 makes beta_{T-1} = 1; it is clipped at 0.999.
  assert float(process.betas.max()) == pytest.approx(0.999)
  assert float(process.betas[-1]) == pytest.approx(0.999)
  assert np.all(np.diff(np.asarray(process.betas)) > 0)


def test_scaled_linear_schedule_matches_numpy():
  process = processes.scaled_linear_schedule(1000)
  betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
  np.testing.assert_allclose(process.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(process.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-4)


def test_linear_schedule_is_unchanged():
  process = processes.linear_schedule(1000)
  np.testing.assert_allclose(process.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-6)
  assert process.num_timesteps == 1000
  assert process.betas.dtype == jnp.float32


# --- SDE coefficients: generic against closed forms --------------------------------------------


@pytest.mark.parametrize('name', CONTINUOUS)
def test_generic_and_closed_form_sde_agree(name):
  process = processes.make(name)
  t = interior_times(process)
  closed = process.marginal_derivatives(t)
  generic = base.marginal_derivatives_jvp(process, t)
  chex.assert_trees_all_close(closed, generic, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(
    process.sde(t), base.sde_from_marginals(process, t), rtol=1e-4, atol=1e-5
  )


def test_sde_closed_forms_match_song_et_al():
  t = jnp.linspace(0.05, 1.0, 9)
  bmin, bmax = 0.1, 20.0
  beta = bmin + t * (bmax - bmin)
  integral = bmin * t + 0.5 * (bmax - bmin) * t**2  # int_0^t beta(s) ds
  chex.assert_trees_all_close(processes.VPSDE().sde(t), (-beta / 2, beta), rtol=1e-6)
  subvp = (-beta / 2, beta * (1 - jnp.exp(-2 * integral)))
  chex.assert_trees_all_close(processes.SubVPSDE().sde(t), subvp, rtol=1e-5)
  ve = processes.VESDE()
  sigma2 = lambda s: ve.marginal(s[None])[1][0] ** 2
  chex.assert_trees_all_close(ve.sde(t)[1], jax.vmap(jax.grad(sigma2))(t), rtol=1e-5)
  rf = processes.RectifiedFlow()
  np.testing.assert_allclose(rf.marginal_derivatives(t[:3]), [[-1.0] * 3, [1.0] * 3])


@pytest.mark.parametrize('name', CONTINUOUS + DISCRETE)
def test_log_snr_is_decreasing_and_matches_marginal(name):
  process = processes.make(name)
  t = process.time_grid(min(50, process.t_max) if process.is_discrete else 50)[::-1]
  lam = process.log_snr(t)
  assert np.all(np.diff(np.asarray(lam)) < 0)
  inside = t[1:-1]
  alpha, sigma = process.marginal(inside)
  np.testing.assert_allclose(process.log_snr(inside), 2 * np.log(alpha / sigma), rtol=1e-4)


def test_vp_marginals_match_score_sde():
  t = np.array([1e-3, 0.3, 1.0])  # the reference in float64
  log_mean = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
  alpha, sigma = processes.VPSDE().marginal(t)
  np.testing.assert_allclose(alpha, np.exp(log_mean), rtol=1e-6)
  np.testing.assert_allclose(sigma, np.sqrt(1 - np.exp(2 * log_mean)), rtol=1e-5)
  alpha, sigma = processes.SubVPSDE().marginal(t)
  np.testing.assert_allclose(sigma, 1 - np.exp(2 * log_mean), rtol=1e-5)
  alpha, sigma = processes.VESDE(0.01, 50.0).marginal(t)
  np.testing.assert_allclose(sigma, 0.01 * 5000.0**t, rtol=1e-5)
  np.testing.assert_allclose(alpha, 1.0)


# --- Time grids and model time ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['uniform', 'karras'])
@pytest.mark.parametrize('name', CONTINUOUS + DISCRETE)
def test_time_grid_endpoints_and_order(name, kind):
  process = processes.make(name)
  for num_steps in (1, 7, 40):
    grid = process.time_grid(num_steps, kind)
    chex.assert_shape(grid, (num_steps + 1,))
    assert float(grid[0]) == pytest.approx(process.t_max)
    assert float(grid[-1]) == pytest.approx(process.t_min)
    assert np.all(np.diff(np.asarray(grid)) < 0)
    assert grid.dtype == (jnp.int32 if process.is_discrete else jnp.float32)


def karras_numpy(sigma_min, sigma_max, num, rho=7.0):
  """Karras et al. (2022) eq. 5, i = 0 .. num-1, without the appended zero."""
  i = np.arange(num)
  lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
  return (hi + i / (num - 1) * (lo - hi)) ** rho


def test_edm_and_ve_karras_grid_is_eq5():
  edm = processes.EDMProcess()
  np.testing.assert_allclose(edm.time_grid(18, 'karras'), karras_numpy(0.002, 80.0, 19), rtol=1e-5)
  ve = processes.VESDE()
  sigma = ve.marginal(ve.time_grid(18, 'karras', rho=5.0))[1]
  np.testing.assert_allclose(sigma, karras_numpy(0.01, 50.0, 19, rho=5.0), rtol=1e-4)


@pytest.mark.parametrize('name', ('vp', 'subvp', 'rectified_flow'))
def test_karras_grid_is_eq5_in_the_noise_level(name):
  process = processes.make(name)
  levels = process.noise_level(jnp.array([process.t_min, process.t_max]))
  grid = process.time_grid(20, 'karras')
  want = karras_numpy(float(levels[0]), float(levels[1]), 21)
  np.testing.assert_allclose(process.noise_level(grid), want, rtol=1e-3, atol=1e-7)


def test_vp_noise_level_is_edm_sigma():
  """VP's Karras level is sigma/alpha = sqrt(exp(beta_d t^2/2 + beta_min t) - 1) (EDM Table 1)."""
  process = processes.VPSDE()
  t = jnp.array([0.01, 0.5, 1.0])
  want = np.sqrt(np.exp(0.5 * 19.9 * t**2 + 0.1 * t) - 1)
  np.testing.assert_allclose(process.noise_level(t), want, rtol=1e-5)
  np.testing.assert_allclose(process.t_from_noise_level(want), t, rtol=1e-5)
  subvp = processes.SubVPSDE()
  np.testing.assert_allclose(subvp.t_from_noise_level(subvp.noise_level(t)), t, rtol=1e-5)


def test_discrete_grid_is_respacing():
  process = processes.linear_schedule(1000)
  grid = process.time_grid(10)
  np.testing.assert_array_equal(grid, np.round(np.linspace(999, 0, 11)).astype(int))
  np.testing.assert_array_equal(process.time_grid(999), np.arange(999, -1, -1))
  with pytest.raises(ConfigError, match='num_steps'):
    process.time_grid(1000)


@pytest.mark.parametrize('name', CONTINUOUS + DISCRETE)
def test_model_time_range(name):
  process = processes.make(name)
  t = process.time_grid(10)
  mt = process.model_time(t)
  assert mt.dtype == jnp.float32
  chex.assert_shape(mt, t.shape)
  assert float(mt.min()) >= 0 and float(mt.max()) <= 1000.0 + 1e-3
  assert float(mt[0]) >= 999.0
  assert np.all(np.diff(np.asarray(mt)) < 0)


def test_model_time_conventions():
  np.testing.assert_allclose(processes.VPSDE().model_time(jnp.array([0.5])), [500.0])
  edm = processes.EDMProcess()
  np.testing.assert_allclose(edm.model_time(jnp.array([0.002, 80.0])), [0.0, 1000.0], atol=1e-3)
  # An affine map of EDM's c_noise = ln(sigma) / 4.
  sig = jnp.array([0.01, 0.1, 1.0, 10.0])
  c_noise = jnp.log(sig) / 4
  slope = np.polyfit(np.asarray(c_noise), np.asarray(edm.model_time(sig)), 1)
  np.testing.assert_allclose(np.polyval(slope, c_noise), edm.model_time(sig), rtol=1e-5)
  np.testing.assert_allclose(processes.linear_schedule().model_time(jnp.array([7])), [7.0])


@pytest.mark.parametrize('name', CONTINUOUS + DISCRETE)
def test_prior_std_matches_marginal_at_t_max(name):
  process = processes.make(name)
  t_max = jnp.array([process.t_max])
  alpha, sigma = process.marginal(t_max)
  # std of x_T for unit-scale data.
  np.testing.assert_allclose(np.sqrt(alpha**2 + sigma**2), process.prior_std, rtol=2e-4)


# --- Plumbing: pytrees, broadcasting, errors ---------------------------------------------------


@pytest.mark.parametrize('name', CONTINUOUS + DISCRETE)
def test_process_passes_through_jit_and_broadcasts(name):
  process = processes.make(name)
  t = process.time_grid(3)
  x0 = jnp.ones((4, 5, 5, 2))
  eps = jnp.full((4, 5, 5, 2), 0.5)
  x_t = jax.jit(lambda p, x, s, e: p.add_noise(x, s, e))(process, x0, t, eps)
  chex.assert_shape(x_t, x0.shape)
  alpha, sigma = process.marginal(t)
  np.testing.assert_allclose(x_t[:, 0, 0, 0], alpha + 0.5 * sigma, rtol=1e-6)
  leaves = jax.tree.leaves(process)
  assert len(leaves) == (1 if process.is_discrete else 0)  # hyperparameters are static


def test_unknown_name_lists_choices():
  with pytest.raises(ConfigError, match=r"diffusion\.process='vpp'.*discrete_cosine.*vp"):
    processes.make('vpp')


@pytest.mark.parametrize(
  'name, kwargs, field',
  [
    ('ve', {'sigma_min': 50.0, 'sigma_max': 50.0}, 'sigma_min'),
    ('edm', {'sigma_min': 1.0, 'sigma_max': 0.5}, 'sigma_min'),
    ('edm', {'sigma_data': 0.0}, 'sigma_data'),
    ('vp', {'t_min': 0.0}, 't_min'),
    ('subvp', {'beta_min': 5.0, 'beta_max': 1.0}, 'beta_min'),
    ('rectified_flow', {'t_min': 0.5, 't_max': 0.5}, 't_min'),
    ('discrete_linear', {'num_timesteps': 1}, 'num_timesteps'),
    ('discrete_scaled_linear', {'beta_start': 0.1, 'beta_end': 0.01}, 'beta_start'),
    ('discrete_cosine', {'s': -1.0}, 's'),
    ('ve', {'sigma': 1.0}, 'sigma'),
  ],
)
def test_bad_values_name_the_field(name, kwargs, field):
  with pytest.raises(ConfigError, match=rf'diffusion\.{field}'):
    processes.make(name, **kwargs)


def test_bad_grid_kind():
  with pytest.raises(ConfigError, match='karras'):
    processes.VPSDE().time_grid(10, 'cosine')
  with pytest.raises(ConfigError, match='num_steps'):
    processes.EDMProcess().time_grid(0)
