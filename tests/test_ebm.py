"""The EBM objective against closed forms and brute force.

Maximum likelihood by contrastive divergence and exact score matching on E(x) = theta x^2 / 2
(both recover the data's precision), sliced score matching's expectation (= exact SM), the
denoising score matching optimum (the score of the noised data), a tiny RBM's CD-k gradient
against the exact log-likelihood gradient by enumeration, Langevin and MALA on N(0, 1), the
replay buffer's bookkeeping, and the config checks.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import base
from gen import data as data_lib
from gen import objectives
from gen.errors import ConfigError
from gen.models import energy as energy_lib
from gen.objectives import ebm, rbm

# -- 1. the worked example: E(x) = theta x^2 / 2 on N(0, 0.5^2) ------------------------------


def _quadratic_energy(theta, x):
  """E(x) = theta |x|^2 / 2, [B, D] -> [B]; p_theta = N(0, 1/theta)."""
  return 0.5 * theta * jnp.sum(jnp.square(x), axis=1)


def _gaussian_data(num=4096, std=0.5, seed=0):
  x = std * jax.random.normal(jax.random.key(seed), (num, 1))
  return x, float(1.0 / jnp.mean(jnp.square(x)))  # theta* = 1 / mean(x^2) of the sample


def test_contrastive_divergence_with_exact_negatives_is_maximum_likelihood():
  """With negatives drawn exactly from p_theta = N(0, 1/theta) under stop_gradient, the CD
  loss's gradient 0.5 (mean x+^2 - mean x-^2) is an unbiased estimate of the NLL gradient
  0.5 (mean x^2 - 1/theta): Adam on theta reaches the maximum-likelihood theta* = 1/mean(x^2)
  (= 1/E[x^2] = 4 in the population)."""
  x, theta_star = _gaussian_data()
  steps, num_neg = 400, 8192
  tx = optax.adam(optax.cosine_decay_schedule(0.1, steps, alpha=0.01))

  def loss_fn(theta, key):
    neg = jax.random.normal(key, (num_neg, 1)) / jnp.sqrt(jax.lax.stop_gradient(theta))
    neg = jax.lax.stop_gradient(neg)
    e_pos, e_neg = _quadratic_energy(theta, x), _quadratic_energy(theta, neg)
    return ebm.contrastive_divergence_loss(e_pos, e_neg, alpha=0.0)[0]

  def body(carry, key):
    theta, opt_state = carry
    grad = jax.grad(loss_fn)(theta, key)
    updates, opt_state = tx.update(grad, opt_state)
    theta = optax.apply_updates(theta, updates)
    return (theta, opt_state), theta

  theta0 = jnp.asarray(1.0)
  keys = jax.random.split(jax.random.key(1), steps)
  _, path = jax.jit(lambda k: jax.lax.scan(body, (theta0, tx.init(theta0)), k))(keys)
  theta = float(jnp.mean(path[-50:]))
  print(f'CD: theta={theta:.4f}, theta*={theta_star:.4f}')
  # the negatives' noise in mean x-^2 is sqrt(2 / 8192) theta^-1 = 0.4% of it per step; Adam's
  # decayed steps and the average of the last 50 iterates leave much less
  assert abs(theta - theta_star) < 0.005 * theta_star, (theta, theta_star)
  assert abs(theta_star - 4.0) < 0.2  # the sample's 1/mean(x^2): 4 +- 0.09 (one s.e.)


def test_exact_score_matching_recovers_the_precision():
  """s(x) = -theta x: J = 0.5 theta^2 mean(x^2) - theta, minimised at theta* = 1/mean(x^2)."""
  x, theta_star = _gaussian_data()
  m = float(jnp.mean(jnp.square(x)))
  score = lambda theta: lambda y: -theta * y
  loss, terms = ebm.exact_score_matching_loss(score(2.5), x)
  chex.assert_trees_all_close(loss, 0.5 * 2.5**2 * m - 2.5, rtol=1e-5)
  chex.assert_trees_all_close(terms['sm_trace'], -2.5, rtol=1e-6)
  # gradient descent (the loss's curvature is m = 0.25: lr 2 halves the error per step)
  tx = optax.sgd(2.0)

  def body(carry, _):
    theta, opt_state = carry
    grad = jax.grad(lambda t: ebm.exact_score_matching_loss(score(t), x)[0])(theta)
    updates, opt_state = tx.update(grad, opt_state)
    return (optax.apply_updates(theta, updates), opt_state), None

  theta0 = jnp.asarray(1.0)
  (theta, _), _ = jax.jit(lambda: jax.lax.scan(body, (theta0, tx.init(theta0)), None, 60))()
  print(f'exact SM: theta={float(theta):.6f}, theta*={theta_star:.6f}')
  chex.assert_trees_all_close(theta, theta_star, rtol=1e-5)


# -- 2. sliced score matching's expectation is exact score matching ------------------------


def _random_score(kind, dim=3, seed=0):
  """A fixed nonlinear score: a random ScoreMLP (non-symmetric Jacobian), or -grad of a random
  EnergyMLP scaled by 5 (a symmetric Jacobian, |s| ~ 1.7 on the points below)."""
  if kind == 'score_mlp':
    net = energy_lib.ScoreMLP(features=(16, 16))
    params = net.init(jax.random.key(seed), jnp.zeros((1, dim)))
    return lambda x: net.apply(params, x)
  net = energy_lib.EnergyMLP(features=(16, 16))
  params = net.init(jax.random.key(seed), jnp.zeros((1, dim)))
  return lambda x: -jax.grad(lambda y: 5.0 * jnp.sum(net.apply(params, y)))(x)


def _variance_gap(score_fn, x, projection):
  """Var[plain] - Var[VR] of the batch-mean loss with one projection per example:
  Var(0.5 (v.s)^2) + 2 Cov(v^T J v, 0.5 (v.s)^2) = sum_ij m_ij (0.5 s_i^2 s_j^2 + 2 J_ij s_i s_j)
  per example over B^2, with m = 1 for Gaussian v and the off-diagonal for Rademacher v (whose
  v_i^2 = 1 carry no variance). So VR is not always better: for Gaussian v it loses where
  s^T J s < -|s|^4 / 4 (small scores with a contracting Jacobian); here |s| is large enough."""
  s = score_fn(x)
  jac = jax.vmap(jax.jacfwd(lambda y: score_fn(y[None])[0]))(x)  # [B, D, D]
  d = x.shape[1]
  m = jnp.ones((d, d)) - (jnp.eye(d) if projection == 'rademacher' else 0.0)
  ss = jnp.einsum('bi,bj->bij', s, s)
  return jnp.sum(m * (0.5 * ss**2 + 2 * jac * ss)) / x.shape[0] ** 2


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['score_mlp', 'energy_mlp'])
def test_sliced_score_matching_is_unbiased_and_vr_reduces_variance(kind):
  """E_v[sliced SM] = exact SM (E[v v^T] = I) for Rademacher and Gaussian v, plain and
  variance-reduced, over 2,000 draws of one projection per example; SSM-VR's variance is lower
  by the closed-form gap of `_variance_gap`, and Rademacher's is below Gaussian's (no diagonal
  term in Hutchinson's estimator)."""
  score_fn = _random_score(kind)
  x = 1.5 * jax.random.normal(jax.random.key(1), (16, 3))
  num, num_many = 2000, 2000
  configs = list(itertools.product(ebm.PROJECTIONS, (False, True)))

  @jax.jit
  def run(keys, key_many):
    sliced = {}
    for projection, vr in configs:  # the same projections for plain and VR
      one = lambda k, p=projection, vr=vr: ebm.sliced_score_matching_loss(score_fn, x, k, 1, p, vr)
      sliced[projection, vr] = jax.vmap(one)(keys)
    many = ebm.sliced_score_matching_loss(score_fn, x, key_many, num_many, 'gaussian')[0]
    gaps = {p: _variance_gap(score_fn, x, p) for p in ebm.PROJECTIONS}
    return ebm.exact_score_matching_loss(score_fn, x), sliced, many, gaps

  (exact, exact_terms), sliced, many, gaps = run(
    jax.random.split(jax.random.key(2), num), jax.random.key(3)
  )
  exact, variances = float(exact), {}
  for (projection, vr), (losses, terms) in sliced.items():
    mean, std = float(jnp.mean(losses)), float(jnp.std(losses))
    se = std / np.sqrt(num)
    variances[projection, vr] = std**2
    print(
      f'{kind} {projection} vr={vr}: {mean:.5f} - exact {exact:.5f} = {mean - exact:+.5f}', end=''
    )
    print(f', s.e. {se:.5f}, variance {std**2:.4g}')
    assert abs(mean - exact) < 4 * se, (projection, vr, mean, exact, se)
    if vr:  # the norm term is exact; only the trace is estimated
      chex.assert_trees_all_close(terms['sm_norm'][0], exact_terms['sm_norm'], rtol=1e-5)
  for projection in ebm.PROJECTIONS:
    gap, want = variances[projection, False] - variances[projection, True], float(gaps[projection])
    print(f'{kind} {projection}: variance gap {gap:.4g}, closed form {want:.4g}')
    assert variances[projection, True] < 0.5 * variances[projection, False], variances
    # variances of 2,000 draws: a few % s.e.; the gap (same draws) is sharper
    assert abs(gap - want) < 0.15 * want, (projection, gap, want)
  assert variances['rademacher', True] < variances['gaussian', True], variances
  # many projections in one call: averaged over them per example
  many_se = np.sqrt(variances['gaussian', True] / num_many)
  print(f'{kind} {num_many} Gaussian projections: {float(many) - exact:+.5f}, s.e. {many_se:.5f}')
  assert abs(float(many) - exact) < 4 * many_se


# -- 3. the denoising score matching optimum is the score of the noised data ------------------


def test_denoising_score_matching_optimum_is_the_noised_score():
  """Data N(mu, v) per coordinate, s(x) = -a (x - b): the DSM minimiser is the score of
  N(mu, v + sigma^2), a = 1/(v + sigma^2), b = mu, not the data's a = 1/v. The sampled loss is
  quadratic in (a, c = a b): one Newton step from anywhere is its exact minimiser in exact
  arithmetic; in float32 the (a, c) pair is ill-conditioned (the data's mean is far from 0), so a
  second step refines the first (the first one's gradient is ~7e-4 on some CPUs)."""
  mu, var, sigma = jnp.asarray([1.5, -0.5]), jnp.asarray([0.25, 1.0]), 0.5
  num = 200_000
  x = mu + jnp.sqrt(var) * jax.random.normal(jax.random.key(0), (num, 2))
  key = jax.random.key(1)

  def loss(p):  # p = (a, c): s(x) = -a x + c
    a, c = p[:2], p[2:]
    return ebm.denoising_score_matching_loss(lambda y: -a * y + c, x, key, sigma)[0]

  @jax.jit
  def newton(p0):
    p = p0 - jnp.linalg.solve(jax.hessian(loss)(p0), jax.grad(loss)(p0))
    return p, jax.grad(loss)(p)

  p, _ = newton(jnp.asarray([1.0, 1.0, 0.0, 0.0]))
  p, grad = newton(p)
  assert float(jnp.max(jnp.abs(grad))) < 1e-4  # a stationary point
  a, b = p[:2], p[2:] / p[:2]
  print(f'DSM: a={np.asarray(a)} (want {np.asarray(1.0 / (var + sigma**2))}), b={np.asarray(b)}')
  # s.e.: a's (regression slopes) sqrt((1/sigma^2 - a) / (N (v + sigma^2))) = 0.2%, 0.5%;
  # b's about 0.003, 0.005
  chex.assert_trees_all_close(a, 1.0 / (var + sigma**2), rtol=0.02)
  chex.assert_trees_all_close(b, mu, atol=0.02)
  assert jnp.all(jnp.abs(a - 1.0 / var) > 0.15)  # far from the clean data's score


# -- 4. the RBM: CD-k against the exact likelihood gradient ---------------------------------

V, H = 4, 3
ALL_V = np.asarray(list(itertools.product((0, 1), repeat=V)), np.float32)  # [16, V]
ALL_H = np.asarray(list(itertools.product((0, 1), repeat=H)), np.float32)  # [8, H]


def _rbm(seed=0, scale=1.5):
  kw, kb, kc = jax.random.split(jax.random.key(seed), 3)
  return {
    'w': scale * jax.random.normal(kw, (V, H)),
    'b': jax.random.normal(kb, (V,)),
    'c': jax.random.normal(kc, (H,)),
  }


def _free_energy(params, v):
  return energy_lib.RBM(num_hidden=H).apply({'params': params}, v)


RBM_DATA = np.asarray(
  [[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 1, 1], [1, 0, 0, 1], [1, 1, 0, 0]],
  np.float32,
)


def test_rbm_free_energy_and_conditionals_sum_out_the_hidden_units():
  """exp(-F(v)) = sum_h exp(-E(v, h)) with E = -b.v - c.h - v W h, and the conditionals are
  the joint's, all by enumeration of the 2^(V+H) states."""

  @jax.jit
  def pairs(params):  # (the module's, by enumeration of the joint)
    joint = -(
      ALL_V @ params['b'][:, None]
      + (ALL_H @ params['c'])[None, :]
      + jnp.einsum('vi,ij,hj->vh', ALL_V, params['w'], ALL_H)
    )  # E(v, h) [16, 8]
    p_h = jax.nn.softmax(-joint, axis=1)  # p(h | v)
    p_v = jax.nn.softmax(-joint, axis=0)  # p(v | h)
    return {
      'free_energy': (_free_energy(params, ALL_V), -jax.nn.logsumexp(-joint, axis=1)),
      'p(h|v)': (energy_lib.rbm_hidden_probs(params, ALL_V), p_h @ ALL_H),
      'p(v|h)': (energy_lib.rbm_visible_probs(params, ALL_H), p_v.T @ ALL_V),
    }

  for name, (got, want) in pairs(_rbm()).items():
    chex.assert_trees_all_close(got, want, atol=1e-5, custom_message=name)


@pytest.mark.slow
def test_rbm_cd_k_gradient_approaches_the_exact_likelihood_gradient():
  """grad log-likelihood = -mean grad F(data) + E_p[grad F] (log Z by enumeration over the
  2^V visible states). CD-k's gradient of mean F(v+) - mean F(v-), v- after k Gibbs sweeps from
  the data, is biased at k = 1 and tends to -grad LL as k grows; its chains reach p(v)."""
  params = _rbm()

  def log_likelihood(p):
    log_z = jax.nn.logsumexp(-_free_energy(p, ALL_V))
    return jnp.mean(-_free_energy(p, RBM_DATA)) - log_z

  exact = jax.jit(jax.grad(log_likelihood))(params)
  reps = 4000
  starts = jnp.tile(RBM_DATA, (reps, 1))  # 24,000 chains

  sweep = jax.jit(lambda v, key: energy_lib.gibbs_chain(params, v, key, 1)[0])

  @jax.jit
  def cd_grad(neg):
    cd = lambda p: jnp.mean(_free_energy(p, RBM_DATA)) - jnp.mean(_free_energy(p, neg))
    return jax.grad(cd)(params)

  flat = lambda g: jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(g)])
  errors, neg = {}, starts
  for k, key in enumerate(jax.random.split(jax.random.key(1), 50), start=1):
    neg = sweep(neg, key)  # the chains after k sweeps (CD-k)
    if k in (1, 2, 3, 5, 10, 50):
      errors[k] = float(jnp.linalg.norm(flat(cd_grad(neg)) + flat(exact)))
  print(f'RBM: |exact grad|={float(jnp.linalg.norm(flat(exact))):.4f}, CD-k errors', end=' ')
  print({k: round(e, 4) for k, e in errors.items()})
  # Monte Carlo noise: each of the 19 components has s.e. <= 0.5 / sqrt(24000) = 0.003
  assert errors[1] > errors[2] > errors[50] and errors[1] > 10 * errors[50], errors
  assert errors[50] < 0.025, errors
  # the k = 50 chains are samples of p(v) = exp(-F(v)) / Z
  index = (neg @ (2.0 ** jnp.arange(V - 1, -1, -1))).astype(jnp.int32)
  empirical = jnp.bincount(index, length=2**V) / index.shape[0]
  tv = 0.5 * float(jnp.sum(jnp.abs(empirical - jax.nn.softmax(-_free_energy(params, ALL_V)))))
  print(f'RBM: total variation of the k=50 chains to p(v): {tv:.4f}')
  assert tv < 0.03, tv


