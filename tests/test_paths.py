"""Relative and `~` paths mean what they mean where the command is typed, from any folder."""

import os

import pytest

from gen.utils import paths
from launch import local_multiprocess
from tests.conftest import REPO, run_python

EXPERIMENT = os.path.join(REPO, 'experiments', 'ddpm_ring8.py')


def test_absolute_args_rewrites_folders_and_the_config_file(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  out = paths.absolute_args(
    [
      '--config=experiments/x.py:smoke',
      '--workdir=runs/a',
      '--config.data.data_dir=~/tfds',
      '--compilation_cache=none',
      '--output_dir=',
      '--config.optim.lr=0.1',
      '--mode=eval',
    ]
  )
  assert out == [
    f'--config={tmp_path}/experiments/x.py:smoke',
    f'--workdir={tmp_path}/runs/a',
    f'--config.data.data_dir={tmp_path}/home/tfds',
    '--compilation_cache=none',
    '--output_dir=',
    '--config.optim.lr=0.1',
    '--mode=eval',
  ]
  assert paths.repo_root_of_experiment(EXPERIMENT) == REPO
  assert paths.repo_root_of_experiment(str(tmp_path / 'x.py')) is None


def _run(args, cwd, home, module='gen.main'):
  return run_python(['-m', module, *args], cwd=cwd, env={'HOME': str(home), 'PYTHONPATH': REPO})


def test_relative_paths_from_another_folder(tmp_path):
  """gen.main, gen report/compare/prepare and a sweep, started outside the repository."""
  cwd, home = tmp_path / 'elsewhere', tmp_path / 'home'
  cwd.mkdir()
  home.mkdir()
  smoke = [f'--config={EXPERIMENT}:smoke', '--config.train.num_steps=10']
  proc = _run([*smoke, '--workdir=runs/rel'], cwd, home)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (cwd / 'runs' / 'rel' / 'checkpoints' / '10').is_dir()
  # gen report and gen compare on relative workdirs.
  proc = _run(['report', '--workdir=runs/rel'], cwd, home, module='gen.cli')
  assert proc.returncode == 0 and (cwd / 'runs' / 'rel' / 'report.html').exists(), proc.stderr
  proc = _run(['compare', 'runs/rel'], cwd, home, module='gen.cli')
  assert proc.returncode == 0 and '| rel |' in proc.stdout, proc.stderr
  # gen prepare into a relative data folder.
  proc = _run(['prepare', '--dataset=digits', '--data_dir=data'], cwd, home, module='gen.cli')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f'prepared digits in {cwd}/data' in proc.stdout
  assert (cwd / 'data' / 'digits').is_dir()
  # A sweep's runs go under the relative root, wherever the runs themselves start.
  proc = _run(
    [f'--config={EXPERIMENT}:smoke', '--workdir_root=sweeps/lr', '--dry_run'],
    cwd,
    home,
    module='launch.sweep',
  )
  assert proc.returncode == 0, proc.stderr
  assert all(f'--workdir={cwd}/sweeps/lr/lr_' in line for line in proc.stdout.splitlines())


@pytest.mark.slow  # a second training run
def test_home_paths_from_another_folder(tmp_path):
  """~ in --workdir and in a data_dir override, and gen compare over ~ and relative runs."""
  cwd, home = tmp_path / 'elsewhere', tmp_path / 'home'
  cwd.mkdir()
  home.mkdir()
  smoke = [f'--config={EXPERIMENT}:smoke', '--config.train.num_steps=10']
  proc = _run([*smoke, '--workdir=~/runs/home', '--config.data.data_dir=~/tfds'], cwd, home)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (home / 'runs' / 'home' / 'checkpoints' / '10').is_dir()
  proc = _run([*smoke, '--workdir=runs/rel'], cwd, home)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = _run(['compare', 'runs/rel', '~/runs/home'], cwd, home, module='gen.cli')
  assert proc.returncode == 0 and '| rel |' in proc.stdout and '| home |' in proc.stdout


def test_local_multiprocess_makes_paths_absolute(tmp_path, monkeypatch):
  """Its processes start in the repository root: a relative workdir must not move there."""
  started = []

  class FakeProcess:
    def __init__(self, command, **kwargs):
      started.append(command)

    def wait(self, timeout=None):
      return 0

    def poll(self):
      return 0

  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(local_multiprocess.subprocess, 'Popen', FakeProcess)
  args = ['--config=experiments/ddpm_ring8.py', '--workdir=runs/mp']
  assert local_multiprocess.run(args, 2, 1) == 0
  assert len(started) == 2
  for command in started:
    assert f'--workdir={tmp_path}/runs/mp' in command
    assert f'--config={tmp_path}/experiments/ddpm_ring8.py' in command
  assert (tmp_path / 'runs' / 'mp' / 'process_0.log').exists()
