"""Feature networks for sample metrics: a name -> a pure function images -> features (+ logits).

- `digits_cnn`: the classifier gen trains on the digits train split (`digits_classifier`); 128-d
  penultimate features (FD-digits, KID, precision/recall, ...) and 10 logits (digits IS).
- `inception_v3`: the TF FID InceptionV3 (`inception`), pool3 2048-d features and 1008 logits,
  from a local weights file (FID and the usual Inception Score).
- `identity`: the data itself, flattened (2-D toys; any small data).
- anything registered with `register(name, factory)`: a user's own feature function.

`'auto'` (`resolve`) picks digits_cnn for digits, inception_v3 for other images, identity for
points. Every network reports a checksum of its weights and its preprocessing, which reference
statistics and eval JSONs record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gen
from gen.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FeatureNet:
  """A feature network ready to run.

  Attributes:
    name: its registry name.
    checksum: sha256 of its weights ('' when it has none).
    preprocessing: what happens to data-space images before the network (recorded).
    fn: images [B, ...] in data space -> {'features': [B, D], optionally 'logits': [B, K]};
      pure and jittable (`extract` jits it over the mesh).
    has_logits: whether `fn` returns class logits (the Inception Score needs them).
    info: extra facts to record (e.g. the digits classifier's test accuracy).
  """

  name: str
  checksum: str
  preprocessing: dict
  fn: Callable[[jax.Array], dict]
  has_logits: bool
  info: dict = dataclasses.field(default_factory=dict)

  def record(self) -> dict:
    """The network's part of a protocol: name, weights checksum, preprocessing, info."""
    record = {'name': self.name, 'sha256': self.checksum, 'preprocessing': self.preprocessing}
    return {**record, **self.info}


def _identity(spec, data_dir: str) -> FeatureNet:
  del spec, data_dir
  return FeatureNet(
    name='identity',
    checksum='',
    preprocessing={'quantise': 'none', 'resize': 'none'},
    fn=lambda x: {'features': x.reshape(x.shape[0], -1).astype(jnp.float32)},
    has_logits=False,
  )


def _digits_cnn(spec, data_dir: str) -> FeatureNet:
  from gen.metrics import digits_classifier as dc

  if tuple(spec.shape) != (8, 8, 1):
    raise ConfigError(
      f"eval.features='digits_cnn' reads 8x8x1 images; data.name={spec.name!r} has {spec.shape}"
    )
  params, info = dc.load_or_train(data_dir)
  return FeatureNet(
    name='digits_cnn',
    checksum=info['sha256'],
    preprocessing=dc.PREPROCESSING,
    fn=lambda x: dc.apply(params, x),
    has_logits=True,
    info={'test_accuracy': info['test_accuracy'], 'inception_score_logits': dc.IS_LOGITS},
  )


def _inception(spec, data_dir: str) -> FeatureNet:
  from gen.metrics import inception, inception_weights

  if spec.kind != 'images':
    raise ConfigError(f"eval.features='inception_v3' needs images; data.name={spec.name!r}")
  path = inception_weights.weights_path(data_dir)  # ConfigError, with the how-to, when missing
  params = inception_weights.load_params(path)
  return FeatureNet(
    name='inception_v3',
    checksum=inception_weights.weights_checksum(path),
    preprocessing=inception.PREPROCESSING,
    fn=lambda x: inception.features(params, x),
    has_logits=True,
    info={'inception_score_logits': inception.IS_LOGITS},
  )


# name -> factory(spec, data_dir) -> FeatureNet
FEATURE_NETS: dict[str, Callable[[Any, str], FeatureNet]] = {
  'identity': _identity,
  'digits_cnn': _digits_cnn,
  'inception_v3': _inception,
}


def register(name: str, factory: Callable[[Any, str], FeatureNet]) -> None:
  """Makes `eval.features=name` use `factory(spec, data_dir) -> FeatureNet` (a user's network)."""
  FEATURE_NETS[name] = factory


def resolve(name: str, spec) -> str:
  """`eval.features` with 'auto' replaced by the dataset's default network."""
  if name == 'auto':
    if spec.kind == 'points':
      return 'identity'
    return 'digits_cnn' if spec.name == 'digits' else 'inception_v3'
  if name not in FEATURE_NETS:
    raise ConfigError(
      f"eval.features: {name!r} is unknown; choose 'auto' or one of {sorted(FEATURE_NETS)}"
    )
  return name


def load(name: str, spec, data_dir: str) -> FeatureNet:
  """The feature network `name` ('auto' allowed) for dataset `spec`."""
  return FEATURE_NETS[resolve(name, spec)](spec, data_dir)


def jit(fn, **kwargs):
  """`jax.jit` for a feature network: on the CPU it compiles with XLA's default YNNPACK
  convolutions (gen.REFERENCE_CPU_COMPILER_OPTIONS), whose rounding does not depend on the
  process's device count, so features, reference statistics and the digits classifier's
  training come out bit for bit the same in a 1-device and an 8-device process."""
  if jax.default_backend() == 'cpu':
    kwargs['compiler_options'] = gen.REFERENCE_CPU_COMPILER_OPTIONS
  return jax.jit(fn, **kwargs)


def extract(net: FeatureNet, x: np.ndarray, mesh: Mesh | None = None, batch_size: int = 500):
  """Features (and logits) of data-space examples x [N, ...], in batches over `mesh`'s 'data'
  axis (rows padded to a whole batch, the padding dropped). Returns float32 numpy arrays."""
  x = np.asarray(x, np.float32)
  n = len(x)
  devices = mesh.size if mesh is not None else 1
  batch = max(devices, min(batch_size, n) // devices * devices)
  if mesh is None:
    fn = jit(net.fn)
  else:
    sharding = NamedSharding(mesh, P('data'))
    fn = jit(net.fn, in_shardings=sharding, out_shardings=sharding)
  outputs: dict[str, list[np.ndarray]] = {}
  for start in range(0, n, batch):
    chunk = x[start : start + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    out = jax.device_get(fn(chunk))
    for key, value in out.items():
      outputs.setdefault(key, []).append(np.asarray(value[: batch - pad], np.float32))
  return {key: np.concatenate(values) for key, values in outputs.items()}
