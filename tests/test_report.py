"""`gen.report` and `gen.compare`: the run page `W/report.html` and the sweep table, on fake run
directories."""

import csv
import io
import json
import os
import re
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from gen import compare, report


def _config(data='digits', objective='gan', model='dcgan', num_steps=2000):
  return {
    'data': {'name': data, 'batch_size': 64},
    'objective': {'name': objective},
    'model': {'name': model},
    'train': {'num_steps': num_steps},
    'seed': 0,
  }


def _png(path, size, seed=0):
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_run(
  workdir, config=None, metrics=None, evals=None, samples=('', 'interpolation', 'neighbours')
):
  """Writes a run directory as training leaves it; returns its path as a string."""
  workdir = str(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(config or _config(), f)
  if metrics is None:
    metrics = [{'step': 0, 'compile_seconds': 3.2}]
    for step in range(100, 2001, 100):
      metrics.append(
        {
          'step': step,
          'loss/generator': 0.7 + step / 2000,
          'loss/discriminator': 1.4 - step / 4000,
          'd_real': 0.5 + step / 8000,
          'd_fake': 0.5 - step / 8000,
          'grad_norm/generator': 2.0 + step / 500,
          'lr/generator': 2e-4,
          'lr/discriminator': 2e-4,
          'proxy_fd': 300.0 / (1 + step / 100),
          'proxy_sliced_w2': 0.5 / (1 + step / 500),
          'steps_per_sec': 17.5,
          'examples_per_sec': 1120.0,
          'skipped_steps': 0.0,
        }
      )
    metrics[5]['loss/generator'] = None  # a non-finite value, logged as null
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(m) + '\n' for m in metrics)
  for step, values in (evals or {}).items():
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    with open(os.path.join(workdir, 'eval', f'step_{step}.json'), 'w') as f:
      json.dump({'step': step, **values}, f)
  for kind in samples:
    for step in (1000, 2000):
      suffix = f'_{kind}' if kind else ''
      size = (274, 274) if not kind else (546, 274)
      _png(os.path.join(workdir, 'samples', f'step_{step}{suffix}.png'), size, seed=step)
  return workdir


EVAL_2000 = {
  'fd': 12.3456,
  'kid': 0.01234,
  'kid_std': 0.00042,
  'precision': 0.8125,
  'recall': 0.4375,
  'sample_nfe': 1,
  'protocol': {
    'num_samples': 1797,
    'sample_seed': 7,
    'features': {'network': 'digits-cnn', 'sha256': 'abc123'},
    'reference': {'dataset': 'digits', 'split': 'test', 'n': 360},
  },
  'bounds': {'fd': {'real': 1.5, 'noise': 987.6}, 'precision': {'real': 0.93, 'noise': 0.0}},
}


def _srcs(page):
  return [urllib.parse.unquote(s) for s in re.findall(r'<img [^>]*src="([^"]+)"', page)]


@pytest.mark.timeout(60)
def test_report_of_a_full_run(tmp_path):
  workdir = make_run(tmp_path / 'dcgan_run', evals={1000: {'fd': 40.0}, 2000: EVAL_2000})
  path = report.write_report(workdir)
  assert path == os.path.join(workdir, 'report.html')
  page = open(path, encoding='utf-8').read()
  assert '<h1>dcgan_run</h1>' in page
  for text in ('digits', 'gan', 'dcgan', '2000 of 2000 (100%)', '17.5 steps/s', '1120 examples/s'):
    assert text in page
  # The latest eval (step 2000, not 1000): values, ± std, bounds and the protocol.
  assert 'At step 2000' in page
  for text in ('12.35', '0.01234 ± 0.00042', '0.8125', '0.4375', '987.6', '0.93'):
    assert text in page, text
  assert 'digits-cnn' in page and 'abc123' in page and '<dt>split</dt><dd>test</dd>' in page
  # Every picture it shows exists, under W, linked relatively; no scripts, no network.
  srcs = _srcs(page)
  assert 'samples/step_2000.png' in srcs and 'samples/step_2000_interpolation.png' in srcs
  assert 'samples/step_2000_neighbours.png' in srcs and 'report/curves_losses.png' in srcs
  assert {'report/curves_proxies.png', 'report/curves_eval.png'} <= set(srcs)
  for src in srcs:
    assert not os.path.isabs(src) and '..' not in src
    assert os.path.isfile(os.path.join(workdir, src)), src
  assert '<script' not in page and 'http' not in page.replace('http-equiv', '')
  assert 'loss/generator at 1 step(s)' in page  # the null value is named, not hidden


