"""Tests of gen.data: toys, the digits builder, the grain loader and the error messages."""

import io
import json
import os
import socket

import numpy as np
import PIL.Image
import pytest

import gen.data as gd
from gen.data import toy
from gen.errors import ConfigError

TOYS = sorted(gd.TOY_DATASETS)


# ------------------------------------------------------------------------------------ toys


@pytest.mark.parametrize('name', TOYS)
def test_toy_shapes_and_dtypes(name):
  src = gd.ToySource(name, 1000, seed=0)
  assert len(src) == 1000
  assert src[3]['x'].shape == (2,) and src[3]['x'].dtype == np.float32
  batch = src.get_batch([0, 5, 7])
  assert batch['x'].shape == (3, 2) and batch['x'].dtype == np.float32
  np.testing.assert_array_equal(src.__getitems__([0, 5])[1]['x'], src[5]['x'])
  assert np.isfinite(src.points).all()


@pytest.mark.parametrize('name', TOYS)
def test_toy_determinism(name):
  a, b = gd.ToySource(name, 500, seed=0), gd.ToySource(name, 500, seed=0)
  np.testing.assert_array_equal(a.points, b.points)
  assert not np.allclose(a.points, gd.ToySource(name, 500, seed=1).points)
  train, test = gd.make_source(name, 'train'), gd.make_source(name, 'test')
  assert not np.allclose(train.points[:100], test.points[:100])


@pytest.mark.parametrize(
  'name, num_modes, std', [('ring8', 8, toy.RING8_STD), ('grid25', 25, toy.GRID25_STD)]
)
def test_mixture_modes(name, num_modes, std):
  spec = gd.get_spec(name)
  assert spec.mode_centers.shape == (num_modes, 2) and spec.mode_std == std
  points = gd.ToySource(name, 50_000, seed=0).points
  dist = np.linalg.norm(points[:, None, :] - spec.mode_centers[None], axis=-1)
  nearest = dist.argmin(axis=1)
  assert (dist.min(axis=1) < 5 * std * np.sqrt(2)).all()  # every point within 5 std of a mode
  counts = np.bincount(nearest, minlength=num_modes)
  assert counts.min() > 0.7 * len(points) / num_modes  # modes equally likely
  residual = points - spec.mode_centers[nearest]
  np.testing.assert_allclose(residual.std(axis=0), std, rtol=0.05)
  np.testing.assert_allclose(residual.mean(axis=0), 0, atol=0.05 * std)


def test_mode_centres_definitions():
  ring = toy.ring8_centers()
  np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, rtol=1e-6)
  np.testing.assert_allclose(ring[0], [2, 0], atol=1e-6)
  grid = toy.grid25_centers()
  assert {tuple(c) for c in grid.tolist()} == {
    (float(a), float(b)) for a in range(-4, 5, 2) for b in range(-4, 5, 2)
  }
  for name in ('swiss_roll', 'moons', 'checkerboard'):
    spec = gd.get_spec(name)
    assert spec.mode_centers is None and spec.mode_std is None


def test_other_toys_support():
  pts = gd.ToySource('checkerboard', 20_000, seed=0).points
  assert np.abs(pts).max() <= 4
  # Filled squares: floor(x / 2) + floor(y / 2) is even on FFJORD's board.
  cells = np.floor(pts / 2).astype(int)
  assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
  roll = gd.ToySource('swiss_roll', 20_000, seed=0).points
  radius = np.linalg.norm(roll, axis=1)  # t / 5 for t in [1.5 pi, 4.5 pi], plus noise
  assert radius.max() < 4.5 * np.pi / 5 + 5 * toy.SWISS_ROLL_NOISE
  assert radius.min() > 1.5 * np.pi / 5 - 5 * toy.SWISS_ROLL_NOISE
  moons = gd.ToySource('moons', 20_000, seed=0).points
  np.testing.assert_allclose(moons.mean(axis=0), [0.0, 0.3], atol=0.05)


def test_toy_spec():
  spec = gd.get_spec('ring8')
  assert (spec.kind, spec.shape, spec.num_classes) == ('points', (2,), 0)
  assert spec.num_train == len(gd.make_source('ring8', 'train'))
  assert spec == gd.get_spec('ring8')


# ---------------------------------------------------------------------------------- digits


@pytest.fixture(scope='module')
def digits_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  gd.prepare('digits', data_dir)
  return data_dir


