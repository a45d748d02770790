"""Pictures of samples: image grids and 2-D scatter plots, written atomically as PNG files.

Matplotlib is used through `matplotlib.figure.Figure` and the Agg canvas only, never through
`pyplot`, so importing this module changes no global backend or figure state and works headless.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

__all__ = ['image_grid', 'save_image_grid', 'save_samples_picture', 'save_scatter']

# Tiny images (8x8 digits) are upscaled to at least this many pixels per side so they are
# readable in a report or an image viewer.
MIN_TILE_PIXELS = 32


def _to_uint8(images: np.ndarray) -> np.ndarray:
  """Maps [-1, 1] floats to [0, 255] uint8: -1 -> 0, 1 -> 255, out-of-range values clipped."""
  # NaN (a diverged sampler) becomes mid grey instead of an undefined cast.
  x = np.nan_to_num(np.asarray(images, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
  return np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def _check_images(images: Any) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
      f'`images` must have shape [N, H, W, C] with C in {{1, 3}}; got {images.shape}.'
    )
  if images.shape[0] == 0:
    raise ValueError('`images` must contain at least one image.')
  return images


def image_grid(
  images: Any, ncols: int | None = None, padding: int = 2, pad_value: int = 255
) -> np.ndarray:
  """Tiles images into one picture with a border around every tile.

  Args:
    images: [N, H, W, C] floats in [-1, 1] (NHWC, C in {1, 3}); values outside are clipped.
    ncols: tiles per row; defaults to ceil(sqrt(N)), a near-square grid.
    padding: border width in pixels, around and between the tiles.
    pad_value: grey level of the border and of empty trailing cells (255 = white).

  Returns:
    uint8 array [rows * H + (rows + 1) * padding, ncols * W + (ncols + 1) * padding, C],
    with rows = ceil(N / ncols).

  Raises:
    ValueError: on a bad shape or a non-positive `ncols`.
  """
  images = _check_images(images)
  n, h, w, c = images.shape
  if ncols is None:
    ncols = math.ceil(math.sqrt(n))
  if ncols < 1:
    raise ValueError(f'`ncols` must be >= 1; got {ncols}.')
  ncols = min(ncols, n)
  nrows = math.ceil(n / ncols)
  p = padding
  grid = np.full((nrows * h + (nrows + 1) * p, ncols * w + (ncols + 1) * p, c), pad_value, np.uint8)
  tiles = _to_uint8(images)
  for i in range(n):
    r, col = divmod(i, ncols)
    top, left = p + r * (h + p), p + col * (w + p)
    grid[top : top + h, left : left + w] = tiles[i]
  return grid


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> str:
  """Writes a file through `path + '.tmp'` and `os.replace`, so readers never see half a file.

  Args:
    path: destination; parent directories are created.
    write: callback that writes the content to an open binary file.

  Returns:
    The destination path as a string.
  """
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  tmp = path + '.tmp'
  try:
    with open(tmp, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    # Leave no stale temporary behind on failure (including KeyboardInterrupt).
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return path


TITLE_PIXELS = 14  # height of a grid's title band (PIL's default bitmap font is 11 px)


def _with_title(grid: np.ndarray, title: str) -> np.ndarray:
  """The grid below a white band holding `title` (as many lines as it has). A grid narrower than
  the title's longest line is widened with white on the right, so that no line is cut.

  A grayscale grid stays grayscale ([H, W, 1]); an RGB grid stays RGB.
  """
  mode = 'L' if grid.shape[-1] == 1 else 'RGB'
  lines = title.split('\n')
  measure = ImageDraw.Draw(Image.new(mode, (1, 1)))
  width = max([grid.shape[1]] + [int(measure.textlength(line)) + 6 for line in lines])
  if width > grid.shape[1]:
    white = np.iinfo(grid.dtype).max if grid.dtype.kind in 'ui' else 1.0
    pad = np.full((grid.shape[0], width - grid.shape[1], grid.shape[2]), white, grid.dtype)
    grid = np.concatenate([grid, pad], axis=1)
  band = Image.new(mode, (width, TITLE_PIXELS * len(lines) + 2), 'white')
  draw = ImageDraw.Draw(band)
  for i, line in enumerate(lines):
    draw.text((3, 2 + TITLE_PIXELS * i), line, fill='black')
  band = np.asarray(band).reshape(band.size[1], band.size[0], grid.shape[-1])
  return np.concatenate([band.astype(grid.dtype), grid], axis=0)


def save_image_grid(
  path: str | os.PathLike,
  images: Any,
  ncols: int | None = None,
  upscale: int | None = None,
  title: str = '',
) -> str:
  """Writes a grid of [-1, 1] images as a PNG.

  Args:
    path: destination PNG; parent directories are created; the write is atomic.
    images: [N, H, W, C] floats in [-1, 1], C in {1, 3}.
    ncols: tiles per row (default: near-square).
    upscale: integer nearest-neighbour factor applied to every image before tiling (so the
      borders stay thin); defaults to the smallest factor that makes each tile at least 32
      pixels on its shorter side (4 for 8x8 digits, 1 for 32x32 and larger).
    title: text above the grid ('\n' separates lines), e.g. the run, step and what it shows.

  Returns:
    The path written, as a string.

  Raises:
    ValueError: on a bad shape or a non-positive `upscale`.
  """
  images = _check_images(images)
  if upscale is None:
    upscale = max(1, math.ceil(MIN_TILE_PIXELS / min(images.shape[1:3])))
  if upscale < 1:
    raise ValueError(f'`upscale` must be >= 1; got {upscale}.')
  if upscale > 1:
    images = np.repeat(np.repeat(images, upscale, axis=1), upscale, axis=2)
  grid = image_grid(images, ncols=ncols)
  if title:
    grid = _with_title(grid, title)
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  return _atomic_write(path, lambda f: picture.save(f, format='PNG'))


def _finite_rows(x: Any, name: str) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2 or x.shape[1] != 2:
    raise ValueError(f'`{name}` must have shape [N, 2]; got {x.shape}.')
  return x[np.all(np.isfinite(x), axis=1)]


def _square_limits(points: np.ndarray, margin: float = 0.1) -> tuple[float, float, float, float]:
  """A square (xmin, xmax, ymin, ymax) box around `points` with a relative margin."""
  if points.shape[0] == 0:
    return (-1.0, 1.0, -1.0, 1.0)
  lo, hi = points.min(axis=0), points.max(axis=0)
  center = 0.5 * (lo + hi)
  half = 0.5 * max(float(np.max(hi - lo)), 1e-3) * (1.0 + 2.0 * margin)
  return (center[0] - half, center[0] + half, center[1] - half, center[1] + half)


def save_scatter(
  path: str | os.PathLike,
  samples: Any,
  data: Any | None = None,
  centers: Any | None = None,
  title: str = '',
  limits: tuple[float, float, float, float] | None = None,
  mode_std: float | None = None,
) -> str:
  """Writes a 100 dpi PNG scatter of 2-D samples over the data and mode centres.

  Samples are small translucent blue dots over the data in grey, so both stay visible where
  they overlap; each mode centre is a hollow red circle of radius 3 `mode_std` (the region
  `high_quality_fraction` counts; a small hollow marker without `mode_std`), drawn behind the
  points so it hides no cluster. Where the modes are small against the layout (6 `mode_std`
  under a tenth of the view), a second panel zooms on the first mode (+-5 `mode_std`). The
  axes have equal aspect. Default limits are a square box around the data and
  centres (or around the samples when neither is given), so a diverging model does not
  shrink the data to a dot; the number of samples outside the view, if any, is printed in
  the corner.

  Args:
    path: destination PNG; parent directories are created; the write is atomic.
    samples: generated points [N, 2]; non-finite rows are dropped.
    data: reference points [M, 2], or None.
    centers: mode centres [K, 2], or None.
    title: figure title.
    limits: (xmin, xmax, ymin, ymax), or None for automatic limits.
    mode_std: the modes' standard deviation (the circles' and the zoom's scale), or None.

  Returns:
    The path written, as a string.

  Raises:
    ValueError: if an array does not have shape [*, 2].
  """
  samples = _finite_rows(samples, 'samples')
  data = None if data is None else _finite_rows(data, 'data')
  centers = None if centers is None else _finite_rows(centers, 'centers')
  refs = [a for a in (data, centers) if a is not None]
  if limits is None:
    limits = _square_limits(np.concatenate(refs) if refs else samples)
  xmin, xmax, ymin, ymax = limits

  zoom = (
    centers is not None
    and len(centers) > 0
    and mode_std is not None
    and 6.0 * mode_std < 0.1 * (xmax - xmin)
  )
  fig = Figure(figsize=(8.5 if zoom else 5, 5), dpi=100)
  FigureCanvasAgg(fig)
  if zoom:
    grid = fig.add_gridspec(1, 2, width_ratios=(5, 3))
    ax, ax_zoom = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
  else:
    ax, ax_zoom = fig.add_subplot(), None

  def draw(axes, size):
    if centers is not None:
      from matplotlib.patches import Circle

      for i, c in enumerate(centers):
        radius = 3.0 * mode_std if mode_std is not None else 0.02 * (xmax - xmin)
        axes.add_patch(
          Circle(
            c,
            radius,
            fill=False,
            ec='tab:red',
            lw=0.8,
            zorder=1,
            label='modes (3 std)' if not i else None,
          )
        )
    if data is not None:
      axes.scatter(
        data[:, 0], data[:, 1], s=2 * size, c='0.45', linewidths=0, zorder=2, label='data'
      )
    axes.scatter(
      samples[:, 0],
      samples[:, 1],
      s=3 * size,
      c='tab:blue',
      alpha=0.35,
      linewidths=0,
      zorder=3,
      label='samples',
    )
    axes.set_aspect('equal')

  draw(ax, 1.0)
  outside = np.sum(
    (samples[:, 0] < xmin)
    | (samples[:, 0] > xmax)
    | (samples[:, 1] < ymin)
    | (samples[:, 1] > ymax)
  )
  if outside:
    ax.text(0.01, 0.01, f'{outside} samples outside view', transform=ax.transAxes, fontsize=8)
  ax.set_xlim(xmin, xmax)
  ax.set_ylim(ymin, ymax)
  # Below the axes: inside, any corner may hide a mode of the data.
  ax.legend(
    loc='upper center',
    bbox_to_anchor=(0.5, -0.06),
    ncol=3,
    fontsize=8,
    markerscale=2,
    frameon=False,
  )
  if title:
    ax.set_title(title)
  if ax_zoom is not None:
    draw(ax_zoom, 3.0)
    cx, cy = centers[0]
    half = 5.0 * mode_std
    ax_zoom.set_xlim(cx - half, cx + half)
    ax_zoom.set_ylim(cy - half, cy + half)
    ax_zoom.set_title(f'zoom: the mode at ({cx:.3g}, {cy:.3g}), +-5 std', fontsize=9)
  fig.tight_layout()
  return _atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=100))


def save_samples_picture(
  path: str | os.PathLike,
  samples: Any,
  *,
  kind: str,
  data: Any | None = None,
  centers: Any | None = None,
  title: str = '',
  ncols: int | None = None,
  mode_std: float | None = None,
) -> str:
  """Writes the picture of a batch of samples: an image grid or a 2-D scatter plot.

  Args:
    path: destination PNG (e.g. `W/samples/step_N.png`).
    samples: [N, H, W, C] images in [-1, 1] for `kind='images'`; [N, 2] points for
      `kind='points'`.
    kind: 'images' (grid; `data`, `centers` and `mode_std` are ignored) or 'points' (scatter).
    data: reference points for 'points'.
    centers: mode centres for 'points'.
    title: the picture's title (above a grid, or the scatter's).
    ncols: grid columns for 'images' (default: a square grid).
    mode_std: the modes' standard deviation for 'points' (`save_scatter`).

  Returns:
    The path written, as a string.

  Raises:
    ValueError: on an unknown `kind` or bad shapes.
  """
  if kind == 'images':
    return save_image_grid(path, samples, ncols=ncols, title=title)
  if kind == 'points':
    return save_scatter(path, samples, data=data, centers=centers, title=title, mode_std=mode_std)
  raise ValueError(f"`kind` must be one of 'images', 'points'; got {kind!r}.")
