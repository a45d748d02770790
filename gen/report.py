"""Run reports: `W/report.html` for one run directory, and a summary table over several runs.

`write_report(W)` reads what training left in the run directory W (`config.json`,
`metrics.jsonl`, `samples/step_N*.png`, `eval/step_N.json`) and writes one self-contained page,
`W/report.html`: no scripts, no network, images linked by relative paths (the curves it draws
go to `W/report/*.png`, sample pictures are linked where they lie). Parts a run does not have
yet (no evaluation, no samples) are named as missing on the page.

`compare(Ws)` makes one row per run (config, last step, the latest eval JSON's metrics, the last
logged losses) and `format_table` prints the rows as markdown or CSV: the sweep summary.

`report_main` and `compare_main` are the command-line entry points (no absl).

To look at a page as a browser draws it (Debian: `apt-get install -y chromium`):

  chromium --headless --no-sandbox --disable-gpu --screenshot=/tmp/report.png \
    --window-size=1200,2400 file://$(realpath W)/report.html
"""

import csv
import html
import io
import json
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
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
# metrics.jsonl keys that are not drawn as curves (one value at step 0: shown in the header).
_NOT_CURVES = ('step', 'compile_seconds')
_THROUGHPUT = ('steps_per_sec', 'examples_per_sec')
# Drawing more points than this per line adds nothing but file size.
_MAX_POINTS = 2000


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


# ---------------------------------------------------------------------------------------------
# Curves.


def _series(records: Iterable[dict]) -> dict[str, list[tuple[int, float]]]:
  """key -> [(step, value)] by step; the last record of a step wins (a resumed run logs some
  steps twice); non-finite values (logged as null) become NaN."""
  by_key: dict[str, dict[int, float]] = {}
  for record in records:
    step = int(record['step'])
    for key, value in record.items():
      if key in _NOT_CURVES:
        continue
      if value is None:
        by_key.setdefault(key, {})[step] = math.nan
      elif _is_number(value):
        by_key.setdefault(key, {})[step] = float(value)
  return {
    k: sorted(d.items()) for k, d in by_key.items() if any(math.isfinite(v) for v in d.values())
  }


def _is_loss(key: str) -> bool:
  head = key.split('/')[0]
  return head.startswith('loss') or head.endswith('loss')


# (file id, title, which keys, one axes for all keys (True) or one panel per key (False))
_GROUPS = (
  ('losses', 'Losses', _is_loss, True),
  ('discriminator', 'Discriminator outputs D(x)', lambda k: k.startswith('d_'), True),
  ('grad_norms', 'Gradient norms', lambda k: k.startswith('grad_norm'), True),
  ('lr', 'Learning rates', lambda k: k == 'lr' or k.startswith(('lr/', 'lr_')), True),
  ('proxies', 'Proxy metrics (cheap, during training)', lambda k: k.startswith('proxy_'), False),
  ('eval', 'Evaluation metrics over steps', lambda k: k.startswith('eval/'), False),
  ('throughput', 'Throughput', lambda k: k in _THROUGHPUT, False),
  ('other', 'Other diagnostics', lambda k: True, False),
)


def _group_series(
  series: dict[str, list[tuple[int, float]]],
) -> list[tuple[str, str, dict[str, list[tuple[int, float]]], bool]]:
  groups = []
  left = dict(sorted(series.items()))
  for gid, title, match, overlay in _GROUPS:
    chosen = {k: v for k, v in left.items() if match(k)}
    for k in chosen:
      del left[k]
    if gid == 'eval' and not any(len(v) > 1 for v in chosen.values()):
      continue  # one evaluation: the table says it all
    if chosen:
      groups.append((gid, title, chosen, overlay))
  return groups


def _mpl_text(text: str) -> str:
  return text.replace('$', r'\$')  # no mathtext from metric names


