"""`gen score A B`: the feature metrics of any set A against any set B, as `--mode=eval` computes
them (the same feature network, preprocessing, options and seed), for samples gen did not make.

Each of A and B is one of
  PATH.npz      an array `samples` [N, ...] (what `--mode=sample` writes), in gen's data space
                (images in [-1, 1]; uint8 arrays are read as v / 127.5 - 1);
  FOLDER        PNG/JPEG files directly inside it (sorted by name, not recursive), all of one
                size, read as 8-bit grey when every file is grey, else as RGB, to v / 127.5 - 1;
  NAME:SPLIT    a dataset split gen reads (`digits:test`, `cifar10:train`, `ring8:test`): all
                of an image split, with the stored reference statistics `--mode=eval` uses,
                or its first `--num` examples (the 2-D toys' splits hold 100,000 points:
                precision/recall over all of them is slow, take `--num`).
A plays the samples and B the reference, as in an eval JSON: the Inception Score is A's, KID
draws A's subsets with key 0 and B's with key 1, precision is the fraction of A inside B's
manifold. Both feature networks quantise to 8 bits before anything else, so a PNG folder of
samples scores as the float samples would.

The feature network is `--features` ('auto': from the dataset of a NAME:SPLIT input or of
`--dataset`: digits_cnn for digits, inception_v3 for other images, identity for points; with
neither, inception_v3 for images and identity for points). The JSON (stdout, or `--output`)
holds the metrics and the protocol; one markdown table line goes to stderr.

`gen score W/samples/step_N.npz digits:test` on an `.npz` of `--mode=sample
--num_samples=<eval.num_samples>` gives the numbers of W/eval/step_N.json: both draw the same
samples and score them the same way (with the run's seed, `--seed`, default 0 like the config's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types

import numpy as np

from gen import data as data_lib
from gen.errors import ConfigError
from gen.metrics import evaluation, frechet, reference
from gen.metrics import features as features_lib

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')
SCORE_METRICS = ('fd', 'inception_score', 'kid', 'precision', 'recall', 'density', 'coverage')


@dataclasses.dataclass
class Input:
  """One of the two sets: where it came from, and its examples (None for a dataset split, whose
  features come from the stored reference statistics)."""

  text: str
  kind: str  # 'npz' | 'folder' | 'split'
  examples: np.ndarray | None = None
  dataset: str = ''
  split: str = ''
  path: str = ''

  def record(self, n: int) -> dict:
    out = {'input': self.text, 'kind': self.kind, 'n': int(n)}
    if self.kind == 'split':
      out.update(dataset=self.dataset, split=self.split)
    else:
      out['path'] = self.path
    return out


def _to_data_space(x: np.ndarray, what: str) -> np.ndarray:
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 127.5 - 1.0
  if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
    raise ConfigError(f'{what}: samples must be real numbers or uint8, got dtype {x.dtype}')
  return x.astype(np.float32)


def _read_npz(path: str, key: str) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as z:
      if key not in z.files:
        raise ConfigError(f'{path}: has no array {key!r} (it holds {sorted(z.files)}); use --key')
      x = z[key]
  except (OSError, ValueError) as e:
    raise ConfigError(f'{path}: not a readable .npz ({e})') from None
  if x.ndim < 2 or len(x) < 2:
    raise ConfigError(f'{path}: {key!r} must be [N >= 2, ...] examples, got shape {x.shape}')
  return _to_data_space(x, path)


def _read_folder(folder: str) -> np.ndarray:
  from PIL import Image

  names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
  if len(names) < 2:
    raise ConfigError(
      f'{folder}: needs at least 2 PNG/JPEG files directly inside, found {len(names)}'
    )
  images = []
  for name in names:
    try:
      with Image.open(os.path.join(folder, name)) as im:
        im.load()
        images.append(im.copy())
    except OSError as e:
      raise ConfigError(f'{os.path.join(folder, name)}: not a readable image ({e})') from None
  grey = all(im.mode in GREY_MODES for im in images)
  size = images[0].size
  arrays = []
  for name, im in zip(names, images, strict=True):
    if im.size != size:
      raise ConfigError(
        f'{folder}: images differ in size ({names[0]} is {size[0]}x{size[1]}, {name} is '
        f'{im.size[0]}x{im.size[1]}); resize them to one size first'
      )
    a = np.asarray(im.convert('L' if grey else 'RGB'), np.uint8)
    arrays.append(a[..., None] if grey else a)
  return _to_data_space(np.stack(arrays), folder)


def read_input(text: str, key: str = 'samples') -> Input:
  """An Input from an .npz path, an image folder or NAME:SPLIT (see the module docstring)."""
  from gen.utils import paths

  path = paths.absolute(text)
  if os.path.isdir(path):
    return Input(text, 'folder', _read_folder(path), path=path)
  if os.path.isfile(path):
    if not path.endswith('.npz'):
      raise ConfigError(f'{text}: give an .npz with {key!r}, a folder of images or NAME:SPLIT')
    return Input(text, 'npz', _read_npz(path, key), path=path)
  if ':' in text and '/' not in text.split(':')[0]:
    dataset, split = text.split(':', 1)
    if dataset and split:
      return Input(text, 'split', dataset=dataset, split=split)
  raise ConfigError(
    f'{text}: no such file or folder, and not a dataset split NAME:SPLIT (e.g. digits:test)'
  )


def _spec(inputs: list[Input], dataset: str | None, data_dir: str):
  """The dataset spec that 'auto' features resolve from (see the module docstring)."""
  splits = [i for i in inputs if i.kind == 'split']
  name = dataset or (splits[-1].dataset if splits else None)
  if name:
    return data_lib.get_spec(name, data_dir)
  shapes = {tuple(i.examples.shape[1:]) for i in inputs}
  shape = inputs[0].examples.shape[1:]
  kind = 'points' if len(shape) == 1 else 'images'
  if kind == 'points' and len(shapes) > 1:
    raise ConfigError(f'the two sets have different example shapes: {sorted(shapes)}')
  return types.SimpleNamespace(name='', kind=kind, shape=tuple(shape))


def _reference_of(item: Input, net, data_dir: str, num: int) -> reference.Reference:
  """The features (and Gaussian fit) of one set; a whole image split's are the stored reference
  statistics of `--mode=eval`, `num` > 0 takes a split's first `num` examples instead."""
  if item.kind == 'split':
    data_lib.make_source(item.dataset, item.split, data_dir)  # ConfigError on a bad split
    if not num and data_lib.get_spec(item.dataset, data_dir).kind == 'images':
      return reference.load_or_compute(item.dataset, item.split, net, data_dir)
    chunks = reference.split_examples(item.dataset, item.split, data_dir, num or None)
    examples = np.concatenate(list(chunks))
  else:
    examples = item.examples
  emb = features_lib.extract(net, examples)
  return reference.Reference(
    stats=frechet.fit_gaussian(emb['features']),
    features=emb['features'],
    logits=emb.get('logits'),
    recipe={},
  )


