"""Run reports: `W/report.html` for one run directory (`gen report`).

`write_report(W)` reads what training left in the run directory W (`config.json`,
`metrics.jsonl`, `samples/step_N*.png`, `eval/step_N.json`) and writes one self-contained page,
`W/report.html`: no scripts, no network, images linked by relative paths (the curves it draws,
with `gen.curves`, go to `W/report/*.png`, sample pictures are linked where they lie). Parts a
run does not have yet (no evaluation, no samples) are named as missing on the page.

The run-directory readers (`latest_eval`, `eval_metrics`, ...) and number formatting are in
gen.rundir, shared with `gen.curves` and `gen.compare` (`gen compare`, the table across runs).

`report_main` is the command-line entry point (no absl).

To look at a page as a browser draws it (Debian: `apt-get install -y chromium`):

  chromium --headless --no-sandbox --disable-gpu --screenshot=/tmp/report.png \
    --window-size=1200,2400 file://$(realpath W)/report.html
"""

import json
import os
import sys
from typing import Any

from gen.curves import _write_curves
from gen.rundir import (
  _EVAL_META,
  REPORT_FILE,
  STRIP_CAPTIONS,
  RunDirError,
  _check_run_dir,
  _config_get,
  _e,
  _eval_files,
  _fmt,
  _image_size,
  _is_number,
  _load_metrics,
  _read_eval,
  _sample_pictures,
  _src,
  eval_metrics,
)

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
