"""Inpainting, colorization, ODE inversion and interpolation against closed forms.

The models are exact: `GaussianMixture.denoiser` (Gaussian conditioning), over flattened images
where the data is image-shaped. For one Gaussian the probability-flow ODE has the closed-form
solution `GaussianMixture.ode_map`, the reference of the inversion.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes
from gen.errors import ConfigError
from gen.samplers import ddpm, ode, sde
from gen.samplers import editing as E
from gen.samplers.analytic import GaussianMixture
from gen.samplers.base import timesteps

GAUSS = GaussianMixture.create(np.array([1.5, -0.5]), np.array([0.5, 2.0]))
TWO_MODES = GaussianMixture.create(np.array([[-2.0, -2.0], [2.0, 2.0]]), 0.3)
PROCESSES = {
  'discrete_linear': lambda: processes.make('discrete_linear'),
  'vp': lambda: processes.make('vp'),
  've': lambda: processes.make('ve', sigma_min=0.01, sigma_max=50.0),
  'rectified_flow': lambda: processes.make('rectified_flow'),
}
SAMPLERS = {
  'ddim': ddpm.ddim_sample,
  'ddpm': ddpm.ddpm_sample,
  'pc': sde.pc_sample,
  'heun': lambda *a, **k: ode.ode_sample(*a, method='heun', **k),
}


def _ts(name, process, num):
  return timesteps(process, num, 'karras' if name == 've' else 'uniform')


# -- inpainting -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
  'sampler, name',
  [
    ('ddim', 'discrete_linear'),
    ('ddpm', 'vp'),
    ('pc', 've'),
    ('heun', 'rectified_flow'),
  ],
)
def test_inpainting_keeps_the_known_pixels_exactly(sampler, name):
  process = PROCESSES[name]()
  k_means, k_data, k_mask, k_run = jax.random.split(jax.random.key(0), 4)
  image = GaussianMixture.create(jax.random.normal(k_means, (3, 64)), 0.5)
  x_known = image.sample(k_data, 4).reshape(4, 8, 8, 1)
  mask = jax.random.bernoulli(k_mask, 0.5, (1, 8, 8, 1))  # shared by the batch: broadcast
  ts = _ts(name, process, 20)
  run = jax.jit(
    lambda x, k: E.inpaint(SAMPLERS[sampler], image.denoiser(process), process, x, mask, k, ts)
  )
  result = run(x_known, k_run)
  chex.assert_shape(result.samples, (4, 8, 8, 1))
  chex.assert_tree_all_finite(result.samples)
  known = np.broadcast_to(np.asarray(mask), x_known.shape)
  np.testing.assert_array_equal(np.asarray(result.samples)[known], np.asarray(x_known)[known])
  assert not np.any(np.asarray(result.samples)[~known] == np.asarray(x_known)[~known])


def test_projector_renoises_the_known_pixels():
  process = processes.make('vp')
  x_known = jnp.full((2000, 2), 3.0)
  project = E.inpaint_projector(process, x_known, jnp.array([True, False]))
  x = jnp.full((2000, 2), -7.0)
  out = jax.jit(project)(x, jnp.float32(0.5), jax.random.key(0))
  alpha, sigma = process.marginal(jnp.array([0.5]))
  z = (out[:, 0] - alpha[0] * 3.0) / sigma[0]
  assert abs(float(jnp.mean(z))) < 4 / np.sqrt(2000) and abs(float(jnp.std(z)) - 1) < 0.05
  np.testing.assert_array_equal(out[:, 1], x[:, 1])
  np.testing.assert_array_equal(
    project(x, None, jax.random.key(0)), jnp.array([[3.0, -7.0]] * 2000)
  )
  with pytest.raises(AssertionError):
    E.inpaint_projector(process, x_known, jnp.ones((3,)))


def _conditional_moments(mix, x1):
  """Mean and std of x_2 given x_1 under a 2-D mixture with diagonal components."""
  log_r = jnp.log(mix.weights) - 0.5 * jnp.square((x1 - mix.means[:, 0]) / mix.stds[:, 0])
  r = jax.nn.softmax(log_r - jnp.log(mix.stds[:, 0]))
  mean = jnp.sum(r * mix.means[:, 1])
  var = jnp.sum(r * (jnp.square(mix.stds[:, 1]) + jnp.square(mix.means[:, 1]))) - mean**2
  return float(mean), float(jnp.sqrt(var))


@pytest.mark.slow
def test_inpainting_imputes_the_true_conditional():
  """Modes at (-2, -2) and (2, 2): knowing x_1 = +-2, the imputed x_2 is N(+-2, 0.3^2).

  The predictor-corrector sampler matches the conditional (measured, 500 steps: means 2.009 and
  -2.005 (< 2 standard errors), stds 0.319 and 0.314); replacement without a corrector is
  biased: a few samples commit to the wrong mode before the known coordinate is informative
  (measured: DDPM 0.5 % and 0.1 %, means 1.911 and -1.930; DDIM ~5 %), which the weaker bound
  on DDPM records.
  """
  process = processes.make('vp')
  num = 2000
  x1 = jnp.where(jnp.arange(num) < num // 2, 2.0, -2.0)
  x_known = jnp.stack([x1, jnp.zeros(num)], axis=1)
  mask = jnp.array([1, 0])
  denoise = TWO_MODES.denoiser(process)
  ts = timesteps(process, 500)
  for sampler in ('pc', 'ddpm'):
    fn = SAMPLERS[sampler]
    run = jax.jit(lambda k, fn=fn: E.inpaint(fn, denoise, process, x_known, mask, k, ts).samples)
    out = run(jax.random.key(1))
    np.testing.assert_array_equal(out[:, 0], x1)
    for value in (2.0, -2.0):
      got = out[x1 == value, 1]
      mean, std = _conditional_moments(TWO_MODES, value)
      if sampler == 'pc':
        assert abs(float(jnp.mean(got)) - mean) < 4 * std / np.sqrt(got.shape[0]), (value, got)
        assert abs(float(jnp.std(got)) / std - 1) < 0.08
      else:
        assert float(jnp.mean(jnp.sign(got) == np.sign(value))) > 0.99


@pytest.mark.slow
def test_colorization_recovers_the_colour_of_the_grey_image():
  """Two colours (2, 0, 1) (grey 1) and (-1, 0, -2) (grey -1) on every pixel of a 2 x 2 image."""
  colours = np.array([[2.0, 0.0, 1.0], [-1.0, 0.0, -2.0]])
  data = GaussianMixture.create(np.tile(colours, (1, 4)), 0.1)  # [2, 12]: 4 pixels x 3 channels
  process = processes.make('vp')
  num = 300
  truth = data.sample(jax.random.key(0), num).reshape(num, 2, 2, 3)
  grey = jnp.mean(truth, axis=-1, keepdims=True)
  project = E.colorization_projector(process, grey)
  ts = timesteps(process, 100)
  x_init = jax.random.normal(jax.random.key(1), truth.shape)
  run = jax.jit(
    lambda x, k: ddpm.ddpm_sample(data.denoiser(process), process, x, k, ts, project=project)
  )
  out = run(x_init, jax.random.key(2)).samples
  np.testing.assert_allclose(jnp.mean(out, axis=-1, keepdims=True), grey, atol=1e-5)
  which = (grey[:, 0, 0, 0] < 0).astype(jnp.int32)
  expected = jnp.asarray(colours)[which][:, None, None, :]
  assert float(jnp.mean(jnp.all(jnp.abs(out - expected) < 0.5, axis=(1, 2, 3)))) > 0.99
  np.testing.assert_allclose(jnp.mean(out - expected, axis=0), 0.0, atol=0.03)


# -- inversion --------------------------------------------------------------------------------


def _round_trip(name, dist, method, num, start_iters=0, samples=1000):
  process = PROCESSES[name]()
  denoise = dist.denoiser(process)
  ts = _ts(name, process, num)
  x0 = dist.sample(jax.random.key(0), samples)
  z = jax.jit(lambda x: E.ode_invert(denoise, process, x, ts, method, start_iters))(x0)
  rec = jax.jit(lambda z: E.ode_decode(denoise, process, z, ts, method))(z)
  return process, ts, x0, z, float(jnp.max(jnp.abs(rec - x0)))


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_ddim_inversion_reconstructs_at_high_step_count(name):
  """First order: 5x the steps, ~5x smaller error (measured max error at N = 1000 (999):
  0.015-0.028 on the Gaussian, 0.009-0.023 on the two-mode data; ~0.07-0.14 at N = 200)."""
  big = 999 if name == 'discrete_linear' else 1000
  gauss = [_round_trip(name, GAUSS, 'ddim', n)[-1] for n in (200, big)]
  modes = _round_trip(name, TWO_MODES, 'ddim', big)[-1]
  assert gauss[1] < 0.03 and modes < 0.05, (gauss, modes)
  assert 3.5 < gauss[0] / gauss[1] < 6.5, gauss


@pytest.mark.parametrize('name', ['vp', 've', 'rectified_flow'])
def test_higher_order_inversion_reconstructs(name):
  """Heun with the decoder's last step inverted (start_iters=1): measured max round-trip error,
  Gaussian at N = 200: 5e-6 VP, 8e-5 VE, 4e-6 rectified flow; two modes at N = 500: 5e-5,
  2e-4, 3e-5. Taking the data as the state at ts[-1] instead leaves a floor (7e-4 VP and VE;
  rectified flow, whose grid stops at ts[-1] = 1/N: 0.037)."""
  _, _, _, _, exact_start = _round_trip(name, GAUSS, 'heun', 200, start_iters=1)
  assert exact_start < 2e-4, exact_start
  _, _, _, _, modes = _round_trip(name, TWO_MODES, 'heun', 500, start_iters=1)
  assert modes < 5e-3, modes
  if name == 'rectified_flow':
    _, _, _, _, data_start = _round_trip(name, GAUSS, 'heun', 200)
    assert data_start > 100 * exact_start


@pytest.mark.slow
@pytest.mark.parametrize('name', ['vp', 've', 'rectified_flow'])
def test_inversion_matches_the_closed_form_ode_map(name):
  """For one Gaussian the exact inversion is ode_map(x0, ts[-1] -> ts[0]); rk4 and heun converge
  to it at their orders, DDIM at first order."""
  errors = {}
  for method, num in (('rk4', 50), ('heun', 100), ('heun', 200), ('ddim', 1000)):
    process, ts, x0, z, _ = _round_trip(name, GAUSS, method, num)
    ref = GAUSS.ode_map(process, x0, ts[-1], ts[0])
    errors[method, num] = float(jnp.max(jnp.abs(z - ref))) / process.prior_std
  assert errors['rk4', 50] < 1e-4, errors
  assert errors['heun', 200] < 3e-3 and errors['heun', 100] / errors['heun', 200] > 3.0, errors
  assert errors['ddim', 1000] < 0.015, errors


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_inverted_data_is_prior_noise(name):
  """Latents of data samples are ~N(0, prior_std^2): mean within 4 standard errors, std 5 %."""
  method = 'ddim' if name == 'discrete_linear' else 'heun'
  process, _, _, z, _ = _round_trip(name, TWO_MODES, method, 200, samples=4000)
  z = z / process.prior_std
  np.testing.assert_allclose(jnp.mean(z, axis=0), 0.0, atol=4 / np.sqrt(4000))
  np.testing.assert_allclose(jnp.std(z, axis=0), 1.0, rtol=0.05)


def test_inversion_rejects_bad_methods():
  with pytest.raises(ConfigError, match='continuous'):
    E.ode_invert(
      GAUSS.denoiser(PROCESSES['discrete_linear']()),
      PROCESSES['discrete_linear'](),
      jnp.zeros((1, 2)),
      jnp.array([999, 0]),
      'heun',
    )
  with pytest.raises(ConfigError, match='unknown'):
    E.ode_decode(
      GAUSS.denoiser(PROCESSES['vp']()),
      PROCESSES['vp'](),
      jnp.zeros((1, 2)),
      jnp.array([1.0, 0.5]),
      'dopri5',
    )


# -- slerp and interpolation ------------------------------------------------------------------


@pytest.mark.slow
def test_slerp():
  k0, k1 = jax.random.split(jax.random.key(0))
  z0, z1 = jax.random.normal(k0, (5, 3, 4)), jax.random.normal(k1, (5, 3, 4))
  np.testing.assert_array_equal(E.slerp(z0, z1, 0.0), z0)
  np.testing.assert_array_equal(E.slerp(z0, z1, 1.0), z1)
  norm = lambda z: jnp.linalg.norm(z.reshape(z.shape[0], -1), axis=1)
  z1_same = z1 * (norm(z0) / norm(z1))[:, None, None]  # equal norms per example
  for w in (0.3, 0.5, jnp.linspace(0.1, 0.9, 5)):
    np.testing.assert_allclose(norm(jax.jit(E.slerp)(z0, z1_same, w)), norm(z0), rtol=1e-5)
  e = jnp.eye(2)[None]  # orthogonal unit vectors
  half = E.slerp(e[:, 0], e[:, 1], 0.5)
  np.testing.assert_allclose(half, [[2**-0.5, 2**-0.5]], rtol=1e-6)
  # parallel inputs: the linear fallback
  np.testing.assert_allclose(E.slerp(z0, 2.0 * z0, 0.25), 1.25 * z0, rtol=1e-6)
  chex.assert_tree_all_finite(E.slerp(z0, -z0, 0.5))


def test_interpolation_between_two_images():
  """Images near -1 and +1 (pixel std 0.3): every decoded point of the slerp path is a typical
  image of one of the two modes (|pixel mean| ~1, pixel std ~0.3), switching mode once; the
  ends reconstruct the inputs (measured max error 9e-6 with heun, N = 200, start_iters=1)."""
  process = processes.make('vp')
  image = GaussianMixture.create(jnp.stack([jnp.full(64, -1.0), jnp.full(64, 1.0)]), 0.3)
  k_a, k_b = jax.random.split(jax.random.key(3))
  x_a = (image.means[0] + 0.3 * jax.random.normal(k_a, (64,))).reshape(8, 8, 1)
  x_b = (image.means[1] + 0.3 * jax.random.normal(k_b, (64,))).reshape(8, 8, 1)
  ts = timesteps(process, 200)
  denoise = image.denoiser(process)
  run = jax.jit(lambda a, b: E.interpolate(denoise, process, a, b, ts, 7, 'heun', 1))
  path = run(x_a, x_b)
  chex.assert_shape(path, (7, 8, 8, 1))
  np.testing.assert_allclose(path[0], x_a, atol=1e-4)
  np.testing.assert_allclose(path[-1], x_b, atol=1e-4)
  means = np.asarray(jnp.mean(path, axis=(1, 2, 3)))
  stds = np.asarray(jnp.std(path, axis=(1, 2, 3)))
  assert np.all(np.abs(means) > 0.8) and np.all(np.diff(means) > 0), means
  assert np.all((stds > 0.25) & (stds < 0.4)), stds