def resolve_metrics(names: list[str], net) -> tuple[str, ...]:
  """--metrics ('auto': all of SCORE_METRICS the network supports) -> metric names."""
  wanted = list(SCORE_METRICS) if names in ([], ['auto']) else names
  for name in wanted:
    if name not in SCORE_METRICS:
      raise ConfigError(f"--metrics: {name!r} is not one of 'auto', {', '.join(SCORE_METRICS)}")
  if not net.has_logits:
    if 'inception_score' in wanted and names not in ([], ['auto']):
      raise ConfigError(f"--metrics: 'inception_score' needs class logits; {net.name} has none")
    wanted = [n for n in wanted if n != 'inception_score']
  return tuple(wanted)


def score(
  a: str,
  b: str,
  features: str = 'auto',
  metrics: list[str] | None = None,
  options: dict | None = None,
  seed: int = 0,
  dataset: str | None = None,
  data_dir: str | None = None,
  key: str = 'samples',
  num: int = 0,
) -> dict:
  """{'metrics': {...}, 'protocol': {...}} of set `a` against set `b` (module docstring).

  `options` overrides the eval defaults (`evaluation.DEFAULT_OPTIONS`, the values of
  experiments/base.py's eval section)."""
  data_dir = data_dir or data_lib.default_data_dir()
  opts = dict(evaluation.DEFAULT_OPTIONS, **(options or {}))
  evaluation.check_options(opts, '--')
  inputs = [read_input(a, key), read_input(b, key)]
  spec = _spec(inputs, dataset, data_dir)
  net = features_lib.load(features, spec, data_dir)
  names = resolve_metrics(list(metrics or []), net)
  if isinstance(num, bool) or not isinstance(num, int) or num < 0:
    raise ConfigError(f'--num must be an integer >= 0 (0: whole splits), got {num!r}')
  ref_a = _reference_of(inputs[0], net, data_dir, num)
  ref_b = _reference_of(inputs[1], net, data_dir, num)
  emb = {'features': ref_a.features}
  if ref_a.logits is not None:
    emb['logits'] = ref_a.logits
  values = evaluation.feature_metrics(names, emb, ref_b, opts, seed)
  n_a, n_b = len(ref_a.features), len(ref_b.features)
  protocol = {
    'a': inputs[0].record(n_a),
    'b': inputs[1].record(n_b),
    'features': net.record(),
    'options': evaluation.options_record(opts, n_a),
    'seed': seed,
  }
  return {'metrics': values, 'protocol': protocol}


def table_line(result: dict) -> str:
  """The result as a two-row markdown table: inputs, sizes and the metrics."""
  from gen import compare

  p = result['protocol']
  row = {'a': p['a']['input'], 'b': p['b']['input'], 'n_a': p['a']['n'], 'n_b': p['b']['n']}
  row.update(result['metrics'])
  return compare.format_table([row])


def score_main(a: str, b: str, output: str | None = None, **kwargs) -> int:
  """`gen score A B`: prints the JSON (or writes it to `output`), the table line to stderr;
  2 and one error line on bad input."""
  try:
    result = score(a, b, **kwargs)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  text = json.dumps(result, indent=2, sort_keys=True)
  if output:
    with open(output + '.tmp', 'w') as f:
      f.write(text + '\n')
    os.replace(output + '.tmp', output)
  else:
    print(text)
  print(table_line(result), end='', file=sys.stderr)
  return 0
