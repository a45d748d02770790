"""The Inception score, KID, precision/recall, density/coverage and memorisation against brute
force NumPy loops and limiting cases; 1 vs 8 devices.

Run as a script (`python tests/test_sample_metrics.py multidevice`, with 8 simulated CPU devices
set up by the caller's XLA_FLAGS) it prints the 1-vs-8-device comparison as JSON.
"""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen.metrics import precision_recall as pr
from gen.metrics import sample_quality as sq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _features(seed, n, d=16, shift=0.0):
  """float32 features (so that NumPy's float64 brute force sees the very same numbers)."""
  x = np.random.default_rng(seed).standard_normal((n, d)) + shift
  return x.astype(np.float32).astype(np.float64)


def _cdist(a, b):
  """Euclidean distances by direct differences in float64."""
  return np.sqrt(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1))


# -- Inception score ---------------------------------------------------------------------------


def _is_brute_force(logits, splits):
  n = len(logits)
  scores = []
  for i in range(splits):
    part = logits[i * n // splits : (i + 1) * n // splits]
    probs = [np.exp(row - row.max()) / np.sum(np.exp(row - row.max())) for row in part]
    marginal = np.mean(probs, axis=0)
    kls = [sum(p[y] * np.log(p[y] / marginal[y]) for y in range(len(p))) for p in probs]
    scores.append(np.exp(np.mean(kls)))
  return np.mean(scores), np.std(scores)


@pytest.mark.timeout(30)
def test_inception_score_limits():
  rng = np.random.default_rng(0)
  constant = np.repeat(rng.standard_normal((1, 7)), 200, axis=0)
  mean, std = sq.inception_score(constant)
  assert mean == pytest.approx(1.0, abs=1e-12) and std < 1e-12
  # Confident one-hot predictions, each split holding every one of K classes equally often.
  k = 10
  onehot = 60.0 * np.eye(k)[np.arange(1000) % k]
  mean, std = sq.inception_score(onehot, splits=10)
  assert mean == pytest.approx(k, rel=1e-12) and std < 1e-9
  # Huge logits neither overflow nor log a zero.
  mean, _ = sq.inception_score(1e4 * onehot, splits=5)
  assert mean == pytest.approx(k, rel=1e-12)
  # All mass on 2 of the 10 classes.
  mean, _ = sq.inception_score(60.0 * np.eye(k)[np.arange(1000) % 2], splits=10)
  assert mean == pytest.approx(2.0, rel=1e-12)


@pytest.mark.timeout(30)
@pytest.mark.parametrize('splits', [1, 3, 10])
def test_inception_score_matches_brute_force(splits):
  logits = 3.0 * np.random.default_rng(1).standard_normal((103, 7))  # 103 = no even splits
  mean, std = sq.inception_score(logits, splits=splits)
  ref_mean, ref_std = _is_brute_force(logits, splits)
  assert mean == pytest.approx(ref_mean, rel=1e-12)
  assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)
  with pytest.raises(ValueError, match='splits'):
    sq.inception_score(logits, splits=104)


# -- KID ---------------------------------------------------------------------------------------


def _mmd2_brute_force(x, y):
  """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by a float64 double loop."""
  m, d = x.shape
  k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (m * m)


