"""Shared test helpers: configs, subprocess runs of the CLI, checkpoint reading."""

import os
import subprocess
import sys

import jax
import pytest

from experiments import ddpm_ring8
from gen import train
from gen.utils import checkpoint as ckpt_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def smoke_config():
  """The ddpm_ring8 smoke config, unlocked copy for the test to adjust."""
  return ddpm_ring8.get_config('smoke')


def run_cli(args, timeout=240, env=None, **kwargs):
  """Runs `python -m gen.main ARGS` from the repo root; returns the CompletedProcess."""
  full_env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})}
  return subprocess.run(
    [sys.executable, '-m', 'gen.main', *args],
    cwd=REPO,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=timeout,
    **kwargs,
  )


def load_state(config, workdir, step=None):
  """The TrainState saved in `workdir` (latest or `step`), restored on this process's devices."""
  setup = train.build(config, train.make_mesh(jax.devices()[:1]))
  manager = ckpt_lib.make_manager(
    os.path.join(workdir, 'checkpoints'), config.train.max_to_keep, read_only=True
  )
  try:
    state, data_state = train.restore_or_init(setup, manager, step)
  finally:
    manager.close()
  return state, data_state
