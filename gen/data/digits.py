"""scikit-learn's 1,797 8x8 handwritten digits as a TFDS builder of gen's own.

The data ships inside scikit-learn, so preparing needs no download and takes well under a second;
gen prepares it on first use. Pixels are integers in [0, 16], stored as float32 scaled to [-1, 1].

Split: the 1,797 examples are permuted once with `np.random.default_rng(0)`; the first 1,500 of
that order are `train`, the last 297 are `test`, each stored in that order (TFDS shuffling is off).
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_TRAIN = 1500
NUM_EXAMPLES = 1797
SPLIT_SEED = 0


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All digits in the split order: images float32[1797, 8, 8, 1] in [-1, 1], labels int64."""
  from sklearn.datasets import load_digits  # why lazy: sklearn's import is slow and rarely needed

  data = load_digits()
  order = np.random.default_rng(SPLIT_SEED).permutation(len(data.images))
  images = data.images[order].astype(np.float32)[..., None] / 8.0 - 1.0
  return images, data.target[order].astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The 8x8 digits of scikit-learn (`sklearn.datasets.load_digits`).

  Not registered with TFDS by name: gen constructs it explicitly, so importing this module changes
  nothing global.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: 1,500 train / 297 test, pixels in [-1, 1].'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # No checksums file to look up next to the code (nothing is downloaded); TFDS's own lookup
    # also needs the `importlib_resources` backport, which gen does not depend on.
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description='scikit-learn 8x8 handwritten digits, pixels scaled from [0, 16] to [-1, 1].',
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.float32),
          'label': tfds.features.ClassLabel(num_classes=10),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
      # Keep the examples in the documented (permutation) order, not TFDS's key-hash order.
      disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the data ships with scikit-learn
    images, labels = digits_arrays()
    return {
      'train': self._generate_examples(images[:NUM_TRAIN], labels[:NUM_TRAIN]),
      'test': self._generate_examples(images[NUM_TRAIN:], labels[NUM_TRAIN:]),
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    # The key is the position in the split, so TFDS keeps the documented order stable.
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
      yield i, {'image': image, 'label': int(label)}


def digits_builder(data_dir: str) -> Digits:
  """The digits builder reading and writing array_record files under `data_dir`."""
  return Digits(data_dir=data_dir, file_format='array_record')
