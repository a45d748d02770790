"""Tests for gen.metrics.toy."""

import itertools
import math

import jax
import numpy as np
import pytest

from gen.metrics import toy

GRID = np.array(list(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2)))  # 25 modes
STD = 0.05


def _mixture(rng, centers, std, n):
  idx = rng.integers(0, centers.shape[0], size=n)
  return centers[idx] + std * rng.standard_normal((n, centers.shape[1]))


def _far_away(n):
  """Samples that are high quality for no mode (nearest centre is >> 3 std away)."""
  return np.full((n, 2), 1.0)  # halfway between grid modes: distance >= 1 = 20 std


# ---------------------------------------------------------------------------------------------
# high-quality fraction and mode counts


def test_boundary_just_inside_and_outside_three_std():
  radius = 3.0 * STD
  center = GRID[12]  # (0, 0)
  inside = center + np.array([[0.999 * radius, 0.0], [0.0, -0.999 * radius]])
  outside = center + np.array([[1.001 * radius, 0.0], [0.0, 1.001 * radius]])
  samples = np.concatenate([inside, outside])
  assert toy.high_quality_fraction(samples, GRID, STD) == 0.5
  counts = toy.mode_counts(samples, GRID, STD)
  assert counts[12] == 2 and counts.sum() == 2
  # A wider ball counts all four.
  assert toy.high_quality_fraction(samples, GRID, STD, num_std=3.1) == 1.0


def test_high_quality_fraction_hand_built():
  samples = np.array(
    [
      [2.0, 2.0],  # on a mode
      [-4.01, 3.99],  # 0.014 from (-4, 4): high quality
      [1.0, 0.0],  # halfway between modes: not
      [0.0, 0.2],  # 4 std from (0, 0): not
    ]
  )
  assert toy.high_quality_fraction(samples, GRID, STD) == 0.5
  counts = toy.mode_counts(samples, GRID, STD)
  assert counts.dtype == np.int64 and counts.shape == (25,)
  np.testing.assert_array_equal(np.nonzero(counts)[0], [4, 18])  # (-4, 4) and (2, 2)


def test_modes_covered_pacgan_boundary():
  """2,500 samples, 25 modes: a mode needs 20 high-quality samples (20% of 100)."""
  samples = [np.repeat(GRID[k : k + 1], 20, axis=0) for k in range(10)]  # exactly 20
  samples.append(np.repeat(GRID[10:11], 19, axis=0))  # one short
  num = sum(len(s) for s in samples)
  samples.append(_far_away(2500 - num))
  samples = np.concatenate(samples)
  assert samples.shape == (2500, 2)
  counts = toy.mode_counts(samples, GRID, STD)
  assert counts[:10].tolist() == [20] * 10 and counts[10] == 19 and counts[11:].sum() == 0
  assert toy.modes_covered(samples, GRID, STD) == 10
  # A looser rule (min_share 0.19 -> 19 samples) also counts the 11th mode.
  assert toy.modes_covered(samples, GRID, STD, min_share=0.19) == 11
  assert math.isclose(toy.high_quality_fraction(samples, GRID, STD), 219 / 2500)


def test_modes_covered_counts_only_high_quality_samples():
  # 100 samples at mode 0 but 4 std away: assigned to mode 0 yet not high quality.
  samples = np.concatenate([GRID[:1] + [0.2, 0.0]] * 100)
  assert toy.mode_counts(samples, GRID, STD).sum() == 0
  assert toy.modes_covered(samples, GRID, STD) == 0


def test_true_mixture_covers_all_modes_with_rayleigh_fraction():
  rng = np.random.default_rng(0)
  samples = _mixture(rng, GRID, STD, 50_000)
  assert toy.modes_covered(samples, GRID, STD) == 25
  # In 2-D, r / sigma is Rayleigh: P(r <= 3 sigma) = 1 - exp(-9/2) ~= 0.98889.
  expected = 1.0 - math.exp(-4.5)
  sd = math.sqrt(expected * (1 - expected) / 50_000)  # binomial standard error ~ 5e-4
  assert abs(toy.high_quality_fraction(samples, GRID, STD) - expected) < 5 * sd


def test_accepts_jax_arrays():
  samples = jax.numpy.asarray(GRID[:3])
  assert toy.high_quality_fraction(samples, jax.numpy.asarray(GRID), STD) == 1.0


@pytest.mark.parametrize(
  'samples, centers, match',
  [
    (np.zeros((5, 3)), GRID, 'same dimension'),
    (np.zeros(5), GRID, '`samples`'),
    (np.zeros((5, 2)), np.zeros(2), '`centers`'),
    (np.zeros((0, 2)), GRID, '`samples`'),
  ],
)
def test_shape_errors_name_the_argument(samples, centers, match):
  for fn in (toy.high_quality_fraction, toy.modes_covered, toy.mode_counts):
    with pytest.raises(ValueError, match=match):
      fn(samples, centers, STD)


def test_bad_std_raises():
  with pytest.raises(ValueError, match='`std`'):
    toy.high_quality_fraction(GRID, GRID, 0.0)


def test_nan_samples_are_not_high_quality():
  samples = np.array([[np.nan, 0.0], [0.0, 0.0]])
  assert toy.high_quality_fraction(samples, GRID, STD) == 0.5


