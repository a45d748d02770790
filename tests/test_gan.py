"""The GAN objective against theory and independent references.

The optimal discriminator (Goodfellow et al. 2014, prop. 1), the gradient penalty against finite
differences, weight clipping, spectral normalisation against numpy's SVD, the saturation of the
minimax generator loss, the loss table, PacGAN, DiffAugment, rejection sampling, the step's
bookkeeping, 1 vs 8 devices, interpolation, and the config checks.

Run as a script (`python tests/test_gan.py multidevice`, with 8 simulated CPU devices set up by
the caller's XLA_FLAGS) it prints the 1-vs-8-device comparison as JSON.
"""

import logging
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate, stats

from experiments import base
from gen import data as data_lib
from gen import objectives, train
from gen import setup as setup_lib
from gen.errors import ConfigError
from gen.models import gan as gan_models
from gen.objectives import gan

G, D = gan.G, gan.D
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(objective='gan', **fields):
  """A small unconditional GAN on ring8 (gan_mlp 32x32, batch 64, latents of 8)."""
  c = base.get_config(objective=objective)
  c.data.name = 'ring8'
  c.data.batch_size = 64
  c.model.name = 'gan_mlp'
  c.model.gan_mlp.g_features = (32, 32)
  c.model.gan_mlp.d_features = (32, 32)
  if objective == 'gan':
    c.gan.latent_dim = 8
  c.eval.metrics = ()
  for k, v in fields.items():
    c[objective][k] = v
  return c


def _make(config):
  return objectives.make(config, data_lib.get_spec(config.data.name))


def _ring8_batch(seed, n=64):
  """n points of ring8 (8 Gaussians, std 0.02, on the circle of radius 2)."""
  rng = np.random.default_rng(seed)
  centers = data_lib.get_spec('ring8').mode_centers
  x = centers[rng.integers(0, 8, n)] + 0.02 * rng.standard_normal((n, 2))
  return {'x': x.astype(np.float32)}


def _counts(opt_state):
  """Every optax `count` in an optimizer state (Adam's moments and the lr schedule's)."""
  return [int(c) for _, c in optax.tree_utils.tree_get_all_with_path(opt_state, 'count')]


# -- 1. the optimal discriminator ------------------------------------------------------------


@pytest.mark.slow
def test_discriminator_converges_to_the_optimal_discriminator():
  """Training D alone (minimax_d_loss, Adam, fresh samples each step) on p_data = N(0, 1) and
  p_g = N(1, 1.5^2) approaches D* = p_data / (p_data + p_g) (Goodfellow et al. 2014, prop. 1),
  and the loss approaches its minimum log 4 - 2 JSD(p_data || p_g)."""
  disc = gan_models.MLPDiscriminator(features=(64, 64))
  params = disc.init(jax.random.key(0), jnp.zeros((1, 1)))['params']
  steps, batch = 1000, 1024
  tx = optax.adam(optax.cosine_decay_schedule(3e-3, steps, alpha=0.03))

  def body(carry, key):
    p, opt = carry
    k1, k2 = jax.random.split(key)
    real = jax.random.normal(k1, (batch, 1))
    fake = 1.0 + 1.5 * jax.random.normal(k2, (batch, 1))
    loss_fn = lambda q: gan.minimax_d_loss(
      disc.apply({'params': q}, real), disc.apply({'params': q}, fake)
    )
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt = tx.update(grads, opt, p)
    return (optax.apply_updates(p, updates), opt), loss

  keys = jax.random.split(jax.random.key(1), steps)
  run = jax.jit(lambda c, ks: jax.lax.scan(body, c, ks))
  (params, _), losses = run((params, tx.init(params)), keys)

  x = np.linspace(-2.0, 2.5, 91)  # the bulk of both densities
  got = np.asarray(jax.nn.sigmoid(disc.apply({'params': params}, jnp.asarray(x[:, None]))))
  p_data, p_g = stats.norm.pdf(x, 0, 1), stats.norm.pdf(x, 1, 1.5)
  want = p_data / (p_data + p_g)
  err = np.max(np.abs(got - want))
  print(f'D* max |error| on [-2, 2.5]: {err:.4f}')
  assert err < 0.04, err

  def kl_to_mixture(p):
    m = lambda t: 0.5 * (stats.norm.pdf(t, 0, 1) + stats.norm.pdf(t, 1, 1.5))
    return integrate.quad(lambda t: p(t) * np.log(p(t) / m(t)), -20, 20)[0]

  jsd = 0.5 * kl_to_mixture(lambda t: stats.norm.pdf(t, 0, 1))
  jsd += 0.5 * kl_to_mixture(lambda t: stats.norm.pdf(t, 1, 1.5))
  final = float(np.mean(losses[-200:]))
  print(f'final D loss {final:.4f}, log 4 - 2 JSD = {np.log(4) - 2 * jsd:.4f}')
  assert abs(final - (np.log(4) - 2 * jsd)) < 0.01, (final, jsd)


