"""A SIGTERM mid-run saves a checkpoint; rerunning the same command finishes identically."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import pytest

from tests.conftest import REPO, load_state, run_cli

pytestmark = pytest.mark.slow  # seconds to minutes each: the full suite only

ARGS = [
  '--config=experiments/ddpm_ring8.py:smoke',
  '--config.train.num_steps=400',
  '--config.train.log_every=10',
  '--config.train.ckpt_every=1000',
  '--config.train.sample_every=1000',
  '--config.eval.metrics=',
]


def _logged_step(workdir) -> int:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(line).get('step', 0) for line in f if '"loss"' in line]
  return max(steps, default=0)


def test_sigterm_saves_and_resume_matches_a_straight_run(tmp_path, smoke_config):
  straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
  assert run_cli([*ARGS, f'--workdir={straight}']).returncode == 0

  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.Popen(
    [sys.executable, '-m', 'gen.main', *ARGS, f'--workdir={interrupted}'],
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 120
  while _logged_step(interrupted) < 20 and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  saved = [int(s) for s in os.listdir(interrupted / 'checkpoints') if s.isdigit()]
  assert len(saved) == 1 and 20 <= saved[0] < 400  # stopped mid-run, checkpoint kept

  assert run_cli([*ARGS, f'--workdir={interrupted}']).returncode == 0
  smoke_config.eval.metrics = ()
  a, data_a = load_state(smoke_config, str(straight))
  b, data_b = load_state(smoke_config, str(interrupted))
  assert int(a.step) == int(b.step) == 400
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(a.ema_params, b.ema_params)
  chex.assert_trees_all_equal(a.opt_state, b.opt_state)
  assert data_a == data_b