# -- 5. Langevin and MALA negatives on N(0, 1) ------------------------------------------------


class TestLangevinNegatives(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_standard_normal(self):
    """E(x) = x^2 / 2 (score -x), 20,000 chains from zeros, a = 0.05, 500 steps."""
    energy = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=1)
    run = self.variant(
      lambda key: ebm.langevin_negatives(energy, jnp.zeros((20_000, 1)), key, 500, 0.05)
    )
    x, stats, path = run(jax.random.key(0))
    assert path is None and set(stats) == {'chain_grad_norm'}
    mean, std = float(jnp.mean(x)), float(jnp.std(x))
    print(f'Langevin a=0.05: mean {mean:.4f} std {std:.4f}')
    # ULA's stationary variance for N(0, 1) is 1 / (1 - a/4): std 1.0063; s.e. 0.007, 0.005
    assert abs(mean) < 0.03 and abs(std - 1.0063) < 0.02, (mean, std)

  def test_mala_is_exact_where_ula_is_biased(self):
    """At a = 1 ULA's stationary law is N(0, 1 / (1 - a/4)) (std 1.155); the Metropolis
    correction keeps N(0, 1) exactly, rejecting a fraction of the proposals."""
    energy = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=1)
    x0 = jnp.zeros((20_000, 1))
    key = jax.random.key(1)
    run = jax.jit(
      lambda mala: ebm.langevin_negatives(energy, x0, key, 200, 1.0, mala=mala)[:2],
      static_argnums=0,
    )
    ula, _ = run(False)
    mala, stats = run(True)
    ula_std, mala_std = float(jnp.std(ula)), float(jnp.std(mala))
    acc = float(stats['mala_acceptance'])
    print(f'a=1: ULA std {ula_std:.4f}, MALA mean {float(jnp.mean(mala)):.4f} std {mala_std:.4f}')
    print(f'MALA acceptance {acc:.3f}')
    assert abs(ula_std - 1 / np.sqrt(0.75)) < 0.02, ula_std
    assert abs(mala_std - 1.0) < 0.03 and abs(float(jnp.mean(mala))) < 0.03, mala_std
    assert 0.0 < acc < 1.0, acc

  def test_step_clip_bounds_and_trajectory(self):
    """Noiseless steps x <- clamp(x - (a/2) clip(grad E, -c, c), bounds); the path; the mean
    gradient norm over steps and chains."""
    energy = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=1)
    x0 = jnp.asarray([[10.0, 0.5], [-0.4, -8.0]])
    key = jax.random.key(0)
    x, stats, path = ebm.langevin_negatives(
      energy, x0, key, 2, 0.4, noise_scale=0.0, grad_clip=1.0, bounds=(-2.0, 2.0), trajectory=True
    )
    step = lambda y: jnp.clip(y - 0.2 * jnp.clip(y, -1.0, 1.0), -2.0, 2.0)
    x1 = step(x0)
    chex.assert_trees_all_close(x1, jnp.asarray([[2.0, 0.4], [-0.32, -2.0]]), atol=1e-6)
    chex.assert_shape(path, (2, 2, 2))
    chex.assert_trees_all_close(path[0], x1, atol=1e-6)
    chex.assert_trees_all_close(path[1], x, step(x1), atol=1e-6)
    norms = jnp.linalg.norm(jnp.stack([x0, x1]), axis=-1)  # the unclipped gradients, per step
    chex.assert_trees_all_close(stats['chain_grad_norm'], jnp.mean(norms), rtol=1e-6)
    # no gradient flows through the negatives
    g = jax.grad(lambda y: jnp.sum(ebm.langevin_negatives(energy, y, key, 2, 0.1)[0]))(x0)
    chex.assert_trees_all_equal(g, jnp.zeros_like(x0))


