"""Sample metrics of a run, with the protocol that makes each number reproducible.

An `Evaluator` is built once per run (before anything compiles, so bad settings fail early): it
loads the feature network and the reference statistics, and then scores any batch of samples
(`compute`), records how (`protocol`), and places the numbers between a floor and a ceiling
(`bounds`): the same metrics for real held-out data (the best a model can expect at this n)
and for uniform noise in the data range.

The reference split (`eval.reference_split`, 'auto': test for embedded data, train for other
TFDS datasets as FID on CIFAR-10 is usually reported) gives the reference features of every
feature metric and the data-space examples of sliced W2. Memorisation compares samples with the
train split.
"""

from __future__ import annotations

import numpy as np
from absl import logging
from jax.sharding import Mesh

from gen import data as data_lib
from gen import metrics as metrics_lib
from gen.errors import ConfigError
from gen.metrics import features as features_lib
from gen.metrics import frechet, precision_recall, reference, sample_quality, toy

BOUNDS_SEED = 12345  # the noise images of the 'noise' bound
AUTO_BOOTSTRAP_ROUNDS = 100  # eval.fd_bootstrap = -1: this many rounds where n < ...
AUTO_BOOTSTRAP_BELOW = 2048  # ... this many samples (Inception's feature dimension)
OPTION_FIELDS = ('is_splits', 'kid_subsets', 'kid_subset_size', 'pr_k', 'dc_k')
# The metric options of experiments/base.py's eval section (tests/test_score.py keeps them
# equal), for `gen score`, which has no config.
DEFAULT_OPTIONS = {
  'is_splits': 10,
  'kid_subsets': 100,
  'kid_subset_size': 1000,
  'pr_k': 3,
  'dc_k': 5,
  'fd_bootstrap': -1,
  'fd_infinity': False,
}


def data_dir_of(config) -> str:
  return config.data.data_dir or data_lib.default_data_dir()


def reference_split(config, spec) -> str:
  split = config.eval.reference_split
  if split == 'auto':
    return 'test' if spec.name in data_lib.EMBEDDED_DATASETS else 'train'
  return split


def validate_options(config, spec, names) -> None:
  """Checks the eval options the metrics in `names` use (before compiling)."""
  ev = config.eval
  check_options(ev, 'eval.')
  if ev.proxy_num_samples < 0:
    raise ConfigError(
      f'eval.proxy_num_samples must be >= 0 (0: eval.num_samples), got {ev.proxy_num_samples}'
    )
  net = features_lib.resolve(ev.features, spec)
  logit_names = [n for n in names if metrics_lib.METRICS[n] == 'logits']
  if logit_names and net == 'identity':
    raise ConfigError(
      f'eval.metrics {logit_names[0]!r} needs a feature network with class logits; '
      f"eval.features resolves to 'identity' for data.name={spec.name!r}"
    )
  if net == 'inception_v3' and any(n in metrics_lib.FEATURE_METRICS for n in names):
    from gen.metrics import inception_weights

    inception_weights.weights_path(data_dir_of(config))  # ConfigError with the how-to when missing