# -- 2. penalties against finite differences and closed forms --------------------------------


def _finite_difference_penalty(d_fn, real, fake, e, h=1e-5):
  """E(||grad D(x_hat)|| - 1)^2 with the gradient from central differences per coordinate."""
  x_hat = e * real + (1 - e) * fake
  grads = np.zeros_like(x_hat)
  for j in range(x_hat.shape[1]):
    step = np.zeros_like(x_hat)
    step[:, j] = h
    grads[:, j] = (np.asarray(d_fn(x_hat + step)) - np.asarray(d_fn(x_hat - step))) / (2 * h)
  return np.mean((np.linalg.norm(grads, axis=1) - 1.0) ** 2)


def test_gradient_penalty_equals_finite_differences():
  """WGAN-GP's E(||grad D(x_hat)|| - 1)^2 vs central differences of D per input coordinate,
  in float64, at the interpolates x_hat = e x + (1 - e) G(z) of the same key."""
  disc = gan_models.MLPDiscriminator(features=(16, 16))
  key = jax.random.key(3)
  rng = np.random.default_rng(0)
  real, fake = rng.standard_normal((6, 3)), 2.0 + rng.standard_normal((6, 3))
  params32 = disc.init(jax.random.key(0), jnp.zeros((1, 3)))['params']
  with jax.enable_x64(True):
    params = jax.tree.map(lambda w: jnp.asarray(w, jnp.float64), params32)
    d_fn = jax.jit(lambda v: disc.apply({'params': params}, v))
    got = float(jax.jit(gan.gradient_penalty, static_argnums=0)(d_fn, real, fake, key))
    e = np.asarray(jax.random.uniform(key, (6, 1), jnp.float64))
    want = _finite_difference_penalty(d_fn, real, fake, e)
  print(f'gradient penalty (f64) {got:.10f}, finite differences {want:.10f}')
  assert want > 0.1  # a penalty that is not trivially zero
  np.testing.assert_allclose(got, want, rtol=1e-7)

  # the float32 path against the float64 reference at its own (float32) interpolation weights
  r32, f32 = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
  d32 = lambda v: disc.apply({'params': params32}, v)
  got32 = float(gan.gradient_penalty(d32, r32, f32, key))
  e32 = np.asarray(jax.random.uniform(key, (6, 1), jnp.float32), np.float64)
  with jax.enable_x64(True):
    want32 = _finite_difference_penalty(
      d_fn, np.asarray(r32, np.float64), np.asarray(f32, np.float64), e32
    )
  print(f'gradient penalty (f32) {got32:.7f}, finite differences {want32:.7f}')
  np.testing.assert_allclose(got32, want32, rtol=1e-5)


