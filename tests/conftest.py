"""Shared test helpers: configs, subprocess runs of the CLI, checkpoint reading.

Every test, and every `gen.main` subprocess a test starts, shares one JAX persistent
compilation cache in a temporary folder for the session: many tests compile the same smoke
programs, and a cached executable is the one XLA would build again (results are unchanged).
GEN_TEST_COMPILATION_CACHE=none turns it off.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import jax
import pytest

from experiments import ddpm_ring8
from gen import setup as setup_lib
from gen.utils import checkpoint as ckpt_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _session_compilation_cache() -> str | None:
  """One cache folder per test session: the first process (pytest itself, or pytest-xdist's
  controller) makes it and removes it at the end; xdist's workers inherit its name."""
  if os.environ.get('GEN_TEST_COMPILATION_CACHE') == 'none':
    return None
  folder = os.environ.get('GEN_TEST_SESSION_CACHE')
  if not folder or 'PYTEST_XDIST_WORKER' not in os.environ:
    folder = tempfile.mkdtemp(prefix='gen_test_jax_cache_')
    os.environ['GEN_TEST_SESSION_CACHE'] = folder  # for the workers this process starts
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)
  return folder


def _session_artifact_cache() -> str:
  """GEN_CACHE_DIR for the session (made like the compilation cache's folder): the digits
  classifier trains once for all tests and their subprocesses, not once per data folder."""
  if 'PYTEST_XDIST_WORKER' not in os.environ or not os.environ.get('GEN_CACHE_DIR'):
    os.environ['GEN_CACHE_DIR'] = tempfile.mkdtemp(prefix='gen_test_cache_')
  return os.environ['GEN_CACHE_DIR']


def pytest_sessionfinish(session):
  if 'PYTEST_XDIST_WORKER' not in os.environ:  # the folders' maker
    for folder in (COMPILATION_CACHE, ARTIFACT_CACHE):
      if folder:
        shutil.rmtree(folder, ignore_errors=True)


def _eight_cpu_devices() -> None:
  """Every test process has 8 CPU devices (jax_num_cpu_devices, set before JAX starts), so the
  multi-device path runs in-process: a test picks its mesh, one device
  (`setup_lib.make_mesh(jax.devices()[:1])`) or the `eight_devices` fixture's. A device count
  that the caller's XLA_FLAGS sets wins."""
  if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
    jax.config.update('jax_num_cpu_devices', 8)


_eight_cpu_devices()
COMPILATION_CACHE = _session_compilation_cache()
# The mesh of in-process runs, evaluations and samples that are not about devices (gen's
# default, every device, would be 8 here).
ONE_DEVICE = setup_lib.make_mesh(jax.devices()[:1])
ARTIFACT_CACHE = _session_artifact_cache()


@pytest.fixture
def eight_devices():
  """8 CPU devices of this process (see _eight_cpu_devices), for a 1-vs-8-device comparison."""
  devices = jax.devices('cpu')
  if len(devices) < 8:
    pytest.skip(f'needs 8 CPU devices, this process has {len(devices)}')
  return devices[:8]


@pytest.fixture
def smoke_config():
  """The ddpm_ring8 smoke config, unlocked copy for the test to adjust."""
  return ddpm_ring8.get_config('smoke')


def run_python(argv, cwd=REPO, env=None, timeout=240, **kwargs):
  """Runs `python ARGV` (this interpreter) in `cwd` with JAX on the CPU and the session's
  compilation cache, `env` on top; returns the CompletedProcess (text output captured)."""
  cache = {'JAX_COMPILATION_CACHE_DIR': COMPILATION_CACHE} if COMPILATION_CACHE else {}
  full_env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **cache, **(env or {})}
  return subprocess.run(
    [sys.executable, *argv],
    cwd=cwd,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=timeout,
    **kwargs,
  )


def run_cli(args, timeout=240, env=None, **kwargs):
  """Runs `python -m gen.main ARGS` from the repo root; returns the CompletedProcess."""
  return run_python(['-m', 'gen.main', *args], env=env, timeout=timeout, **kwargs)


def script_result(argv, timeout=300) -> Any:
  """Runs `python ARGV`, which must exit 0 and print a line `RESULT <json>`; returns the JSON."""
  proc = run_python(argv, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(x for x in proc.stdout.splitlines() if x.startswith('RESULT '))
  return json.loads(line[len('RESULT ') :])


def load_state(config, workdir, step=None):
  """The TrainState saved in `workdir` (latest or `step`), restored on this process's devices."""
  setup = setup_lib.build(config, setup_lib.make_mesh(jax.devices()[:1]))
  manager = ckpt_lib.make_manager(
    os.path.join(workdir, 'checkpoints'), config.train.max_to_keep, read_only=True
  )
  try:
    state, data_state = setup_lib.restore_or_init(setup, manager, step)
  finally:
    manager.close()
  return state, data_state


def read_tensorboard(workdir: str) -> dict[str, dict[int, str]]:
  """tag -> {step: 'scalar' | 'image'} over every event file in `workdir/tb` (TFRecord framing:
  length, its crc, an Event proto, its crc), read with tensorboardX's own protos."""
  import struct

  from tensorboardX.proto import event_pb2

  out: dict[str, dict[int, str]] = {}
  folder = os.path.join(workdir, 'tb')
  for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), 'rb') as f:
      data = f.read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        kind = 'image' if value.HasField('image') else 'scalar'
        out.setdefault(value.tag, {})[int(event.step)] = kind
  return out


# Module-scoped: the datasets prepared and runs trained are shared by one file's tests.
@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture(scope='module')
def pretrained_runs(tmp_path_factory, tfds_dir):
  """experiment name -> the workdir of its trained `:smoke` variant, trained on first use: the
  run an experiment's pretrained reference names by its folder ('runs/vae_ldm_digits' ->
  vae_ldm_digits.py:smoke)."""
  runs = {}

  def get(name):
    if name not in runs:
      from importlib import import_module

      from gen import train

      config = import_module(f'experiments.{name}').get_config('smoke')
      config.data.data_dir = tfds_dir
      runs[name] = str(tmp_path_factory.mktemp(name))
      train.train_and_evaluate(config, runs[name], mesh=ONE_DEVICE)
    return runs[name]

  return get
