"""DDPM numerics against closed forms: the process, the loss, and the sampler on Gaussian data."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives import diffusion
from gen.processes import parameterization as P
from gen.processes.discrete import linear_schedule
from gen.samplers import timesteps
from gen.samplers.ddpm import ddpm_sample


def test_linear_schedule_matches_numpy():
  process = linear_schedule(1000, 1e-4, 0.02)
  betas = np.linspace(1e-4, 0.02, 1000)
  abar = np.cumprod(1 - betas)
  np.testing.assert_allclose(process.alphas_cumprod, abar, rtol=1e-5)
  x0 = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
  eps = np.array([[0.3, 0.1], [-1.0, 2.0]], np.float32)
  t = np.array([0, 999])
  want = np.sqrt(abar[t])[:, None] * x0 + np.sqrt(1 - abar[t])[:, None] * eps
  np.testing.assert_allclose(process.add_noise(x0, t, eps), want, rtol=1e-5)
  # abar_T is tiny: x_T is pure noise, as DDPM assumes.
  assert abar[-1] < 1e-4


class TestLoss(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_eps_predictor_has_loss_one(self):
    """eps ~ N(0, I) and eps_hat = 0 give E||eps||^2 / D = 1 whatever x0 and t ('eps' = DDPM)."""
    process = linear_schedule(100)
    x0 = jax.random.normal(jax.random.key(1), (4096, 2)) * 3.0

    def loss(key):
      k_t, k_eps = jax.random.split(key)
      t = diffusion.sample_times('uniform', process, k_t, x0.shape[0])
      eps = jax.random.normal(k_eps, x0.shape)
      x0_fn = lambda x_t, tt: P.to_x0_eps('eps', jnp.zeros_like(x_t), x_t, tt, process)[0]
      w = diffusion.loss_weight('eps', process, t)
      return diffusion.denoising_loss(x0_fn, process, x0, t, eps, w)

    value = self.variant(loss)(jax.random.key(2))
    chex.assert_shape(value, ())
    assert abs(float(value) - 1.0) < 0.03

  @chex.variants(with_jit=True, without_jit=True)
  def test_oracle_predictor_has_zero_loss(self):
    process = linear_schedule(100)
    x0 = jax.random.normal(jax.random.key(1), (64, 8, 8, 1))
    t = diffusion.sample_times('uniform', process, jax.random.key(3), 64)
    eps = jax.random.normal(jax.random.key(4), x0.shape)
    w = diffusion.loss_weight('eps', process, t)
    value = self.variant(
      lambda: diffusion.denoising_loss(lambda a, b: x0, process, x0, t, eps, w)
    )()
    assert float(value) < 1e-8


def test_ancestral_sampler_recovers_a_gaussian():
  """With the exact eps of N(mu, s^2) data the reverse chain must return N(mu, s^2).

  For x0 ~ N(mu, s^2): x_t ~ N(alpha mu, alpha^2 s^2 + sigma^2) and
  E[eps | x_t] = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2) (Gaussian conditioning).
  """
  mu, s = 1.5, 0.5
  process = linear_schedule(1000)

  def denoise(x, t):
    alpha, sigma = process.marginal(t)
    alpha, sigma = alpha[:, None], sigma[:, None]
    eps = sigma * (x - alpha * mu) / (alpha**2 * s**2 + sigma**2)
    return (x - sigma * eps) / alpha, eps

  x_T = jax.random.normal(jax.random.key(0), (20_000, 1))
  ts = timesteps(process, 1000)
  run = lambda x, k: ddpm_sample(denoise, process, x, k, ts, variance='beta').samples
  x0 = jax.jit(run)(x_T, jax.random.key(1))
  chex.assert_shape(x0, (20_000, 1))
  chex.assert_tree_all_finite(x0)
  # Standard errors: 0.5 / sqrt(2e4) = 0.0035 for the mean, ~0.0025 for the std.
  assert abs(float(jnp.mean(x0)) - mu) < 0.02
  assert abs(float(jnp.std(x0)) - s) < 0.02


def test_ema_update_and_grad_norm():
  params = {'w': jnp.array([1.0, 2.0])}
  tx, _ = state_lib.make_optimizer(lr=0.1)
  state = state_lib.create_state({'net': params}, {'net': tx})
  grads = {'w': jnp.array([3.0, 4.0])}
  new, norm = state_lib.apply_gradients(state, 'net', grads, tx, ema_rate=0.9)
  assert float(norm) == pytest.approx(5.0)
  p = new.params['net']['w']
  # Adam's first step moves each weight by lr against the gradient sign.
  np.testing.assert_allclose(p, [0.9, 1.9], rtol=1e-5)
  np.testing.assert_allclose(new.ema_params['net']['w'], 0.9 * params['w'] + 0.1 * p, rtol=1e-6)


@pytest.mark.parametrize(
  'kwargs, field',
  [
    ({'lr': 0.0}, 'optim.lr'),
    ({'lr': 1e-3, 'b1': 1.0}, 'optim.b1'),
    ({'lr': 1e-3, 'schedule': 'step'}, 'optim.schedule'),
  ],
)
def test_optimizer_rejects_bad_values(kwargs, field):
  with pytest.raises(ConfigError, match=field.replace('.', r'\.')):
    state_lib.make_optimizer(**kwargs)