class TestPenaltiesClosedForm(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_linear_and_quadratic_critics(self):
    """D(x) = <w, x>: GP = (|w| - 1)^2 and R1 = |w|^2 anywhere; D(x) = |x|^2 / 2: R1 = E|x|^2."""
    w = jnp.array([0.3, -1.2, 2.0])
    x = jax.random.normal(jax.random.key(0), (32, 3))
    y = jax.random.normal(jax.random.key(1), (32, 3)) + 1.0
    linear = lambda v: v @ w
    gp = self.variant(lambda a, b: gan.gradient_penalty(linear, a, b, jax.random.key(2)))(x, y)
    np.testing.assert_allclose(gp, (np.linalg.norm(w) - 1.0) ** 2, rtol=1e-5)
    r1 = self.variant(lambda a: gan.r1_penalty(linear, a))(x)
    np.testing.assert_allclose(r1, np.sum(np.square(w)), rtol=1e-5)
    quad = lambda v: 0.5 * jnp.sum(jnp.square(v), axis=1)
    r1q = self.variant(lambda a: gan.r1_penalty(quad, a))(x)
    np.testing.assert_allclose(r1q, np.mean(np.sum(np.square(x), axis=1)), rtol=1e-5)


# -- 3. weight clipping -----------------------------------------------------------------------


@pytest.fixture(scope='module')
def wgan():
  """WGAN with weight clipping (c = 0.01, RMSProp critic, n_critic = 3, batch 48), built
  through the loop's `setup_lib.build`, and its jitted objective step (compiled once per module)."""
  config = _config(loss='wasserstein', clip_value=0.01, n_critic=3)
  config.data.batch_size = 48
  config.gan.optim_d.optimizer = 'rmsprop'
  config.gan.optim_d.lr = 5e-3
  setup = setup_lib.build(config, setup_lib.make_mesh(jax.devices()[:1]))
  return setup, jax.jit(setup.objective.step)


@pytest.mark.slow
def test_weight_clipping_bounds_every_discriminator_parameter(wgan):
  """WGAN with clip_value = 0.01: after each step every critic parameter is in [-0.01, 0.01]
  (the initial weights are not) and the bound is reached."""
  setup, step = wgan
  state = setup.objective.init(jax.random.key(0), _ring8_batch(0, 48))
  assert max(float(jnp.max(jnp.abs(w))) for w in jax.tree.leaves(state.params[D])) > 0.01
  for i in range(3):
    state, metrics = step(state, _ring8_batch(i + 1, 48), jax.random.key(i))
    for tree in (state.params[D], state.ema_params[D]):
      for w in jax.tree.leaves(tree):
        assert float(jnp.max(jnp.abs(w))) <= 0.01, float(jnp.max(jnp.abs(w)))
  kernels = [w for w in jax.tree.leaves(state.params[D]) if w.ndim == 2]
  assert any(float(jnp.max(jnp.abs(w))) == pytest.approx(0.01) for w in kernels)
  assert np.isfinite(float(metrics['wasserstein']))


# -- 4. spectral normalisation ----------------------------------------------------------------


def _power_iterate(module, variables, x, n):
  """n training-mode applications: each updates the power-iteration vectors in 'batch_stats'."""

  def body(stats_, _):
    _, new = module.apply(
      {'params': variables['params'], 'batch_stats': stats_}, x, train=True, mutable=['batch_stats']
    )
    return new['batch_stats'], None

  return jax.jit(lambda s: jax.lax.scan(body, s, None, length=n)[0])(variables['batch_stats'])


@pytest.mark.slow
@pytest.mark.parametrize(
  'module,x',
  [
    (gan_models.MLPDiscriminator(features=(32, 32), spectral_norm=True), np.zeros((1, 2))),
    (gan_models.DCGANDiscriminator(ch=8, norm='none', spectral_norm=True), np.zeros((1, 8, 8, 1))),
  ],
  ids=['mlp_dense', 'dcgan_conv'],
)
def test_spectral_norm_sigma_is_the_largest_singular_value(module, x):
  """After enough power iterations the stored sigma of every layer is numpy's largest singular
  value of the kernel reshaped to [-1, out], so kernel / sigma has spectral norm 1."""
  x = jnp.asarray(x, jnp.float32)
  variables = module.init(jax.random.key(0), x)
  sn_stats = _power_iterate(module, variables, x, 200)
  seen = set()
  for sn in sn_stats.values():
    for name, value in sn.items():
      layer, _, what = name.split('/')
      if what != 'sigma':
        continue
      kernel = np.asarray(variables['params'][layer]['kernel'], np.float64)
      matrix = kernel.reshape(-1, kernel.shape[-1])
      s = np.linalg.svd(matrix, compute_uv=False)
      sigma = float(value)
      top = np.linalg.svd(matrix / sigma, compute_uv=False)[0]
      second = s[1] if len(s) > 1 else 0.0
      print(
        f'{layer} {kernel.shape}: sigma {sigma:.6f}, svd {s[0]:.6f} (next {second:.4f}), '
        f'|kernel / sigma|_2 = {top:.6f}'
      )
      np.testing.assert_allclose(sigma, s[0], rtol=1e-4, err_msg=layer)
      np.testing.assert_allclose(top, 1.0, rtol=1e-4, err_msg=layer)
      seen.add(layer.split('_')[0])
  assert seen == ({'Dense', 'Conv'} if x.ndim == 4 else {'Dense'}), seen


@pytest.mark.slow
def test_spectral_norm_in_the_gan_step_updates_the_stored_vectors():
  """The GAN step runs D in training mode: its u vectors and sigmas (TrainState.extra) move
  towards the largest singular value of the current kernels."""
  config = _config(loss='hinge')
  config.model.gan_mlp.spectral_norm = True
  obj = _make(config)
  state = obj.init(jax.random.key(0), _ring8_batch(0))
  before = jax.tree.map(np.asarray, state.extra[D])
  step = jax.jit(obj.step)
  for i in range(40):
    state, _ = step(state, _ring8_batch(i), jax.random.key(i))
  after = state.extra[D]['batch_stats']
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  )
  for sn in after.values():
    for name, value in sn.items():
      layer, _, what = name.split('/')
      if what == 'sigma':
        kernel = np.asarray(state.params[D][layer]['kernel'])
        s = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        # one power iteration per D application against kernels that Adam keeps moving
        print(f'after 40 GAN steps {layer}: sigma {float(value):.4f}, svd {s:.4f}')
        np.testing.assert_allclose(float(value), s, rtol=0.05, err_msg=layer)


