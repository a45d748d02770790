"""Metric writers: `W/metrics.jsonl` (one JSON object per logged step) and TensorBoard events.

TensorBoard event files are written by tensorboardX, which needs only protobuf (no TensorFlow).
Only process 0 writes; other processes get a writer that does nothing.
"""

import json
import math
import os
from collections.abc import Mapping

import jax


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and `workdir/tb/` (process 0 only)."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._path = os.path.join(workdir, 'metrics.jsonl')
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
    with open(self._path, 'a') as f:
      f.write(json.dumps(record) + '\n')

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
