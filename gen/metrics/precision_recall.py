"""k-nearest-neighbour metrics of feature sets: improved precision and recall, density and
coverage, and memorisation of training examples.

Each set of features [N, D] stands for its distribution through the union of balls around its
points, each ball's radius the distance to the point's k-th nearest neighbour in its own set
(Kynkaanniemi et al., 2019, "Improved Precision and Recall Metric for Assessing Generative
Models"; Naeem et al., 2020, "Reliable Fidelity and Diversity Metrics for Generative Models").

The core computes, for blocks of query rows against a whole reference set, the squared
Euclidean distances ||q||^2 + ||r||^2 - 2 q.r (clipped at 0) in float32, with the matmul at
`Precision.HIGHEST` (no TF32/bf16 passes on GPU/TPU). Both sets are first centred on the
reference set's mean in float64 on the host: distances do not change, and the cancellation in
the expansion, whose round-off is ~eps * (||q||^2 + ||r||^2), drops from the scale of the
features' common offset (large for non-negative Inception features) to that of their spread.
Pairs much closer than their distance to the mean (near-duplicates) keep an absolute error of
~eps * ||q - mean||^2 in the squared distance: a row's distance to a copy of itself comes out
as up to ~sqrt(eps) * ||q - mean|| ~ 5e-4 * ||q - mean||, not 0. `knn_radii` and
`count_in_balls` compare such expanded distances with each other, computed by the same code
(a centre's k-th neighbour lies on its ball's boundary when the float32 matmul is symmetric in
its operands, as observed on CPU); `nearest_neighbour` recomputes the distance of the pair it
found from the rows' difference, so copies are at distance exactly 0.

The query rows are sharded over the 'data' axis of a `jax.sharding.Mesh` (gen's
`gen.setup.make_mesh()`; None: the first device), padded to a multiple of the device count times
the block size, and the padding is dropped; the reference set is replicated. Every device
processes its rows in blocks of the same size whatever the device count, so the results do not
depend on it. The reference set [M, D] and a [block, M] tile of distances must fit on a device.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen.metrics.toy import as_2d

__all__ = [
  'count_in_balls',
  'density_coverage',
  'knn_radii',
  'memorisation',
  'nearest_neighbour',
  'precision_recall',
]

DATA_AXIS = 'data'
MAX_BLOCK_ROWS = 1024
MAX_TILE = 1 << 25  # elements of one [block, M] distance tile (128 MiB in float32)


def _check_pair(names: tuple[str, str], a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
  a, b = as_2d(names[0], a), as_2d(names[1], b)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f'`{names[0]}` and `{names[1]}` must have the same dimension D; got {a.shape} and {b.shape}.'
    )
  return a, b


def _check_k(k: int, n: int, name: str) -> None:
  if not 1 <= k <= n - 1:
    raise ValueError(f'`k` must be in [1, N - 1] with N = {n} rows of `{name}`; got {k}.')


def _mesh(mesh: Mesh | None) -> Mesh:
  if mesh is None:
    return Mesh(np.asarray(jax.devices()[:1]), (DATA_AXIS,))
  if DATA_AXIS not in mesh.axis_names:
    raise ValueError(f'The mesh needs an axis named {DATA_AXIS!r}; got {mesh.axis_names}.')
  return mesh


# ---------------------------------------------------------------------------------------------
# The blocked, sharded core. Block functions map query rows [B, ...] and the replicated
# reference (rows r [M, D], their squared norms r_sq [M], extras) to per-row results [B, ...].


def _sq_distances(q: jax.Array, r: jax.Array, r_sq: jax.Array) -> jax.Array:
  """Squared Euclidean distances [B, M] = max(||q||^2 + ||r||^2 - 2 q.r, 0), float32."""
  cross = jnp.matmul(q, r.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(jnp.sum(q * q, axis=1)[:, None] + r_sq[None, :] - 2.0 * cross, 0.0)


def _kth_block(q, q_index, r, r_sq, *, k):
  """Distance from each query to its k-th nearest reference row other than row `q_index`."""
  d2 = _sq_distances(q, r, r_sq)
  d2 = jnp.where(q_index[:, None] == jnp.arange(r.shape[0])[None, :], jnp.inf, d2)
  return jnp.sqrt(-jax.lax.top_k(-d2, k)[0][:, k - 1])


def _count_block(q, r, r_sq, radii, *, strict):
  """Number of reference balls B(r_j, radii_j) containing each query."""
  d = jnp.sqrt(_sq_distances(q, r, r_sq))
  inside = d < radii[None, :] if strict else d <= radii[None, :]
  return jnp.sum(inside, axis=1, dtype=jnp.int32)


def _nearest_block(q, r, r_sq):
  """Index of and distance to each query's nearest reference row (the first on ties).

  The search uses the expanded distances; the reported distance is recomputed from the
  difference of the two rows, ||q - r_nn||, exact to float32 round-off (0 for a copy).
  """
  index = jnp.argmin(_sq_distances(q, r, r_sq), axis=1)
  diff = q - r[index]
  return index.astype(jnp.int32), jnp.sqrt(jnp.sum(diff * diff, axis=1))


@functools.lru_cache(maxsize=64)
def _compiled(block_fn, mesh: Mesh, block: int, static: tuple):
  fn = functools.partial(block_fn, **dict(static))

  def local(rows, consts):
    r, *extra = consts
    r_sq = jnp.sum(r * r, axis=1)
    blocks = jax.tree.map(lambda a: a.reshape((-1, block) + a.shape[1:]), rows)
    out = jax.lax.map(lambda b: fn(*b, r, r_sq, *extra), blocks)
    return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:]), out)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(DATA_AXIS), P()), out_specs=P(DATA_AXIS))
  return jax.jit(sharded, out_shardings=NamedSharding(mesh, P()))


def _put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  # Every process holds all of `x`; each device takes its slice (works across processes too).
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _map_rows(block_fn, rows: tuple, consts: tuple, mesh: Mesh | None, **static):
  """Applies `block_fn` to all query rows, sharded over the mesh; returns NumPy results [N]."""
  mesh = _mesh(mesh)
  n, m = rows[0].shape[0], consts[0].shape[0]
  # The block depends on the sizes only, never on the device count (see the module docstring).
  block = max(1, min(n, MAX_BLOCK_ROWS, MAX_TILE // m))
  num_devices = mesh.shape[DATA_AXIS]
  per_device = -(-n // (num_devices * block)) * block
  pad = per_device * num_devices - n
  rows = tuple(np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]) for a in rows)
  row_sharding, replicated = NamedSharding(mesh, P(DATA_AXIS)), NamedSharding(mesh, P())
  out = _compiled(block_fn, mesh, block, tuple(sorted(static.items())))(
    tuple(_put(a, row_sharding) for a in rows), tuple(_put(c, replicated) for c in consts)
  )
  return jax.tree.map(lambda o: np.asarray(o.addressable_data(0))[:n], out)


def _centred(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
  return (x - centre).astype(np.float32)


def _radii_of_rows(reference: np.ndarray, rows: np.ndarray, k: int, mesh) -> np.ndarray:
  """k-NN radii of reference[rows] within `reference` (excluding each row itself)."""
  ref = _centred(reference, reference.mean(axis=0))
  rows = rows.astype(np.int32)
  return _map_rows(_kth_block, (ref[rows], rows), (ref,), mesh, k=k)


# ---------------------------------------------------------------------------------------------
# Public building blocks


def knn_radii(features: Any, k: int, mesh: Mesh | None = None) -> np.ndarray:
  """Distance from each row to its k-th nearest neighbour among the other rows.

  NND_k(x_i) = the k-th smallest of {||x_i - x_j||_2 : j != i} (row i itself is excluded by
  index, so an exact duplicate of x_i counts as a neighbour at distance 0), the radius of x_i's
  ball in the k-NN manifold estimate (Kynkaanniemi et al., 2019; Naeem et al., 2020).

  Args:
    features: [N, D] array.
    k: neighbourhood size, 1 <= k <= N - 1.
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard the rows over; None: one device.

  Returns:
    float32 array [N].
  """
  x = as_2d('features', features)
  _check_k(k, x.shape[0], 'features')
  return _radii_of_rows(x, np.arange(x.shape[0]), k, mesh)


def count_in_balls(
  queries: Any,
  centres: Any,
  radii: Any,
  mesh: Mesh | None = None,
  strict: bool = False,
) -> np.ndarray:
  """For each query row, the number of balls B(c_j, radii_j) that contain it.

  count_i = #{j : ||q_i - c_j||_2 <= radii_j} (or `<` when `strict`); "is q_i in the manifold of
  the centres" is count_i > 0. Distances are compared (not their squares), computed as the
  square root of the same float32 squared distances as `knn_radii` uses, after centring on the
  centres' mean, so a centre's k-th neighbour lies exactly on the ball's boundary.

  Args:
    queries: [N, D] points to test.
    centres: [M, D] ball centres.
    radii: [M] ball radii (e.g. `knn_radii(centres, k)`).
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard the queries over; None: one device.
    strict: open balls (`<`) instead of closed ones (`<=`).

  Returns:
    int64 array [N].
  """
  q, c = _check_pair(('queries', 'centres'), queries, centres)
  radii = np.asarray(radii, np.float32)
  if radii.shape != (c.shape[0],):
    raise ValueError(f'`radii` must have shape [{c.shape[0]}]; got {radii.shape}.')
  centre = c.mean(axis=0)
  counts = _map_rows(
    _count_block, (_centred(q, centre),), (_centred(c, centre), radii), mesh, strict=strict
  )
  return counts.astype(np.int64)


def nearest_neighbour(
  queries: Any, reference: Any, mesh: Mesh | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Index of and Euclidean distance to each query's nearest reference row.

  Args:
    queries: [N, D] array.
    reference: [M, D] array.
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard the queries over; None: one device.

  Returns:
    (index int64 [N], the first of equally near rows (by the expanded distances); distance
    float32 [N], ||q_i - r_index_i|| from the difference of the rows).
  """
  q, r = _check_pair(('queries', 'reference'), queries, reference)
  centre = r.mean(axis=0)
  index, dist = _map_rows(_nearest_block, (_centred(q, centre),), (_centred(r, centre),), mesh)
  return index.astype(np.int64), dist


