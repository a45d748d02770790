"""`gen compare`: one table row per run directory, the sweep summary.

`compare(Ws)` reads each run directory W (with `gen.report`'s helpers) and makes one row per
run: its config (data, objective, model, steps, and the config fields that differ between the
runs, or those asked for), the last logged step, the latest eval JSON's metrics and the last
logged losses; `format_table` prints the rows as markdown or CSV, and `compare_main` is the
command-line entry point (no absl). `launch.sweep` writes this table after a sweep.
"""

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from gen.curves import _is_loss
from gen.rundir import (
  RunDirError,
  _check_run_dir,
  _config_get,
  _fmt,
  _is_number,
  _load_metrics,
  eval_metrics,
  latest_eval,
)

_FIXED_COLUMNS = ('run', 'data', 'objective', 'model', 'steps', 'final_step', 'eval_step')


AUTO_FIELDS_MAX = 6  # compare's 'auto' fields: the config leaves that differ, if this few


def differing_fields(configs: Sequence[dict[str, Any]]) -> list[str]:
  """Config leaves (dotted) whose values are not the same in every config, sorted; paths
  (data.data_dir) excluded."""
  from gen.utils.workdir import flatten

  flat = [flatten(c) for c in configs]
  keys = sorted({k for f in flat for k in f} - {'data.data_dir'})
  return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def _sort_key(name: str):
  """`--sort=fd` ascending, `--sort=-fd` descending; runs without the value go last."""
  column, descending = name.lstrip('-'), name.startswith('-')

  def key(row: dict[str, Any]):
    value = row.get(column)
    if not _is_number(value):
      return (1, 0.0)
    return (0, -value if descending else value)

  return key


def compare(
  workdirs: Sequence[str], fields: Sequence[str] | str = 'auto', sort: str | None = None
) -> list[dict[str, Any]]:
  """One row per run: `run` (the folder's name), `data`, `objective`, `model`, `steps` (as
  configured), `final_step` (last logged), `eval_step`, then one column per config field of
  `fields` with the run's value ('auto': the fields whose values differ between the runs, when
  there are at most AUTO_FIELDS_MAX of them; a sweep passes its swept fields), then the metrics
  of the latest eval JSON (fd next to its interval), then the last logged value of each loss
  (`loss`, `loss/generator`, ...). All rows have the same keys; a column that is empty in
  every row is dropped. `sort`: a column name to sort the rows by (ascending; '-name'
  descending; rows without a value last), else the order given.

  Raises:
    RunDirError: one of `workdirs` is not a run directory.
    ValueError: `sort` names no column.
  """
  names = [os.path.basename(os.path.normpath(os.path.abspath(w))) for w in workdirs]
  configs = [_check_run_dir(w) for w in workdirs]
  if fields == 'auto':
    fields = differing_fields(configs) if len(configs) > 1 else []
    fields = fields if len(fields) <= AUTO_FIELDS_MAX else []
  partial = []
  for workdir, name, config in zip(workdirs, names, configs, strict=True):
    records, _ = _load_metrics(workdir)
    latest = latest_eval(workdir)
    row: dict[str, Any] = {
      'run': name if names.count(name) == 1 else os.path.normpath(workdir),
      'data': _config_get(config, 'data.name'),
      'objective': _config_get(config, 'objective.name'),
      'model': _config_get(config, 'model.name'),
      'steps': _config_get(config, 'train.num_steps'),
      'final_step': max((int(r['step']) for r in records), default=None),
      'eval_step': latest[0] if latest else None,
    }
    for field in fields:
      value = _config_get(config, field)
      row[field] = value if value is None or isinstance(value, int | float | str) else str(value)
    metrics = eval_metrics(latest[1]) if latest else {}
    losses = {}
    for record in records:
      for key, value in record.items():
        if _is_loss(key) and (value is None or _is_number(value)):
          losses[key] = value
    partial.append((row, metrics, losses))
  fixed = set(_FIXED_COLUMNS) | set(fields)
  metric_cols = sorted(
    {k for _, m, _ in partial for k in m} - fixed,
    key=lambda k: {'fd_low': 'fd\x01', 'fd_high': 'fd\x02'}.get(k, k),  # fd, its interval
  )
  loss_cols = sorted(
    {k for _, _, losses in partial for k in losses}, key=lambda k: (k != 'loss', k)
  )
  rows = []
  for row, metrics, losses in partial:
    row.update({k: metrics.get(k) for k in metric_cols})
    row.update({k: losses.get(k) for k in loss_cols if k not in row})
    rows.append(row)
  empty = {k for k in rows[0] if k != 'run' and all(r.get(k) is None for r in rows)}
  rows = [{k: v for k, v in r.items() if k not in empty} for r in rows]
  if sort:
    if sort.lstrip('-') not in rows[0]:
      raise ValueError(f'--sort={sort}: no such column (columns: {", ".join(rows[0])})')
    rows.sort(key=_sort_key(sort))
  return rows


def format_table(rows: Sequence[dict[str, Any]], fmt: str = 'markdown') -> str:
  """The rows as a markdown table (numbers to 4 significant digits) or CSV (full precision);
  columns are the union of the rows' keys, blank where a row lacks one."""
  if fmt not in ('markdown', 'csv'):
    raise ValueError(f"fmt={fmt!r}: use 'markdown' or 'csv'")
  columns: list[str] = []
  for row in rows:
    columns += [k for k in row if k not in columns]
  if fmt == 'csv':
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
      writer.writerow(['' if row.get(c) is None else row[c] for c in columns])
    return buffer.getvalue()

  def cell(value: Any) -> str:
    text = '' if value is None else _fmt(value)
    return text.replace('\\', '\\\\').replace('|', '\\|').replace('\n', ' ')

  numeric = [
    any(_is_number(r.get(c)) for r in rows)
    and all(r.get(c) is None or _is_number(r.get(c)) for r in rows)
    for c in columns
  ]
  lines = [
    '| ' + ' | '.join(cell(c) for c in columns) + ' |',
    '|' + '|'.join('---:' if n else '---' for n in numeric) + '|',
  ]
  lines += ['| ' + ' | '.join(cell(row.get(c)) for c in columns) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# Command-line entry point.


def compare_main(
  workdirs: list[str], fmt: str = 'markdown', fields: str = 'auto', sort: str | None = None
) -> int:
  """`gen compare W1 W2 ... [--format=markdown|csv] [--fields=auto|a.b,c.d] [--sort=[-]COL]`:
  prints one row per run."""
  if fmt not in ('markdown', 'csv'):
    print(f"error: format {fmt!r} is not one of 'markdown', 'csv'", file=sys.stderr)
    return 2
  if not workdirs:
    print('error: no run directories given', file=sys.stderr)
    return 2
  chosen = fields if fields == 'auto' else [f for f in fields.split(',') if f]
  try:
    rows = compare(workdirs, chosen, sort)
  except (RunDirError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(format_table(rows, fmt), end='')
  return 0