# -- 6. the objective: replay buffer, data starts ----------------------------------------------

BATCH, BUFFER, K = 16, 48, 3


def _config(objective='ebm', **fields):
  """A small CD EBM on ring8: energy_mlp 16x16, batch 16, a 48-chain buffer, 3 steps."""
  c = base.get_config(objective=objective)
  c.data.name = 'ring8'
  c.data.batch_size = BATCH
  c.model.name = 'energy_mlp'
  c.model.energy_mlp.features = (16, 16)
  c.eval.metrics = ()
  if objective == 'ebm':
    c.ebm.loss = 'cd'
    c.ebm.chain_init = 'buffer'
    c.ebm.buffer_size = BUFFER
    c.ebm.chain_steps = K
    c.ebm.step_size = 0.01
  for k, v in fields.items():
    c[objective][k] = v
  return c


def _make(config):
  return objectives.make(config, data_lib.get_spec(config.data.name))


def _ring8_batch(seed, n=BATCH):
  rng = np.random.default_rng(seed)
  centers = data_lib.get_spec('ring8').mode_centers
  x = centers[rng.integers(0, 8, n)] + 0.02 * rng.standard_normal((n, 2))
  return {'x': jnp.asarray(x, jnp.float32)}


def _buffer_draws(key):
  """The keys of EBM.step's buffer indices, re-init flags, noise starts and chains."""
  k_neg, _ = jax.random.split(key)
  k_idx, k_re, k_noise, k_chain = jax.random.split(k_neg, 4)
  return k_idx, k_re, k_noise, k_chain