# -- 5. saturation of the minimax generator loss ---------------------------------------------


class _ShiftedCritic(nn.Module):
  """D(x) = -8 + <w, x> with w = 0.01: a discriminator that confidently rejects every sample."""

  @nn.compact
  def __call__(self, x, labels=None, train=False):
    w = self.param('w', nn.initializers.constant(0.01), (x.shape[-1],))
    return -8.0 + x @ w


def _fixed_critic_gan(loss):
  tx, lr = optax.sgd(0.1), optax.constant_schedule(0.1)
  return gan.GAN(
    generator=gan_models.MLPGenerator(out_dim=2, features=(32, 32)),
    discriminator=_ShiftedCritic(),
    loss=loss,
    tx_g=tx,
    tx_d=tx,
    lr_g=lr,
    lr_d=lr,
    ema_rate=0.0,
    shape=(2,),
    latent_dim=8,
  )


@pytest.mark.slow
@pytest.mark.parametrize('num', [1, 64])
def test_non_saturating_loss_does_not_vanish_when_d_rejects(num):
  """With f = D(G(z)) ~ -8 the minimax generator gradient is scaled by sigmoid(f) and the
  non-saturating one by 1 - sigmoid(f) (Goodfellow et al. 2014, section 3): their ratio of
  generator-gradient norms is (1 - sigmoid(f)) / sigmoid(f) = e^-f ~ 3000."""
  mm, ns = _fixed_critic_gan('minimax'), _fixed_critic_gan('non_saturating')
  state = mm.init(jax.random.key(0), {'x': jnp.zeros((num, 2))})
  key = jax.random.key(1)
  grad = lambda obj: jax.grad(obj.g_loss, has_aux=True)(state.params[G], state, num, key)
  (g_mm, (_, logits)), (g_ns, (_, logits_ns)) = grad(mm), grad(ns)
  np.testing.assert_array_equal(logits, logits_ns)
  assert np.all(np.abs(np.asarray(logits) + 8.0) < 0.5), logits
  ratio = float(optax.tree.norm(g_ns) / optax.tree.norm(g_mm))
  s = jax.nn.sigmoid(np.asarray(logits, np.float64))
  analytic = (1 - s) / s
  print(
    f'num={num}: gradient-norm ratio {ratio:.1f}, analytic (1 - s)/s in '
    f'[{analytic.min():.1f}, {analytic.max():.1f}]'
  )
  assert ratio > 100
  if num == 1:  # one example: exactly the ratio of the two scalar factors
    np.testing.assert_allclose(ratio, analytic[0], rtol=1e-3)
  else:  # per-example factors within a few % of each other
    assert 0.9 * analytic.min() < ratio < 1.1 * analytic.max(), (ratio, analytic)


# -- 6. unit checks ---------------------------------------------------------------------------