# ---------------------------------------------------------------------------------------------
# Metrics


def precision_recall(real: Any, fake: Any, k: int = 3, mesh: Mesh | None = None) -> dict:
  """Improved precision and recall (Kynkaanniemi et al., 2019).

  With the k-NN manifold manifold(S) = U_{s in S} B(s, NND_k(s)) (closed balls, as eq. 1 of the
  paper and its reference code's `<=`),

    precision = (1/M) sum_j 1[fake_j in manifold(real)],
    recall    = (1/N) sum_i 1[real_i in manifold(fake)].

  Args:
    real: [N, D] features of data.
    fake: [M, D] features of samples.
    k: neighbourhood size (the paper uses 3); both sets need more than k rows.
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard rows over; None: one device.

  Returns:
    {'precision': float, 'recall': float}.
  """
  real, fake = _check_pair(('real', 'fake'), real, fake)
  _check_k(k, real.shape[0], 'real')
  _check_k(k, fake.shape[0], 'fake')
  in_real = count_in_balls(fake, real, knn_radii(real, k, mesh), mesh) > 0
  in_fake = count_in_balls(real, fake, knn_radii(fake, k, mesh), mesh) > 0
  return {'precision': float(np.mean(in_real)), 'recall': float(np.mean(in_fake))}


