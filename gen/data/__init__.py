"""Datasets: embedded 2-D toys and `digits`, and any prepared TFDS dataset, read through grain.

Importing this package has no side effects: nothing is registered, generated or downloaded, and
TensorFlow Datasets is imported only when a TFDS dataset is used.
"""

from gen.data.loader import iterator_state, make_loader, restore_iterator
from gen.data.registry import (
  EMBEDDED_DATASETS,
  TOY_DATASETS,
  DatasetSpec,
  ImageSource,
  default_data_dir,
  get_spec,
  make_source,
  prepare,
)
from gen.data.toy import ToySource

__all__ = [
  'EMBEDDED_DATASETS',
  'TOY_DATASETS',
  'DatasetSpec',
  'ImageSource',
  'ToySource',
  'default_data_dir',
  'get_spec',
  'iterator_state',
  'make_loader',
  'make_source',
  'prepare',
  'restore_iterator',
]
