"""Metric writers: `W/metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

TensorBoard event files are written by tensorboardX, which needs only protobuf (no TensorFlow):
`tensorboard --logdir W/tb` shows the training scalars, the evaluations as `eval/<metric>`, and
the pictures (sample grids, trajectories, interpolations, neighbours) as images.
Only process 0 writes; other processes get a writer that does nothing.
"""

import json
import math
import os
from collections.abc import Mapping

import jax
import numpy as np


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` (unless `jsonl=False`) and `workdir/tb/`, and
  pictures to `workdir/tb/` (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool | None = None, jsonl: bool = True):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._path = os.path.join(workdir, 'metrics.jsonl') if jsonl else None
    if self.enabled:
      from tensorboardX import SummaryWriter  # imported here: keeps `import gen` light

      self._tb = SummaryWriter(os.path.join(workdir, 'tb'), flush_secs=30)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one record `{"step": step, **scalars}` (non-finite values as null)."""
    if not self.enabled:
      return
    record = {'step': int(step)}
    for name, value in scalars.items():
      value = float(value)
      record[name] = value if math.isfinite(value) else None
      self._tb.add_scalar(name, value, int(step))
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
    self._tb.add_image(tag, pixels, int(step), dataformats='HWC')

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