def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
  if len(points) <= _MAX_POINTS:
    return points
  stride = math.ceil(len(points) / _MAX_POINTS)
  return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def _draw(ax, series: dict[str, list[tuple[int, float]]], legend: bool, ylabel: str = '') -> None:
  finite = [v for pts in series.values() for _, v in pts if math.isfinite(v)]
  for i, (key, points) in enumerate(series.items()):
    points = _thin(points)
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    marker = '.' if len(points) <= 40 else None
    style = ('-', '--', ':', '-.')[i % 4]  # lines that coincide stay visible
    ax.plot(steps, values, style, marker=marker, linewidth=1.2, label=_mpl_text(key))
  if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
    ax.set_yscale('log')
  ax.grid(True, alpha=0.3)
  ax.set_xlabel('step', fontsize=8)
  if ylabel:
    ax.set_ylabel(_mpl_text(ylabel), fontsize=8)
  ax.tick_params(labelsize=8)
  if legend and len(series) > 1:
    ax.legend(fontsize=8)


def _plot_group(
  path: str, title: str, series: dict[str, list[tuple[int, float]]], overlay: bool
) -> None:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if overlay or len(series) == 1:
    fig = Figure(figsize=(5.5, 3.2), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw(ax, series, legend=True, ylabel=next(iter(series)) if len(series) == 1 else title)
    if len(series) == 1:  # no legend: the title names the key
      title = f'{title}: {next(iter(series))}'
    ax.set_title(_mpl_text(title), fontsize=10)
  else:
    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = Figure(figsize=(3.7 * ncols, 2.5 * nrows + 0.4), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (key, points) in zip(axes, series.items(), strict=False):
      _draw(ax, {key: points}, legend=False, ylabel=key)
      ax.set_title(_mpl_text(key), fontsize=9)
    for ax in axes[len(series) :]:
      ax.set_visible(False)
    fig.suptitle(_mpl_text(title), fontsize=10)
  fig.savefig(path)


def _write_curves(
  workdir: str, records: list[dict], evals: list[tuple[int, dict]]
) -> tuple[list[str], list[str]]:
  """Draws the curve PNGs under `W/report/`; returns the page's HTML figures and notes."""
  series = _series(records)
  # Each eval JSON is one point of `eval/<metric>` (they are the full record: `--mode=eval`
  # writes no metrics.jsonl line).
  for step, values in evals:
    for key, value in eval_metrics(values).items():
      if key.endswith('_std'):
        continue
      points = dict(series.get(f'eval/{key}', []))
      points[step] = float(value)
      series[f'eval/{key}'] = sorted(points.items())
  folder = os.path.join(workdir, REPORT_DIR)
  os.makedirs(folder, exist_ok=True)
  written, figures, notes = set(), [], []
  for gid, title, group, overlay in _group_series(series):
    if not overlay:  # a panel per key: a flat line is said in words, not drawn
      flat = {k: _constant(p) for k, p in group.items()}
      flat = {k: v for k, v in flat.items() if v is not None}
      group = {k: p for k, p in group.items() if k not in flat}
      if flat:
        said = ', '.join(f'{k} = {_fmt(v)}' for k, v in flat.items())
        notes.append(f'<p class="note">{_e(title)}, constant: {_e(said)}.</p>')
      if not group:
        continue
    name = f'curves_{gid}.png'
    _plot_group(os.path.join(folder, name), title, group, overlay)
    written.add(name)
    counts = {k: sum(not math.isfinite(v) for _, v in p) for k, p in group.items()}
    gaps = ', '.join(f'{k} at {n} step(s)' for k, n in counts.items() if n)
    note = f'<figcaption>Non-finite values (gaps): {_e(gaps)}</figcaption>' if gaps else ''
    figures.append(
      f'<figure><img src="{_src(f"{REPORT_DIR}/{name}")}" alt="{_e(title)}">{note}</figure>'
    )
  for name in os.listdir(folder):  # pictures of an earlier report that this one lacks
    if name.startswith('curves_') and name.endswith('.png') and name not in written:
      os.remove(os.path.join(folder, name))
  return figures, notes


def _constant(points: list[tuple[int, float]]) -> float | None:
  """The value of a series that never changes (at least two finite points), else None."""
  finite = [v for _, v in points if math.isfinite(v)]
  if len(finite) == len(points) > 1 and max(finite) == min(finite):
    return finite[0]
  return None


# ---------------------------------------------------------------------------------------------
# The page.

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;
  max-width:1160px;margin:0 auto;padding:12px 20px 40px;line-height:1.4}
h1{font-size:1.6em;margin:8px 0 6px;overflow-wrap:anywhere}
h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:3px;margin:26px 0 10px}
h3{font-size:1em;margin:14px 0 6px}
nav a{margin-right:14px;color:#36c}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 18px;margin:0}
.meta dt{color:#666}.meta dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:4px 0 10px}
th,td{padding:3px 12px;border-bottom:1px solid #e4e4e4;text-align:left}
th{background:#f4f4f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.missing{color:#888;font-style:italic}
.note{color:#666;font-size:.9em}
dl.protocol{display:grid;grid-template-columns:max-content 1fr;gap:1px 14px;margin:0;
  font-size:.9em}
dl.protocol dt{color:#666}dl.protocol dd{margin:0;overflow-wrap:anywhere}
dl.protocol dl.protocol{border-left:2px solid #eee;padding-left:8px;font-size:inherit}
.columns{display:flex;flex-wrap:wrap;gap:0 48px;align-items:flex-start}
.columns .note{max-width:36em}
.gallery{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figcaption{font-size:.85em;color:#555;max-width:560px}
figure.picture{display:table}
figure.picture figcaption{display:table-caption;caption-side:bottom;max-width:none}
img{max-width:100%;height:auto}img.pixel{image-rendering:pixelated}
.thumbs img{width:220px}
details pre{font-size:.8em;background:#f7f7f7;padding:8px;overflow:auto;max-height:500px}
"""


def _dl(mapping: dict[str, Any], cls: str = 'protocol') -> str:
  items = []
  for key, value in mapping.items():
    if isinstance(value, dict):
      inner = _dl(value) if value else '–'
    elif isinstance(value, list):
      inner = _e(
        ', '.join(_fmt(v) if not isinstance(v, dict | list) else json.dumps(v) for v in value)
      )
    else:
      inner = _e(_fmt(value))
    items.append(f'<dt>{_e(key)}</dt><dd>{inner}</dd>')
  return f'<dl class="{cls}">{"".join(items)}</dl>'


def _header(workdir: str, config: dict, records: list[dict], bad_lines: int) -> str:
  name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
  num_steps = _config_get(config, 'train.num_steps')
  last_step = max((int(r['step']) for r in records), default=None)
  if last_step is None:
    steps = f'nothing logged yet (of {_fmt(num_steps)})'
  elif _is_number(num_steps) and num_steps > 0:
    steps = f'{last_step} of {_fmt(num_steps)} ({100 * last_step / num_steps:.0f}%)'
  else:
    steps = str(last_step)
  fields = [
    ('dataset', _config_get(config, 'data.name', '?')),
    ('objective', _config_get(config, 'objective.name', '?')),
    ('model', _config_get(config, 'model.name', '?')),
    ('steps', steps),
    ('batch size', _config_get(config, 'data.batch_size', '?')),
    ('seed', _config_get(config, 'seed', '?')),
  ]
  timed = [r for r in records if _is_number(r.get('steps_per_sec'))]
  if timed:
    last = timed[-1]
    speed = f'{_fmt(last["steps_per_sec"])} steps/s'
    if _is_number(last.get('examples_per_sec')):
      speed += f', {_fmt(last["examples_per_sec"])} examples/s'
    fields.append(('throughput', f'{speed} (step {int(last["step"])})'))
  compile_s = [r['compile_seconds'] for r in records if _is_number(r.get('compile_seconds'))]
  if compile_s:  # the first compile; a resume's compile is mostly a cache hit
    shown = f'{_fmt(compile_s[0])} s'
    if len(compile_s) > 1:
      shown += f' (then {", ".join(_fmt(c) for c in compile_s[1:])} s on resume)'
    fields.append(('compile time', shown))
  fields.append(('run directory', os.path.abspath(workdir)))
  meta = ''.join(f'<dt>{_e(k)}</dt><dd>{_e(_fmt(v))}</dd>' for k, v in fields)
  warning = ''
  if bad_lines:
    warning = f'<p class="note">metrics.jsonl: {bad_lines} unreadable line(s) skipped.</p>'
  nav = ''.join(
    f'<a href="#{a}">{t}</a>'
    for a, t in (('eval', 'Evaluation'), ('samples', 'Samples'), ('curves', 'Curves'))
  )
  return f'<h1>{_e(name)}</h1><nav>{nav}</nav><h2>Run</h2><dl class="meta">{meta}</dl>{warning}'


def _eval_section(workdir: str, latest: tuple[int, dict] | None, last_step: int | None) -> str:
  out = ['<h2 id="eval">Evaluation</h2>']
  if latest is None:
    out.append(
      '<p class="missing">No evaluation yet (no eval/step_N.json: training writes one at its end, '
      'and every train.eval_every steps; gen eval writes one too).</p>'
    )
    return ''.join(out)
  step, values = latest
  metrics = eval_metrics(values)
  bounds = values.get('bounds') if isinstance(values.get('bounds'), dict) else {}
  note = f'At step {step}'
  if last_step is not None and last_step > step:
    note += f' (training has reached step {last_step})'
  out.append(f'<p>{_e(note)}; file eval/step_{step}.json.</p><div class="columns"><div>')
  if not metrics:
    out.append('<p class="missing">The eval file holds no metrics.</p>')
  else:
    head = '<th>metric</th><th>value</th>'
    if bounds:
      head += '<th>real data (train vs test)</th><th>noise</th>'
    rows = []
    for key, value in metrics.items():
      if key.endswith('_std') and key[: -len('_std')] in metrics:
        continue  # shown as ± next to its mean
      if key in ('fd_low', 'fd_high') and 'fd' in metrics:
        continue  # shown as the interval next to fd
      shown = _fmt(value)
      if _is_number(metrics.get(f'{key}_std')):
        shown += f' ± {_fmt(metrics[f"{key}_std"])}'
      if key == 'fd' and _is_number(metrics.get('fd_low')) and _is_number(metrics.get('fd_high')):
        shown += f' [{_fmt(metrics["fd_low"])}, {_fmt(metrics["fd_high"])}] 95%'
      row = f'<td>{_e(key)}</td><td class="num">{_e(shown)}</td>'
      if bounds:
        b = bounds.get(key) if isinstance(bounds.get(key), dict) else {}
        row += f'<td class="num">{_e(_fmt(b.get("real")))}</td>'
        row += f'<td class="num">{_e(_fmt(b.get("noise")))}</td>'
      rows.append(f'<tr>{row}</tr>')
    out.append(f'<table><tr>{head}</tr>{"".join(rows)}</table>')
    if 'fd_low' in metrics and 'fd_high' in metrics:
      out.append(
        '<p class="note">[low, high] after fd: its 95% basic bootstrap interval over resamples of '
        'the samples (eval.fd_bootstrap); FD values inside one interval do not rank models.</p>'
      )
    if bounds:
      out.append(
        '<p class="note">Real data: the metric of training against test data, the best a model '
        'can expect. Noise: the metric of pure noise.</p>'
      )
  out.append('</div><div>')
  protocol = values.get('protocol')
  if isinstance(protocol, dict) and protocol:
    out.append(f'<h3>Protocol</h3>{_dl(protocol)}')
  else:
    out.append('<p class="note">No protocol recorded in this eval file.</p>')
  extra = {k: v for k, v in values.items() if k not in _EVAL_META and not _is_number(v)}
  if extra:
    out.append(f'<h3>Other fields</h3>{_dl(extra)}')
  out.append('</div></div>')
  return ''.join(out)


def _samples_section(workdir: str, prefix: str = '') -> str:
  """The pictures of W; `prefix` leads from the page's folder to W (with --output_dir)."""
  out = ['<h2 id="samples">Samples</h2>']
  pictures = _sample_pictures(workdir)
  if not pictures:
    out.append('<p class="missing">No samples yet (no samples/step_N.png).</p>')
    return ''.join(out)
  grids = pictures.get('', [])
  # Small image grids are drawn larger, pixels kept sharp; strips share the grid's scale so
  # that a tile is as large in each. Grid and strips sit side by side where they fit.
  scale = 1.0
  size = _image_size(os.path.join(workdir, grids[-1][1])) if grids else None
  if size and size[0] < 360:
    scale = min(3.0, 360 / size[0])

  def figure(relpath: str, title: str, caption: str) -> str:
    size = _image_size(os.path.join(workdir, relpath))
    attrs = f'src="{_src(prefix + relpath)}" alt="{_e(title)}"'
    if size:
      attrs += f' width="{round(size[0] * scale)}" height="{round(size[1] * scale)}"'
    if scale > 1:
      attrs += ' class="pixel"'
    return (
      f'<figure class="picture"><img {attrs}>'
      f'<figcaption><b>{_e(title)}</b> {_e(caption)}</figcaption></figure>'
    )

  figures = []
  if grids:
    step, relpath = grids[-1]
    figures.append(figure(relpath, f'Samples (step {step}).', ''))
  else:
    out.append('<p class="missing">No sample grid yet (no samples/step_N.png).</p>')
  strips = [k for k in STRIP_CAPTIONS if k in pictures]
  strips += sorted(k for k in pictures if k and k not in STRIP_CAPTIONS)
  for kind in strips:
    step, relpath = pictures[kind][-1]
    caption = STRIP_CAPTIONS.get(kind, '')
    figures.append(figure(relpath, f'{kind.capitalize()} (step {step}).', caption))
  out.append(f'<div class="gallery">{"".join(figures)}</div>')
  if len(grids) > 1:
    thumbs = ''.join(
      f'<figure><img src="{_src(prefix + p)}" alt="step {s}">'
      f'<figcaption>step {s}</figcaption></figure>'
      for s, p in grids[-9:-1]
    )
    out.append(f'<h3>Earlier samples</h3><div class="gallery thumbs">{thumbs}</div>')
  return ''.join(out)


def write_report(workdir: str, output_dir: str | None = None) -> str:
  """Writes `W/report.html` (its curves under `W/report/`) and returns the page's path.

  With `output_dir=D` the run is only read: the page and its curves go to D, the evaluations
  of `D/eval/` (from `--mode=eval --output_dir=D`) join W's, and W's pictures are linked.

  Raises:
    RunDirError: `workdir` is not a run directory (no readable config.json).
  """
  config = _check_run_dir(workdir)
  out = output_dir or workdir
  records, bad_lines = _load_metrics(workdir)
  files = dict(_eval_files(workdir))
  if output_dir:
    files.update(_eval_files(output_dir))
  evals = [(s, v) for s, p in sorted(files.items()) if (v := _read_eval(p)) is not None]
  latest = evals[-1] if evals else None
  last_step = max((int(r['step']) for r in records), default=None)
  os.makedirs(out, exist_ok=True)
  figures, notes = _write_curves(out, records, evals)
  if figures or notes:
    curves = f'<div class="gallery">{"".join(figures)}</div>{"".join(notes)}'
  else:
    curves = '<p class="missing">No training curves yet (metrics.jsonl is empty or absent).</p>'
  name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
  config_text = json.dumps(config, indent=2, sort_keys=True)
  page = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    f'<title>{_e(name)} – gen report</title><style>{_CSS}</style></head><body>'
    + _header(workdir, config, records, bad_lines)
    + _eval_section(workdir, latest, last_step)
    + _samples_section(workdir, '' if out == workdir else os.path.relpath(workdir, out) + '/')
    + f'<h2 id="curves">Training curves</h2>{curves}'
    + f'<h2>Config</h2><details><summary>config.json</summary><pre>{_e(config_text)}</pre>'
    + '</details></body></html>\n'
  )
  path = os.path.join(out, REPORT_FILE)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(page)
  os.replace(path + '.tmp', path)
  return path


# ---------------------------------------------------------------------------------------------
# Comparing runs.

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
# Command-line entry points.


def report_main(workdir: str, output_dir: str | None = None) -> int:
  """`gen report W [--output_dir=D]`: writes the page, prints its path; 2 (and one error line)
  if W is no run."""
  try:
    path = write_report(workdir, output_dir)
  except RunDirError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except OSError as e:
    hint = '' if output_dir else '; pass --output_dir=D to write it elsewhere'
    print(f'error: cannot write the report in {output_dir or workdir}: {e}{hint}', file=sys.stderr)
    return 1
  print(path)
  return 0


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
