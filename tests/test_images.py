"""Tests for gen.utils.images."""

import itertools
import os

import numpy as np
import pytest
from PIL import Image

from gen.utils import images as im


def _ramp(n, h, w, c):
  return np.linspace(-1.0, 1.0, n * h * w * c, dtype=np.float32).reshape(n, h, w, c)


@pytest.mark.parametrize(
  'n, ncols, rows, cols',
  [(16, None, 4, 4), (10, None, 3, 4), (10, 5, 2, 5), (3, 8, 1, 3), (1, None, 1, 1)],
)
def test_grid_shape_and_border_arithmetic(n, ncols, rows, cols):
  h, w, p = 8, 6, 2
  grid = im.image_grid(np.zeros((n, h, w, 3)), ncols=ncols, padding=p)
  assert grid.dtype == np.uint8
  assert grid.shape == (rows * h + (rows + 1) * p, cols * w + (cols + 1) * p, 3)


def test_grid_places_tiles_and_borders():
  h, w, p = 4, 5, 1
  imgs = np.stack([np.full((h, w, 1), v) for v in (-1.0, 0.0, 1.0)])
  grid = im.image_grid(imgs, ncols=2, padding=p, pad_value=7)[..., 0]
  # Tile (row, col) starts at (p + row*(h+p), p + col*(w+p)).
  np.testing.assert_array_equal(grid[1:5, 1:6], 0)
  np.testing.assert_array_equal(grid[1:5, 7:12], 128)  # 0.0 -> round(127.5) = 128
  np.testing.assert_array_equal(grid[6:10, 1:6], 255)
  np.testing.assert_array_equal(grid[6:10, 7:12], 7)  # empty trailing cell
  # Border rows and columns carry pad_value only.
  for r in (0, 5, 10):
    assert (grid[r] == 7).all()
  for col in (0, 6, 12):
    assert (grid[:, col] == 7).all()


def test_value_mapping_and_clipping():
  imgs = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 7.0, np.nan], np.float32).reshape(1, 1, 7, 1)
  grid = im.image_grid(imgs, padding=0)
  np.testing.assert_array_equal(grid[0, :, 0], [0, 0, 128, 191, 255, 255, 128])


def test_rgb_channels_preserved():
  imgs = np.zeros((2, 3, 3, 3), np.float32)
  imgs[..., 0] = 1.0  # pure red
  grid = im.image_grid(imgs, padding=1, pad_value=0)
  np.testing.assert_array_equal(grid[1, 1], [255, 128, 128])


@pytest.mark.parametrize('shape', [(4, 8, 8), (4, 8, 8, 2), (0, 8, 8, 1)])
def test_grid_rejects_bad_shapes(shape):
  with pytest.raises(ValueError, match='images'):
    im.image_grid(np.zeros(shape))


@pytest.mark.parametrize('c, mode', [(1, 'L'), (3, 'RGB')])
def test_save_image_grid_readable_png(tmp_path, c, mode):
  path = tmp_path / 'a' / 'b' / 'grid.png'  # parents created
  im.save_image_grid(path, _ramp(10, 8, 8, c), ncols=5)
  with Image.open(path) as pic:
    assert pic.format == 'PNG' and pic.mode == mode
    # 8x8 tiles are upscaled x4 to 32 px; 2 rows x 5 cols with 2 px borders.
    assert pic.size == (5 * 32 + 6 * 2, 2 * 32 + 3 * 2)
  assert os.listdir(path.parent) == ['grid.png']  # no leftover .tmp


def test_save_image_grid_upscale_is_nearest_neighbour(tmp_path):
  imgs = _ramp(1, 2, 2, 1)
  im.save_image_grid(tmp_path / 'g.png', imgs, upscale=3)
  with Image.open(tmp_path / 'g.png') as pic:
    arr = np.asarray(pic)
  assert arr.shape == (6 + 4, 6 + 4)
  tile = arr[2:8, 2:8]
  np.testing.assert_array_equal(
    tile, np.kron(im.image_grid(imgs, padding=0)[..., 0], np.ones((3, 3)))
  )


