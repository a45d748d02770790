"""Fitted schedules (gen.samplers.schedule) and the Gaussian flow (gen.samplers.gaussian)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes, samplers
from gen.samplers.analytic import GaussianMixture
from gen.samplers.schedule import candidate_times, reference_samples


def _rmse(a, b):
  return float(jnp.sqrt(jnp.mean(jnp.square(a - b))))


def _best_fixed_spacing(den, process, x, num_steps, target):
  """The lowest UniPC error to `target` over the fixed logsnr, uniform and karras spacings."""
  return min(
    _rmse(
      samplers.run(
        'unipc', den, process, x, None, samplers.timesteps(process, num_steps, sp)
      ).samples,
      target,
    )
    for sp in ('logsnr', 'uniform', 'karras')
  )


def _mixture(seed, dim=8, modes=4):
  means = jax.random.normal(jax.random.key(100 + seed), (modes, dim))
  return GaussianMixture.create(means, 0.1)


@pytest.mark.parametrize('name', ['discrete_linear', 'vp'])
def test_gaussian_flow_is_the_exact_ode_map_of_gaussian_data(name):
  process = processes.make(name)
  stds = jnp.linspace(0.1, 2.0, 6)
  gauss = GaussianMixture.create(jnp.linspace(-1.0, 1.0, 6), stds)
  stats = samplers.GaussianStats.from_moments(np.linspace(-1, 1, 6), np.diag(np.square(stds)))
  x = jax.random.normal(jax.random.key(0), (64, 6))
  t_to = 300 if process.is_discrete else 0.3
  out = samplers.gaussian_flow(stats, process, x, process.t_max, t_to)
  chex.assert_trees_all_close(out, gauss.ode_map(process, x, process.t_max, t_to), atol=1e-4)


def test_gaussian_stats_from_data_recovers_the_moments():
  mix = _mixture(0)
  data = mix.sample(jax.random.key(1), 50_000)
  stats = samplers.GaussianStats.from_data(data)
  cov = (stats.eigvecs * stats.eigvals) @ stats.eigvecs.T
  means = np.asarray(mix.means, np.float64)
  exact_cov = np.cov(means.T, bias=True) + 0.01 * np.eye(8)
  chex.assert_trees_all_close(stats.mean, means.mean(0), atol=0.05)
  chex.assert_trees_all_close(cov, exact_cov, atol=0.08)


@pytest.mark.slow
def test_fitted_schedule_is_a_valid_schedule():
  process = processes.make('discrete_linear', num_timesteps=100)
  mix = _mixture(0)
  x = jax.random.normal(jax.random.key(1), (64, 8))
  den = mix.denoiser(process)
  ref = reference_samples(den, process, x)  # the fit's default reference, made once here
  ts = samplers.optimize_timesteps(den, process, x, 4, 'unipc', reference=ref)
  chex.assert_shape(ts, (4,))
  assert ts.dtype == jnp.int32
  assert int(ts[0]) == process.t_max and int(ts[-1]) >= process.t_min
  assert np.all(np.diff(np.asarray(ts)) < 0)
  # the search only takes improvements: on its calibration noise the fit is no worse than any
  # spacing it starts from, 'trailing' (last time above t_min) included
  fitted = _rmse(samplers.run('unipc', den, process, x, None, ts).samples, ref)
  for spacing in ('logsnr', 'uniform', 'trailing'):
    start = samplers.run('unipc', den, process, x, None, samplers.timesteps(process, 4, spacing))
    assert fitted <= _rmse(start.samples, ref) * (1 + 1e-6), (spacing, np.asarray(ts))
  # continuous: float times on the log-SNR candidate grid, from t_max
  vp = processes.make('vp')
  den = _mixture(0).denoiser(vp)
  ref = samplers.run('unipc3', den, vp, x, None, samplers.timesteps(vp, 50, 'logsnr')).samples
  ts = samplers.optimize_timesteps(
    den, vp, x, 3, 'dpm_solver_2m', reference=ref, num_candidates=64, init_spacings=('logsnr',)
  )
  assert ts.dtype == jnp.float32 and np.all(np.diff(np.asarray(ts)) < 0)
  np.testing.assert_allclose(ts[0], vp.t_max, rtol=1e-6)
  assert float(ts[-1]) >= vp.t_min * (1 - 1e-6)
  assert candidate_times(vp, 64).shape == (64,)


def test_optimize_timesteps_rejects_bad_arguments():
  process = processes.make('discrete_linear')
  den = _mixture(0).denoiser(process)
  x = jnp.zeros((4, 8))
  with pytest.raises(ValueError, match='num_steps'):
    samplers.optimize_timesteps(den, process, x, 1)
  with pytest.raises(ValueError, match='unknown'):
    samplers.optimize_timesteps(den, process, x, 3, 'nope')


@pytest.mark.slow
def test_fitted_schedule_beats_fixed_spacings_on_held_out_noise():
  """UniPC with 4 model times on an 8-D mixture (discrete linear process): the schedule fitted on
  one noise batch has a lower error on another batch than logsnr or uniform spacing, 5 seeds."""
  process = processes.make('discrete_linear')
  for seed in range(5):
    mix = _mixture(seed)
    den = mix.denoiser(process)
    k_cal, k_eval = jax.random.split(jax.random.key(seed))
    x_cal = jax.random.normal(k_cal, (256, 8))
    x_eval = jax.random.normal(k_eval, (256, 8))
    ref = reference_samples(den, process, x_eval)
    ts = samplers.optimize_timesteps(den, process, x_cal, 4, 'unipc')
    fitted = _rmse(samplers.run('unipc', den, process, x_eval, None, ts).samples, ref)
    fixed = _best_fixed_spacing(den, process, x_eval, 4, ref)
    print('held-out', seed, fitted, fixed)
    assert fitted < 0.9 * fixed, (seed, fitted, fixed)


@pytest.mark.slow
def test_gaussian_start_shrinks_the_error_on_gaussian_data():
  """Gaussian data, closed form: with its moments, the Gaussian start and the fitted schedule have
  under a quarter of the best fixed spacing's error at 3 model times (5 seeds)."""
  process = processes.make('discrete_linear')
  for seed in range(5):
    key = jax.random.key(seed)
    mean = jax.random.normal(key, (6,))
    stds = jnp.exp(jax.random.uniform(jax.random.fold_in(key, 1), (6,), minval=-2.0, maxval=1.0))
    gauss = GaussianMixture.create(mean, stds)
    stats = samplers.GaussianStats.from_moments(mean, np.diag(np.square(stds)))
    den = gauss.denoiser(process)
    x_cal = jax.random.normal(jax.random.fold_in(key, 2), (128, 6))
    x_eval = jax.random.normal(jax.random.fold_in(key, 3), (128, 6))
    t0 = jnp.zeros((128,), jnp.int32)
    exact = den(gauss.ode_map(process, x_eval, process.t_max, 0), t0)[0]
    ts = samplers.optimize_timesteps(den, process, x_cal, 3, 'unipc', stats=stats)
    x = samplers.gaussian_flow(stats, process, x_eval, process.t_max, ts[0])
    fitted = _rmse(samplers.run('unipc', den, process, x, None, ts).samples, exact)
    fixed = _best_fixed_spacing(den, process, x_eval, 3, exact)
    print('gaussian', seed, fitted, fixed)
    assert fitted < 0.25 * fixed, (seed, fitted, fixed)


