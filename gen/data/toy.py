"""Procedural 2-D toy distributions, each in its own coordinates (no rescaling).

Every toy is a function `sample(rng, n) -> float32[n, 2]` that draws `n` i.i.d. points at once;
`ToySource` materialises a fixed number of them from a fixed seed so that a split is a finite,
random-access data set like any other (shuffling, sharding and checkpointed positions then work
the same way as for images).

Definitions (coordinates are those of the papers the toys come from):
- `ring8`: 8 Gaussians with means 2 (cos 2 pi k/8, sin 2 pi k/8), isotropic std 0.02
  (Unrolled GAN, VEEGAN).
- `grid25`: 25 Gaussians with means on {-4, -2, 0, 2, 4}^2, isotropic std 0.05 (VEEGAN, PacGAN).
- `swiss_roll`: t ~ U[1.5 pi, 4.5 pi], x = (t cos t, t sin t) / 5 + N(0, 0.2^2 I); exactly
  FFJORD's `make_swiss_roll(noise=1.0)[:, [0, 2]] / 5`. Spans about [-2.8, 2.8]^2.
- `moons`: scikit-learn's two moons with noise std 0.1, then `2 x + (-1, -0.2)` (FFJORD), with the
  angle drawn uniformly instead of on a grid so that every point is i.i.d.
- `checkerboard`: uniform on the 8 dark squares of a 4x4 checkerboard over [-4, 4]^2 (FFJORD).
"""

import dataclasses
import zlib
from collections.abc import Callable, Sequence

import numpy as np

RING8_RADIUS = 2.0
RING8_STD = 0.02
GRID25_STD = 0.05
SWISS_ROLL_NOISE = 0.2
MOONS_NOISE = 0.1


def ring8_centers() -> np.ndarray:
  """The 8 means of `ring8`: evenly spaced on a circle of radius 2, the first at (2, 0)."""
  angles = 2 * np.pi * np.arange(8) / 8
  return (RING8_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)).astype(np.float32)


def grid25_centers() -> np.ndarray:
  """The 25 means of `grid25`: {-4, -2, 0, 2, 4}^2 in row-major order."""
  ticks = np.arange(-4.0, 5.0, 2.0)
  return (
    np.stack(np.meshgrid(ticks, ticks, indexing='ij'), axis=-1).reshape(-1, 2).astype(np.float32)
  )


def _mixture(centers: np.ndarray, std: float) -> Callable[[np.random.Generator, int], np.ndarray]:
  """Sampler of an equal-weight isotropic Gaussian mixture."""

  def sample(rng: np.random.Generator, n: int) -> np.ndarray:
    k = rng.integers(0, len(centers), size=n)
    return centers[k] + std * rng.standard_normal((n, 2))

  return sample


def sample_swiss_roll(rng: np.random.Generator, n: int) -> np.ndarray:
  """Draws `n` points of `swiss_roll` (see the module docstring)."""
  t = 1.5 * np.pi * (1 + 2 * rng.random(n))
  x = np.stack([t * np.cos(t), t * np.sin(t)], axis=-1) / 5
  return x + SWISS_ROLL_NOISE * rng.standard_normal((n, 2))


def sample_moons(rng: np.random.Generator, n: int) -> np.ndarray:
  """Draws `n` points of `moons`: each point picks the upper or lower moon with probability 1/2."""
  theta = np.pi * rng.random(n)
  upper = rng.random(n) < 0.5
  x = np.where(
    upper[:, None],
    np.stack([np.cos(theta), np.sin(theta)], axis=-1),
    np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], axis=-1),
  )
  x = x + MOONS_NOISE * rng.standard_normal((n, 2))
  return 2 * x + np.array([-1.0, -0.2])


def sample_checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
  """Draws `n` points of `checkerboard`, FFJORD's construction on [-2, 2]^2 scaled by 2."""
  x1 = 4 * rng.random(n) - 2
  x2 = rng.random(n) - 2 * rng.integers(0, 2, size=n)
  x2 = x2 + np.floor(x1) % 2
  return 2 * np.stack([x1, x2], axis=-1)


@dataclasses.dataclass(frozen=True)
class ToyDef:
  """How to draw one toy distribution.

  Attributes:
    sample: `(rng, n) -> [n, 2]` i.i.d. draws.
    mode_centers: [K, 2] means for Gaussian mixtures, else None.
    mode_std: the per-coordinate std of every mixture component, else None.
  """

  sample: Callable[[np.random.Generator, int], np.ndarray]
  mode_centers: np.ndarray | None = None
  mode_std: float | None = None


def _mixture_def(centers: np.ndarray, std: float) -> ToyDef:
  return ToyDef(sample=_mixture(centers, std), mode_centers=centers, mode_std=std)


# Explicit table: a toy exists because it is listed here, never because a module was imported.
TOY_DATASETS: dict[str, ToyDef] = {
  'ring8': _mixture_def(ring8_centers(), RING8_STD),
  'grid25': _mixture_def(grid25_centers(), GRID25_STD),
  'swiss_roll': ToyDef(sample=sample_swiss_roll),
  'moons': ToyDef(sample=sample_moons),
  'checkerboard': ToyDef(sample=sample_checkerboard),
}

# Split sizes and seeds. A large train split keeps an epoch close to the true distribution; the
# seeds differ so that the test points are independent draws.
TOY_SPLITS: dict[str, tuple[int, int]] = {'train': (1_000_000, 0), 'test': (100_000, 1)}


def _toy_def(name: str) -> ToyDef:
  if name not in TOY_DATASETS:
    raise KeyError(f'unknown toy {name!r}; known: {sorted(TOY_DATASETS)}')
  return TOY_DATASETS[name]


class ToySource:
  """A fixed set of i.i.d. points of one toy, generated once, read by index.

  Implements the random-access data-source protocol that grain reads (`__len__`, `__getitem__`)
  plus `get_batch`, which the gen loader uses to read a whole batch with one fancy index.

  Attributes:
    name: the toy's name in `TOY_DATASETS`.
    points: float32[num_examples, 2], all the data.
    mode_centers: [K, 2] mixture means, or None.
    mode_std: mixture component std, or None.
  """

  def __init__(self, name: str, num_examples: int, seed: int):
    """Draws the data.

    Args:
      name: a key of `TOY_DATASETS`.
      num_examples: how many points.
      seed: the data seed; the toy's name is mixed in so that toys sharing a seed are unrelated.
    """
    toy = _toy_def(name)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    self.name = name
    self.points = np.ascontiguousarray(toy.sample(rng, num_examples), dtype=np.float32)
    self.points.setflags(write=False)  # examples are views: keep them from being edited in place
    self.mode_centers = toy.mode_centers
    self.mode_std = toy.mode_std

  def __len__(self) -> int:
    return len(self.points)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {'x': self.points[index]}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Reads several examples (the batched-read protocol of grain and PyTorch)."""
    return [{'x': p} for p in self.points[np.asarray(indices, dtype=np.int64)]]

  def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Reads a stacked batch: {'x': float32[len(indices), 2]}."""
    return {'x': self.points[np.asarray(indices, dtype=np.int64)]}

  def __repr__(self) -> str:
    return f'ToySource({self.name!r}, num_examples={len(self)})'


def toy_source(name: str, split: str) -> ToySource:
  """The fixed `split` ('train' or 'test') of toy `name`."""
  num_examples, seed = TOY_SPLITS[split]
  return ToySource(name, num_examples, seed)