def test_digits(digits_dir):
  from sklearn.datasets import load_digits

  spec = gd.get_spec('digits', digits_dir)
  assert (spec.kind, spec.shape, spec.num_classes, spec.num_train) == (
    'images',
    (8, 8, 1),
    10,
    1500,
  )
  train, test = (
    gd.make_source('digits', 'train', digits_dir),
    gd.make_source('digits', 'test', digits_dir),
  )
  assert (len(train), len(test)) == (1500, 297)
  x = np.concatenate([train.get_batch(range(1500))['x'], test.get_batch(range(297))['x']])
  y = np.concatenate([train.get_batch(range(1500))['label'], test.get_batch(range(297))['label']])
  assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and y.dtype == np.int32
  assert x.min() == -1 and x.max() == 1 and set(y.tolist()) == set(range(10))
  ex = train[0]
  assert ex['x'].shape == (8, 8, 1) and ex['label'].dtype == np.int32
  ref = load_digits()
  order = np.random.default_rng(0).permutation(1797)  # the documented split permutation
  np.testing.assert_array_equal(x[..., 0], ref.images[order] / 8 - 1)
  np.testing.assert_array_equal(y, ref.target[order])


def test_digits_prepares_on_first_use(tmp_path):
  assert gd.get_spec('digits', str(tmp_path)).num_train == 1500
  assert (tmp_path / 'digits' / '1.0.0' / 'dataset_info.json').exists()


def test_digits_loader(digits_dir):
  it = iter(
    gd.make_loader('digits', split='train', global_batch_size=64, seed=0, data_dir=digits_dir)
  )
  batch = next(it)
  assert batch['x'].shape == (64, 8, 8, 1) and batch['label'].shape == (64,)
  assert batch['label'].dtype == np.int32


def test_bad_split(digits_dir):
  with pytest.raises(ConfigError, match="'test', 'train'"):
    gd.make_source('digits', 'validation', digits_dir)
  with pytest.raises(ConfigError, match='train'):
    gd.make_source('ring8', 'validation')


# ---------------------------------------------------------------------------------- loader


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_loader_batches_and_determinism():
  make = lambda seed: iter(gd.make_loader('ring8', split='test', global_batch_size=128, seed=seed))
  a, b, c = _take(make(0), 3), _take(make(0), 3), _take(make(1), 3)
  assert set(a[0]) == {'x'}
  assert a[0]['x'].shape == (128, 2) and a[0]['x'].dtype == np.float32
  for u, v in zip(a, b, strict=True):
    np.testing.assert_array_equal(u['x'], v['x'])
  assert not np.array_equal(a[0]['x'], c[0]['x'])
  assert not np.array_equal(a[0]['x'], a[1]['x'])


@pytest.mark.parametrize('num_threads', [0, 1])
def test_loader_state_resumes_exactly(num_threads):
  def make():
    ds = gd.make_loader(
      'grid25', split='test', global_batch_size=512, seed=3, num_threads=num_threads
    )
    return iter(ds)

  it = make()
  _take(it, 5)
  state = gd.iterator_state(it)
  assert json.loads(json.dumps(state)) == state
  expected = _take(it, 3)
  fresh = make()
  gd.restore_iterator(fresh, json.dumps(state))  # as stored by a JSON checkpoint
  for u, v in zip(expected, _take(fresh, 3), strict=True):
    np.testing.assert_array_equal(u['x'], v['x'])


