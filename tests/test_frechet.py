"""The Frechet distance against closed forms, scipy's sqrtm and an SVD identity; the statistics
and their streaming accumulator; the bootstrap interval."""

import numpy as np
import pytest
from scipy import linalg

from gen.metrics import frechet
from gen.metrics.frechet import GaussianStats


def _random_spd(rng, d):
  g = rng.standard_normal((d, d))
  return g @ g.T / d + 0.1 * np.eye(d)


def _fd_sqrtm(a: GaussianStats, b: GaussianStats) -> float:
  """pytorch-fid's formula: scipy.linalg.sqrtm of the non-symmetric product, real part."""
  covmean = linalg.sqrtm(a.cov @ b.cov)
  diff = a.mean - b.mean
  return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean.real))


@pytest.mark.timeout(30)
def test_commuting_covariances_closed_form():
  """Diagonal covariances: FD^2 = |mu_a - mu_b|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
  rng = np.random.default_rng(0)
  d = 16
  mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
  var_a, var_b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
  a, b = GaussianStats(mu_a, np.diag(var_a), 100), GaussianStats(mu_b, np.diag(var_b), 100)
  expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  assert frechet.frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
  # Same eigenvectors, rotated basis: still commuting, same value.
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  rot = lambda s: GaussianStats(q @ s.mean, q @ s.cov @ q.T, s.n)
  assert frechet.frechet_distance(rot(a), rot(b)) == pytest.approx(expected, rel=1e-10)
  # Equal means and covariances differing by a scale c: (1 - sqrt(c))^2 tr(S).
  s = _random_spd(rng, d)
  fd = frechet.frechet_distance(GaussianStats(mu_a, s, 2), GaussianStats(mu_a, 4.0 * s, 2))
  assert fd == pytest.approx(np.trace(s), rel=1e-10)


@pytest.mark.timeout(30)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_matches_scipy_sqrtm_on_non_commuting_covariances(seed):
  rng = np.random.default_rng(seed)
  d = 64
  a = GaussianStats(rng.standard_normal(d), _random_spd(rng, d), 1000)
  b = GaussianStats(0.5 * rng.standard_normal(d), 2.0 * _random_spd(rng, d), 1000)
  assert not np.allclose(a.cov @ b.cov, b.cov @ a.cov)
  fd = frechet.frechet_distance(a, b)
  assert fd == pytest.approx(_fd_sqrtm(a, b), rel=1e-6)
  assert frechet.frechet_distance(b, a) == pytest.approx(fd, rel=1e-10)  # symmetric


@pytest.mark.timeout(30)
def test_same_features_give_zero():
  rng = np.random.default_rng(3)
  x = 5.0 + rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
  s = frechet.fit_gaussian(x)
  assert frechet.frechet_distance(s, s) < 1e-9
  # The rows in another order: the same statistics up to round-off.
  assert frechet.frechet_distance(s, frechet.fit_gaussian(x[rng.permutation(500)])) < 1e-9
  # A nearby set is not at distance 0.
  assert frechet.frechet_distance(s, frechet.fit_gaussian(x + 0.1)) == pytest.approx(0.32, rel=1e-9)


@pytest.mark.timeout(30)
def test_fit_gaussian_is_unbiased_covariance():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((50, 6))
  s = frechet.fit_gaussian(x)
  assert s.n == 50 and s.mean.dtype == np.float64 and s.cov.shape == (6, 6)
  np.testing.assert_allclose(s.mean, x.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False, ddof=1), rtol=1e-12, atol=1e-15)
  with pytest.raises(ValueError, match='two rows'):
    frechet.fit_gaussian(x[:1])
  with pytest.raises(ValueError, match='2-D'):
    frechet.fit_gaussian(x[0])


@pytest.mark.timeout(30)
def test_streaming_accumulator_equals_fit_gaussian():
  rng = np.random.default_rng(5)
  # A large common offset (like non-negative Inception features) tests the shifted sums.
  x = 1000.0 + rng.standard_normal((1037, 24)) @ rng.standard_normal((24, 24))
  acc = frechet.StatsAccumulator()
  for lo, hi in [(0, 0), (0, 1), (1, 100), (100, 100), (100, 613), (613, 1037)]:
    acc.add(x[lo:hi])
  got, want = acc.result(), frechet.fit_gaussian(x)
  assert got.n == want.n == 1037
  np.testing.assert_allclose(got.mean, want.mean, rtol=1e-13)
  np.testing.assert_allclose(got.cov, want.cov, rtol=1e-9, atol=1e-9 * np.abs(want.cov).max())
  assert frechet.frechet_distance(got, want) < 1e-9
  with pytest.raises(ValueError, match='D = 3'):
    acc.add(np.zeros((2, 3)))
  with pytest.raises(ValueError, match='two rows'):
    frechet.StatsAccumulator().result()


@pytest.mark.timeout(30)
def test_singular_covariances_d_greater_than_n():
  """D = 64 > N = 20: rank-19 covariances. The FD stays real, finite and non-negative, and its
  trace term equals the nuclear norm of B_c A_c^T / sqrt((n_a - 1)(n_b - 1)) (A_c, B_c the
  centred rows): the non-zero eigenvalues of S_a S_b are the squared singular values of it."""
  rng = np.random.default_rng(6)
  xa, xb = rng.standard_normal((20, 64)), 0.3 + 2.0 * rng.standard_normal((20, 64))
  a, b = frechet.fit_gaussian(xa), frechet.fit_gaussian(xb)
  assert np.linalg.matrix_rank(a.cov) == 19
  fd = frechet.frechet_distance(a, b)
  assert isinstance(fd, float) and np.isfinite(fd) and fd > 0
  ac, bc = xa - xa.mean(axis=0), xb - xb.mean(axis=0)
  nuclear = np.linalg.svd(bc @ ac.T, compute_uv=False).sum() / 19.0
  diff = a.mean - b.mean
  expected = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * nuclear
  assert fd == pytest.approx(expected, rel=1e-9)
  assert 0.0 <= frechet.frechet_distance(a, a) < 1e-9
  # pytorch-fid's sqrtm on the same input gives complex values (its reason for an epsilon).
  assert np.iscomplexobj(linalg.sqrtm(a.cov @ b.cov))


@pytest.mark.timeout(30)
def test_bootstrap_interval():
  rng = np.random.default_rng(7)
  xa = 0.5 + rng.standard_normal((400, 4))
  b = GaussianStats(np.zeros(4), np.eye(4), 10**6)  # the true distribution: FD^2 = 4 * 0.25
  fd = frechet.frechet_distance(frechet.fit_gaussian(xa), b)
  low, high = frechet.frechet_bootstrap(xa, b, num_rounds=200, seed=0)
  assert low < fd < high and low < 1.0 < high, (low, fd, high)
  assert high - low < 0.6
  assert frechet.frechet_bootstrap(xa, b, 200, 0) == (low, high)  # seeded
  # Features for b are fitted once; the same interval as from their statistics.
  xb = rng.standard_normal((300, 4))
  assert frechet.frechet_bootstrap(xa, xb, 20, 1) == frechet.frechet_bootstrap(
    xa, frechet.fit_gaussian(xb), 20, 1
  )


def test_dimension_mismatch_raises():
  a = GaussianStats(np.zeros(3), np.eye(3), 10)
  b = GaussianStats(np.zeros(4), np.eye(4), 10)
  with pytest.raises(ValueError, match='one D'):
    frechet.frechet_distance(a, b)


def _ill_conditioned_features(rng, n, d, low, shift):
  """n rows whose covariance has eigenvalues log-spaced from `low` to ~1, in a random basis."""
  basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
  scale = np.sqrt(np.logspace(np.log10(low), 0.0, d))
  return shift + (rng.standard_normal((n, d)) * scale) @ basis.T


def _fd_from_qr(xa, xb):
  """A float64 reference that never forms a covariance or S_a S_b: with A, B the centred rows
  over sqrt(n - 1), S_a = A^T A and tr((S_a S_b)^{1/2}) = ||A B^T||_* = ||R_a R_b^T||_* for the
  QR factors A = Q_a R_a, B = Q_b R_b (Q's columns orthonormal)."""
  a = (xa - xa.mean(0)) / np.sqrt(len(xa) - 1)
  b = (xb - xb.mean(0)) / np.sqrt(len(xb) - 1)
  r_a, r_b = np.linalg.qr(a, mode='r'), np.linalg.qr(b, mode='r')
  nuclear = np.linalg.svd(r_a @ r_b.T, compute_uv=False).sum()
  diff = xa.mean(0) - xb.mean(0)
  return diff @ diff + np.sum(a * a) + np.sum(b * b) - 2.0 * nuclear


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ill_conditioned_2048_d_equals_a_qr_reference():
  """D = 2048, N = 5000, covariance eigenvalues from `low` to 1 (Inception's pool3 covariances
  span ~1e-10 to 1): FD equals the QR/SVD reference to 1e-9 relative, and FD(X, X) <= 1e-9. A
  relative clip of S_a^{1/2} S_b S_a^{1/2}'s eigenvalues (the previous formula) was 3.5e-7 off
  here, and 1.3e-4 for FD(X, X)."""
  rng = np.random.default_rng(10)
  xa = _ill_conditioned_features(rng, 5000, 2048, 1e-10, 0.0)
  xb = _ill_conditioned_features(rng, 5000, 2048, 1e-10, 0.01)
  a, b = frechet.fit_gaussian(xa), frechet.fit_gaussian(xb)
  fd, reference = frechet.frechet_distance(a, b), _fd_from_qr(xa, xb)
  assert abs(fd - reference) <= 1e-9 * reference, (fd, reference)
  assert frechet.frechet_distance(a, a) <= 1e-9


@pytest.mark.timeout(60)
@pytest.mark.parametrize('n', [300, 700])  # n < D and n > D
def test_subset_distance_equals_frechet_distance_of_the_subset(n):
  """The bootstrap's and FD-infinity's per-subset FD (one projection, then an [n, D] SVD) equals
  fit_gaussian + frechet_distance of the same rows, on ill-conditioned 512-D features."""
  rng = np.random.default_rng(n)
  x = _ill_conditioned_features(rng, 1000, 512, 1e-8, 0.0)
  b = frechet.fit_gaussian(_ill_conditioned_features(rng, 2000, 512, 1e-8, 0.05))
  subsets = frechet._Subsets(x, b)
  for rows in (rng.integers(0, 1000, n), rng.permutation(1000)[:n]):
    want = frechet.frechet_distance(frechet.fit_gaussian(x[rows]), b)
    assert abs(subsets.fd(rows) - want) <= 1e-9 * want, (subsets.fd(rows), want)


@pytest.mark.timeout(60)
@pytest.mark.parametrize('seed', range(5))
def test_frechet_infinity_removes_the_finite_n_bias(seed):
  """400 samples of N(0, S) against the population N(0.1, S) in 64-D (FD^2 = 64 * 0.01): FD^2
  at N = 400 is ~4x the truth; the extrapolation to 1/N = 0 removes most of the excess, on
  every seed (at most 0.24 of it left over seeds 0-7 and three subset seeds each)."""
  d = 64
  cov = _random_spd(np.random.default_rng(1), d)
  b = GaussianStats(np.full(d, 0.1), cov, 10**9)
  truth = frechet.frechet_distance(GaussianStats(np.zeros(d), cov, 10**9), b)
  np.testing.assert_allclose(truth, 0.64, rtol=1e-9)
  x = np.random.default_rng(100 + seed).multivariate_normal(np.zeros(d), cov, size=400)
  fd = frechet.frechet_distance(frechet.fit_gaussian(x), b)
  fd_inf = frechet.frechet_infinity(x, b, seed=seed)
  assert fd - truth > 2.0 * truth  # the bias being removed is real here
  assert abs(fd_inf - truth) < 0.35 * (fd - truth), (truth, fd, fd_inf)
  assert frechet.frechet_infinity(x, b, seed=seed) == fd_inf  # seeded
