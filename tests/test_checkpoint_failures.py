"""Checkpoints that cannot be written or read: the run stops with one line, or moves on, and
nothing saved is lost."""

import os

import jax
import numpy as np
import pytest

from gen import setup as setup_lib
from gen import train
from gen.utils.writers import read_metrics
from tests.conftest import run_cli, run_python

SMOKE = '--config=experiments/ddpm_ring8.py:smoke'
FILE_SIZE_LIMIT = 12_000  # bytes: config, logs and events fit; a checkpoint's arrays do not


# Runs gen.main with writes past FILE_SIZE_LIMIT failing with EFBIG (a full disk for big files;
# no privileges needed, also as root), not killing the process with SIGXFSZ.
LIMITED_GEN_MAIN = f"""
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({FILE_SIZE_LIMIT}, {FILE_SIZE_LIMIT}))
os.execv(sys.executable, [sys.executable, '-m', 'gen.main', *sys.argv[1:]])
"""


def test_failed_async_save_stops_the_run_at_once(tmp_path):
  wd = tmp_path / 'run'
  args = [
    SMOKE,
    f'--workdir={wd}',
    '--config.train.num_steps=5000',
    '--config.train.ckpt_every=10',
    '--config.train.sample_every=5000',
    '--compilation_cache=none',
  ]
  proc = run_python(['-c', LIMITED_GEN_MAIN, *args], env={'JAX_COMPILATION_CACHE_DIR': ''})
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: saving the checkpoint of step 10 failed (File too large'), last
  assert 'no earlier checkpoint' in last and 'MB free in' in last
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  for noise in ('RuntimeWarning', 'Event loop is closed', 'sys.meta_path is None'):
    assert noise not in proc.stderr, proc.stderr[-3000:]  # nothing after the error line
  # It stopped right after the failed save instead of training on without checkpoints.
  steps = [r['step'] for r in read_metrics(str(wd)) if 'loss' in r]
  assert steps and max(steps) < 1000, steps
  assert not [n for n in os.listdir(wd / 'checkpoints') if n.isdigit()]


def _truncate(folder):
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def test_unreadable_latest_checkpoint_is_moved_aside_and_training_goes_on(smoke_config, tmp_path):
  """Checkpoints 10, 15, 20 with 20 truncated: training restores 15, moves 20 to
  20.unreadable (kept, never deleted), retrains steps 16..20 and saves 20 again."""
  wd = tmp_path / 'run'
  smoke_config.train.ckpt_every, smoke_config.eval.metrics = 5, ()
  mesh = setup_lib.make_mesh(jax.devices()[:1])
  first = train.train_and_evaluate(smoke_config, str(wd), mesh=mesh)
  _truncate(wd / 'checkpoints' / '20')
  again = train.train_and_evaluate(smoke_config, str(wd), mesh=mesh)
  names = sorted(os.listdir(wd / 'checkpoints'))
  assert '20.unreadable' in names and '20' in names, names
  assert int(again.step) == 20
  # Resumed from 15 with the same data and keys: the same state as the first run's step 20.
  for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # A third run finds the new 20 readable and has nothing left to do.
  third = train.train_and_evaluate(smoke_config, str(wd), mesh=mesh)
  assert int(third.step) == 20 and sorted(os.listdir(wd / 'checkpoints')) == names


@pytest.mark.slow
def test_unreadable_checkpoint_is_left_in_place_by_sample_mode(tmp_path):
  wd = tmp_path / 'run'
  assert run_cli([SMOKE, f'--workdir={wd}', '--config.train.ckpt_every=5']).returncode == 0
  _truncate(wd / 'checkpoints' / '20')
  proc = run_cli([f'--workdir={wd}', '--mode=sample', '--num_samples=16'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'checkpoint step 20 is unreadable' in proc.stderr
  assert (wd / 'samples' / 'step_15.npz').exists()
  assert sorted(os.listdir(wd / 'checkpoints')) == ['10', '15', '20']
