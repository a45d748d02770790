"""Parameterisations: exact round trips between every pair, hand formulas, EDM preconditioning."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes
from gen.errors import ConfigError
from gen.processes import parameterization as param

KINDS = param.KINDS
SHAPE = (3, 4, 2)


def _discrete64():
  """The DDPM linear schedule in float64, so round trips test the algebra, not float32."""
  return processes.DiscreteVP(jnp.asarray(np.linspace(1e-4, 0.02, 1000), jnp.float64))


# name -> (process factory, times [3] including ones near the ends)
CASES = {
  'vp': (processes.VPSDE, [1e-3, 0.4, 1.0]),
  'subvp': (processes.SubVPSDE, [1e-3, 0.4, 1.0]),
  've': (processes.VESDE, [0.0, 0.5, 1.0]),
  'edm': (processes.EDMProcess, [0.002, 1.0, 80.0]),
  'rectified_flow': (processes.RectifiedFlow, [0.02, 0.5, 0.98]),
  'discrete': (_discrete64, [0, 500, 999]),
}


def _setup(name, key=0):
  factory, times = CASES[name]
  process = factory()
  dtype = jnp.int32 if process.is_discrete else jnp.float64
  t = jnp.asarray(times, dtype)
  k0, k1 = jax.random.split(jax.random.key(key))
  x0 = jax.random.normal(k0, SHAPE, jnp.float64)
  eps = jax.random.normal(k1, SHAPE, jnp.float64)
  return process, t, x0, eps, process.add_noise(x0, t, eps)


def _kinds(process):
  return KINDS[:-1] if process.is_discrete else KINDS


@pytest.mark.parametrize('name', CASES)
def test_every_conversion_round_trips(name):
  with jax.enable_x64(True):
    process, t, x0, eps, x_t = _setup(name)
    targets = {k: param.from_x0_eps(k, x0, eps, t, process) for k in _kinds(process)}
    for a, b in itertools.product(_kinds(process), repeat=2):
      got = param.convert(targets[a], a, b, x_t, t, process)
      chex.assert_shape(got, SHAPE)
      chex.assert_trees_all_close(got, targets[b], rtol=1e-5, atol=1e-5, custom_message=f'{a}->{b}')
    for k in _kinds(process):
      got = param.to_x0_eps(k, targets[k], x_t, t, process)
      chex.assert_trees_all_close(got, (x0, eps), rtol=1e-5, atol=1e-5, custom_message=k)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 'rectified_flow', 'discrete'])
def test_float32_round_trips_away_from_the_ends(name):
  """The everyday float32 path at moderate t, under jit."""
  factory = processes.linear_schedule if name == 'discrete' else CASES[name][0]
  process = factory()
  t = jnp.asarray([100, 400] if process.is_discrete else [0.2, 0.6])
  x0, eps = jax.random.normal(jax.random.key(3), (2, 2, 8, 8, 3))
  x_t = process.add_noise(x0, t, eps)

  @jax.jit
  def round_trips(x0, eps, x_t, t):
    out = {}
    for a, b in itertools.product(_kinds(process), repeat=2):
      pred = param.from_x0_eps(a, x0, eps, t, process)
      out[a, b] = param.convert(pred, a, b, x_t, t, process) - param.from_x0_eps(
        b, x0, eps, t, process
      )
    return out

  for pair, err in round_trips(x0, eps, x_t, t).items():
    assert float(jnp.abs(err).max()) < 1e-4, pair


def test_v_and_score_match_hand_formulas():
  """v = alpha eps - sigma x0 (Salimans & Ho 2022); score = -eps / sigma; VP numbers by hand."""
  with jax.enable_x64(True):
    process, t, x0, eps, x_t = _setup('vp', key=5)
    log_alpha = -0.25 * t**2 * 19.9 - 0.5 * t * 0.1
    alpha = np.exp(log_alpha)[:, None, None]
    sigma = np.sqrt(1 - np.exp(2 * log_alpha))[:, None, None]
    np.testing.assert_allclose(
      param.from_x0_eps('v', x0, eps, t, process), alpha * eps - sigma * x0
    )
    np.testing.assert_allclose(param.from_x0_eps('score', x0, eps, t, process), -eps / sigma)
    # The VP v-space identity: x0 = alpha x_t - sigma v (alpha^2 + sigma^2 = 1).
    v = alpha * eps - sigma * x0
    np.testing.assert_allclose(param.to_x0_eps('v', v, x_t, t, process)[0], alpha * x_t - sigma * v)


@pytest.mark.parametrize('name', ['vp', 'subvp', 've', 'edm', 'rectified_flow'])
def test_velocity_is_the_time_derivative_of_x_t(name):
  with jax.enable_x64(True):
    process, t, x0, eps, _ = _setup(name, key=7)
    _, dx_dt = jax.jvp(lambda s: process.add_noise(x0, s, eps), (t,), (jnp.ones_like(t),))
    got = param.from_x0_eps('velocity', x0, eps, t, process)
    np.testing.assert_allclose(got, dx_dt, rtol=1e-10)
    if name == 'rectified_flow':
      np.testing.assert_allclose(got, eps - x0)  # z - x0 (Liu et al. 2022)


def test_check_kind():
  vp, ddpm = processes.VPSDE(), processes.linear_schedule()
  for kind in KINDS:
    param.check_kind(kind, vp)
  with pytest.raises(ConfigError, match=r"diffusion\.parameterization='noise'.*velocity"):
    param.check_kind('noise', vp)
  with pytest.raises(ConfigError, match=r'diffusion\.parameterization.*continuous'):
    param.check_kind('velocity', ddpm)
  x = jnp.zeros((2, 3))
  with pytest.raises(ConfigError):
    param.convert(x, 'eps', 'velocity', x, jnp.array([1, 2]), ddpm)


def test_edm_preconditioning_formulas():
  sigma = jnp.array([0.002, 0.5, 80.0])
  c_skip, c_out, c_in = param.edm_preconditioning(sigma, 0.5)
  s, sd = np.asarray(sigma, np.float64), 0.5
  np.testing.assert_allclose(c_skip, sd**2 / (s**2 + sd**2), rtol=1e-6)
  np.testing.assert_allclose(c_out, s * sd / np.sqrt(s**2 + sd**2), rtol=1e-6)
  np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + sd**2), rtol=1e-6)
  chex.assert_shape((c_skip, c_out, c_in), (3,))


def test_edm_denoiser_with_ideal_network_reproduces_x0():
  """D = c_skip x + c_out F with F = (x0 - c_skip x) / c_out, the training target, gives x0; and
  for data of std sigma_data the network's input c_in x and target F have unit variance."""
  process = processes.EDMProcess()
  sigma_data = process.sigma_data
  sigma = jnp.array([0.01, 0.5, 5.0, 80.0])
  k0, k1 = jax.random.split(jax.random.key(11))
  x0 = sigma_data * jax.random.normal(k0, (4, 100_000))
  eps = jax.random.normal(k1, x0.shape)
  x = process.add_noise(x0, sigma, eps)
  c_skip, c_out, c_in = (c[:, None] for c in param.edm_preconditioning(sigma, sigma_data))
  target = (x0 - c_skip * x) / c_out
  chex.assert_trees_all_close(c_skip * x + c_out * target, x0, atol=2e-5 * 80)
  np.testing.assert_allclose(jnp.var(c_in * x, axis=1), 1.0, atol=0.02)
  np.testing.assert_allclose(jnp.var(target, axis=1), 1.0, atol=0.02)
  # c_skip x is E[x0 | x] for Gaussian data (the network need only add the non-Gaussian part).
  slope = jnp.mean(x0 * x, axis=1) / jnp.mean(x * x, axis=1)
  np.testing.assert_allclose(slope, c_skip[:, 0], rtol=0.03, atol=1e-3)
  # And the target is an 'x0' prediction expressed through the generic conversions.
  eps_hat = param.convert(c_skip * x + c_out * target, 'x0', 'eps', x, sigma, process)
  np.testing.assert_allclose(eps_hat, eps, atol=2e-3)