class TestKidRowSums(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_double_loop(self):
    x = _features(2, 12, d=5, shift=0.5)
    y = _features(3, 12, d=5)
    rows = self.variant(sq._kid_row_sums)(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    chex.assert_shape(rows, (3, 12))
    got = float(sq._mmd2_from_row_sums(np.asarray(rows)))
    assert got == pytest.approx(_mmd2_brute_force(x, y), rel=1e-5)


@pytest.mark.timeout(60)
def test_kid_whole_sets_match_brute_force():
  """subset_size = N: every subset is the whole set reordered, so every estimate is the
  full-sample MMD_u^2 (std ~ 0)."""
  x, y = _features(4, 40, d=8, shift=0.2), _features(5, 40, d=8)
  mean, std = sq.kid(x, y, num_subsets=5, subset_size=40)
  ref = _mmd2_brute_force(x, y)
  assert mean == pytest.approx(ref, rel=1e-5), (mean, ref)
  assert std < 1e-6 * abs(ref)
  # subset_size is capped at min(N_a, N_b).
  assert sq.kid(x, y, num_subsets=5, subset_size=1000) == (mean, std)


@pytest.mark.timeout(60)
def test_kid_same_and_shifted_distributions():
  s = 100
  a, b = _features(6, 1000), _features(7, 1000)
  mean, std = sq.kid(a, b, num_subsets=s, subset_size=100, seed=0)
  se = std / np.sqrt(s)
  print(f'KID same distribution: {mean:.2e} +- {se:.1e} (std {std:.1e})')
  assert abs(mean) < 4 * se, (mean, se)
  shifted_mean, shifted_std = sq.kid(a, _features(7, 1000, shift=0.3), s, 100, seed=0)
  print(f'KID shifted by 0.3: {shifted_mean:.3f} +- {shifted_std / np.sqrt(s):.1e}')
  assert shifted_mean > 20 * shifted_std / np.sqrt(s) and shifted_mean > 50 * abs(mean)
  # Seeded: the same subsets for the same seed, others for another.
  assert sq.kid(a, b, s, 100, seed=0) == (mean, std)
  assert sq.kid(a, b, s, 100, seed=1) != (mean, std)
  with pytest.raises(ValueError, match='at least 2 rows'):
    sq.kid(a[:1], b)


# -- precision / recall, density / coverage, memorisation --------------------------------------


def _radii_brute_force(x, k):
  d = _cdist(x, x)
  np.fill_diagonal(d, np.inf)
  return np.sort(d, axis=1)[:, k - 1]


def _pr_brute_force(real, fake, k):
  d = _cdist(fake, real)  # [M, N]
  precision = np.mean(np.any(d <= _radii_brute_force(real, k)[None, :], axis=1))
  recall = np.mean(np.any(d.T <= _radii_brute_force(fake, k)[None, :], axis=1))
  return precision, recall


def _dc_brute_force(real, fake, k):
  d = _cdist(fake, real)
  radii = _radii_brute_force(real, k)
  density = np.sum(d < radii[None, :]) / (k * len(fake))
  coverage = np.mean(d.min(axis=0) < radii)
  return density, coverage


@pytest.mark.timeout(60)
def test_knn_core_matches_brute_force():
  x, q = _features(8, 200), _features(9, 150, shift=0.2)
  for k in (1, 3, 5):
    radii = pr.knn_radii(x, k)
    chex.assert_shape(radii, (200,))
    np.testing.assert_allclose(radii, _radii_brute_force(x, k), rtol=2e-6)
    counts = pr.count_in_balls(q, x, radii)
    d = _cdist(q, x)
    np.testing.assert_array_equal(counts, np.sum(d <= radii[None, :].astype(np.float64), axis=1))
  index, dist = pr.nearest_neighbour(q, x)
  chex.assert_shape([index, dist], (150,))
  np.testing.assert_array_equal(index, np.argmin(d, axis=1))
  np.testing.assert_allclose(dist, d.min(axis=1), rtol=2e-6)
  # Many small blocks (with padding) give the same answers as one block.
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(pr, 'MAX_BLOCK_ROWS', 16)
    np.testing.assert_allclose(pr.knn_radii(x, 5), _radii_brute_force(x, 5), rtol=2e-6)
    np.testing.assert_array_equal(pr.count_in_balls(q, x, radii), counts)
    np.testing.assert_array_equal(pr.nearest_neighbour(q, x)[0], index)
  # An exact duplicate is a neighbour at distance 0; the row itself is not.
  dup = np.concatenate([x[:1], x[:1], x[1:5]])
  assert pr.knn_radii(dup, 1)[0] < 1e-3 and pr.knn_radii(dup, 1)[2] > 0.1


@pytest.mark.timeout(60)
def test_precision_recall():
  real = _features(10, 200)
  assert pr.precision_recall(real, real) == {'precision': 1.0, 'recall': 1.0}
  assert pr.precision_recall(real, real + 100.0) == {'precision': 0.0, 'recall': 0.0}
  for seed, shift, k in [(11, 0.0, 3), (12, 0.5, 3), (13, 1.0, 5)]:
    fake = _features(seed, 170, shift=shift)
    got = pr.precision_recall(real, fake, k=k)
    precision, recall = _pr_brute_force(real, fake, k)
    print(f'shift {shift} k {k}: {got}')
    assert got == {'precision': precision, 'recall': recall}
  # Mode dropping: samples of half the data's support keep precision but lose recall.
  half = real[real[:, 0] > 0]
  got = pr.precision_recall(real, half)
  assert got['precision'] == 1.0 and got['recall'] < 0.8


@pytest.mark.timeout(60)
def test_density_coverage():
  real = _features(14, 200)
  got = pr.density_coverage(real, real)
  assert got['coverage'] == 1.0 and got['density'] == pytest.approx(1.0, abs=0.01)
  assert pr.density_coverage(real, real + 100.0) == {'density': 0.0, 'coverage': 0.0}
  for seed, shift, k in [(15, 0.0, 5), (16, 0.5, 5), (17, 0.2, 2)]:
    fake = _features(seed, 230, shift=shift)
    got = pr.density_coverage(real, fake, k=k)
    density, coverage = _dc_brute_force(real, fake, k)
    print(f'shift {shift} k {k}: {got}')
    assert got == {'density': density, 'coverage': coverage}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_memorisation():
  train = _features(18, 300)
  idx = np.random.default_rng(0).integers(0, 300, 50)
  out = pr.memorisation(train[idx], train)
  assert out['fraction'] == 1.0
  np.testing.assert_array_equal(out['nn_index'], idx)
  assert np.all(out['nn_distance'] == 0.0)
  assert pr.memorisation(train[idx] + 100.0, train)['fraction'] == 0.0
  # Fresh samples, and samples near training points: against brute force.
  noisy = train[idx] + 0.05 * _features(19, 50)
  for samples in (_features(20, 120), noisy, np.concatenate([noisy, _features(21, 30)])):
    out = pr.memorisation(samples, train)
    d = _cdist(samples, train)
    nn = np.argmin(d, axis=1)
    np.testing.assert_array_equal(out['nn_index'], nn)
    np.testing.assert_allclose(out['nn_distance'], d.min(axis=1), rtol=2e-6)
    radii = _radii_brute_force(train, 1)
    assert out['fraction'] == np.mean(d.min(axis=1) < radii[nn])
  assert pr.memorisation(noisy, train)['fraction'] == 1.0
  # Fresh draws of the same distribution: a baseline well above 0, and well below copies.
  assert 0.1 < pr.memorisation(_features(20, 120), train)['fraction'] < 0.5


def test_bad_arguments():
  x = _features(22, 10)
  with pytest.raises(ValueError, match="axis named 'data'"):
    pr.knn_radii(x, 3, mesh=jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ('batch',)))
  with pytest.raises(ValueError, match='k'):
    pr.knn_radii(x, 10)
  with pytest.raises(ValueError, match='same dimension'):
    pr.precision_recall(x, x[:, :3])
  with pytest.raises(ValueError, match='radii'):
    pr.count_in_balls(x, x, np.ones(3))


# -- 1 vs 8 devices ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_one_and_eight_devices_agree(eight_devices, monkeypatch):
  from jax.sharding import Mesh

  real, fake = _features(30, 203), _features(31, 197, shift=0.3)  # rows not divisible by 8
  train = _features(32, 211)
  samples = np.concatenate([train[:20] + 0.01 * _features(33, 20), _features(34, 45)])
  monkeypatch.setattr(pr, 'MAX_BLOCK_ROWS', 16)  # several blocks per device: 203 -> 2 x 16 on 8
  results = {}
  for n in (1, 8):
    mesh = Mesh(np.asarray(eight_devices[:n]), ('data',))
    mem = pr.memorisation(samples, train, mesh)
    results[n] = {
      'pr': pr.precision_recall(real, fake, 3, mesh),
      'dc': pr.density_coverage(real, fake, 5, mesh),
      'mem_fraction': mem['fraction'],
      'nn_index': mem['nn_index'].tolist(),
      'nn_distance': mem['nn_distance'].tolist(),
      'radii': pr.knn_radii(real, 3, mesh).tolist(),
      'counts': pr.count_in_balls(fake, real, pr.knn_radii(real, 3, mesh), mesh).tolist(),
      'kid': sq.kid(real, fake, num_subsets=13, subset_size=50, seed=0, mesh=mesh),
    }
  one, eight = results[1], results[8]
  # Every row (and KID subset) is computed by the same program in the same block shape on any
  # device count, so not only the counts, fractions and indices but also the float32
  # distances and KID agree exactly.
  for key in ('pr', 'dc', 'mem_fraction', 'nn_index', 'counts', 'nn_distance', 'radii', 'kid'):
    assert one[key] == eight[key], key
  assert len(one['nn_index']) == 65 and len(one['counts']) == 197
  assert 0 < one['mem_fraction'] < 1 and 0 < one['pr']['precision'] < 1
