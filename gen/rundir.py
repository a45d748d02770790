"""A run directory as data: its config, metrics log, eval JSONs and sample pictures, read
leniently (a run still training, a half-written file), and the number and HTML formatting that
`gen report` (gen.report), its curves (gen.curves) and `gen compare` (gen.compare) share."""

import html
import json
import math
import os
import re
import urllib.parse
from typing import Any

from gen.utils.writers import read_metrics

REPORT_FILE = 'report.html'
REPORT_DIR = 'report'  # the page's own pictures: W/report/curves_*.png

# Sample pictures: `samples/step_N.png` and `samples/step_N_KIND.png`.
_SAMPLE_RE = re.compile(r'^step_(\d+)(?:_([A-Za-z0-9]+))?\.png$')
_EVAL_RE = re.compile(r'^step_(\d+)\.json$')
STRIP_CAPTIONS = {
  'interpolation': 'Latent interpolations: each row walks between two latent codes.',
  'trajectory': 'Sampling trajectories: each row goes from noise (left) to a sample (right).',
  'neighbours': 'Samples next to their nearest training examples (a check for memorisation).',
}
# Eval JSON keys that are not metrics.
_EVAL_META = ('step', 'protocol', 'bounds')


class RunDirError(ValueError):
  """The folder is not a run directory (or its config.json is unreadable)."""


# ---------------------------------------------------------------------------------------------
# Reading a run directory.


def _check_run_dir(workdir: str) -> dict[str, Any]:
  """The run's config as a dict; RunDirError if `workdir` is not a run directory."""
  if not os.path.exists(workdir):
    raise RunDirError(f'{workdir} does not exist')
  if not os.path.isdir(workdir):
    raise RunDirError(f'{workdir} is not a directory')
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    hint = ''
    try:
      children = sorted(os.listdir(workdir))
    except OSError:
      children = []
    if any(os.path.isfile(os.path.join(workdir, c, 'config.json')) for c in children):
      hint = f'; it holds run directories: pass them, e.g. {os.path.join(workdir, "*")}'
    raise RunDirError(f'{workdir} is not a run directory (no config.json){hint}')
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RunDirError(f'{path} is not readable JSON: {e}') from None
  if not isinstance(config, dict):
    raise RunDirError(f'{path} does not hold a JSON object')
  return config


def _config_get(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
  node: Any = config
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return default
    node = node[part]
  return node


def _load_metrics(workdir: str) -> tuple[list[dict], int]:
  """metrics.jsonl's records and how many lines could not be read (a run killed mid-write
  leaves a partial last line)."""
  try:
    records, bad = read_metrics(workdir), 0
  except (json.JSONDecodeError, UnicodeDecodeError):
    records, bad = [], 0
    with open(os.path.join(workdir, 'metrics.jsonl'), errors='replace') as f:
      for line in f:
        if not line.strip():
          continue
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          bad += 1
  good = [
    r
    for r in records
    if isinstance(r, dict) and _is_number(r.get('step')) and math.isfinite(r['step'])
  ]
  return good, bad + len(records) - len(good)


def _is_number(value: Any) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def _eval_files(workdir: str) -> list[tuple[int, str]]:
  """(step, path) of `W/eval/step_N.json`, by step."""
  folder = os.path.join(workdir, 'eval')
  if not os.path.isdir(folder):
    return []
  found = []
  for name in os.listdir(folder):
    m = _EVAL_RE.match(name)
    if m:
      found.append((int(m[1]), os.path.join(folder, name)))
  return sorted(found)


def _read_eval(path: str) -> dict[str, Any] | None:
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError):
    return None
  return values if isinstance(values, dict) else None


def latest_eval(workdir: str) -> tuple[int, dict[str, Any]] | None:
  """(step, contents) of the newest readable `W/eval/step_N.json`, or None."""
  for step, path in reversed(_eval_files(workdir)):
    values = _read_eval(path)
    if values is not None:
      return step, values
  return None


def eval_metrics(values: dict[str, Any]) -> dict[str, float]:
  """The metrics of one eval JSON: its top-level numbers besides `step`."""
  return {k: v for k, v in values.items() if k not in _EVAL_META and _is_number(v)}


def _sample_pictures(workdir: str) -> dict[str, list[tuple[int, str]]]:
  """kind ('' for the sample grid) -> [(step, path relative to W)], by step."""
  folder = os.path.join(workdir, 'samples')
  found: dict[str, list[tuple[int, str]]] = {}
  if not os.path.isdir(folder):
    return found
  for name in os.listdir(folder):
    m = _SAMPLE_RE.match(name)
    if m and m[2] != 'sampled':  # --mode=sample's own pictures are not training's
      found.setdefault(m[2] or '', []).append((int(m[1]), f'samples/{name}'))
  return {kind: sorted(items) for kind, items in found.items()}


# ---------------------------------------------------------------------------------------------
# Formatting.


def _fmt(value: Any) -> str:
  """A number for people: 4 significant digits, integers as they are, None as a dash."""
  if value is None:
    return '–'
  if isinstance(value, bool) or isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      return str(value)
    a = abs(value)
    return f'{value:.0f}' if 1e4 <= a < 1e7 else f'{value:.4g}'
  return str(value)


def _e(text: Any) -> str:
  return html.escape(str(text), quote=True)


def _src(relpath: str) -> str:
  """An attribute-safe relative URL for a file under W."""
  return _e(urllib.parse.quote(relpath))


def _image_size(path: str) -> tuple[int, int] | None:
  try:
    from PIL import Image

    with Image.open(path) as im:
      return im.size
  except Exception:  # a picture being written, or not a PNG: show it without a size
    return None