@pytest.mark.slow
@pytest.mark.parametrize('reinit_prob', [1.0, 0.0])
def test_replay_buffer_is_written_at_the_sampled_indices(reinit_prob):
  model = _make(_config(reinit_prob=reinit_prob))
  batch = _ring8_batch(0)
  state = model.init(jax.random.key(0), batch)
  chex.assert_shape(state.extra['buffer'], (BUFFER, 2))
  assert float(jnp.max(jnp.abs(state.extra['buffer']))) <= 1.0  # uniform in [-init_range, r]
  step = jax.jit(model.step)
  key = jax.random.key(5)
  new, metrics = step(state, batch, key)
  # the same key gives the same step
  chex.assert_trees_all_equal(step(state, batch, key), (new, metrics))

  k_idx, _, k_noise, k_chain = _buffer_draws(key)
  idx = np.asarray(jax.random.choice(k_idx, BUFFER, (BATCH,), replace=False))
  once = np.asarray([i for i in range(BATCH) if np.sum(idx == idx[i]) == 1])
  touched = np.zeros(BUFFER, bool)
  touched[idx] = True
  # untouched rows and ages are unchanged; touched rows hold K Langevin steps from their starts
  old_buf, buf = np.asarray(state.extra['buffer']), np.asarray(new.extra['buffer'])
  np.testing.assert_array_equal(buf[~touched], old_buf[~touched])
  assert np.all(np.any(buf[touched] != old_buf[touched], axis=1))
  if reinit_prob == 1.0:
    start = jax.random.uniform(k_noise, (BATCH, 2), minval=-1.0, maxval=1.0)
  else:
    start = state.extra['buffer'][idx]
  energy = lambda v: model.energy(state.params['energy'], state.extra['energy'], v)[0]
  neg, _, _ = jax.jit(lambda s, k: ebm.langevin_negatives(energy, s, k, K, 0.01))(start, k_chain)
  np.testing.assert_allclose(buf[idx[once]], np.asarray(neg)[once], atol=1e-5)
  age = np.asarray(new.extra['buffer_age'])
  np.testing.assert_array_equal(age[~touched], 0)
  np.testing.assert_array_equal(age[touched], K)  # fresh or from age 0: K steps old
  assert float(metrics['buffer_age']) == 0.0
  for name in ('loss', 'cd', 'energy_reg', 'energy/gap', 'chain_grad_norm', 'grad_norm/energy'):
    assert np.isfinite(float(metrics[name])), name

  # more steps: persistent chains age by K per visit; re-initialised ones restart at K
  visits = touched.astype(int)
  state = new
  for i in range(4):
    key = jax.random.key(10 + i)
    idx = np.asarray(jax.random.choice(_buffer_draws(key)[0], BUFFER, (BATCH,), replace=False))
    state, metrics = step(state, _ring8_batch(i + 1), key)
    # the mean age of the chains this step continued (0 when all are re-initialised)
    want = 0.0 if reinit_prob == 1.0 else K * np.mean(visits[idx])
    np.testing.assert_allclose(float(metrics['buffer_age']), want, rtol=1e-6)
    visits[np.unique(idx)] += 1
  age = np.asarray(state.extra['buffer_age'])
  if reinit_prob == 1.0:
    np.testing.assert_array_equal(age, K * (visits > 0))
  else:
    np.testing.assert_array_equal(age, K * visits)
    assert age.max() >= 2 * K


