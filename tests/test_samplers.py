"""Samplers against closed forms: the exact Gaussian model's ODE solution, data moments, Langevin.

The exact model is `GaussianMixture.denoiser` (Gaussian conditioning); for one Gaussian the
probability-flow ODE keeps (x_t - alpha_t mu) / sqrt(alpha_t^2 s^2 + sigma_t^2) fixed, so the
deterministic samplers have a closed-form target: the x0 estimate at ts[-1] of `ode_map`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes, samplers
from gen.errors import ConfigError
from gen.samplers import ddpm, langevin, ode, sde
from gen.samplers.analytic import GaussianMixture
from gen.samplers.base import evaluate, timesteps

MEAN, STD = np.array([1.5, -0.5]), np.array([0.5, 2.0])
GAUSS = GaussianMixture.create(MEAN, STD)
PROCESSES = {
  'discrete_linear': lambda: processes.make('discrete_linear'),
  'vp': lambda: processes.make('vp'),
  've': lambda: processes.make('ve', sigma_min=0.01, sigma_max=50.0),
  'edm': lambda: processes.make('edm'),
  'rectified_flow': lambda: processes.make('rectified_flow'),
}
SIGMA = ('ve', 'edm')


def _setup(name, num=1000, seed=0):
  process = PROCESSES[name]()
  x = process.prior_std * jax.random.normal(jax.random.key(seed), (num, 2))
  return process, GAUSS.denoiser(process), x


def _ode_reference(process, denoise, x, ts):
  return evaluate(denoise, GAUSS.ode_map(process, x, ts[0], ts[-1]), ts[-1])[0]


def test_timesteps_spacings():
  d = processes.make('discrete_linear')
  np.testing.assert_array_equal(timesteps(d, 10, 'trailing'), np.arange(999, 0, -100))
  np.testing.assert_array_equal(timesteps(d, 5, 'uniform'), [999, 749, 500, 250, 0])
  assert timesteps(d, 1000, 'quadratic').tolist() == list(range(999, -1, -1))
  for name, make in PROCESSES.items():
    process = make()
    for spacing in samplers.SPACINGS:
      if spacing == 'logsnr' and name == 'rectified_flow':
        with pytest.raises(ConfigError, match='logsnr'):
          timesteps(process, 7, spacing)
        continue
      ts = np.asarray(timesteps(process, 7, spacing))
      chex.assert_shape(ts, (7,))
      assert np.all(np.diff(ts) < 0), (name, spacing, ts)
      assert ts[0] == pytest.approx(process.t_max), (name, spacing)
      assert ts.dtype == (np.int32 if process.is_discrete else np.float32)
  # rectified flow: N Euler points stop one step before the clean t = 0
  np.testing.assert_allclose(timesteps(processes.make('rectified_flow'), 4), [1, 0.75, 0.5, 0.25])
  with pytest.raises(ConfigError, match='sample.spacing'):
    timesteps(d, 5, 'cosine')
  with pytest.raises(ConfigError, match='num_steps'):
    timesteps(d, 1001)


@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_ddim_eta0_converges_to_the_exact_ode_solution(name):
  """DDIM (eta = 0) is a first-order ODE solver: the error halves with twice the steps."""
  process, denoise, x = _setup(name)
  spacing = 'karras' if name in SIGMA else 'uniform'
  errors = []
  for n in (20, 40, 1000):
    ts = timesteps(process, n, spacing)
    got = jax.jit(lambda x, ts: ddpm.ddim_sample(denoise, process, x, None, ts).samples)(x, ts)
    errors.append(float(jnp.max(jnp.abs(got - _ode_reference(process, denoise, x, ts)))))
  assert 1.6 < errors[0] / errors[1] < 2.4, errors
  assert errors[2] < 0.02, errors


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 've', 'edm', 'rectified_flow'])
def test_ode_solvers_have_their_order_and_reach_the_exact_solution(name):
  process, denoise, x = _setup(name)
  spacing = 'karras' if name in SIGMA else 'uniform'

  def error(method, n):
    ts = timesteps(process, n, spacing)
    run = jax.jit(lambda x: ode.ode_sample(denoise, process, x, None, ts, method=method))
    return float(jnp.max(jnp.abs(run(x).samples - _ode_reference(process, denoise, x, ts))))

  heun = [error('heun', n) for n in (20, 40)]
  assert heun[0] / heun[1] > 3.0, heun  # second order: ~4x
  rk4 = [error('rk4', n) for n in (20, 40)]
  assert rk4[0] / rk4[1] > 8.0 or rk4[1] < 2e-5, rk4  # fourth order: ~16x (to float32 noise)
  assert rk4[1] < 2e-4 and error('heun', 400) < 1e-3
  ts = timesteps(process, 2)
  result = jax.jit(
    lambda x: ode.adaptive_ode_sample(denoise, process, x, None, ts, rtol=1e-6, atol=1e-6)
  )(x)
  assert float(jnp.max(jnp.abs(result.samples - _ode_reference(process, denoise, x, ts)))) < 1e-4
  assert 8 < int(result.nfe) < 1000


def _moments_error(samples):
  samples = np.asarray(samples, np.float64)
  cov = np.cov(samples.T)
  return (
    np.max(np.abs(samples.mean(0) - MEAN)),
    np.max(np.abs(np.sqrt(np.diag(cov)) - STD) / STD),
    abs(cov[0, 1]) / (STD[0] * STD[1]),
  )


STOCHASTIC = [
  ('ddpm', {'variance': 'beta_tilde'}, 'uniform', 200),
  ('ddpm', {'variance': 'beta'}, 'uniform', 200),
  ('ddim', {'eta': 0.5}, 'uniform', 200),
  ('ddim', {'eta': 1.0}, 'uniform', 200),
  ('reverse_diffusion', {}, 'uniform', 500),
  ('pc', {'predictor': 'reverse_diffusion', 'snr': 0.16, 'corrector_steps': 1}, 'uniform', 200),
  ('euler_maruyama', {}, 'uniform', 500),
  ('annealed_langevin', {'langevin_steps': 10, 'step_ratio': 0.1}, 'uniform', 200),
  ('edm', {'s_churn': 40.0, 's_tmin': 0.05, 's_tmax': 50.0, 's_noise': 1.003}, 'karras', 50),
]


@pytest.mark.slow
@pytest.mark.parametrize('sampler, options, spacing, n', STOCHASTIC)
@pytest.mark.parametrize('name', ['discrete_linear', 'vp', 've', 'edm'])
def test_stochastic_samplers_reproduce_the_data_moments(sampler, options, spacing, n, name):
  process, denoise, x = _setup(name, num=20_000)
  if sampler not in samplers.allowed_for(process, name):
    pytest.skip(f'{sampler} does not apply to {name}')
  if sampler == 'annealed_langevin' and name not in SIGMA:
    pytest.skip('NCSN anneals x = x0 + sigma eps; on VP its finite chains are biased')
  spacing = 'karras' if name in SIGMA else spacing
  ts = timesteps(process, n, spacing)
  run = jax.jit(
    lambda x: samplers.run(sampler, denoise, process, x, jax.random.key(1), ts, **options)
  )
  result = run(x)
  chex.assert_shape(result.samples, x.shape)
  mean_err, std_rel_err, corr = _moments_error(result.samples)
  # standard errors at 20,000 samples: mean 0.014 (std 2 axis), std 0.5%, correlation 0.007.
  # Annealed Langevin is inexact at finite chains: 10 updates per level leave ~7% excess std
  # (measured 6.6% on VE, 8.0% on EDM; 50 updates per level do no better).
  std_tol = 0.1 if sampler == 'annealed_langevin' else 0.04
  assert mean_err < 0.06 and std_rel_err < std_tol and corr < 0.03, (mean_err, std_rel_err, corr)


def test_ddim_eta1_is_ddpm_with_the_posterior_variance():
  process, denoise, x = _setup('discrete_linear')
  ts = timesteps(process, 50, 'trailing')
  key = jax.random.key(3)
  a = ddpm.ddim_sample(denoise, process, x, key, ts, eta=1.0).samples
  b = ddpm.ddpm_sample(denoise, process, x, key, ts, variance='beta_tilde').samples
  chex.assert_trees_all_close(a, b, atol=1e-4)


def test_ddpm_beta_on_consecutive_steps_is_ho_et_al_algorithm_2():
  """One transition t -> t-1 against Ho et al.'s eq. (11) with sigma_t^2 = beta_t."""
  process, denoise, x = _setup('discrete_linear', num=8)
  t = 500
  ts = jnp.asarray([t, t - 1], jnp.int32)
  key = jax.random.key(4)
  got = ddpm.ddpm_sample(denoise, process, x, key, ts, variance='beta', trajectory=True)
  beta = float(process.betas[t])
  abar = float(process.alphas_cumprod[t])
  eps = evaluate(denoise, x, t)[1]
  mean = (x - beta / np.sqrt(1 - abar) * eps) / np.sqrt(1 - beta)
  # the scan's first transition draws its noise from the first of the split keys
  k_step = jax.random.split(jax.random.split(key, 2)[0])[0]
  want = mean + np.sqrt(beta) * jax.random.normal(k_step, x.shape)
  chex.assert_trees_all_close(got.trajectory[0], want, atol=1e-5)