class TestLosses(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_each_loss_equals_its_formula(self):
    k1, k2 = jax.random.split(jax.random.key(0))
    r = 3.0 * jax.random.normal(k1, (257,))
    f = 3.0 * jax.random.normal(k2, (257,)) - 1.0
    r64, f64 = np.asarray(r, np.float64), np.asarray(f, np.float64)
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))
    bce = optax.sigmoid_binary_cross_entropy
    ones, zeros = jnp.ones_like(r), jnp.zeros_like(r)
    want = {
      'minimax_d': np.mean(-np.log(sig(r64))) + np.mean(-np.log(1 - sig(f64))),
      'minimax_g': np.mean(np.log(1 - sig(f64))),
      'non_saturating_g': np.mean(-np.log(sig(f64))),
      'least_squares_d': 0.5 * (np.mean((r64 - 1) ** 2) + np.mean(f64**2)),
      'least_squares_g': 0.5 * np.mean((f64 - 1) ** 2),
      'hinge_d': np.mean(np.maximum(0, 1 - r64)) + np.mean(np.maximum(0, 1 + f64)),
      'hinge_g': -np.mean(f64),
      'wasserstein_d': np.mean(f64) - np.mean(r64),
      'wasserstein_g': -np.mean(f64),
    }
    bce_forms = {
      'minimax_d': jnp.mean(bce(r, ones)) + jnp.mean(bce(f, zeros)),
      'minimax_g': -jnp.mean(bce(f, zeros)),
      'non_saturating_g': jnp.mean(bce(f, ones)),
    }
    for name, value in want.items():
      fn = getattr(gan, name + '_loss')
      args = (r, f) if name.endswith('_d') else (f,)
      got = self.variant(fn)(*args)
      chex.assert_shape(got, ())
      np.testing.assert_allclose(got, value, rtol=1e-5, err_msg=name)
      if name in bce_forms:
        np.testing.assert_allclose(got, bce_forms[name], rtol=1e-6, err_msg=name)
    assert set(gan.LOSSES) == {'minimax', 'non_saturating', 'least_squares', 'hinge', 'wasserstein'}
    assert gan.LOSSES['minimax'][:2] == (gan.minimax_d_loss, gan.minimax_g_loss)
    assert gan.LOSSES['non_saturating'][:2] == (gan.minimax_d_loss, gan.non_saturating_g_loss)
    assert [k for k, v in gan.LOSSES.items() if v[2]] == ['minimax', 'non_saturating']

  @chex.variants(with_jit=True, without_jit=True)
  def test_pack_layout(self):
    """Row i of pack(x, m) is examples i m, ..., i m + m - 1 concatenated on the last axis."""
    for shape in ((12, 2), (12, 4, 5, 3)):
      x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
      for m in (1, 2, 3, 4):
        got = np.asarray(self.variant(lambda v, m=m: gan.pack(v, m))(x))
        xn = np.asarray(x)
        want = np.stack(
          [np.concatenate([xn[i * m + j] for j in range(m)], axis=-1) for i in range(12 // m)]
        )
        chex.assert_shape(got, (12 // m, *shape[1:-1], m * shape[-1]))
        np.testing.assert_array_equal(got, want, err_msg=f'{shape} m={m}')


@pytest.mark.slow
def test_diff_augment_shapes_and_gradients():
  x = jax.random.uniform(jax.random.key(0), (16, 8, 8, 3), minval=-1.0, maxval=1.0)
  policies = [(p,) for p in gan.AUGMENTATIONS] + [gan.AUGMENTATIONS]
  k = jax.random.key(1)

  @jax.jit
  def outputs_and_grads(v):
    out = [gan.diff_augment(v, k, p) for p in policies]
    grads = [
      jax.grad(lambda u, p=p: jnp.sum(jnp.sin(gan.diff_augment(u, k, p))))(v) for p in policies
    ]
    # cutout alone is a 0/1 mask: the gradient of the sum is the mask, i.e. cutout of ones
    mask = gan.diff_augment(jnp.ones_like(v), k, ('cutout',))
    mask_grad = jax.grad(lambda u: jnp.sum(gan.diff_augment(u, k, ('cutout',))))(v)
    return out, grads, mask, mask_grad

  out, grads, mask, mask_grad = outputs_and_grads(x)
  for policy, y, grad in zip(policies, out, grads, strict=True):
    chex.assert_shape(y, x.shape)
    chex.assert_tree_all_finite((y, grad))
    assert float(jnp.sum(jnp.abs(grad))) > 0, policy
  np.testing.assert_array_equal(mask_grad, mask)
  assert 0 < float(jnp.mean(mask)) < 1


def test_translation_moves_pixels_by_at_most_an_eighth():
  """One non-zero pixel per image: after translation it is the same value, moved by at most
  1/8 of the size in each direction, or shifted out (an all-zero image)."""
  b, h = 512, 16  # shift up to 2 pixels
  rng = np.random.default_rng(0)
  x = np.zeros((b, h, h, 2), np.float32)
  rows, cols = rng.integers(0, h, b), rng.integers(0, h, b)
  values = rng.uniform(0.5, 1.0, (b, 2)).astype(np.float32)
  x[np.arange(b), rows, cols] = values
  y = np.asarray(gan.diff_augment(jnp.asarray(x), jax.random.key(0), ('translation',)))
  shifts, lost = set(), 0
  for i in range(b):
    nz = np.argwhere(np.any(y[i] != 0, axis=-1))
    if len(nz) == 0:
      lost += 1
      continue
    assert len(nz) == 1, i
    ((r, c),) = nz
    np.testing.assert_array_equal(y[i, r, c], values[i])
    assert abs(r - rows[i]) <= 2 and abs(c - cols[i]) <= 2, (i, r - rows[i], c - cols[i])
    shifts.add((int(r - rows[i]), int(c - cols[i])))
  assert len(shifts) == 25, shifts  # every shift in {-2..2}^2 occurs
  assert 0 < lost < b // 4, lost  # only pixels near the border are shifted out


@pytest.mark.parametrize('h,side', [(8, 4), (6, 3), (7, 4)])
def test_cutout_zeros_a_square_of_half_the_size(h, side):
  """Cutout zeros the intersection of a side x side square (side = round(h / 2)) with the
  image; a square fully inside zeros exactly side^2 pixels."""
  b = 2048
  y = np.asarray(gan.diff_augment(jnp.ones((b, h, h, 2)), jax.random.key(0), ('cutout',)))
  np.testing.assert_array_equal(y[..., 0], y[..., 1])  # all channels
  assert set(np.unique(y)) <= {0.0, 1.0}
  full = 0
  for i in range(b):
    zeros = y[i, :, :, 0] == 0
    r, c = np.where(zeros.any(1))[0], np.where(zeros.any(0))[0]
    assert len(r) and len(c), i
    assert zeros.sum() == len(r) * len(c), i  # a rectangle
    assert np.all(np.diff(r) == 1) and np.all(np.diff(c) == 1)
    assert len(r) <= side and len(c) <= side, (i, len(r), len(c))
    # touches the border unless it is the whole square
    if len(r) < side:
      assert r[0] == 0 or r[-1] == h - 1
    if len(c) < side:
      assert c[0] == 0 or c[-1] == h - 1
    full += zeros.sum() == side * side
  assert full > b // 5, full


def test_color_is_an_affine_map_per_image():
  """On one channel saturation is the identity: the output deviates from its mean by a
  contrast factor in [0.5, 1.5] times the input's deviation."""
  x = jax.random.uniform(jax.random.key(0), (64, 8, 8, 1), minval=-1.0, maxval=1.0)
  y = np.asarray(gan.diff_augment(x, jax.random.key(1), ('color',)), np.float64)
  xn = np.asarray(x, np.float64)
  dx = xn - xn.mean(axis=(1, 2, 3), keepdims=True)
  dy = y - y.mean(axis=(1, 2, 3), keepdims=True)
  c = np.sum(dx * dy, axis=(1, 2, 3)) / np.sum(dx * dx, axis=(1, 2, 3))
  np.testing.assert_allclose(dy, c[:, None, None, None] * dx, atol=1e-5)
  assert np.all((c >= 0.5) & (c <= 1.5)) and np.ptp(c) > 0.5, c
  assert np.ptp(y.mean(axis=(1, 2, 3)) - xn.mean(axis=(1, 2, 3))) > 0.5  # brightness


def test_rejection_sample():
  """Fixed size, rows drawn from the candidates without repeats, accepted ones first; higher
  logits are accepted more often; equal logits are each accepted with probability 1/2."""
  m, num = 100, 10
  logits = jnp.linspace(-4.0, 2.0, m)
  candidates = jnp.stack([jnp.arange(m, dtype=jnp.float32)] * 2, axis=1)  # row i = (i, i)
  keys = jax.random.split(jax.random.key(0), 400)
  run = jax.jit(
    jax.vmap(lambda k, lg, p: gan.rejection_sample(k, candidates, lg, num, p), (0, None, None))
  )
  samples, acceptance = run(keys, logits, 80.0)
  chex.assert_shape(samples, (400, num, 2))
  idx = np.asarray(samples[..., 0]).astype(int)
  np.testing.assert_array_equal(samples[..., 0], samples[..., 1])
  assert all(len(set(row)) == num for row in idx)  # no candidate twice
  # acceptance = mean sigmoid(F - gamma): >= 1/2 on the top 20% of F, < 1/2 below
  acc = np.asarray(acceptance)
  assert np.all((acc >= 0) & (acc <= 1))
  assert 0.1 < acc.mean() < 0.6, acc.mean()
  # F increases with the logit: the top decile is picked far more often than the bottom one
  freq = np.bincount(idx.ravel(), minlength=m) / len(keys)
  print(
    f'DRS: mean acceptance {acc.mean():.3f}; pick rate bottom decile {freq[:10].mean():.3f}, '
    f'top decile {freq[-10:].mean():.3f}'
  )
  assert freq[-10:].mean() > 5 * freq[:10].mean()
  assert np.mean(np.diff(freq) >= -0.05) > 0.9  # monotone up to sampling noise

  # equal logits: F = gamma for every candidate, accepted with probability sigmoid(0) = 1/2
  _, acc_eq = run(keys, jnp.zeros(m), 80.0)
  assert abs(float(jnp.mean(acc_eq)) - 0.5) < 0.01, float(jnp.mean(acc_eq))

  # half the logits at 0, half at -100, gamma at the 60th percentile: F - gamma is 0 on the high
  # half (accepted w.p. 1/2, about 25 of 50) and ~ -114 on the low half (sigmoid underflows to
  # 0: never accepted), so the 10 returned rows are high-logit candidates, the accepted first
  two = jnp.where(jnp.arange(m) % 2 == 0, 0.0, -100.0)
  samples2, acc2 = run(keys, two, 60.0)
  print(
    f'DRS: equal logits acceptance {float(jnp.mean(acc_eq)):.4f} (1/2); two levels '
    f'{float(jnp.mean(acc2)):.4f} (1/4)'
  )
  assert np.all(np.asarray(samples2[..., 0]).astype(int) % 2 == 0)
  assert abs(float(jnp.mean(acc2)) - 0.25) < 0.015, float(jnp.mean(acc2))


@pytest.mark.slow
def test_step_bookkeeping_n_critic_and_determinism(wgan):
  """n_critic = 3: three discriminator optimizer steps and one generator step per GAN step;
  objective.step leaves state.step alone (the loop's train_step increments it); the step is a
  function of (state, batch, key)."""
  setup, step = wgan
  batch = _ring8_batch(0, 48)
  state0 = setup.objective.init(jax.random.key(0), batch)
  assert _counts(state0.opt_state[D]) and set(_counts(state0.opt_state[D])) == {0}
  assert _counts(state0.opt_state[G]) and set(_counts(state0.opt_state[G])) == {0}
  s1, metrics = step(state0, batch, jax.random.key(1))
  assert set(_counts(s1.opt_state[D])) == {3}, _counts(s1.opt_state[D])
  assert set(_counts(s1.opt_state[G])) == {1}, _counts(s1.opt_state[G])
  assert int(s1.step) == 0
  s2, _ = step(s1, _ring8_batch(1, 48), jax.random.key(2))
  assert set(_counts(s2.opt_state[D])) == {6} and set(_counts(s2.opt_state[G])) == {2}
  assert {'loss/discriminator', 'loss/generator', 'wasserstein'} <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())

  again, metrics_again = step(state0, batch, jax.random.key(1))
  chex.assert_trees_all_equal(again, s1)
  chex.assert_trees_all_equal(metrics_again, metrics)
  other, _ = step(state0, batch, jax.random.key(7))
  assert not np.array_equal(other.params[G]['Dense_0']['kernel'], s1.params[G]['Dense_0']['kernel'])

  train_step = train.make_train_step(setup)
  state = setup_lib.init_state(setup)
  base_key = jax.random.key(setup.config.seed)
  for want in (1, 2):
    state, _ = train_step(state, setup_lib.to_global(batch, setup.batch_sharding), base_key)
    assert int(state.step) == want
  assert set(_counts(state.opt_state[D])) == {6} and set(_counts(state.opt_state[G])) == {2}


@pytest.mark.slow  # > 5 s of compiling: the full suite only
def test_interpolation_endpoints():
  """[8, 2 num, *shape]; frames 0 and 7 are G(z0) and G(z1) on the linear (rows < num) and the
  spherical rows alike."""
  obj = _make(_config())
  state = obj.init(jax.random.key(0), _ring8_batch(0))
  num, rng = 5, jax.random.key(3)
  frames = np.asarray(jax.jit(obj.interpolation, static_argnums=2)(state, rng, num))
  chex.assert_shape(frames, (gan.INTERPOLATION_FRAMES, 2 * num, 2))
  assert gan.INTERPOLATION_FRAMES == 8
  k0, k1 = jax.random.split(rng)  # the latents' keys, as in GAN.interpolation
  g = lambda k: obj.generator.apply(
    {'params': state.ema_params[G]}, jax.random.normal(k, (num, obj.latent_dim))
  )
  for frame, k in ((0, k0), (7, k1)):
    want = np.asarray(g(k))
    np.testing.assert_allclose(frames[frame, :num], want, atol=1e-5, err_msg=f'linear {frame}')
    np.testing.assert_allclose(frames[frame, num:], want, atol=1e-5, err_msg=f'slerp {frame}')
  # the middle frames differ between straight lines and great circles
  assert np.max(np.abs(frames[3, :num] - frames[3, num:])) > 1e-4


@pytest.mark.slow
def test_one_and_eight_devices_agree(eight_devices):
  """Three GAN steps (spectral-norm vectors updated, n_critic 2) on 1 device and on 8."""
  config = _config(n_critic=2)
  config.model.gan_mlp.g_features = config.model.gan_mlp.d_features = (16, 16)
  config.model.gan_mlp.spectral_norm = True
  results = {}
  for n in (1, 8):
    setup = setup_lib.build(config, setup_lib.make_mesh(eight_devices[:n]))
    state = setup_lib.init_state(setup)
    step = train.make_train_step(setup)
    base_key = jax.random.key(config.seed)
    losses = []
    for i in range(3):
      batch = setup_lib.to_global(_ring8_batch(i), setup.batch_sharding)
      state, metrics = step(state, batch, base_key)
      losses.append([float(metrics['loss/discriminator']), float(metrics['loss/generator'])])
    results[n] = (jax.device_get(state), losses)
  leaves = [jax.tree.leaves(results[n][0]) for n in (1, 8)]
  diffs = [
    float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in zip(*leaves, strict=True)
  ]
  # same keys and data on any device count: only the order of float reductions differs
  np.testing.assert_allclose(results[1][1], results[8][1], rtol=1e-5, atol=1e-6)
  assert max(diffs) < 1e-5, max(diffs)


# -- 7. config errors -------------------------------------------------------------------------


def _set(config, path, value):
  *parents, leaf = path.split('.')
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


CONFIG_ERRORS = {
  'unknown_loss': ({'gan.loss': 'relativistic'}, 'gan.loss'),
  'gp_with_batch_norm': (
    {'gan.gp_weight': 10.0, 'model.gan_mlp.d_norm': 'batch'},
    'model.gan_mlp.d_norm',
  ),
  'batch_not_multiple': (
    {'gan.n_critic': 5, 'gan.pack': 2, 'data.batch_size': 64},
    'data.batch_size',
  ),
  'augment_points': ({'gan.augment': 'translation'}, 'gan.augment'),
  'unknown_augment': (
    {'data.name': 'digits', 'model.name': 'dcgan', 'gan.augment': 'color,flip'},
    'gan.augment',
  ),
  'drs_with_hinge': (
    {'gan.loss': 'hinge', 'gan.sample.rejection_sampling': True},
    'gan.sample.rejection_sampling',
  ),
  'conditional_ring8': ({'gan.conditional': True}, 'gan.conditional'),
  'unet_with_gan': ({'model.name': 'unet'}, 'model.name'),
  'unknown_optim_d': ({'gan.optim_d.optimizer': 'sgd'}, 'gan.optim_d.optimizer'),
  'dcgan_on_points': ({'model.name': 'dcgan'}, 'model.name'),
  'bad_d_norm': ({'model.gan_mlp.d_norm': 'group'}, 'model.gan_mlp.d_norm'),
  'n_critic_zero': ({'gan.n_critic': 0}, 'gan.n_critic'),
}


def test_a_gan_pair_with_the_diffusion_objective_is_refused():
  message = r"model\.name='gan_mlp' is a network of kind 'gan_pair'; objective\.name='diffusion'"
  with pytest.raises(ConfigError, match=message):
    _make(_config('diffusion'))


@pytest.mark.parametrize('case', sorted(CONFIG_ERRORS))
def test_config_errors_name_the_field(case, caplog):
  """gen.objectives.make raises a ConfigError naming the field; on the GAN path, having traced
  and compiled nothing (the diffusion path builds its process's jnp tables first)."""
  overrides, field = CONFIG_ERRORS[case]
  config = _config()
  for path, value in overrides.items():
    _set(config, path, value)
  with jax.log_compiles(True), caplog.at_level(logging.DEBUG, logger='jax'):
    with pytest.raises(ConfigError, match=field.replace('.', r'\.')):
      _make(config)
  if config.objective.name == 'gan':
    assert 'Compiling' not in caplog.text and 'tracing' not in caplog.text, caplog.text


def test_valid_configs_build():
  """The defaults and a few combinations the checks must let through."""
  for overrides in (
    {},
    {'gan.loss': 'wasserstein', 'gan.gp_weight': 10.0, 'gan.n_critic': 4},
    {'gan.pack': 4, 'gan.loss': 'least_squares'},
    {'gan.sample.rejection_sampling': True, 'gan.loss': 'minimax'},
    {
      'data.name': 'digits',
      'model.name': 'dcgan',
      'gan.augment': 'color, translation,cutout',
    },
    {'data.name': 'digits', 'model.name': 'dcgan', 'gan.conditional': True},
  ):
    config = _config()
    for path, value in overrides.items():
      _set(config, path, value)
    assert isinstance(_make(config), gan.GAN), overrides
