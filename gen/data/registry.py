"""Dataset names -> specs and random-access sources: embedded toys, `digits`, any prepared TFDS.

Every source yields examples `{'x': float32 in data space, 'label': int32}` (no 'label' for
unlabelled data); images are NHWC in [-1, 1]. TFDS is imported only when a TFDS name is used, and
nothing but `prepare` ever downloads: a TFDS dataset that is not prepared in `data_dir` fails with
a `ConfigError` that says how to prepare it, before anything is written or fetched.
"""

import dataclasses
import os
import sys
from collections.abc import Sequence

import numpy as np

from gen.data import toy
from gen.errors import ConfigError

TOY_DATASETS = toy.TOY_DATASETS
EMBEDDED_DATASETS: tuple[str, ...] = (*TOY_DATASETS, 'digits')
# Splits whose stored images fit in this many bytes are decoded once and served from memory
# (digits, mnist, cifar10: a few seconds at start-up at most); larger ones decode per batch.
CACHE_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a model needs to know about a dataset before it sees any data.

  Attributes:
    name: the dataset name as given to `get_spec`.
    kind: 'points' (vectors) or 'images' (NHWC).
    shape: the shape of one example's 'x': (2,) or (H, W, C).
    num_classes: number of classes of 'label'; 0 when the data has no labels.
    num_train: number of examples in the train split.
    mode_centers: [K, D] means of a Gaussian-mixture toy, else None.
    mode_std: the per-coordinate std of each mixture component, else None.
  """

  name: str
  kind: str
  shape: tuple[int, ...]
  num_classes: int
  num_train: int
  # Arrays are excluded from == and hash, which would otherwise fail on them.
  mode_centers: np.ndarray | None = dataclasses.field(default=None, compare=False)
  mode_std: float | None = dataclasses.field(default=None, compare=False)


def default_data_dir() -> str:
  """Where TFDS data lives when no data_dir is given: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.path.expanduser(os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets')


def _resolve(data_dir: str | None) -> str:
  return os.path.expanduser(os.fspath(data_dir)) if data_dir else default_data_dir()


def _unknown(name: str) -> ConfigError:
  return ConfigError(
    f'data.name={name!r}: unknown dataset; embedded datasets are {list(EMBEDDED_DATASETS)}, '
    'and any TFDS dataset name works once prepared with `gen prepare --dataset=NAME`'
  )


def _check_name(name: str, field: str = 'data.name') -> None:
  if not isinstance(name, str) or not name.strip():
    raise ConfigError(
      f'{field}={name!r} is empty; choose an embedded dataset {list(EMBEDDED_DATASETS)} '
      'or a TFDS name prepared with `gen prepare --dataset=NAME`'
    )


def _prepare_hint(name: str, data_dir: str) -> str:
  return f'run: gen prepare --dataset={name} --data_dir={data_dir}'


# ---------------------------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------------------------


def _tfds_builder(name: str, data_dir: str):
  """A TFDS builder for `name` that reads `data_dir`, or ConfigError if TFDS has no such name.

  Constructing a builder only reads dataset_info.json when it exists; it neither downloads nor
  writes (GCS look-ups are off in TFDS by default).
  """
  import tensorflow_datasets as tfds  # why lazy: slow import, unneeded for toys

  if name == 'digits':
    from gen.data.digits import digits_builder

    return digits_builder(data_dir)
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    raise _unknown(name) from None


def _check_known_and_present(name: str, data_dir: str) -> None:
  """Fails fast when `name` has no folder in `data_dir`, without constructing a builder.

  A builder for absent data would still run TFDS's GCS-info fallback, which leaves an empty
  temporary directory behind on every call.
  """
  import tensorflow_datasets as tfds

  base = tfds.core.naming.parse_builder_name_kwargs(name)[0].name
  if os.path.isdir(os.path.join(data_dir, base)):
    return  # constructing the builder decides (it may be a dataset prepared from files only)
  try:
    tfds.builder_cls(base)
  except tfds.core.DatasetNotFoundError:
    raise _unknown(name) from None
  raise _not_prepared(name, data_dir)


def _not_prepared(name: str, data_dir: str) -> ConfigError:
  return ConfigError(
    f'data.name={name!r}: TFDS dataset not prepared in {data_dir}; ' + _prepare_hint(name, data_dir)
  )


def _prepared_builder(name: str, data_dir: str | None):
  """The builder of a prepared array_record dataset; prepares `digits` (local) if needed."""
  import tensorflow_datasets as tfds

  data_dir = _resolve(data_dir)
  if name != 'digits':
    _check_known_and_present(name, data_dir)
  builder = _tfds_builder(name, data_dir)
  if not builder.is_prepared():
    if name != 'digits':
      raise _not_prepared(name, data_dir)
    builder.download_and_prepare()  # needs no network: the data ships with scikit-learn
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ConfigError(
      f'data.name={name!r}: prepared in {data_dir} as {builder.info.file_format.value}, but gen '
      f'reads array_record (random access); remove {builder.data_dir} and '
      + _prepare_hint(name, data_dir)
    )
  return builder


def _image_keys(name: str, builder) -> tuple[str, str | None]:
  """The feature names of the image and (if a ClassLabel) the label."""
  import tensorflow_datasets as tfds

  features = builder.info.features
  image_key = 'image' if 'image' in features else None
  if image_key is None:
    image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
  if image_key is None:
    raise ConfigError(f'data.name={name!r}: has no image feature (features: {list(features)})')
  if any(d is None for d in features[image_key].shape):
    raise ConfigError(
      f'data.name={name!r}: images of varying size {features[image_key].shape} are not supported'
    )
  label = features['label'] if 'label' in features else None
  label_key = 'label' if isinstance(label, tfds.features.ClassLabel) else None
  return image_key, label_key


def _check_split(name: str, split: str, available: Sequence[str]) -> None:
  # TFDS split strings may carry a slice ("train[:90%]"): check the split's own name.
  if split.split('[')[0] not in available:
    raise ConfigError(f'data.split={split!r}: {name!r} has splits {sorted(available)}')


class ImageSource:
  """Random access to a TFDS image dataset in gen's convention.

  Examples are `{'x': float32[H, W, C] in [-1, 1], 'label': int32}` ('label' only when the
  dataset has a ClassLabel 'label'). uint8 pixels map by x / 255 * 2 - 1; float pixels (the
  embedded `digits`) are stored already in [-1, 1] and pass through.
  """

  def __init__(self, data_source, image_key: str, label_key: str | None, cache: bool = False):
    """Wraps a TFDS data source.

    Args:
      data_source: a TFDS random-access source (`builder.as_data_source(split)`).
      image_key: the image feature's name.
      label_key: the ClassLabel feature's name, or None.
      cache: decode every example once now and serve batches from memory (for small data,
        where per-example decoding, ~20 us, would otherwise cost more than a training step).
    """
    self._source = data_source
    self._image_key = image_key
    self._label_key = label_key
    self._cached: tuple[np.ndarray, np.ndarray | None] | None = None
    if cache:
      self._cached = self._read_raw(np.arange(len(data_source)))

  def _read_raw(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    examples = self._source.__getitems__([int(i) for i in indices])
    images = np.stack([ex[self._image_key] for ex in examples])
    labels = None
    if self._label_key:
      labels = np.asarray([ex[self._label_key] for ex in examples])
    return images, labels

  def __len__(self) -> int:
    return len(self._source)

  def _convert(self, images: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    if images.dtype == np.uint8:
      x = images.astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    else:
      x = images.astype(np.float32, copy=False)
    if labels is None:
      return {'x': x}
    return {'x': x, 'label': labels.astype(np.int32)}

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    ex = self._source[int(index)]
    label = np.asarray(ex[self._label_key]) if self._label_key else None
    return self._convert(np.asarray(ex[self._image_key]), label)

  def get_batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Reads a stacked batch: {'x': float32[B, H, W, C], 'label': int32[B]}."""
    indices = np.asarray(indices, dtype=np.int64)
    if self._cached is None:
      return self._convert(*self._read_raw(indices))
    images, labels = self._cached
    return self._convert(images[indices], None if labels is None else labels[indices])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    batch = self.get_batch(indices)
    return [{k: v[i] for k, v in batch.items()} for i in range(len(indices))]


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def get_spec(name: str, data_dir: str | None = None) -> DatasetSpec:
  """The spec of dataset `name`.

  Args:
    name: an embedded name (`EMBEDDED_DATASETS`) or any TFDS name prepared in `data_dir`.
    data_dir: the TFDS data directory; default $TFDS_DATA_DIR or ~/tensorflow_datasets.

  Returns:
    The DatasetSpec.

  Raises:
    ConfigError: unknown name, or a TFDS dataset that is not prepared.
  """
  _check_name(name)
  if name in TOY_DATASETS:
    toy_def = TOY_DATASETS[name]
    return DatasetSpec(
      name=name,
      kind='points',
      shape=(2,),
      num_classes=0,
      num_train=toy.TOY_SPLITS['train'][0],
      mode_centers=toy_def.mode_centers,
      mode_std=toy_def.mode_std,
    )
  builder = _prepared_builder(name, data_dir)
  image_key, label_key = _image_keys(name, builder)
  features = builder.info.features
  if 'train' not in builder.info.splits:
    raise ConfigError(f'data.name={name!r}: has no train split ({list(builder.info.splits)})')
  return DatasetSpec(
    name=name,
    kind='images',
    shape=tuple(int(d) for d in features[image_key].shape),
    num_classes=features[label_key].num_classes if label_key else 0,
    num_train=builder.info.splits['train'].num_examples,
  )


def make_source(name: str, split: str, data_dir: str | None = None):
  """A random-access source of `split` of dataset `name` (see the module docstring).

  Args:
    name: an embedded name or a TFDS name prepared in `data_dir`.
    split: 'train', 'test', ... (TFDS slices such as 'train[:90%]' work for TFDS data).
    data_dir: the TFDS data directory; default $TFDS_DATA_DIR or ~/tensorflow_datasets.

  Returns:
    A `ToySource` or `ImageSource`: `len(src)`, `src[i]`, `src.get_batch(indices)`.

  Raises:
    ConfigError: unknown name or split, or a TFDS dataset that is not prepared.
  """
  if name in TOY_DATASETS:
    _check_split(name, split, list(toy.TOY_SPLITS))
    return toy.toy_source(name, split)
  builder = _prepared_builder(name, data_dir)
  _check_split(name, split, list(builder.info.splits))
  image_key, label_key = _image_keys(name, builder)
  data_source = builder.as_data_source(split=split)
  feature = builder.info.features[image_key]
  nbytes = len(data_source) * np.prod(feature.shape) * np.dtype(feature.np_dtype).itemsize
  return ImageSource(data_source, image_key, label_key, cache=nbytes <= CACHE_BYTES)


def _ensure_importlib_resources() -> None:
  """Lets TFDS's checksum look-up run on Python >= 3.9 without the `importlib_resources` backport.

  TFDS imports the backport lazily while preparing a registered dataset but does not declare
  it; the standard library's `importlib.resources` offers the same `abc.Traversable`.
  """
  try:
    import importlib_resources  # noqa: F401
  except ImportError:
    import importlib.resources

    sys.modules['importlib_resources'] = importlib.resources


def prepare(name: str, data_dir: str | None) -> None:
  """Prepares dataset `name` in `data_dir` in array_record format (`gen prepare`).

  Toys need nothing; `digits` is built from scikit-learn; any other TFDS name runs the TFDS
  builder's `download_and_prepare`, the only step in gen that may download.

  Raises:
    ConfigError: a name that is neither embedded nor a TFDS dataset.
  """
  _check_name(name, '--dataset')
  if name in TOY_DATASETS:
    return  # generated in memory on use
  data_dir = _resolve(data_dir)
  if name == 'digits':
    _tfds_builder(name, data_dir).download_and_prepare()
    return
  import tensorflow_datasets as tfds

  _ensure_importlib_resources()
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  except tfds.core.DatasetNotFoundError:
    raise _unknown(name) from None
  builder.download_and_prepare()
