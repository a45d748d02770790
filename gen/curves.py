"""Training curves for the run page: metrics.jsonl's series drawn as PNGs under `W/report/`.

`_write_curves` turns metrics.jsonl's records (and each eval JSON, one point of `eval/<metric>`)
into one series per key, sorts them into groups (`_GROUPS`: losses, discriminator outputs,
gradient norms, learning rates, proxy and evaluation metrics, throughput, the rest), draws each
group with matplotlib's Agg backend into `W/report/curves_<group>.png` and returns the HTML
figures and notes that `gen.report.write_report` puts on the page; a series that never changes
is said in words instead. It uses `gen.report`'s helpers, and `gen.report` imports it only
inside `write_report`, so neither module meets the other half-imported.
"""

import math
import os
from collections.abc import Iterable

from gen.rundir import REPORT_DIR, _e, _fmt, _is_number, _src, eval_metrics

# metrics.jsonl keys that are not drawn as curves (one value at step 0: shown in the header).
_NOT_CURVES = ('step', 'compile_seconds')
_THROUGHPUT = ('steps_per_sec', 'examples_per_sec')
# Drawing more points than this per line adds nothing but file size.
_MAX_POINTS = 2000


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