@pytest.mark.slow  # > 5 s of compiling: the full suite only
def test_data_starts_give_negatives_at_the_data():
  """chain_init='data' (CD-k) with one tiny step: the negatives are the data (up to sqrt(a))."""
  model = _make(_config(chain_init='data', chain_steps=1, step_size=1e-8))
  batch = _ring8_batch(0)
  state = model.init(jax.random.key(0), batch)
  assert 'buffer' not in state.extra
  neg, extra, _ = jax.jit(model._negatives)(state, batch['x'], jax.random.key(1))
  assert extra == {}
  chex.assert_trees_all_close(neg, batch['x'], atol=1e-3)
  _, metrics = jax.jit(model.step)(state, batch, jax.random.key(1))
  assert abs(float(metrics['energy/gap'])) < 1e-3 and abs(float(metrics['cd'])) < 1e-3


# -- 7. config checks ----------------------------------------------------------------------

CONFIG_ERRORS = {  # case: (overrides, the message (a regex))
  'cd_with_score_network': ({'model.name': 'score_mlp'}, r"ebm\.loss='cd' needs energies"),
  'exact_sm_on_digits': (
    {'data.name': 'digits', 'model.name': 'energy_conv', 'ebm.loss': 'exact_sm'},
    r"ebm\.loss='exact_sm'.* not 'digits'",
  ),
  'mala_with_noise_scale': (
    {'ebm.mala': True, 'ebm.noise_scale': 0.01},
    r'ebm\.mala=True .* needs ebm\.noise_scale=1',
  ),
  'buffer_smaller_than_batch': (
    {'ebm.buffer_size': BATCH - 1},
    r'ebm\.buffer_size=15 must hold at least one batch \(data\.batch_size=16\)',
  ),
  'unknown_chain_init': (
    {'ebm.chain_init': 'prior'},
    r"ebm\.chain_init='prior' is unknown",
  ),
  'rbm_network_with_the_ebm_objective': (
    {'data.name': 'digits', 'model.name': 'rbm'},
    r"model\.name='rbm' is a network of kind 'rbm'; objective\.name='ebm' takes one of "
    r"\['energy_conv', 'energy_mlp', 'score_mlp'\]",
  ),
  'unknown_loss': ({'ebm.loss': 'nce'}, r"ebm\.loss='nce' is unknown"),
  'zero_chain_steps': ({'ebm.chain_steps': 0}, r'ebm\.chain_steps must be an integer'),
}


