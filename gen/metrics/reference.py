"""Reference statistics: the features of a dataset split, with the recipe that made them.

`gen stats --dataset=NAME --split=S` (and evaluation, the first time it needs them) writes

  <data_dir>/gen_stats/NAME-S-FEATURES.npz   mean, cov (float64), features, logits (float32)
  <data_dir>/gen_stats/NAME-S-FEATURES.json  the recipe: dataset, split, n, feature network
                                             (name, weights sha256, preprocessing), version

Evaluation recomputes the recipe it would use and refuses stored statistics whose recipe
differs (another feature-network checksum, another preprocessing, another n), naming the
fields, instead of silently comparing numbers of different protocols.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np
from absl import logging

from gen import data as data_lib
from gen.errors import ConfigError
from gen.metrics import features as features_lib
from gen.metrics import frechet

VERSION = 1
STATS_DIR = 'gen_stats'
CHUNK = 2000  # examples read and embedded at a time


@dataclasses.dataclass(frozen=True)
class Reference:
  """A split's statistics: Gaussian fit, the features themselves, logits (or None), recipe."""

  stats: frechet.GaussianStats
  features: np.ndarray
  logits: np.ndarray | None
  recipe: dict


def recipe(dataset: str, split: str, n: int, net: features_lib.FeatureNet) -> dict:
  """What determines reference statistics; two recipes must be equal to compare numbers."""
  return {
    'version': VERSION,
    'dataset': dataset,
    'split': split,
    'n': int(n),
    'features': net.record(),
  }


def paths(data_dir: str, dataset: str, split: str, net_name: str) -> tuple[str, str]:
  """(npz, json) paths of the statistics of `dataset`/`split` under feature network `net_name`."""
  safe_split = split.replace('/', '_').replace(':', '_').replace('[', '_').replace(']', '')
  stem = os.path.join(data_dir, STATS_DIR, f'{dataset}-{safe_split}-{net_name}')
  return stem + '.npz', stem + '.json'


def split_examples(dataset: str, split: str, data_dir: str | None, num: int | None = None):
  """Yields the first `num` (default all) examples of a split, in chunks [<= CHUNK, ...]."""
  source = data_lib.make_source(dataset, split, data_dir)
  n = len(source) if num is None else min(num, len(source))
  for start in range(0, n, CHUNK):
    yield source.get_batch(np.arange(start, min(n, start + CHUNK)))['x']


def split_size(dataset: str, split: str, data_dir: str | None) -> int:
  return len(data_lib.make_source(dataset, split, data_dir))


def compute(dataset, split, net, data_dir, mesh=None) -> Reference:
  """Embeds every example of the split; float64 Gaussian fit."""
  acc = frechet.StatsAccumulator()
  feats, logits = [], []
  for chunk in split_examples(dataset, split, data_dir):
    out = features_lib.extract(net, chunk, mesh)
    acc.add(out['features'])
    feats.append(out['features'])
    if 'logits' in out:
      logits.append(out['logits'])
  features = np.concatenate(feats)
  return Reference(
    stats=acc.result(),
    features=features,
    logits=np.concatenate(logits) if logits else None,
    recipe=recipe(dataset, split, len(features), net),
  )


def save(ref: Reference, data_dir: str) -> str:
  """Writes the statistics and their recipe (atomically); returns the npz path."""
  r = ref.recipe
  npz, meta = paths(data_dir, r['dataset'], r['split'], r['features']['name'])
  os.makedirs(os.path.dirname(npz), exist_ok=True)
  arrays = {'mean': ref.stats.mean, 'cov': ref.stats.cov, 'features': ref.features}
  if ref.logits is not None:
    arrays['logits'] = ref.logits
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with open(npz + '.tmp', 'wb') as f:
    f.write(buffer.getvalue())
  os.replace(npz + '.tmp', npz)
  with open(meta + '.tmp', 'w') as f:
    json.dump(ref.recipe, f, indent=2, sort_keys=True)
  os.replace(meta + '.tmp', meta)
  return npz


def _differences(stored: dict, wanted: dict, prefix: str = '') -> list[str]:
  out = []
  for key in sorted(set(stored) | set(wanted)):
    a, b = stored.get(key), wanted.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f'{prefix}{key}.')
    elif a != b:
      out.append(f'{prefix}{key}: stored {a!r}, evaluation uses {b!r}')
  return out


def load(dataset, split, net, data_dir) -> Reference | None:
  """The stored statistics, None when there are none; ConfigError when their recipe differs."""
  npz, meta = paths(data_dir, dataset, split, net.name)
  if not (os.path.exists(npz) and os.path.exists(meta)):
    return None
  with open(meta) as f:
    stored = json.load(f)
  wanted = recipe(dataset, split, split_size(dataset, split, data_dir), net)
  diff = _differences(stored, wanted)
  if diff:
    raise ConfigError(
      f'reference statistics {npz} were made with another recipe ({"; ".join(diff)}); '
      f'recompute them: gen stats --dataset={dataset} --split={split} --features={net.name} '
      '--overwrite'
    )
  with np.load(npz) as z:
    stats = frechet.GaussianStats(z['mean'], z['cov'], int(stored['n']))
    logits = z['logits'] if 'logits' in z else None
    return Reference(stats, z['features'], logits, stored)


def load_or_compute(dataset, split, net, data_dir, mesh=None) -> Reference:
  """Stored statistics with a matching recipe, else computed now and stored."""
  ref = load(dataset, split, net, data_dir)
  if ref is None:
    logging.info('computing reference statistics of %s/%s with %s', dataset, split, net.name)
    ref = compute(dataset, split, net, data_dir, mesh)
    save(ref, data_dir)
  return ref


def make_stats(dataset, split, feature_name, data_dir, overwrite=False, mesh=None) -> str:
  """`gen stats`: computes and stores a split's statistics; returns the npz path."""
  spec = data_lib.get_spec(dataset, data_dir)
  split_size(dataset, split, data_dir)  # an unknown split fails here, before a feature network
  net = features_lib.load(feature_name, spec, data_dir)  # may train the digits classifier
  npz, meta = paths(data_dir, dataset, split, net.name)
  if not overwrite:
    ref = load(dataset, split, net, data_dir)  # refuses a stale recipe
    if ref is not None:
      logging.info('%s is up to date (n=%d)', npz, ref.stats.n)
      return npz
  ref = compute(dataset, split, net, data_dir, mesh)
  return save(ref, data_dir)