@pytest.mark.timeout(60)
def test_report_escapes_names_from_the_run(tmp_path):
  name = 'x<img src=x onerror=alert(1)>&"'
  config = _config(data='<script>alert("d")</script>')
  metrics = [{'step': 10, 'loss': 1.0, 'proxy_a$b$': 2.0}, {'step': 20, 'loss': 0.5}]
  evals = {20: {'<b>m</b>': 1.0, 'protocol': {'note': '<i>x</i>'}}}
  workdir = make_run(tmp_path / name, config=config, metrics=metrics, evals=evals, samples=())
  page = open(report.write_report(workdir), encoding='utf-8').read()
  assert '<script' not in page and '<img src=x' not in page
  assert '<b>' not in page and '<i>' not in page
  assert '&lt;script&gt;alert(&quot;d&quot;)&lt;/script&gt;' in page
  assert 'x&lt;img src=x onerror=alert(1)&gt;&amp;&quot;' in page
  assert '&lt;b&gt;m&lt;/b&gt;' in page
  for src in _srcs(page):
    assert os.path.isfile(os.path.join(workdir, src))


@pytest.mark.timeout(60)
def test_report_of_a_run_with_only_config_and_metrics(tmp_path):
  metrics = [{'step': s, 'loss': 1.0 / s, 'lr': 1e-3} for s in range(1, 6)]
  workdir = make_run(
    tmp_path / 'fresh', config=_config('ring8', 'ddpm', 'mlp', 100), metrics=metrics, samples=()
  )
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"step": 6, "lo')  # killed mid-write
  page = open(report.write_report(workdir), encoding='utf-8').read()
  assert 'No evaluation yet' in page and 'No samples yet' in page
  assert '5 of 100 (5%)' in page and '1 unreadable line' in page
  assert 'report/curves_losses.png' in _srcs(page)
  assert os.path.isfile(os.path.join(workdir, 'report', 'curves_losses.png'))
  # Nothing logged at all: the page still comes out and says so.
  os.remove(os.path.join(workdir, 'metrics.jsonl'))
  page = open(report.write_report(workdir), encoding='utf-8').read()
  assert 'No training curves yet' in page and 'nothing logged yet' in page
  assert not os.listdir(os.path.join(workdir, 'report'))  # the old curves went


@pytest.mark.timeout(30)
def test_compare_gives_the_union_of_columns(tmp_path, capsys):
  a = make_run(tmp_path / 'a', evals={1000: {'fd': 50.0}, 2000: EVAL_2000}, samples=())
  b_metrics = [{'step': 100, 'loss': 0.25}, {'step': 200, 'loss': 0.125}]
  b = make_run(
    tmp_path / 'b',
    config=_config('ring8', 'ddpm', 'mlp', 200),
    metrics=b_metrics,
    evals={200: {'sliced_w2': 0.05, 'modes_covered': 8}},
    samples=(),
  )
  rows = compare.compare([a, b])
  assert [r['run'] for r in rows] == ['a', 'b']
  assert list(rows[0]) == list(rows[1])  # same columns in both rows
  assert list(rows[0])[:7] == [
    'run',
    'data',
    'objective',
    'model',
    'steps',
    'final_step',
    'eval_step',
  ]
  assert rows[0]['fd'] == 12.3456 and rows[0]['eval_step'] == 2000 and rows[0]['sliced_w2'] is None
  assert rows[1]['sliced_w2'] == 0.05 and rows[1]['fd'] is None and rows[1]['loss'] == 0.125
  assert rows[0]['loss/generator'] == 1.7 and rows[1]['loss/generator'] is None
  assert 'protocol' not in rows[0] and 'bounds' not in rows[0]
  table = list(csv.DictReader(io.StringIO(compare.format_table(rows, 'csv'))))
  assert table[1]['fd'] == '' and table[1]['sliced_w2'] == '0.05' and table[0]['data'] == 'digits'
  md = compare.format_table(rows).splitlines()
  assert len(md) == 4 and md[0].startswith('| run | data |') and ' fd ' in md[0]
  assert md[1].count('|') == md[0].count('|') == md[3].count('|')
  assert compare.compare_main([a, b], 'csv') == 0
  assert capsys.readouterr().out.startswith('run,data,objective,model,steps,final_step')


