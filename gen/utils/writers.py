"""Metric writers: `W/metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

TensorBoard event files are written by tensorboardX, which needs only protobuf (no TensorFlow):
`tensorboard --logdir W/tb` shows the training scalars, the evaluations as `eval/<metric>`, and
the pictures (sample grids, trajectories, interpolations, neighbours) as images.
Only process 0 writes; other processes get a writer that does nothing.

A resumed run continues the log instead of repeating it: `start_at(S)` (called with the restored
step) moves the `metrics.jsonl` lines of steps after S, which a killed job wrote after its last
checkpoint, to `metrics.superseded.jsonl` (appended, never deleted), and has TensorBoard purge
its events after S (tensorboardX's `purge_step`). Each training step is then logged once.
"""

import json
import math
import os
from collections.abc import Mapping

import jax
import numpy as np

PERF_KEYS = ('steps_per_sec', 'examples_per_sec', 'compile_seconds')


def board_tag(name: str) -> str:
  """The TensorBoard tag of a metrics.jsonl key, grouped by prefix: `eval/...` stays, proxies
  go to `proxy/...`, throughput and compile time to `perf/...`, everything else (losses, lr,
  gradient norms, diagnostics) to `train/...`. metrics.jsonl keeps the plain keys."""
  if name.startswith('eval/'):
    return name
  if name.startswith('proxy_'):
    return 'proxy/' + name[len('proxy_') :]
  if name in PERF_KEYS:
    return 'perf/' + name
  return 'train/' + name


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` (unless `jsonl=False`) and `workdir/tb/`, and
  pictures to `workdir/tb/` (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool | None = None, jsonl: bool = True):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._tb_dir = os.path.join(workdir, 'tb')
    self._purge_step: int | None = None
    self._path = os.path.join(workdir, 'metrics.jsonl') if jsonl else None

  @property
  def _board(self):
    if self._tb is None:
      from tensorboardX import SummaryWriter  # imported here: keeps `import gen` light

      self._tb = SummaryWriter(self._tb_dir, flush_secs=30, purge_step=self._purge_step)
    return self._tb

  def start_at(self, step: int) -> int:
    """Continues the log from the restored `step`: later lines move to
    `metrics.superseded.jsonl`, TensorBoard purges its later events. Returns the lines moved."""
    if not self.enabled:
      return 0
    self.close()
    self._purge_step = int(step) + 1
    if not self._path or not os.path.exists(self._path):
      return 0
    with open(self._path) as f:
      lines = [line for line in f if line.strip()]
    keep, moved = [], []
    for line in lines:
      try:
        later = int(json.loads(line)['step']) > step
      except (ValueError, KeyError, TypeError):  # a line cut off by a kill: not a record
        later = True
      (moved if later else keep).append(line if line.endswith('\n') else line + '\n')
    if not moved:
      return 0
    aside = os.path.join(os.path.dirname(self._path), 'metrics.superseded.jsonl')
    with open(aside, 'a') as f:
      f.writelines(moved)
    with open(self._path + '.tmp', 'w') as f:
      f.writelines(keep)
    os.replace(self._path + '.tmp', self._path)
    return len(moved)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one record `{"step": step, **scalars}` (non-finite values as null)."""
    if not self.enabled:
      return
    record = {'step': int(step)}
    for name, value in scalars.items():
      value = float(value)
      record[name] = value if math.isfinite(value) else None
      self._board.add_scalar(board_tag(name), value, int(step))
    if self._path:
      with open(self._path, 'a') as f:
        f.write(json.dumps(record) + '\n')

  def write_picture(self, step: int, tag: str, path: str) -> None:
    """Adds the PNG at `path` (a picture the run saved) to TensorBoard as image `tag`."""
    if not self.enabled or not os.path.exists(path):
      return
    from PIL import Image

    with Image.open(path) as im:
      pixels = np.asarray(im.convert('RGB'))
    self._board.add_image(tag, pixels, int(step), dataformats='HWC')

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict]:
  """Reads back `workdir/metrics.jsonl` (for tests and reports)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
