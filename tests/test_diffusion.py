"""The diffusion objective against closed forms: weightings, optimum, samplers, guidance."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen import processes, samplers
from gen.objectives import diffusion
from gen.processes import parameterization as P

CONTINUOUS = {
  'vp': lambda: processes.VPSDE(),
  'subvp': lambda: processes.SubVPSDE(),
  # sigma_max large against the data mean: x_T ~ N(0, sigma_max^2) then matches q(x_T).
  've': lambda: processes.VESDE(sigma_min=0.01, sigma_max=100.0),
  'edm': lambda: processes.EDMProcess(),
  'rectified_flow': lambda: processes.RectifiedFlow(),
}


def _gaussian_denoiser(process, mu, s):
  """Exact (x0, eps) = E[. | x_t] for data N(mu, s^2 I): Gaussian conditioning."""

  def fn(x, t):
    alpha, sigma = process.marginal(t)
    alpha, sigma = alpha[:, None], sigma[:, None]
    var = alpha**2 * s**2 + sigma**2
    x0 = mu + alpha * s**2 / var * (x - alpha * mu)
    eps = sigma * (x - alpha * mu) / var
    return x0, eps

  return fn


def _some_t(process, n, key):
  return (
    diffusion.sample_times('uniform', process, key, n)
    if process.is_discrete
    else (
      process.t_min
      + (process.t_max - process.t_min) * jax.random.uniform(key, (n,), minval=0.05, maxval=0.95)
    )
  )


@pytest.mark.parametrize('name', sorted(CONTINUOUS))
def test_weightings_equal_the_mse_of_their_parameterisation(name):
  """The loss table of gen.objectives.diffusion: w(t)||x0_hat - x0||^2 == MSE in that space."""
  process = CONTINUOUS[name]()
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  x0 = jax.random.normal(k1, (64, 3))
  eps = jax.random.normal(k2, (64, 3))
  t = _some_t(process, 64, k3)
  x_t = process.add_noise(x0, t, eps)
  x0_hat = x0 + 0.1 * jax.random.normal(k4, x0.shape)  # some imperfect model
  eps_hat = P.to_x0_eps('x0', x0_hat, x_t, t, process)[1]
  per = lambda a, b: jnp.mean(jnp.square(a - b), axis=1)
  target = lambda kind, xx, ee: P.from_x0_eps(kind, xx, ee, t, process)
  checks = {
    'eps': per(eps_hat, eps),
    'x0': per(x0_hat, x0),
    'v': per(target('v', x0_hat, eps_hat), target('v', x0, eps)),
    'velocity': per(target('velocity', x0_hat, eps_hat), target('velocity', x0, eps)),
    'likelihood': process.sde(t)[1]
    * per(target('score', x0_hat, eps_hat), target('score', x0, eps)),
  }
  for weighting, want in checks.items():
    w = diffusion.loss_weight(weighting, process, t)
    got = diffusion.denoising_loss(lambda xt, tt: x0_hat, process, x0, t, eps, w)
    np.testing.assert_allclose(got, jnp.mean(want), rtol=2e-4, err_msg=weighting)


def test_edm_weighting_is_karras_lambda():
  process = processes.EDMProcess()
  sigma = jnp.array([0.01, 0.5, 3.0, 40.0])
  w = diffusion.loss_weight('edm', process, sigma, sigma_data=0.5)
  np.testing.assert_allclose(w, (sigma**2 + 0.25) / (sigma * 0.5) ** 2, rtol=1e-6)
  # min-SNR-5 caps the SNR weight of the x0 loss.
  vp = processes.VPSDE()
  t = jnp.array([0.01, 0.5, 0.99])
  alpha, s = vp.marginal(t)
  np.testing.assert_allclose(
    diffusion.loss_weight('min_snr', vp, t, min_snr_gamma=5.0),
    jnp.minimum((alpha / s) ** 2, 5.0),
    rtol=1e-6,
  )


def _fit_linear_eps_model(process, t_val: float, mu: float, s: float) -> dict:
  """Minimises the 'eps' loss at fixed t over eps_hat = a x_t + b, for N(mu, s^2) data."""
  t = jnp.full((4096,), t_val)
  weight = diffusion.loss_weight('eps', process, t)

  def loss(params, key):
    k1, k2 = jax.random.split(key)
    x0 = mu + s * jax.random.normal(k1, (4096, 1))
    eps = jax.random.normal(k2, x0.shape)
    pred = lambda x_t: params['a'] * x_t + params['b']
    x0_fn = lambda x_t, tt: P.to_x0_eps('eps', pred(x_t), x_t, tt, process)[0]
    return diffusion.denoising_loss(x0_fn, process, x0, t, eps, weight)

  opt = optax.adam(0.05)

  @jax.jit
  def update(params, opt_state, key):
    updates, opt_state = opt.update(jax.grad(loss)(params, key), opt_state)
    return optax.apply_updates(params, updates), opt_state

  params = {'a': jnp.zeros(()), 'b': jnp.zeros(())}
  opt_state = opt.init(params)
  for i in range(400):
    params, opt_state = update(params, opt_state, jax.random.key(i))
  return params


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 've', 'rectified_flow'])
def test_trained_linear_denoiser_recovers_the_gaussian_score(name):
  """Minimising the eps loss for N(mu, s^2) data at fixed t gives the analytic score."""
  process = CONTINUOUS[name]()
  mu, s = 0.7, 0.4
  for frac in (0.2, 0.5, 0.8):
    t_val = process.t_min + frac * (process.t_max - process.t_min)
    params = _fit_linear_eps_model(process, t_val, mu, s)
    alpha, sigma = process.marginal(jnp.array([t_val]))
    xs = jnp.linspace(-2, 2, 9)[:, None]
    eps_hat = params['a'] * xs + params['b']
    score_model = P.convert(eps_hat, 'eps', 'score', xs, jnp.full((9,), t_val), process)
    score_true = -(xs - alpha * mu) / (alpha**2 * s**2 + sigma**2)
    np.testing.assert_allclose(score_model, score_true, rtol=0.05, atol=0.02 / float(sigma[0]))


def test_time_sampling():
  vp, edm = processes.VPSDE(), processes.EDMProcess()
  t = diffusion.sample_times('low_discrepancy', vp, jax.random.key(0), 100)
  gaps = jnp.diff(jnp.sort(t))
  np.testing.assert_allclose(gaps, (vp.t_max - vp.t_min) / 100, rtol=1e-3)  # stratified
  sig = diffusion.sample_times(
    'lognormal', edm, jax.random.key(1), 200_000, lognormal_mean=-1.2, lognormal_std=1.2
  )
  assert abs(float(jnp.mean(jnp.log(sig))) + 1.2) < 0.01
  assert abs(float(jnp.std(jnp.log(sig))) - 1.2) < 0.01
  rf = processes.RectifiedFlow()
  u = diffusion.sample_times(
    'logit_normal', rf, jax.random.key(2), 1000, logit_normal_mean=0.0, logit_normal_std=1.0
  )
  assert float(u.min()) >= 0 and float(u.max()) <= 1
  d = processes.linear_schedule(1000)
  steps = diffusion.sample_times('uniform', d, jax.random.key(3), 10_000)
  assert steps.dtype == jnp.int32 and int(steps.min()) == 0 and int(steps.max()) == 999


def test_classifier_free_guidance_is_linear():
  def pred_fn(x, t, labels):  # a toy "network": label shifts the output
    return x + labels[:, None].astype(jnp.float32)

  x = jnp.ones((3, 2))
  t = jnp.zeros((3,))
  labels = jnp.array([1, 2, 3])
  null = 10
  cond, uncond = pred_fn(x, t, labels), pred_fn(x, t, jnp.full((3,), null))
  for w in (0.0, 1.0, 3.0):
    got = diffusion.guided(pred_fn, x, t, labels, null, w)
    chex.assert_trees_all_close(got, uncond + w * (cond - uncond))


MU, S = 1.5, 0.5


def _check_gaussian(x):
  chex.assert_tree_all_finite(x)
  assert abs(float(jnp.mean(x)) - MU) < 0.03, float(jnp.mean(x))
  assert abs(float(jnp.std(x)) - S) < 0.03, float(jnp.std(x))


@pytest.mark.parametrize('name', sorted(CONTINUOUS))
@pytest.mark.parametrize('method', ['euler', 'heun', 'euler_maruyama'])
def test_samplers_with_the_exact_denoiser_return_the_data(name, method):
  """Driven by the exact denoiser of N(1.5, 0.5^2), every sampler must return that Gaussian."""
  process = CONTINUOUS[name]()
  denoise = _gaussian_denoiser(process, MU, S)
  spacing = 'karras' if name in ('ve', 'edm') else 'uniform'  # sigma processes: Karras steps
  steps = {'euler': 200, 'heun': 50, 'euler_maruyama': 500}[method]
  if name == 've' and method == 'euler':
    steps = 1000  # Euler's O(h) error over VE's 1e4-fold sigma range: 200 steps give std 0.45
  ts = samplers.timesteps(process, steps, spacing, 7.0)
  x_init = process.prior_std * jax.random.normal(jax.random.key(0), (10_000, 1))
  if method == 'euler_maruyama' and name == 'rectified_flow':
    pytest.skip('the rectified-flow SDE is singular at t = 1 (f = -1/(1-t))')
  run = jax.jit(lambda x: samplers.run(method, denoise, process, x, jax.random.key(1), ts))
  _check_gaussian(run(x_init).samples)


def test_respaced_ddpm_with_the_exact_denoiser():
  process = processes.linear_schedule(1000)
  denoise = _gaussian_denoiser(process, MU, S)
  x_T = jax.random.normal(jax.random.key(0), (10_000, 1))
  run = jax.jit(lambda x, ts: samplers.run('ddpm', denoise, process, x, jax.random.key(1), ts))
  for n in (1000, 250):
    _check_gaussian(run(x_T, samplers.timesteps(process, n)).samples)