@pytest.mark.timeout(30)
def test_not_a_run_dir_is_a_clear_error(tmp_path, capsys):
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert report.report_main(str(empty)) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'not a run directory (no config.json)' in err
  assert not os.listdir(empty)  # nothing written
  assert report.report_main(str(tmp_path / 'missing')) == 2
  assert 'does not exist' in capsys.readouterr().err
  # A sweep folder: the error names the runs inside it.
  make_run(tmp_path / 'sweep' / 'r1', samples=())
  assert compare.compare_main([str(tmp_path / 'sweep')], 'markdown') == 2
  assert 'it holds run directories' in capsys.readouterr().err
  assert compare.compare_main([str(tmp_path / 'sweep' / 'r1')], 'json') == 2
  with pytest.raises(report.RunDirError):
    compare.compare([str(tmp_path / 'sweep' / 'r1'), str(empty)])


@pytest.mark.timeout(30)
def test_fd_interval_shown_next_to_fd_in_report_and_compare(tmp_path):
  values = {'fd': 27.81, 'fd_low': 12.5, 'fd_high': 40.25, 'kid': 0.5, 'kid_std': 0.125}
  run = make_run(tmp_path / 'a', evals={2000: values}, samples=())
  page = open(report.write_report(run)).read()
  assert '27.81 [12.5, 40.25] 95%' in page and 'basic bootstrap interval' in page
  assert '>fd_low<' not in page and '>fd_high<' not in page
  other = make_run(tmp_path / 'b', evals={2000: {'fd': 30.0, 'kid': 0.25}}, samples=())
  rows = compare.compare([run, other])
  columns = list(rows[0])
  assert columns[columns.index('fd') : columns.index('fd') + 3] == ['fd', 'fd_low', 'fd_high']
  assert rows[1]['fd_low'] is None and rows[0]['fd_high'] == 40.25


@pytest.mark.timeout(30)
def test_compare_fields_sort_and_empty_columns(tmp_path, capsys):
  """--fields=auto shows the config fields that differ; --sort orders by a column (runs without
  it last); columns empty in every row are dropped; a bad --sort is one line."""
  runs = []
  for name, lr, fd in (('a', 1e-3, 30.0), ('b', 3e-3, 12.0), ('c', 1e-2, None)):
    config = {**_config(), 'optim': {'lr': lr}, 'data': {'name': 'digits', 'data_dir': name}}
    evals = {2000: {'fd': fd, 'kid': None}} if fd is not None else {2000: {'kid': None}}
    runs.append(make_run(tmp_path / name, config=config, evals=evals, samples=()))
  rows = compare.compare(runs, sort='fd')
  assert [r['run'] for r in rows] == ['b', 'a', 'c']
  assert [r['optim.lr'] for r in rows] == [3e-3, 1e-3, 1e-2]
  assert 'kid' not in rows[0] and 'data.data_dir' not in rows[0]  # empty; a path
  assert [r['run'] for r in compare.compare(runs, sort='-optim.lr')] == ['c', 'b', 'a']
  assert 'optim.lr' not in compare.compare(runs, fields=[])[0]
  assert compare.compare_main(runs, 'markdown', 'auto', 'nope') == 2
  assert capsys.readouterr().err.startswith('error: --sort=nope: no such column (columns: run,')


@pytest.mark.timeout(30)
def test_compile_time_is_the_first_compile_with_resumes_after_it(tmp_path):
  metrics = [
    {'step': 0, 'compile_seconds': 23.5},
    {'step': 100, 'loss': 0.5},
    {'step': 100, 'compile_seconds': 0.88},  # a resume: the cached executable
    {'step': 200, 'loss': 0.25},
  ]
  page = open(report.write_report(make_run(tmp_path / 'r', metrics=metrics, samples=()))).read()
  assert '23.5 s (then 0.88 s on resume)' in page