def _set(config, path, value):
  *parents, leaf = path.split('.')
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


def test_an_energy_network_with_the_diffusion_objective_is_refused():
  with pytest.raises(
    ConfigError, match=r"model\.name='energy_mlp' is a network of kind 'energy'; "
  ):
    _make(_config('diffusion'))


def test_the_rbm_objective_builds_and_refuses_points():
  config = _config('rbm')
  config.model.name = 'rbm'
  with pytest.raises(ConfigError, match=r"objective\.name='rbm' trains on binarised images"):
    _make(config)
  config.data.name = 'digits'
  assert isinstance(_make(config), rbm.RBM)
  config.rbm.chain_steps = 0
  with pytest.raises(ConfigError, match=r'rbm\.chain_steps must be an integer >= 1'):
    _make(config)


@pytest.mark.parametrize('case', sorted(CONFIG_ERRORS))
def test_config_errors_name_the_field(case):
  overrides, message = CONFIG_ERRORS[case]
  config = _config()
  for path, value in overrides.items():
    _set(config, path, value)
  with pytest.raises(ConfigError, match=message):
    _make(config)


def test_valid_configs_build():
  for overrides in (
    {},
    {'model.name': 'score_mlp', 'ebm.loss': 'sliced_sm'},
    {'ebm.loss': 'exact_sm'},
    {'ebm.mala': True, 'ebm.chain_init': 'noise'},
    {'data.name': 'digits', 'model.name': 'energy_conv', 'ebm.loss': 'dsm'},
  ):
    config = _config()
    for path, value in overrides.items():
      _set(config, path, value)
    assert isinstance(_make(config), ebm.EBM), overrides
