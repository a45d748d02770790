"""The pictures a run draws: sample grids and scatters, the objective's own pictures (its
`pictures(state, key)`: trajectories, interpolations, reconstructions) and the memorisation
neighbours. Process 0 writes; every picture is titled with the run, the step and what it shows.
"""

import os

import jax
import numpy as np

from gen import data as data_lib
from gen import distributed
from gen.setup import Setup, reference_data
from gen.state import TrainState
from gen.utils import images

MAX_GRID = 100  # an image picture shows up to this many samples (sample.num = 100: all of them)


def run_title(workdir: str, step: int) -> str:
  """'<run folder> step N': how pictures name what they show."""
  return f'{os.path.basename(os.path.normpath(workdir))} step {step}'


def save_picture(
  setup: Setup, path: str, samples: np.ndarray, title: str = '', conditional: bool = False
) -> None:
  """Image grid, or a scatter over the data with the mode centres (process 0 only).

  Conditional samples come with labels cycling through the classes, so their grid has one
  column per class (each column one class).
  """
  if jax.process_index() != 0:
    return
  if setup.spec.kind == 'points':
    images.save_samples_picture(
      path,
      samples,
      kind='points',
      data=reference_data(setup, 2000),
      centers=setup.spec.mode_centers,
      title=title,
      mode_std=setup.spec.mode_std,
    )
  elif conditional:
    n = setup.spec.num_classes
    shown = samples[: n * max(1, min(10, len(samples) // n))]
    title = f'{title}\none column per class 0-{n - 1}' if title else ''
    images.save_samples_picture(path, shown, kind='images', ncols=n, title=title)
  else:
    images.save_samples_picture(path, samples[:MAX_GRID], kind='images', title=title)


def save_objective_pictures(
  setup: Setup, state: TrainState, stem: str, rng, title: str = ''
) -> dict[str, str]:
  """The objective's `pictures(state, rng)` as `{stem}_{name}.png`, one row per path and one
  column per frame (process 0 writes), each titled `title` (run and step) and its caption.
  Returns {name: path} of the pictures written."""
  out = jax.jit(setup.objective.pictures)(state, rng)
  if not out:
    return {}
  out = distributed.to_host(out)
  captions = setup.objective.picture_captions()
  written = {}
  for name, frames in out.items():
    frames = np.asarray(frames)  # [F, rows, *shape]
    path = f'{stem}_{name}.png'
    written[name] = path
    if jax.process_index() != 0:
      continue
    rows = np.swapaxes(frames, 0, 1).reshape((-1,) + frames.shape[2:])
    what = captions.get(name, name)
    images.save_samples_picture(
      path,
      rows,
      kind='images',
      ncols=frames.shape[0],
      title=f'{title}\n{what}' if title else what,
    )
  return written


def save_neighbours_picture(setup: Setup, workdir: str, step: int, samples, extras) -> None:
  """`samples/step_N_neighbours.png`: the 16 samples nearest to a training example (in feature
  space), each above its nearest training example: where to look for memorised images."""
  if jax.process_index() != 0 or setup.spec.kind != 'images':
    return
  order = np.argsort(extras['nn_distance'])[:16]
  source = data_lib.make_source(setup.spec.name, 'train', setup.config.data.data_dir or None)
  train = source.get_batch(np.asarray(extras['nn_index'])[order])['x']
  rows = []
  for half in (slice(0, 8), slice(8, 16)):
    rows += [samples[order][half], train[half]]
  grid = np.concatenate(rows)
  path = os.path.join(workdir, 'samples', f'step_{step}_neighbours.png')
  title = (
    f'{run_title(workdir, step)}\nrows 1, 3: the 16 samples nearest to a training example; '
    'rows 2, 4: that training example'
  )
  images.save_samples_picture(path, grid, kind='images', ncols=len(grid) // 4, title=title)