def test_loader_epochs_cover_every_example_once():
  src = gd.make_source('moons', 'test')
  ds = gd.make_loader(
    'moons', split='test', global_batch_size=4096, seed=0, num_epochs=1, drop_remainder=False
  )
  batches = list(ds)
  assert [len(b['x']) for b in batches[:-1]] == [4096] * (len(batches) - 1)
  seen = np.concatenate([b['x'] for b in batches])
  assert len(seen) == len(src)
  np.testing.assert_array_equal(np.unique(seen, axis=0), np.unique(src.points, axis=0))
  # A second epoch is a different permutation of the same examples.
  two = list(gd.make_loader('moons', split='test', global_batch_size=4096, seed=0, num_epochs=2))
  assert len(two) == 2 * (len(src) // 4096)
  first = np.concatenate([b['x'] for b in two[: len(two) // 2]])
  second = np.concatenate([b['x'] for b in two[len(two) // 2 :]])
  assert not np.array_equal(first, second)


def test_loader_shards_disjoint_and_complete(monkeypatch):
  src = gd.make_source('ring8', 'test')
  shards = []
  for index in range(3):
    monkeypatch.setattr('jax.process_index', lambda index=index: index)
    monkeypatch.setattr('jax.process_count', lambda: 3)
    ds = gd.make_loader(
      'ring8', split='test', global_batch_size=3 * 100, seed=0, num_epochs=1, drop_remainder=False
    )
    batches = list(ds)
    assert len(batches[0]['x']) == 100
    shards.append(np.concatenate([b['x'] for b in batches]))
  assert len({len(s) for s in shards}) == 1  # same number of steps on every process
  allx = np.concatenate(shards)
  assert len(np.unique(allx, axis=0)) == len(allx) == len(src) // 3 * 3


def test_bad_batch_size():
  with pytest.raises(ConfigError, match=r'data\.batch_size=10000000: larger than'):
    gd.make_loader('ring8', split='test', global_batch_size=10**7, seed=0)


# ---------------------------------------------------------------------------------- errors


def test_unknown_name_lists_embedded():
  with pytest.raises(ConfigError) as err:
    gd.get_spec('no_such_dataset_xyz', data_dir='/nonexistent')
  msg = str(err.value)
  assert all(name in msg for name in gd.EMBEDDED_DATASETS) and 'TFDS' in msg


@pytest.fixture
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError('network access attempted')

  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)
  monkeypatch.setattr(socket, 'getaddrinfo', refuse)


def test_unprepared_tfds_dataset(tmp_path, no_network):
  before = sorted(os.listdir(tmp_path))
  for call in (
    lambda: gd.get_spec('mnist', str(tmp_path)),
    lambda: gd.make_source('mnist', 'train', str(tmp_path)),
    lambda: gd.make_loader(
      'mnist', split='train', global_batch_size=8, seed=0, data_dir=str(tmp_path)
    ),
  ):
    with pytest.raises(ConfigError) as err:
      call()
    msg = str(err.value)
    assert 'mnist' in msg and 'not prepared' in msg and str(tmp_path) in msg
    assert f'gen prepare --dataset=mnist --data_dir={tmp_path}' in msg
  assert sorted(os.listdir(tmp_path)) == before == []


@pytest.mark.slow
def test_no_tensorflow_import():
  import subprocess
  import sys

  code = (
    'import sys, gen.data as d, tempfile; d.get_spec("digits", tempfile.mkdtemp());'
    'assert "tensorflow" not in sys.modules'
  )
  subprocess.run([sys.executable, '-c', code], check=True, capture_output=True)


def _write_uint8_tfds(data_dir: str) -> np.ndarray:
  """Prepares a tiny unregistered uint8 image dataset, as `gen prepare` would for e.g. mnist."""
  import tensorflow_datasets as tfds

  images = np.random.default_rng(0).integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
  images[0, 0, 0] = [0, 255, 128]

  class GenTestImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('1.0.0')

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
      return None

    def _info(self):
      features = {
        'image': tfds.features.Image(shape=(4, 4, 3)),
        'label': tfds.features.ClassLabel(num_classes=3),
      }
      # Not dataset_info_from_configs: it looks for metadata next to the module's package.
      return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
      )

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      for i, image in enumerate(images):
        # PNG bytes from PIL: TFDS would need TensorFlow to encode a numpy image itself.
        png = io.BytesIO()
        PIL.Image.fromarray(image).save(png, format='png')
        yield i, {'image': png.getvalue(), 'label': i % 3}

  GenTestImages(data_dir=data_dir, file_format='array_record').download_and_prepare()
  return images


@pytest.mark.parametrize('cache_bytes', [0, 2**20])  # decode per batch, or all at once
def test_prepared_tfds_images(tmp_path, monkeypatch, cache_bytes):
  monkeypatch.setattr('gen.data.registry.CACHE_BYTES', cache_bytes)
  images = _write_uint8_tfds(str(tmp_path))
  spec = gd.get_spec('gen_test_images', str(tmp_path))
  assert (spec.kind, spec.shape, spec.num_classes, spec.num_train) == ('images', (4, 4, 3), 3, 10)
  src = gd.make_source('gen_test_images', 'train', str(tmp_path))
  batch = src.get_batch(range(10))
  np.testing.assert_allclose(batch['x'], images / 255 * 2 - 1, atol=1e-6)
  assert batch['x'].min() == -1 and batch['x'].max() == 1  # the ends map exactly
  np.testing.assert_array_equal(batch['label'], np.arange(10) % 3)
  np.testing.assert_array_equal(src[3]['x'], batch['x'][3])
  it = iter(
    gd.make_loader(
      'gen_test_images', split='train', global_batch_size=4, seed=0, data_dir=str(tmp_path)
    )
  )
  assert next(it)['x'].shape == (4, 4, 4, 3)
  with pytest.raises(ConfigError, match=r"\['train'\]"):
    gd.make_source('gen_test_images', 'test', str(tmp_path))


def test_prepare_toy_and_unknown(tmp_path):
  gd.prepare('ring8', str(tmp_path))  # nothing to do
  assert os.listdir(tmp_path) == []
  with pytest.raises(ConfigError, match='ring8'):
    gd.prepare('no_such_dataset_xyz', str(tmp_path))