def check_options(options, prefix: str = '') -> None:
  """ConfigError naming `prefix + field` for a bad metric option (`OPTION_FIELDS`,
  fd_bootstrap, fd_infinity) of a ConfigDict or dict."""
  for field in OPTION_FIELDS:
    value = options[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConfigError(f'{prefix}{field} must be an integer >= 1, got {value!r}')
  rounds = options['fd_bootstrap']
  if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < -1 or rounds == 1:
    raise ConfigError(
      f'{prefix}fd_bootstrap must be -1 (auto: {AUTO_BOOTSTRAP_ROUNDS} rounds where n < '
      f'{AUTO_BOOTSTRAP_BELOW}), 0 (off) or >= 2 rounds, got {rounds!r}'
    )
  if not isinstance(options['fd_infinity'], bool):
    raise ConfigError(f'{prefix}fd_infinity must be True or False, got {options["fd_infinity"]!r}')


def bootstrap_rounds(rounds: int, n: int) -> int:
  """eval.fd_bootstrap for n samples: -1 (auto) is AUTO_BOOTSTRAP_ROUNDS below
  AUTO_BOOTSTRAP_BELOW samples and 0 from there on; other values are what they say."""
  if rounds == -1:
    return AUTO_BOOTSTRAP_ROUNDS if n < AUTO_BOOTSTRAP_BELOW else 0
  return rounds


def feature_metrics(
  names,
  emb: dict,
  ref: reference.Reference,
  options,
  seed: int,
  mesh: Mesh | None = None,
  interval: bool = True,
) -> dict:
  """The feature metrics `names` of embedded samples against a reference: the one computation
  behind `--mode=eval` and `gen score`.

  Args:
    names: metric names (those not computed from features are ignored).
    emb: `features.extract`'s output for the samples: 'features' [N, D], 'logits' [N, K] when
      the network has them.
    ref: the reference (its Gaussian fit and features).
    options: eval options (ConfigDict or dict): OPTION_FIELDS, fd_bootstrap, fd_infinity.
    seed: seeds KID's subsets, the bootstrap and FD-infinity's subsets.
    mesh: devices for KID and the neighbour metrics.
    interval: compute fd_low/fd_high (per `options['fd_bootstrap']`) and fd_infinity (per
      `options['fd_infinity']`); False for training's cheap proxies.

  Returns:
    name -> Python number, with `_std` companions (IS, KID) and fd_low/fd_high, fd_infinity.
  """
  feats, values = emb['features'], {}
  if feats.shape[1] != ref.features.shape[1]:
    raise ConfigError(
      f'the two sets have features of different sizes: {feats.shape[1]} and '
      f'{ref.features.shape[1]} (are they the same kind of data?)'
    )
  if 'fd' in names:
    values['fd'] = frechet.frechet_distance(frechet.fit_gaussian(feats), ref.stats)
    rounds = bootstrap_rounds(options['fd_bootstrap'], len(feats)) if interval else 0
    if rounds:
      values['fd_low'], values['fd_high'] = frechet.frechet_bootstrap(
        feats, ref.stats, rounds, seed
      )
    if interval and options['fd_infinity']:
      values['fd_infinity'] = frechet.frechet_infinity(feats, ref.stats, seed=seed)
  if 'inception_score' in names:
    mean, std = sample_quality.inception_score(emb['logits'], options['is_splits'])
    values['inception_score'], values['inception_score_std'] = mean, std
  if 'kid' in names:
    mean, std = sample_quality.kid(
      feats, ref.features, options['kid_subsets'], options['kid_subset_size'], seed, mesh
    )
    values['kid'], values['kid_std'] = mean, std
  if 'precision' in names or 'recall' in names:
    pr = precision_recall.precision_recall(ref.features, feats, options['pr_k'], mesh)
    values.update({k: float(v) for k, v in pr.items() if k in names})
  if 'density' in names or 'coverage' in names:
    dc = precision_recall.density_coverage(ref.features, feats, options['dc_k'], mesh)
    values.update({k: float(v) for k, v in dc.items() if k in names})
  return values


def options_record(options, n: int) -> dict:
  """The metric options of a protocol, the bootstrap's rounds resolved for n samples."""
  out = {field: options[field] for field in OPTION_FIELDS}
  out['fd_bootstrap'] = bootstrap_rounds(options['fd_bootstrap'], n)
  out['fd_infinity'] = options['fd_infinity']
  return out


class Evaluator:
  """Scores samples of one run (see the module docstring)."""

  def __init__(self, config, spec, names: tuple[str, ...], mesh: Mesh | None = None):
    self.config, self.spec, self.mesh = config, spec, mesh
    self.names = tuple(n for n in names if metrics_lib.METRICS[n] != 'model')
    self.data_dir = data_dir_of(config)
    self.split = reference_split(config, spec)
    data_dir = config.data.data_dir or None
    self.raw_reference = None
    if any(metrics_lib.METRICS[n] in ('data', 'mixture') for n in self.names):
      self.raw_reference = np.concatenate(
        list(reference.split_examples(spec.name, self.split, data_dir, config.eval.num_samples))
      )
    self.net = self.ref = self.train_features = None
    if any(n in metrics_lib.FEATURE_METRICS for n in self.names):
      self.net = features_lib.load(config.eval.features, spec, self.data_dir)
      self.ref = self._reference(self.split)
      if 'memorisation' in self.names:
        train = self.ref if self.split == 'train' else self._reference('train')
        self.train_features = train.features

  def _reference(self, split: str) -> reference.Reference:
    if self.spec.kind == 'points':  # toys: cheap, and they have no data folder
      return reference.compute(self.spec.name, split, self.net, None, self.mesh)
    return reference.load_or_compute(self.spec.name, split, self.net, self.data_dir, self.mesh)

  def compute(
    self, samples: np.ndarray, seed: int, names=None, interval: bool = True, labels=None
  ) -> tuple[dict, dict]:
    """Metrics `names` (default all of this evaluator's) of data-space samples [N, ...];
    `interval`: with fd_low/fd_high and fd_infinity as the options ask (`feature_metrics`);
    `labels` [N]: the classes conditional samples were drawn for ('class_agreement': the share
    the feature network's classifier assigns to them; skipped without labels).

    Returns:
      (values, extras): values maps metric name -> number (with `_std`, `fd_low`/`fd_high`
      companions); extras holds memorisation's nearest training neighbours ('nn_index',
      'nn_distance') when computed.
    """
    names = self.names if names is None else tuple(n for n in names if n in self.names)
    ev, values, extras = self.config.eval, {}, {}
    samples = np.asarray(samples, np.float32)
    flat = samples.reshape(len(samples), -1).astype(np.float64)
    toy_names = [n for n in names if metrics_lib.METRICS[n] in ('data', 'mixture')]
    if toy_names:
      mixture = any(metrics_lib.METRICS[n] == 'mixture' for n in toy_names)
      out = toy.toy_metrics(
        flat,
        self.raw_reference.reshape(len(self.raw_reference), -1) if 'sliced_w2' in names else None,
        self.spec.mode_centers if mixture else None,
        self.spec.mode_std if mixture else None,
        seed,
      )
      values.update({n: float(out[n]) for n in toy_names})
    if not any(n in metrics_lib.FEATURE_METRICS for n in names):
      return values, extras
    emb = features_lib.extract(self.net, samples, self.mesh)
    values.update(feature_metrics(names, emb, self.ref, ev, seed, self.mesh, interval))
    if 'class_agreement' in names and labels is not None:
      predicted = np.argmax(emb['logits'], axis=-1)
      values['class_agreement'] = float(np.mean(predicted == np.asarray(labels)))
    feats = emb['features']
    if 'memorisation' in names:
      mem = precision_recall.memorisation(feats, self.train_features, self.mesh)
      values['memorisation'] = float(mem['fraction'])
      extras = {'nn_index': mem['nn_index'], 'nn_distance': mem['nn_distance']}
    return values, extras

  def protocol(self, num: int, sample_seed: str, sampling: dict) -> dict:
    """How the numbers were made: enough to reproduce or to refuse a comparison.

    `sampling` is the objective's own record of how it samples (`objective.sample_protocol()`:
    a diffusion sampler and its steps, a GAN's generator and rejection sampling, an EBM's
    Langevin chain)."""
    ev = self.config.eval
    out = {
      'num_samples': int(num),
      'sample_seed': sample_seed,
      'sample': dict(sampling),
      'reference': {'dataset': self.spec.name, 'split': self.split},
    }
    if self.ref is not None:
      out['reference']['n'] = int(self.ref.stats.n)
      out['features'] = self.net.record()
      out['options'] = options_record(ev, num)
      if 'memorisation' in self.names:
        out['memorisation_reference'] = {'dataset': self.spec.name, 'split': 'train'}
    elif self.raw_reference is not None:
      out['reference']['n'] = len(self.raw_reference)
    return out

  def bounds(self, num: int, seed: int) -> dict:
    """{metric: {'real': value, 'noise': value}} at sample count `num` (see the module doc).

    'real' scores `num` examples of another split than the reference (train when the reference
    is test, else test); memorisation's real value scores held-out examples (not train)
    against train. 'noise' scores uniform noise in the data's range."""
    data_dir = self.config.data.data_dir or None
    other = 'train' if self.split != 'train' else 'test'
    held_out = self.split if self.split != 'train' else 'test'
    try:
      real = np.concatenate(list(reference.split_examples(self.spec.name, other, data_dir, num)))
      held = np.concatenate(list(reference.split_examples(self.spec.name, held_out, data_dir, num)))
    except ConfigError as e:  # a dataset without a second split: no bounds
      logging.warning('no real-data bounds: %s', e)
      return {}
    rng = np.random.default_rng(BOUNDS_SEED)
    if self.spec.kind == 'points':
      ref = self.raw_reference if self.raw_reference is not None else real
      lo, hi = ref.min(0), ref.max(0)
      noise = rng.uniform(lo, hi, (num, *ref.shape[1:])).astype(np.float32)
    else:
      noise = rng.uniform(-1.0, 1.0, (num, *self.spec.shape)).astype(np.float32)
    names = [n for n in self.names if n != 'memorisation']
    real_values, _ = self.compute(real, seed, names)
    noise_values, _ = self.compute(noise, seed, interval=False)
    if 'memorisation' in self.names:
      real_values['memorisation'] = self.compute(held, seed, ('memorisation',))[0]['memorisation']
    return {
      k: {'real': real_values[k], 'noise': noise_values[k]}
      for k in noise_values
      if k in real_values
    }
