"""Metrics for low-dimensional toy data, in particular mixtures of Gaussians.

The mode-coverage metrics follow the protocol of VEEGAN (Srivastava et al., 2017, "VEEGAN:
Reducing Mode Collapse in GANs using Implicit Variational Learning") and PacGAN (Lin et al.,
2018, "PacGAN: The power of two samples in generative adversarial networks"): each sample is
assigned to its nearest mode centre, and it is *high quality* when it lies within `num_std`
standard deviations of that centre. A mode is *covered* when it received enough high-quality
samples.

The sliced Wasserstein distance (Rabin et al., 2011, "Wasserstein Barycenter and its Application
to Texture Mixing"; Bonneel et al., 2015) compares two point clouds of any dimension through
their 1-D projections.

All functions are pure, take NumPy or JAX arrays and return Python scalars or NumPy arrays; they
run on the host in float64, which is exact enough for tests and cheap for toy sizes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = [
  'high_quality_fraction',
  'mode_counts',
  'modes_covered',
  'sliced_wasserstein',
  'toy_metrics',
]


def as_2d(name: str, x: Any, dtype=np.float64) -> np.ndarray:
  """Converts `x` to a non-empty [N, D] array of `dtype`, raising a ValueError naming `name`
  (shared by the sample metrics: toy, sample_quality, precision_recall)."""
  x = np.asarray(x, dtype=dtype)
  if x.ndim != 2:
    raise ValueError(f'`{name}` must be a 2-D array [N, D]; got shape {x.shape}.')
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'`{name}` must have at least one row and one column; got {x.shape}.')
  return x


def _check_mixture_args(
  samples: Any, centers: Any, std: float, num_std: float
) -> tuple[np.ndarray, np.ndarray]:
  samples = as_2d('samples', samples)
  centers = as_2d('centers', centers)
  if samples.shape[1] != centers.shape[1]:
    raise ValueError(
      f'`samples` and `centers` must have the same dimension D; got samples '
      f'{samples.shape} and centers {centers.shape}.'
    )
  if not std > 0:
    raise ValueError(f'`std` must be positive; got {std}.')
  if not num_std > 0:
    raise ValueError(f'`num_std` must be positive; got {num_std}.')
  return samples, centers


def _nearest_center(samples: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns the index of each sample's nearest centre and the Euclidean distance to it."""
  # [N, K] squared distances; toy sizes (N ~ 1e4-1e5, K ~ 25) fit in memory comfortably.
  sq = np.sum((samples[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
  idx = np.argmin(sq, axis=1)
  dist = np.sqrt(sq[np.arange(samples.shape[0]), idx])
  return idx, dist


def _high_quality(
  samples: np.ndarray, centers: np.ndarray, std: float, num_std: float
) -> tuple[np.ndarray, np.ndarray]:
  idx, dist = _nearest_center(samples, centers)
  # NaN distances (diverged samples) compare False, so they are never high quality.
  return idx, dist <= num_std * std


def mode_counts(samples: Any, centers: Any, std: float, num_std: float = 3.0) -> np.ndarray:
  """Counts the high-quality samples of each mode.

  A sample belongs to the mode whose centre is nearest (Euclidean), and it is high quality
  when its distance to that centre is at most `num_std * std` (VEEGAN, Srivastava et al.,
  2017; PacGAN, Lin et al., 2018).

  Args:
    samples: generated points, shape [N, D].
    centers: mode centres, shape [K, D].
    std: standard deviation of each (isotropic) mixture component.
    num_std: radius of the high-quality ball, in units of `std`.

  Returns:
    An int64 array [K]: the number of high-quality samples assigned to each mode.

  Raises:
    ValueError: if an array is not 2-D, the dimensions D differ, or `std`/`num_std` <= 0.
  """
  samples, centers = _check_mixture_args(samples, centers, std, num_std)
  idx, hq = _high_quality(samples, centers, std, num_std)
  return np.bincount(idx[hq], minlength=centers.shape[0]).astype(np.int64)


def high_quality_fraction(samples: Any, centers: Any, std: float, num_std: float = 3.0) -> float:
  """Share of samples within `num_std` standard deviations of their nearest mode centre.

  hq = (1/N) * #{i : min_k ||x_i - c_k||_2 <= num_std * std}, as in VEEGAN (Srivastava et
  al., 2017) and PacGAN (Lin et al., 2018). For samples drawn from the true 2-D isotropic
  mixture (well-separated modes), the expected value is P(r <= 3 sigma) = 1 - exp(-9/2)
  ~= 0.9889, since r / sigma is Rayleigh distributed.

  Args:
    samples: generated points, shape [N, D].
    centers: mode centres, shape [K, D].
    std: standard deviation of each mixture component.
    num_std: radius of the high-quality ball, in units of `std`.

  Returns:
    The fraction in [0, 1] as a Python float.

  Raises:
    ValueError: if an array is not 2-D, the dimensions D differ, or `std`/`num_std` <= 0.
  """
  samples, centers = _check_mixture_args(samples, centers, std, num_std)
  _, hq = _high_quality(samples, centers, std, num_std)
  return float(np.mean(hq))


def modes_covered(
  samples: Any,
  centers: Any,
  std: float,
  num_std: float = 3.0,
  min_share: float = 0.2,
) -> int:
  """Number of modes that received enough high-quality samples.

  Mode k is covered when count_k >= min_share * N / K, where count_k is the number of
  high-quality samples assigned to it (see `mode_counts`) and N / K is the count a perfect
  sampler would give it. This is PacGAN's rule (Lin et al., 2018): with 2,500 samples and 25
  modes, a mode needs at least 20 high-quality samples.

  Args:
    samples: generated points, shape [N, D].
    centers: mode centres, shape [K, D].
    std: standard deviation of each mixture component.
    num_std: radius of the high-quality ball, in units of `std`.
    min_share: required fraction of a mode's expected share N / K.

  Returns:
    The number of covered modes, an int in [0, K].

  Raises:
    ValueError: if an array is not 2-D, the dimensions D differ, or `std`/`num_std` <= 0.
  """
  counts = mode_counts(samples, centers, std, num_std)
  num_samples = np.shape(samples)[0]
  threshold = min_share * num_samples / counts.shape[0]
  # A relative tolerance keeps an exactly-on-the-boundary count (20 of 2,500 for 25 modes)
  # covered even when the threshold's floating-point value lands a hair above the integer.
  return int(np.sum(counts >= threshold * (1.0 - 1e-9)))


def _directions(key: Any, num: int, dim: int) -> np.ndarray:
  """Draws `num` uniform random unit vectors in R^dim from an int seed or a JAX key."""
  if isinstance(key, int | np.integer):
    key = jax.random.key(int(key))
  g = np.asarray(jax.random.normal(key, (num, dim)), dtype=np.float64)
  norms = np.linalg.norm(g, axis=1, keepdims=True)
  # A zero Gaussian draw has probability zero; guard anyway rather than divide by zero.
  return g / np.maximum(norms, 1e-12)


def _w2_squared_1d_sorted(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
  """Exact squared 1-D W2 between empirical measures, batched over rows of sorted values.

  W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du. Both empirical quantile functions are step
  functions with jumps at i/N and j/M, so the integral is a finite sum over the merged grid
  of breakpoints. For N == M this reduces to the mean squared difference of sorted values.

  Args:
    xs: [P, N] sorted projections of the first set.
    ys: [P, M] sorted projections of the second set.

  Returns:
    [P] squared distances.
  """
  n, m = xs.shape[1], ys.shape[1]
  if n == m:
    return np.mean((xs - ys) ** 2, axis=1)
  breaks = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
  lower = np.concatenate([[0.0], breaks[:-1]])
  weights = breaks - lower
  mid = 0.5 * (lower + breaks)
  # The quantile at level u of n equally weighted sorted points is element floor(u * n).
  ix = np.minimum(np.floor(mid * n).astype(np.int64), n - 1)
  iy = np.minimum(np.floor(mid * m).astype(np.int64), m - 1)
  return np.sum(weights * (xs[:, ix] - ys[:, iy]) ** 2, axis=1)


def sliced_wasserstein(x: Any, y: Any, key: Any, num_projections: int = 256) -> float:
  """Sliced Wasserstein-2 distance between two point clouds.

  SW2(x, y) = sqrt( E_theta[ W2^2(theta^T x, theta^T y) ] ), theta uniform on the unit
  sphere, estimated with `num_projections` random directions (Rabin et al., 2011; Bonneel et
  al., 2015). Each 1-D W2^2 is computed exactly from sorted projections: for N == M it is the
  mean squared difference of the sorted values; for N != M it integrates the squared
  difference of the two empirical quantile functions over the merged grid of their
  breakpoints {i/N} U {j/M} (exact, no subsampling or interpolation). In 1-D (D == 1) every
  direction is +-1, so the result equals the exact W2.

  Args:
    x: first point cloud, shape [N, D].
    y: second point cloud, shape [M, D].
    key: an int seed or a `jax.random` key; the same key gives the same directions.
    num_projections: number of random directions.

  Returns:
    The distance as a Python float (NaN if any point is NaN).

  Raises:
    ValueError: if an array is not 2-D, the dimensions differ, or `num_projections` < 1.
  """
  x = as_2d('x', x)
  y = as_2d('y', y)
  if x.shape[1] != y.shape[1]:
    raise ValueError(
      f'`x` and `y` must have the same dimension D; got x {x.shape} and y {y.shape}.'
    )
  if num_projections < 1:
    raise ValueError(f'`num_projections` must be >= 1; got {num_projections}.')
  theta = _directions(key, num_projections, x.shape[1])
  xs = np.sort(theta @ x.T, axis=1)
  ys = np.sort(theta @ y.T, axis=1)
  return float(np.sqrt(np.mean(_w2_squared_1d_sorted(xs, ys))))


def toy_metrics(
  samples: Any,
  data: Any | None,
  centers: Any | None,
  std: float | None,
  seed: Any,
  *,
  num_std: float = 3.0,
  min_share: float = 0.2,
  num_projections: int = 256,
) -> dict[str, float]:
  """All toy-data metrics of one set of samples, keyed as in `W/eval/step_N.json`.

  Args:
    samples: generated points, shape [N, D].
    data: reference points from the data distribution [M, D], or None to skip `sliced_w2`.
    centers: mode centres [K, D] of a Gaussian mixture, or None for data without modes
      (swiss roll, moons, ...), which skips the mode metrics.
    std: the mixture's per-component standard deviation; required when `centers` is given.
    seed: int seed or `jax.random` key for the sliced Wasserstein directions.
    num_std: high-quality radius in standard deviations.
    min_share: PacGAN's coverage threshold as a share of N / K.
    num_projections: directions for the sliced Wasserstein distance.

  Returns:
    A dict with `high_quality_fraction` and `modes_covered` (only when `centers` is given)
    and `sliced_w2` (only when `data` is given).

  Raises:
    ValueError: on bad shapes, or when `centers` is given without a positive `std`.
  """
  out: dict[str, float] = {}
  if centers is not None:
    if std is None:
      raise ValueError('`std` is required when `centers` is given.')
    counts = mode_counts(samples, centers, std, num_std)
    n = np.shape(samples)[0]
    out['high_quality_fraction'] = float(counts.sum() / n)
    out['modes_covered'] = modes_covered(samples, centers, std, num_std, min_share)
  if data is not None:
    out['sliced_w2'] = sliced_wasserstein(samples, data, seed, num_projections)
  return out