def density_coverage(real: Any, fake: Any, k: int = 5, mesh: Mesh | None = None) -> dict:
  """Density and coverage (Naeem et al., 2020).

  With r_i = NND_k(real_i) and open balls (strict `<`, as the authors' `prdc` code),

    density  = 1/(k M) sum_j sum_i 1[||fake_j - real_i|| < r_i],
    coverage = (1/N) sum_i 1[min_j ||real_i - fake_j|| < r_i].

  Density is unbounded (about 1 when fake and real come from one distribution); coverage is in
  [0, 1].

  Args:
    real: [N, D] features of data.
    fake: [M, D] features of samples.
    k: neighbourhood size (the paper uses 5); `real` needs more than k rows.
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard rows over; None: one device.

  Returns:
    {'density': float, 'coverage': float}.
  """
  real, fake = _check_pair(('real', 'fake'), real, fake)
  _check_k(k, real.shape[0], 'real')
  radii = knn_radii(real, k, mesh)
  counts = count_in_balls(fake, real, radii, mesh, strict=True)
  _, nearest_fake = nearest_neighbour(real, fake, mesh)
  return {
    'density': float(counts.sum() / (k * fake.shape[0])),
    'coverage': float(np.mean(nearest_fake < radii)),
  }


def memorisation(samples: Any, train: Any, mesh: Mesh | None = None) -> dict:
  """Share of samples closer to their nearest training example than it is to its own neighbour.

  Sample s with nearest training example x = train[nn(s)] is memorised when
  ||s - x|| < NND_1(x), the distance from x to its nearest other training example: s lies
  strictly inside x's 1-NN ball, closer to x than any other training point is. An exact copy of
  a training point is memorised (unless that point is duplicated in `train`), a sample far from
  all training points is not. Fresh draws from the data distribution are not at 0 (about 0.3
  for 120 standard normal draws in 16-D against 300 training ones): read the fraction against
  that of held-out data, `memorisation(test, train)`, the level of a model that copies nothing.

  Args:
    samples: [N, D] features (or flattened pixels) of samples.
    train: [M, D] the same for the training set, M >= 2.
    mesh: a `jax.sharding.Mesh` with a 'data' axis to shard rows over; None: one device.

  Returns:
    {'fraction': float, 'nn_index': int64 [N], 'nn_distance': float32 [N]}.
  """
  samples, train = _check_pair(('samples', 'train'), samples, train)
  _check_k(1, train.shape[0], 'train')
  nn_index, nn_distance = nearest_neighbour(samples, train, mesh)
  # Only the training points that are someone's nearest neighbour need a radius.
  rows, inverse = np.unique(nn_index, return_inverse=True)
  radii = _radii_of_rows(train, rows, 1, mesh)[inverse]
  return {
    'fraction': float(np.mean(nn_distance < radii)),
    'nn_index': nn_index,
    'nn_distance': nn_distance,
  }