# ---------------------------------------------------------------------------------------------
# sliced Wasserstein


def _w2_1d_bruteforce(a, b):
  """Exact 1-D W2 for equal sizes: match sorted values."""
  return math.sqrt(np.mean((np.sort(a) - np.sort(b)) ** 2))


def test_sliced_w2_zero_for_identical_sets():
  x = np.random.default_rng(1).standard_normal((300, 2))
  assert toy.sliced_wasserstein(x, x, 0) == 0.0
  # Order does not matter.
  assert toy.sliced_wasserstein(x, x[::-1], 0) == pytest.approx(0.0, abs=1e-12)


def test_sliced_w2_1d_equals_exact_w2():
  rng = np.random.default_rng(2)
  a, b = rng.standard_normal(500), rng.exponential(size=500)
  got = toy.sliced_wasserstein(a[:, None], b[:, None], 0, num_projections=8)
  assert got == pytest.approx(_w2_1d_bruteforce(a, b), rel=1e-12)


def test_sliced_w2_gaussian_shift_in_1d():
  """W2(N(0, 1), N(m, 1)) = |m|."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((20_000, 1))
  y = 1.5 + rng.standard_normal((20_000, 1))
  assert toy.sliced_wasserstein(x, y, 0, num_projections=4) == pytest.approx(1.5, abs=0.05)


def test_sliced_w2_shift_of_identical_clouds_2d():
  """Shifting a cloud by c: each projection moves by theta.c, so SW2 = |c| sqrt(E cos^2)."""
  x = np.random.default_rng(4).standard_normal((400, 2))
  c = np.array([3.0, 4.0])  # |c| = 5; in 2-D E[cos^2] = 1/2
  got = toy.sliced_wasserstein(x, x + c, 0, num_projections=4096)
  assert got == pytest.approx(5.0 / math.sqrt(2.0), rel=0.03)


def test_sliced_w2_unequal_sizes_exact():
  # Quantile functions: x has steps {0, 1} at u in [0, .5), [.5, 1); y = {0, 0.5, 1} in
  # thirds. Squared difference: 0 on [0, 1/3), 0.25 on [1/3, 1/2), 0.25 on [1/2, 2/3), 0 after.
  x = np.array([[0.0], [1.0]])
  y = np.array([[0.0], [0.5], [1.0]])
  got = toy.sliced_wasserstein(x, y, 0, num_projections=2)
  assert got == pytest.approx(math.sqrt(0.25 / 3.0), rel=1e-12)
  # Repeating every point k times leaves the measure, hence the distance, unchanged.
  assert toy.sliced_wasserstein(np.repeat(x, 3, axis=0), y, 0) == pytest.approx(got)


def test_sliced_w2_unequal_sizes_gaussian_shift():
  rng = np.random.default_rng(5)
  x = rng.standard_normal((15_000, 1))
  y = -2.0 + rng.standard_normal((10_000, 1))
  assert toy.sliced_wasserstein(x, y, 0, num_projections=2) == pytest.approx(2.0, abs=0.06)


def test_sliced_w2_symmetric_and_deterministic():
  rng = np.random.default_rng(6)
  x, y = rng.standard_normal((200, 2)), rng.uniform(size=(150, 2))
  d = toy.sliced_wasserstein(x, y, 7)
  assert toy.sliced_wasserstein(y, x, 7) == pytest.approx(d, rel=1e-12)
  assert toy.sliced_wasserstein(x, y, 7) == d
  assert toy.sliced_wasserstein(x, y, jax.random.key(7)) == d  # int seed == key(seed)
  assert toy.sliced_wasserstein(x, y, 8) != d


def test_sliced_w2_shape_errors():
  with pytest.raises(ValueError, match='same dimension'):
    toy.sliced_wasserstein(np.zeros((3, 2)), np.zeros((3, 3)), 0)
  with pytest.raises(ValueError, match='`y`'):
    toy.sliced_wasserstein(np.zeros((3, 2)), np.zeros(3), 0)


# ---------------------------------------------------------------------------------------------
# toy_metrics


def test_toy_metrics_keys_and_values():
  rng = np.random.default_rng(7)
  data = _mixture(rng, GRID, STD, 2500)
  samples = _mixture(rng, GRID, STD, 2500)
  out = toy.toy_metrics(samples, data, GRID, STD, seed=0)
  assert set(out) == {'high_quality_fraction', 'modes_covered', 'sliced_w2'}
  assert out['modes_covered'] == 25
  assert out['high_quality_fraction'] == toy.high_quality_fraction(samples, GRID, STD)
  assert out['sliced_w2'] == toy.sliced_wasserstein(samples, data, 0)
  assert out['sliced_w2'] < 0.2


def test_toy_metrics_without_centers():
  x = np.random.default_rng(8).standard_normal((100, 2))
  out = toy.toy_metrics(x, x, None, None, seed=0)
  assert out == {'sliced_w2': 0.0}


def test_toy_metrics_requires_std_with_centers():
  with pytest.raises(ValueError, match='`std`'):
    toy.toy_metrics(GRID, GRID, GRID, None, seed=0)