def _ddim_smoke(config, **sample):
  for k, v in {'sampler': 'ddim', 'num_steps': 6, 'spacing': 'quadratic', **sample}.items():
    config.diffusion.sample[k] = v
  return config


@pytest.mark.slow
def test_explicit_timesteps_sample_as_the_same_spacing(smoke_config):
  """`diffusion.sample.timesteps` (e.g. a fitted schedule) replaces num_steps and spacing: the
  times of a spacing, written out, draw the same samples."""
  from conftest import ONE_DEVICE

  from gen import setup as setup_lib

  spaced = setup_lib.build(_ddim_smoke(smoke_config), ONE_DEVICE)
  state = setup_lib.init_state(spaced)
  ts = np.asarray(spaced.objective.sample_timesteps())
  explicit_config = _ddim_smoke(smoke_config, spacing='uniform')
  explicit_config.diffusion.sample.timesteps = ','.join(str(int(t)) for t in ts)
  explicit = setup_lib.build(explicit_config, ONE_DEVICE)
  chex.assert_trees_all_equal(explicit.objective.sample_timesteps(), ts)
  assert explicit.objective.sample_protocol()['timesteps'] == [float(t) for t in ts]
  key = jax.random.key(0)
  chex.assert_trees_all_equal(
    explicit.objective.sample(state, key, 16).x, spaced.objective.sample(state, key, 16).x
  )


def test_malformed_explicit_timesteps_fail_in_one_line(smoke_config):
  from conftest import ONE_DEVICE

  from gen import setup as setup_lib
  from gen.errors import ConfigError

  t_max = smoke_config.diffusion.num_timesteps - 1
  for bad, why in (
    (f'{t_max},x', 'comma-separated numbers'),
    (f'{t_max},20.5,0', 'integer steps'),
    (f'{t_max},10,20', 'strictly descending'),
    ('20,10', f'start at t_max={t_max}'),
    (f'{t_max},-1', 'stay >= t_min=0'),
  ):
    smoke_config.diffusion.sample.timesteps = bad
    with pytest.raises(ConfigError, match='diffusion.sample.timesteps') as err:
      setup_lib.build(smoke_config, ONE_DEVICE)
    assert why in str(err.value) and '\n' not in str(err.value)
