"""The Frechet distance between Gaussians fitted to two feature sets (FID when the features are
Inception-v3 pool3 activations).

A Gaussian N(mu, Sigma) is fitted to each set, and the squared 2-Wasserstein (Frechet) distance
between the two Gaussians (Dowson & Landau, 1982, "The Frechet distance between multivariate
normal distributions") is

  FD^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2}).

Heusel et al. (2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium") call it FID and report FD^2 itself (not its square root); so does this module.

Everything here runs on the host in NumPy float64: the statistics are sums of many products
that float32 (JAX's default) would round visibly, and the D x D eigendecompositions (D = 2048
for Inception) take well under a second on a CPU, so there is nothing to gain on an accelerator.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
  'GaussianStats',
  'StatsAccumulator',
  'fit_gaussian',
  'frechet_bootstrap',
  'frechet_distance',
  'frechet_infinity',
]


class GaussianStats(NamedTuple):
  """Mean [D] and unbiased covariance [D, D] (float64) of `n` feature vectors."""

  mean: np.ndarray
  cov: np.ndarray
  n: int


def _as_2d(name: str, x: Any) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f'`{name}` must be a 2-D array [N, D]; got shape {x.shape}.')
  if x.shape[1] == 0:
    raise ValueError(f'`{name}` must have at least one column; got {x.shape}.')
  return x


def _symmetric(a: np.ndarray) -> np.ndarray:
  return 0.5 * (a + a.T)


def fit_gaussian(features: Any) -> GaussianStats:
  """Mean and unbiased covariance of the rows of `features`, in float64.

  mu = (1/N) sum_i x_i,  S = (1/(N-1)) sum_i (x_i - mu)(x_i - mu)^T  (ddof = 1, as the TTUR
  code and pytorch-fid do with `np.cov(x, rowvar=False)`).

  Args:
    features: [N, D] array, N >= 2.

  Returns:
    The `GaussianStats`.

  Raises:
    ValueError: if `features` is not 2-D or has fewer than two rows.
  """
  x = _as_2d('features', features)
  n = x.shape[0]
  if n < 2:
    raise ValueError(f'A covariance needs at least two rows; got {n}.')
  mean = x.mean(axis=0)
  xc = x - mean
  return GaussianStats(mean, _symmetric(xc.T @ xc) / (n - 1), n)


class StatsAccumulator:
  """Streams batches of features into the `GaussianStats` of their concatenation.

  It keeps float64 sums of (x - c) and (x - c)(x - c)^T, with the shift c the mean of the first
  batch: the result is the same in exact arithmetic, and the shift keeps the cancellation in
  S = (sum (x-c)(x-c)^T - N m m^T) / (N - 1), m = mean(x - c), as small as that of the two-pass
  `fit_gaussian` when the features have a large common offset (Chan, Golub & LeVeque, 1983).

  acc = StatsAccumulator(); acc.add(batch) for each batch; acc.result() -> GaussianStats.
  """

  def __init__(self) -> None:
    self._shift: np.ndarray | None = None
    self._sum: np.ndarray | None = None
    self._outer: np.ndarray | None = None
    self.n = 0

  def add(self, batch: Any) -> None:
    """Adds the rows of a [B, D] batch (B may be 0)."""
    x = _as_2d('batch', batch)
    if self._shift is None:
      if x.shape[0] == 0:
        return
      self._shift = x.mean(axis=0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1], x.shape[1]))
    if x.shape[1] != self._shift.shape[0]:
      raise ValueError(f'batch has D = {x.shape[1]}; earlier batches had {self._shift.shape[0]}.')
    xc = x - self._shift
    self._sum += xc.sum(axis=0)
    self._outer += xc.T @ xc
    self.n += x.shape[0]

  def result(self) -> GaussianStats:
    """The `GaussianStats` of all rows added so far (at least two)."""
    if self.n < 2:
      raise ValueError(f'A covariance needs at least two rows; got {self.n}.')
    m = self._sum / self.n
    cov = (self._outer - self.n * np.outer(m, m)) / (self.n - 1)
    return GaussianStats(self._shift + m, _symmetric(cov), self.n)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  """The symmetric square root of a PSD matrix, its round-off eigenvalues zeroed.

  Round-off leaves eigenvalues of size ~ D * eps * max|lam| (some negative) where the exact
  ones are 0 (a singular covariance, D > N); their square roots, ~1e-8 * sqrt(max) each, would
  otherwise add up over many of them. Real eigenvalues above that resolution are kept, however
  small: they are what makes the distance exact on ill-conditioned covariances.
  """
  lam, u = np.linalg.eigh(_symmetric(s))
  tol = lam.shape[0] * np.finfo(np.float64).eps * float(np.max(np.abs(lam)))
  return (u * np.sqrt(np.where(lam > tol, lam, 0.0))) @ u.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
  """Frechet distance FD^2 between N(mu_a, S_a) and N(mu_b, S_b) (FID on Inception features).

  FD^2 = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2})
  (Dowson & Landau, 1982; Heusel et al., 2017). The trace term is the nuclear norm (sum of
  singular values) of S_a^{1/2} S_b^{1/2}: with M = S_a^{1/2} S_b^{1/2}, M M^T =
  S_a^{1/2} S_b S_a^{1/2} has the eigenvalues of S_a S_b, so the singular values of M are the
  square roots of those eigenvalues, without complex numbers or a non-symmetric matrix square
  root. The singular values come out with an absolute error ~ eps ||M||, so even the smallest
  (e.g. 1e-10 on covariances whose eigenvalues span 1e-10 to 1) are exact to that error;
  square roots of the eigenvalues of S_a^{1/2} S_b S_a^{1/2}, ~1e-20 there, would carry errors
  ~1e-8 each. Each square root zeroes only its own round-off eigenvalues (`_psd_sqrt`), which
  keeps the distance exact also for singular covariances (D > N), where
  `scipy.linalg.sqrtm(S_a @ S_b)` (pytorch-fid) returns complex values and needs an epsilon on
  the diagonal. Float64 on the host throughout; FD(X, X) is 0 to round-off, and round-off below
  zero is clipped to 0.

  Args:
    a: statistics of the first set (e.g. generated samples).
    b: statistics of the second set (e.g. the data).

  Returns:
    FD^2 as a non-negative Python float.

  Raises:
    ValueError: if the statistics have different or inconsistent dimensions.
  """
  mu_a, mu_b = np.asarray(a.mean, np.float64), np.asarray(b.mean, np.float64)
  s_a, s_b = np.asarray(a.cov, np.float64), np.asarray(b.cov, np.float64)
  d = mu_a.shape[0]
  if mu_a.shape != (d,) or mu_b.shape != (d,) or s_a.shape != (d, d) or s_b.shape != (d, d):
    raise ValueError(
      f'Statistics must have mean [D] and cov [D, D] of one D; got means {mu_a.shape}, '
      f'{mu_b.shape} and covariances {s_a.shape}, {s_b.shape}.'
    )
  tr_sqrt = float(np.sum(np.linalg.svd(_psd_sqrt(s_a) @ _psd_sqrt(s_b), compute_uv=False)))
  diff = mu_a - mu_b
  fd = float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_sqrt)
  return max(fd, 0.0)


class _Subsets:
  """FD^2 of row subsets of one feature set [N, D] against fixed statistics `b`, exactly and
  without a D x D decomposition per subset.

  With X_r the rows of a subset (n of them) and Xc = X_r - mean(X_r), S_a = Xc^T Xc / (n - 1),
  and tr((S_a S_b)^{1/2}) = ||S_a^{1/2} S_b^{1/2}||_* equals the nuclear norm of
  Xc S_b^{1/2} / sqrt(n - 1) (both have the singular values sqrt(eig(S_b^{1/2} S_a S_b^{1/2}))).
  Y = X S_b^{1/2} is computed once; a subset then costs its centring and the singular values
  of an [n, D] matrix, instead of two D x D eigendecompositions and an SVD, and needs no
  round-off clipping: rank deficiency (n <= D) shows as zero singular values, not as square
  roots of round-off eigenvalues. Equal to `frechet_distance` of the subset's `fit_gaussian`
  to round-off (tests/test_frechet.py).
  """

  def __init__(self, x: np.ndarray, b: GaussianStats):
    self.x = x
    self.mu_b = np.asarray(b.mean, np.float64)
    self.tr_b = float(np.trace(b.cov))
    self.y = x @ _psd_sqrt(np.asarray(b.cov, np.float64))

  def fd(self, rows: np.ndarray) -> float:
    n = len(rows)
    x, y = self.x[rows], self.y[rows]
    mu = x.mean(axis=0)
    xc, yc = x - mu, y - y.mean(axis=0)
    tr_a = float(np.sum(xc * xc)) / (n - 1)
    tr_sqrt = float(np.sum(np.linalg.svd(yc, compute_uv=False))) / np.sqrt(n - 1)
    diff = mu - self.mu_b
    return max(float(diff @ diff) + tr_a + self.tr_b - 2.0 * tr_sqrt, 0.0)


def _stats_of(stats_or_features: GaussianStats | Any) -> GaussianStats:
  if isinstance(stats_or_features, GaussianStats):
    return stats_or_features
  return fit_gaussian(stats_or_features)


def frechet_bootstrap(
  features_a: Any,
  stats_or_features_b: GaussianStats | Any,
  num_rounds: int = 100,
  seed: int = 0,
) -> tuple[float, float]:
  """95% basic bootstrap interval of FD^2 against fixed statistics, from resampling `features_a`.

  Each round draws N rows of `features_a` [N, D] with replacement and takes the Frechet
  distance of their Gaussian fit to `stats_or_features_b` (held fixed: typically the data's
  statistics). With q_lo, q_hi the 2.5th and 97.5th percentiles of the `num_rounds` values and
  FD^2 the point estimate of all N rows, the interval is [2 FD^2 - q_hi, 2 FD^2 - q_lo], clipped
  at 0: the basic (reverse-percentile) bootstrap interval (Davison & Hinkley, 1997, eq. 5.6).
  FD^2 is biased upwards at finite N (Chong & Forsyth, 2020), and a resample, with ~63% distinct
  rows, is biased further; the percentile interval [q_lo, q_hi] inherits that bias and mostly
  lies above the point estimate, while the basic interval subtracts it (to first order): it
  covers the FD^2 of the distribution the rows were drawn from against `b`. Its width is the
  point: at N = 297 on digits it is about as wide as the values themselves (experiments/
  RESULTS.md), so FD^2 that close cannot rank models. A round costs the singular values of one
  [N, D] matrix (`_Subsets`).

  Args:
    features_a: [N, D] features to resample.
    stats_or_features_b: `GaussianStats`, or [M, D] features to fit once.
    num_rounds: number of bootstrap rounds (>= 2).
    seed: seed of the NumPy generator that draws the rows.

  Returns:
    (low, high), Python floats.
  """
  x = _as_2d('features_a', features_a)
  if num_rounds < 2:
    raise ValueError(f'`num_rounds` must be >= 2; got {num_rounds}.')
  subsets = _Subsets(x, _stats_of(stats_or_features_b))
  rng = np.random.default_rng(seed)
  n = x.shape[0]
  values = [subsets.fd(rng.integers(0, n, size=n)) for _ in range(num_rounds)]
  q_lo, q_hi = np.percentile(values, [2.5, 97.5])
  fd = subsets.fd(np.arange(n))
  return max(2.0 * fd - float(q_hi), 0.0), max(2.0 * fd - float(q_lo), 0.0)


def frechet_infinity(
  features_a: Any,
  stats_or_features_b: GaussianStats | Any,
  num_sizes: int = 15,
  smallest: float = 0.2,
  seed: int = 0,
) -> float:
  """FD^2 extrapolated to infinitely many samples ("FID-infinity", Chong & Forsyth, 2020).

  FD^2 of N samples is biased upwards by a term that is, to first order, linear in 1/N. FD^2 is
  computed on one random subset (without replacement) of each of `num_sizes` sizes spaced
  evenly from `smallest` * N to N (the last is the whole set), a line FD^2(n) = a + b / n is
  fitted by least squares, and its intercept a (the value at 1/n = 0) is returned. The paper
  takes 15 sizes from 5,000 to 50,000; here the sizes are fractions of the N given. The
  intercept is an estimate, not a bound: it can fall below 0.

  Args:
    features_a: [N, D] features (e.g. of samples).
    stats_or_features_b: the fixed other side: `GaussianStats`, or [M, D] features.
    num_sizes: subset sizes to fit (>= 2).
    smallest: the smallest size as a fraction of N, in (0, 1).
    seed: seed of the NumPy generator that draws the subsets.

  Returns:
    The intercept, a Python float.
  """
  x = _as_2d('features_a', features_a)
  if num_sizes < 2 or not 0.0 < smallest < 1.0:
    raise ValueError(f'need num_sizes >= 2 and 0 < smallest < 1; got {num_sizes}, {smallest}.')
  n = x.shape[0]
  sizes = np.unique(np.linspace(max(2, round(smallest * n)), n, num_sizes).round().astype(int))
  if len(sizes) < 2:
    raise ValueError(f'FD-infinity needs at least two subset sizes; N = {n} gives {sizes}.')
  subsets = _Subsets(x, _stats_of(stats_or_features_b))
  rng = np.random.default_rng(seed)
  values = [subsets.fd(rng.permutation(n)[:m]) for m in sizes]
  slope, intercept = np.polyfit(1.0 / sizes, values, 1)
  del slope
  return float(intercept)
