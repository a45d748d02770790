"""`python -m launch.sweep`: names and commands of a sweep, input checked before anything runs,
and a real sweep of two smoke runs with its summary table."""

import json
import os
import subprocess
import sys

import pytest

from experiments import ddpm_ring8
from launch import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep(*args, timeout=60):
  """Runs `python -m launch.sweep ARGS` from the repo root; returns the CompletedProcess."""
  return subprocess.run(
    [sys.executable, '-m', 'launch.sweep', *args],
    cwd=REPO,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _experiment(tmp_path, runs: str) -> str:
  """An experiment file in tmp_path: ddpm_ring8's config with its own sweep() returning `runs`."""
  path = tmp_path / 'exp_sweep.py'
  path.write_text(
    '"""A test sweep over ddpm_ring8."""\n\n'
    'from experiments import ddpm_ring8\n\n'
    'get_config = ddpm_ring8.get_config\n\n\n'
    f'def sweep():\n  return {runs}\n'
  )
  return str(path)


def test_names():
  assert sweep.run_name({'optim.lr': 0.001}) == 'lr_0.001'
  assert sweep.run_name({'optim.lr': 3e-4, 'model.mlp.features': (64, 64)}) == (
    'lr_0.0003-features_64_64'
  )
  assert sweep.run_name({'gan.augment': 'color/x y'}) == 'augment_color_x_y'
  assert sweep.run_name({}) == 'default'
  # Labels stay unambiguous over the sweep, and names unique.
  names = sweep.run_names(
    [{'optim.lr': 1e-3, 'gan.optim_d.lr': 2e-4}, {'optim.lr': 1e-3, 'gan.optim_d.lr': 2e-4}, {}]
  )
  assert names == [
    'optim.lr_0.001-optim_d.lr_0.0002',
    'optim.lr_0.001-optim_d.lr_0.0002-2',
    'default',
  ]
  assert len(sweep.run_name({'data.data_dir': 'x' * 500})) <= 100


def test_values_are_checked_and_survive_the_command_line():
  config = ddpm_ring8.get_config('smoke')
  checked = sweep.check_sweep(
    config,
    [{'optim.lr': 3, 'model.mlp.features': [16], 'eval.metrics': ('sliced_w2',), 'seed': 1}],
  )
  assert checked == [
    {'optim.lr': 3, 'model.mlp.features': (16,), 'eval.metrics': ('sliced_w2',), 'seed': 1}
  ]
  assert [sweep.format_value(v) for v in checked[0].values()] == ['3', '16,', "'sliced_w2',", '1']
  assert sweep.format_value(True) == 'true' and sweep.format_value(()) == '()'
  for bad, words in [
    ({'optim.lr': '1e-3'}, "optim.lr='1e-3': expected a float"),
    ({'train.num_steps': 2.5}, 'expected an int'),
    ({'train.num_steps': True}, 'expected an int'),
    ({'diffusion.edm_preconditioning': 1}, 'expected a bool'),
    ({'model.mlp.features': (16, 'a')}, 'model.mlp.features[1]'),
    ({'optim': {'lr': 1.0}}, 'a config section'),
    ({'optim.lrr': 1.0}, "no such config field (did you mean 'optim.lr'?)"),
  ]:
    with pytest.raises(sweep.SweepError, match='sweep\\(\\)\\[1\\]: ') as e:
      sweep.check_sweep(config, [{}, bad])
    assert words in str(e.value), (bad, str(e.value))
  with pytest.raises(sweep.SweepError, match='non-empty list'):
    sweep.check_sweep(config, {'optim.lr': 1.0})


@pytest.mark.timeout(60)
def test_dry_run_prints_one_command_per_run(tmp_path):
  root = str(tmp_path / 'R')
  r = _sweep(
    '--config=experiments/ddpm_ring8.py:smoke',
    f'--workdir_root={root}',
    '--dry_run',
    '--config.train.num_steps=5',
  )
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines == [
    f'{sys.executable} -m gen.main --config={REPO}/experiments/ddpm_ring8.py:smoke '
    f'--workdir={root}/lr_{lr} --config.optim.lr={lr} --config.train.num_steps=5'
    for lr in ('0.0003', '0.001', '0.003')
  ]
  assert not os.path.exists(root)
  # The pure helper gives the same argv.
  argvs = sweep.commands(
    f'{REPO}/experiments/ddpm_ring8.py:smoke',
    ddpm_ring8.sweep(),
    root,
    ['--config.train.num_steps=5'],
  )
  assert [' '.join(a) for a in argvs] == lines


@pytest.mark.timeout(60)
def test_bad_input_errors_before_anything_runs(tmp_path):
  root = tmp_path / 'R'
  bad_field = _experiment(tmp_path, "[{'optim.lr': 1e-3}, {'optim.lrr': 1e-2}]")
  r = _sweep(f'--config={bad_field}:smoke', f'--workdir_root={root}')
  assert r.returncode == 2
  assert r.stderr.strip() == (
    "error: sweep()[1]: optim.lrr: no such config field (did you mean 'optim.lr'?)"
  )
  assert not root.exists()
  for args, words in [
    (['--config=experiments/gan_ring8.py:smoke'], 'has no sweep() function'),
    (['--config=experiments/ddpm_ring8.py:smoke', '--config.train.steps=5'], 'no such config'),
    (['--config=experiments/ddpm_ring8.py:smoke', '--config.optim.lr=1'], 'sweep() sets this'),
  ]:
    r = _sweep(*args, f'--workdir_root={root}')
    assert r.returncode == 2 and r.stderr.startswith('error: ') and words in r.stderr, r.stderr
    assert not root.exists()
  wrong_type = _experiment(tmp_path, "[{'train.num_steps': 1.5}]")
  r = _sweep(f'--config={wrong_type}:smoke', '--dry_run', f'--workdir_root={root}')
  assert r.returncode == 2 and 'expected an int' in r.stderr and not r.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sweep_of_two_smoke_runs(tmp_path):
  """Two smoke runs side by side (one a tuple override), then a failing one: workdirs, logs,
  a line per run, the summary of the two that succeeded."""
  root = tmp_path / 'R'
  config = _experiment(
    tmp_path,
    "[{'optim.lr': 1e-3, 'model.mlp.features': (16, 16)}, {'optim.lr': 3e-3, "
    "'model.mlp.features': (24,)}]",
  )
  r = _sweep(
    f'--config={config}:smoke',
    f'--workdir_root={root}',
    '--parallel=2',
    '--config.train.num_steps=10',
    '--sort=-optim.lr',
    timeout=80,
  )
  assert r.returncode == 0, r.stdout + r.stderr
  names = ['lr_0.001-features_16_16', 'lr_0.003-features_24']
  for name, features in zip(names, ([16, 16], [24]), strict=True):
    with open(root / name / 'config.json') as f:
      saved = json.load(f)
    assert saved['model']['mlp']['features'] == features and saved['train']['num_steps'] == 10
    assert (root / f'{name}.log').read_text().startswith('$ ')
    assert f'{name}: exit 0 (ok' in r.stdout
  summary = (root / 'summary.md').read_text()
  header, rows = summary.splitlines()[0], summary.splitlines()[2:]
  # The swept fields are columns next to the run (sorted by --sort=-optim.lr: 3e-3 first).
  assert header.startswith('| run | data | objective | model | steps | final_step |')
  assert '| optim.lr | model.mlp.features |' in header
  assert [row.split(' | ')[0] for row in rows] == [f'| {n}' for n in reversed(names)]
  assert ' | 0.003 | [24] |' in rows[0] and ' | 0.001 | [16, 16] |' in rows[1]
  assert summary in r.stdout

  # A run that fails: exit 1, its status and error line printed, the summary without it.
  failing = _experiment(tmp_path, "[{'diffusion.process': 'nope'}]")
  r = _sweep(f'--config={failing}:smoke', f'--workdir_root={root / "F"}')
  assert r.returncode == 1
  assert 'process_nope: exit 2 (FAILED' in r.stdout and "diffusion.process='nope'" in r.stdout
  assert 'no run succeeded' in r.stdout and not (root / 'F' / 'summary.md').exists()


def test_a_sweep_started_twice_is_refused_before_it_starts(tmp_path, capsys):
  """A run of the sweep whose workdir a live job trains: one line naming the holder, exit 2,
  and nothing is started (the runs' own gen.main would refuse each one as well)."""
  from gen.utils import lock as lock_lib

  root = tmp_path / 'sweep'
  args = ['--config=experiments/ddpm_ring8.py:smoke', f'--workdir_root={root}', '--dry_run']
  assert sweep.main(args) == 0
  first = capsys.readouterr().out.splitlines()[0]
  held = next(a.split('=', 1)[1] for a in first.split() if a.startswith('--workdir='))
  with lock_lib.WorkdirLock(held):
    assert sweep.main(args) == 2
  line = capsys.readouterr().err.strip()
  assert line.startswith(f'error: --workdir={held} is being trained by pid') and '\n' not in line