@pytest.mark.slow
def test_pc_beats_its_predictor_alone():
  """The Langevin corrector (snr 0.16) pulls each level towards its marginal: with the same
  predictor steps the sample moments are closer to the data's."""
  for name, n, margin in (('ve', 50, 0.6), ('vp', 20, 0.8)):
    process, denoise, x = _setup(name, num=50_000)
    ts = timesteps(process, n)
    key = jax.random.key(1)
    pred = sde.reverse_diffusion_sample(denoise, process, x, key, ts).samples
    pc = sde.pc_sample(denoise, process, x, key, ts, snr=0.16).samples
    err = lambda s: sum(_moments_error(s)[:2])
    assert err(pc) < margin * err(pred), (name, err(pc), err(pred))


class TestLangevin(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_standard_normal_from_zeros(self):
    """The seed's example: Langevin on N(0, 1) from zeros gives mean ~0, std ~1."""
    run = self.variant(
      lambda key: langevin.langevin(lambda x: -x, jnp.zeros((20_000, 1)), key, 500, 0.05)
    )
    result = run(jax.random.key(0))
    assert result.nfe == 500
    # ULA's stationary variance for N(0, 1) is 1 / (1 - a/4) = 1.0126 at a = 0.05
    assert abs(float(result.samples.mean())) < 0.03
    assert abs(float(result.samples.std()) - 1.0063) < 0.02

  def test_step_size_and_noise_scale(self):
    x = jnp.ones((3, 2))
    key = jax.random.key(0)
    xi = jax.random.normal(key, x.shape)
    got = langevin.langevin_step(x, -x, key, 0.5, noise_scale=0.1)
    chex.assert_trees_all_close(got, x - 0.25 * x + 0.1 * np.sqrt(0.5) * xi, atol=1e-6)
    # noise_scale = 0 is gradient ascent: to the mode
    mode = langevin.langevin(lambda y: -(y - 3.0), jnp.zeros((4, 1)), key, 400, 0.1, 0.0)
    chex.assert_trees_all_close(mode.samples, jnp.full((4, 1), 3.0), atol=1e-4)


@pytest.mark.slow
def test_nfe_and_one_compile_per_step_count():
  process, denoise, x = _setup('vp', num=16)
  traces = []

  @jax.jit
  def run(x, ts):
    traces.append(ts.shape[0])
    return ode.ode_sample(denoise, process, x, None, ts, method='heun')

  for n in (10, 20, 10, 20):
    assert int(run(x, timesteps(process, n)).nfe) == 2 * n - 1
  assert traces == [10, 20]
  expected = {'ddpm': 12, 'ddim': 12, 'euler': 12, 'rk4': 45, 'pc': 24, 'annealed_langevin': 61}
  ts = timesteps(process, 12)
  for name, nfe in expected.items():
    assert samplers.run(name, denoise, process, x, jax.random.key(0), ts).nfe == nfe, name


@pytest.mark.slow
@pytest.mark.parametrize('name', ['ddpm', 'ddim', 'heun', 'pc', 'edm'])
def test_trajectory_ends_with_the_samples(name):
  process, denoise, x = _setup('edm', num=4)
  ts = timesteps(process, 6, 'karras')
  result = samplers.run(name, denoise, process, x, jax.random.key(0), ts, trajectory=True)
  chex.assert_shape(result.trajectory, (6, 4, 2))
  chex.assert_trees_all_close(result.trajectory[-1], result.samples)


def test_sampler_checks_name_the_field():
  vp, discrete = processes.make('vp'), processes.make('discrete_linear')
  defaults = {
    'eta': 0.0,
    'variance': 'beta',
    'predictor': 'reverse_diffusion',
    'snr': 0.16,
    'corrector_steps': 1,
  }
  with pytest.raises(ConfigError, match="sample.sampler='euler' needs a continuous"):
    samplers.check('euler', discrete, 'discrete_linear', defaults)
  with pytest.raises(ConfigError, match="sample.sampler='edm' needs alpha_t = 1"):
    samplers.check('edm', vp, 'vp', defaults)
  with pytest.raises(ConfigError, match='singular'):
    samplers.check('pc', processes.make('rectified_flow'), 'rectified_flow', defaults)
  with pytest.raises(ConfigError, match=r'sample.eta=1.5 must be in \[0, 1\]'):
    samplers.check('ddim', vp, 'vp', {**defaults, 'eta': 1.5})
  with pytest.raises(ConfigError, match='sample.sampler=.nope. is unknown'):
    samplers.check('nope', vp, 'vp', defaults)
  samplers.check('ddim', discrete, 'discrete_linear', defaults)  # fine


def _default_options():
  from experiments import base

  return base.get_config(objective='diffusion').diffusion.sample.to_dict()


@pytest.mark.parametrize('name', sorted(samplers.SAMPLERS))
def test_every_sampler_traces_once_over_keys_and_inputs(name):
  """A sampler compiled once serves every call with the same shapes: new keys, new starts and
  new time grids of the same length retrace nothing (chex.assert_max_traces)."""
  process_name = 've' if samplers.SAMPLERS[name].sigma_only else 'vp'
  process, denoise, _ = _setup(process_name, num=8)
  options = {**_default_options(), 'max_steps': 64}

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x, key, ts):
    return samplers.run(name, denoise, process, x, key, ts, **options).samples

  for i in range(3):
    x = process.prior_std * jax.random.normal(jax.random.key(i), (8, 2))
    ts = timesteps(
      process, 4, ('uniform', 'quadratic', 'karras')[i] if name != 'dopri5' else 'uniform'
    )
    chex.assert_tree_all_finite(run(x, jax.random.key(10 + i), ts))
  chex.clear_trace_counter()
