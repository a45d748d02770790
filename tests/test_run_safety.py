"""Run-directory safety: one training job per workdir, a full disk, a clean log after a resume,
and evaluating a run without writing to it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from gen import setup as setup_lib
from gen import train
from gen.errors import ConfigError
from gen.utils import checkpoint as ckpt_lib
from gen.utils import lock as lock_lib
from gen.utils import workdir as workdir_lib
from gen.utils.writers import read_metrics
from tests.conftest import COMPILATION_CACHE, REPO, load_state, run_cli, run_python

SMOKE = '--config=experiments/ddpm_ring8.py:smoke'


def _mesh():
  return setup_lib.make_mesh(jax.devices()[:1])


def _write_lock(workdir, **info):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, lock_lib.LOCK_NAME), 'w') as f:
    json.dump(info, f)


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


# -- the lock ---------------------------------------------------------------------------------


def test_a_live_holder_refuses_a_second_lock_and_release_frees_it(tmp_path):
  wd = str(tmp_path / 'run')
  first = lock_lib.WorkdirLock(wd)
  first.acquire()
  with pytest.raises(lock_lib.WorkdirLocked) as e:
    lock_lib.WorkdirLock(wd).acquire()
  line = str(e.value)
  assert '\n' not in line
  assert f'pid {os.getpid()} on host {socket.gethostname()}' in line and wd in line
  assert lock_lib.holder(wd) == lock_lib.describe(wd, lock_lib.read(wd))
  first.release()
  assert not os.path.exists(os.path.join(wd, lock_lib.LOCK_NAME))
  assert lock_lib.holder(wd) is None
  with lock_lib.WorkdirLock(wd):  # free again
    assert lock_lib.read(wd)['pid'] == os.getpid()


def test_a_dead_holder_never_blocks(tmp_path):
  wd = str(tmp_path / 'run')
  now = time.time()
  _write_lock(wd, host=socket.gethostname(), pid=_dead_pid(), started=now, heartbeat=now)
  assert lock_lib.holder(wd) is None  # same host, pid gone: free even with a fresh heartbeat
  with lock_lib.WorkdirLock(wd):
    assert lock_lib.read(wd)['pid'] == os.getpid()
  assert os.path.exists(os.path.join(wd, lock_lib.LOCK_NAME + '.stale'))  # kept, not deleted


def test_another_hosts_lock_holds_until_its_heartbeat_is_stale(tmp_path):
  wd = str(tmp_path / 'run')
  now = time.time()
  _write_lock(wd, host='elsewhere', pid=1, started=now - 60, heartbeat=now - 60)
  with pytest.raises(lock_lib.WorkdirLocked, match='pid 1 on host elsewhere'):
    lock_lib.WorkdirLock(wd).acquire()
  old = now - lock_lib.STALE_SECONDS - 1
  _write_lock(wd, host='elsewhere', pid=1, started=old, heartbeat=old)
  assert 'heartbeat' in lock_lib.stale_reason(lock_lib.read(wd))
  with lock_lib.WorkdirLock(wd):
    assert lock_lib.read(wd)['host'] == socket.gethostname()


def test_training_refuses_a_held_workdir_before_writing(smoke_config, tmp_path):
  wd = str(tmp_path / 'run')
  with lock_lib.WorkdirLock(wd):
    with pytest.raises(lock_lib.WorkdirLocked, match='is being trained by pid'):
      train.train_and_evaluate(smoke_config, wd, mesh=_mesh())
  assert sorted(os.listdir(wd)) == []  # no config, no checkpoints, no log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_jobs_on_one_workdir_and_a_killed_one(tmp_path):
  """The second job exits non-zero within 15 s naming the holder; the first trains on. After a
  `kill -9`, the next job starts, resumes, and its log holds every logged step once."""
  wd = tmp_path / 'run'
  args = [
    SMOKE,
    f'--workdir={wd}',
    '--config.train.num_steps=100000',
    '--config.train.ckpt_every=50',
    '--config.train.sample_every=100000',
  ]
  cache = {'JAX_COMPILATION_CACHE_DIR': COMPILATION_CACHE} if COMPILATION_CACHE else {}
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **cache}
  first = subprocess.Popen(
    [sys.executable, '-m', 'gen.main', *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.time() + 180
    while not (wd / 'checkpoints' / '50').exists():  # training, with a checkpoint saved
      assert first.poll() is None and time.time() < deadline
      time.sleep(0.5)
    second = run_cli(args, timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: --workdir={wd} is being trained by pid {first.pid}'), last
    assert 'Traceback' not in second.stderr
    assert 'compiled' not in second.stderr  # refused before building anything
    assert first.poll() is None  # unharmed
    while max((r['step'] for r in read_metrics(str(wd)) if 'loss' in r), default=0) < 120:
      assert time.time() < deadline
      time.sleep(0.2)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert lock_lib.read(str(wd))['pid'] == first.pid  # left behind by the killed job
  saved = max(int(n) for n in os.listdir(wd / 'checkpoints') if n.isdigit())
  logged = [r['step'] for r in read_metrics(str(wd)) if 'loss' in r]
  assert max(logged) > saved  # the killed job logged steps after its last checkpoint
  third = run_cli([*args[:2], f'--config.train.num_steps={saved + 30}'], timeout=180)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f'restored checkpoint of step {saved}' in third.stderr
  steps = [r['step'] for r in read_metrics(str(wd)) if 'loss' in r]
  assert steps == sorted(set(steps)) and steps[-1] == saved + 30, steps  # each step once
  with open(wd / 'metrics.superseded.jsonl') as f:
    moved = [json.loads(line)['step'] for line in f]
  assert moved and min(moved) > saved
  assert not (wd / lock_lib.LOCK_NAME).exists()  # released at the end


# -- a resume continues the log -----------------------------------------------------------


def test_a_resume_moves_the_dead_jobs_later_lines_aside(smoke_config, tmp_path):
  """A job killed after logging steps 15 and 20 but before checkpoint 20 was final (here: its
  checkpoint removed) resumes from 10; metrics.jsonl then logs every step once."""
  wd = tmp_path / 'run'
  smoke_config.eval.metrics = ()
  train.train_and_evaluate(smoke_config, str(wd), mesh=_mesh())
  dead_lines = [r for r in read_metrics(str(wd)) if r['step'] > 10]
  assert [r['step'] for r in dead_lines if 'loss' in r] == [15, 20]
  shutil.rmtree(wd / 'checkpoints' / '20')
  with open(wd / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 2')  # a line cut off by the kill
  train.train_and_evaluate(smoke_config, str(wd), mesh=_mesh())
  steps = [r['step'] for r in read_metrics(str(wd)) if 'loss' in r]
  assert steps == [5, 10, 15, 20]
  with open(wd / 'metrics.superseded.jsonl') as f:
    moved = f.read().splitlines()
  assert [json.loads(line) for line in moved[:-1]] == dead_lines
  assert moved[-1] == '{"step": 2'  # kept as it was
  # TensorBoard: the resumed job's events file starts by purging the steps after 10.
  from tensorboardX.proto import event_pb2

  purges = []
  for name in os.listdir(wd / 'tb'):
    data = (wd / 'tb' / name).read_bytes()
    pos = 0
    while pos + 12 <= len(data):
      length = int.from_bytes(data[pos : pos + 8], 'little')
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      if event.HasField('session_log') and event.session_log.status == 1:  # START
        purges.append(event.step)
  assert 11 in purges, purges


# -- a full disk ----------------------------------------------------------------------------


def test_too_little_space_stops_before_writing_and_a_resume_finishes_the_same(
  smoke_config, tmp_path, monkeypatch
):
  smoke_config.eval.metrics = ()
  smoke_config.train.max_to_keep = 5
  reference = train.train_and_evaluate(smoke_config, str(tmp_path / 'ref'), mesh=_mesh())
  wd = tmp_path / 'run'
  real = ckpt_lib.free_bytes

  def free(folder):  # room for the first checkpoint only
    return 0 if os.path.isdir(os.path.join(folder, '10')) else real(folder)

  monkeypatch.setattr(ckpt_lib, 'free_bytes', free)
  with pytest.raises(ckpt_lib.CheckpointSaveError) as e:
    train.train_and_evaluate(smoke_config, str(wd), mesh=_mesh())
  line = str(e.value)
  assert line.startswith('not enough disk space for the checkpoint of step 20')
  assert '0.0 MB free' in line and 'the last good checkpoint is step 10' in line
  assert 'resume' in line and '\n' not in line
  assert sorted(os.listdir(wd / 'checkpoints')) == ['10']  # nothing of 20 was written
  assert not (wd / lock_lib.LOCK_NAME).exists()
  load_state(smoke_config, str(wd), step=10)  # still readable
  monkeypatch.setattr(ckpt_lib, 'free_bytes', real)  # room made
  resumed = train.train_and_evaluate(smoke_config, str(wd), mesh=_mesh())
  assert int(resumed.step) == 20
  jax.tree.map(np.testing.assert_array_equal, resumed.params, reference.params)


def test_check_space_needs_the_last_checkpoints_size(tmp_path, monkeypatch):
  manager = ckpt_lib.make_manager(str(tmp_path / 'ckpt'), max_to_keep=2)
  saver = ckpt_lib.Saver(manager)
  state = {'w': np.random.default_rng(0).normal(size=(200_000,)).astype(np.float32)}
  saver.save(1, state, {})
  saver.finish()
  size = ckpt_lib.folder_bytes(str(tmp_path / 'ckpt' / '1'))
  need = saver.bytes_needed(state)
  assert need == int(max(size, state['w'].nbytes) * 1.1) + (1 << 20)
  monkeypatch.setattr(ckpt_lib, 'free_bytes', lambda folder: need)
  saver.check_space(2, state)  # fits
  monkeypatch.setattr(ckpt_lib, 'free_bytes', lambda folder: need - 1)
  with pytest.raises(ckpt_lib.CheckpointSaveError, match='stopped before writing'):
    saver.check_space(2, state)
  manager.close()


# -- reading a run without writing to it -------------------------------------------------------


def _snapshot(folder):
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
  return out


@pytest.mark.slow
def test_sample_eval_and_report_with_output_dir_leave_the_workdir_untouched(tmp_path):
  wd, out = tmp_path / 'run', tmp_path / 'out'
  proc = run_cli([SMOKE, f'--workdir={wd}'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  before = _snapshot(wd)
  for mode in (['--mode=sample', '--num_samples=16'], ['--mode=eval']):
    proc = run_cli([f'--workdir={wd}', f'--output_dir={out}', *mode])
    assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_python(['-m', 'gen.cli', 'report', f'--workdir={wd}', f'--output_dir={out}'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _snapshot(wd) == before  # not a byte written to the run
  assert (out / 'samples' / 'step_20.npz').exists() and (
    out / 'samples' / 'step_20_sampled.png'
  ).exists()
  assert json.loads((out / 'eval' / 'step_20.json').read_text())['step'] == 20
  page = (out / 'report.html').read_text()
  assert '../run/samples/step_20.png' in page


def test_a_read_only_workdir_is_refused_naming_output_dir(smoke_config, tmp_path, monkeypatch):
  wd, out = str(tmp_path / 'run'), str(tmp_path / 'out')
  os.makedirs(wd)
  workdir_lib.write_config(wd, smoke_config)
  real = workdir_lib.tempfile.NamedTemporaryFile

  def read_only(dir=None, **kwargs):  # noqa: A002 - tempfile's own argument name
    if os.path.abspath(dir) == wd:
      raise OSError(30, 'Read-only file system')
    return real(dir=dir, **kwargs)

  monkeypatch.setattr(workdir_lib.tempfile, 'NamedTemporaryFile', read_only)
  with pytest.raises(ConfigError, match='Read-only file system; pass --output_dir=D'):
    workdir_lib.check_workdir(wd, smoke_config, 'eval')
  workdir_lib.check_workdir(wd, smoke_config, 'eval', output_dir=out)  # D is writable
  assert os.path.isdir(out)


def test_output_dir_is_refused_in_training(tmp_path):
  proc = run_cli([SMOKE, f'--workdir={tmp_path / "run"}', f'--output_dir={tmp_path / "o"}'])
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith('error: --output_dir is for --mode=eval')


def test_the_compilation_cache_falls_back_to_a_writable_folder(tmp_path, monkeypatch):
  from gen import main as gen_main

  chosen = {}
  monkeypatch.setattr(gen_main, '_writable_folder', lambda folder: 'read_only' not in folder)
  monkeypatch.setattr(jax.config, 'update', lambda name, value: chosen.setdefault(name, value))
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  gen_main.enable_compilation_cache(str(tmp_path / 'read_only' / 'run'), '')
  folder = chosen['jax_compilation_cache_dir']
  assert 'read_only' not in folder and folder.startswith(gen_main.tempfile.gettempdir())