def test_save_image_grid_no_upscale_for_large_images(tmp_path):
  im.save_image_grid(tmp_path / 'g.png', np.zeros((4, 32, 32, 3)))
  with Image.open(tmp_path / 'g.png') as pic:
    assert pic.size == (2 * 32 + 3 * 2,) * 2


def _grid25(rng, n):
  centers = np.array(list(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2)))
  return centers, centers[rng.integers(0, 25, n)] + 0.05 * rng.standard_normal((n, 2))


def test_save_scatter_writes_png(tmp_path):
  rng = np.random.default_rng(0)
  centers, data = _grid25(rng, 2000)
  _, samples = _grid25(rng, 500)
  samples[:3] = [[50.0, 0.0], [np.nan, 1.0], [0.0, np.inf]]  # outliers must not break it
  path = tmp_path / 'samples' / 'step_1.png'
  im.save_scatter(path, samples, data=data, centers=centers, title='step 1')
  with Image.open(path) as pic:
    assert pic.format == 'PNG'
    assert pic.size == (500, 500)  # 5 x 5 inches at 100 dpi
  assert os.listdir(path.parent) == ['step_1.png']


def test_save_scatter_samples_only_and_limits(tmp_path):
  samples = np.random.default_rng(1).standard_normal((100, 2))
  im.save_scatter(tmp_path / 's.png', samples, limits=(-3, 3, -3, 3))
  im.save_scatter(tmp_path / 't.png', samples)
  for name in ('s.png', 't.png'):
    with Image.open(tmp_path / name) as pic:
      pic.verify()


def test_save_scatter_rejects_bad_shape(tmp_path):
  with pytest.raises(ValueError, match='samples'):
    im.save_scatter(tmp_path / 's.png', np.zeros((10, 3)))
  assert not os.listdir(tmp_path)


def test_failed_write_leaves_no_files(tmp_path, monkeypatch):
  def boom(*args, **kwargs):
    raise RuntimeError('disk full')

  monkeypatch.setattr(Image.Image, 'save', boom)
  with pytest.raises(RuntimeError):
    im.save_image_grid(tmp_path / 'g.png', np.zeros((1, 8, 8, 1)))
  assert not os.listdir(tmp_path)


def test_save_samples_picture_dispatch(tmp_path):
  im.save_samples_picture(tmp_path / 'i.png', _ramp(4, 8, 8, 1), kind='images')
  with Image.open(tmp_path / 'i.png') as pic:
    assert pic.size == (2 * 32 + 3 * 2,) * 2
  pts = np.random.default_rng(2).standard_normal((50, 2))
  im.save_samples_picture(tmp_path / 'p.png', pts, kind='points', data=pts, title='t')
  with Image.open(tmp_path / 'p.png') as pic:
    assert pic.size == (500, 500)
  with pytest.raises(ValueError, match="'images', 'points'"):
    im.save_samples_picture(tmp_path / 'x.png', pts, kind='scatter')


def test_import_leaves_pyplot_untouched():
  import subprocess
  import sys

  code = "import sys, gen.utils.images; print('matplotlib.pyplot' in sys.modules)"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=root
  )
  assert out.stdout.strip() == 'False'


def test_a_title_wider_than_its_grid_widens_the_picture_and_keeps_the_grid(tmp_path):
  x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
  plain = np.asarray(Image.open(im.save_image_grid(tmp_path / 'a.png', x, ncols=2)))
  title = 'a title line much longer than a two-column grid of digits is wide'
  titled = np.asarray(Image.open(im.save_image_grid(tmp_path / 'b.png', x, ncols=2, title=title)))
  band = titled.shape[0] - plain.shape[0]
  assert titled.shape[1] > plain.shape[1] + 200  # the whole line fits
  np.testing.assert_array_equal(titled[band:, : plain.shape[1]], plain)  # the grid is unchanged
  assert np.all(titled[band:, plain.shape[1] :] == 255)  # white to its right
