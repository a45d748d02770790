"""The multi-host path on localhost: 2 processes x 4 CPU devices (jax.distributed over Gloo on
127.0.0.1) against 1 process x 8 devices, 30 steps, for a diffusion experiment (the loop's
sharding does not depend on the objective; a GAN's two networks are covered by the in-process
8-device tests, to keep the suite's time); the 2-process checkpoint then restores in a
1-process, 1-device eval, and `--mode=sample`
from it writes the same samples, bit for bit, in 2 processes x 4 devices and in 1 x 8.

Both topologies read the same global batches (`gen.data.loader` shards by global batch) and
draw the same random numbers, so losses and parameters agree up to the order of floating-point
reductions (Gloo's all-reduce vs XLA's in-process one).
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments import ddpm_ring8
from launch import local_multiprocess
from tests.conftest import load_state, run_cli

pytestmark = pytest.mark.slow  # seconds to minutes each: the full suite only

EXPERIMENTS = {'ddpm_ring8': ddpm_ring8}
STEPS = 30
TOL = 1e-5  # relative, on losses and parameters


def _args(name, workdir):
  return [
    f'--config=experiments/{name}.py:smoke',
    f'--workdir={workdir}',
    f'--config.train.num_steps={STEPS}',
    '--config.train.log_every=1',
    f'--config.train.ckpt_every={STEPS}',
    f'--config.train.sample_every={STEPS}',
  ]


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return {
    (r['step'], k): v for r in rows for k, v in r.items() if k.startswith('loss') and 'step' in r
  }


@pytest.mark.timeout(600)
@pytest.mark.parametrize('name', sorted(EXPERIMENTS))
def test_two_processes_reproduce_one_process(name, tmp_path):
  one, two = tmp_path / 'one', tmp_path / 'two'
  out = run_cli(
    _args(name, one), timeout=400, env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  )
  assert out.returncode == 0, out.stderr[-3000:]
  status = local_multiprocess.run(_args(name, two), num=2, devices=4, timeout=400)
  logs = [(two / f'process_{i}.log').read_text()[-3000:] for i in range(2)]
  assert status == 0, logs
  l1, l2 = _losses(str(one)), _losses(str(two))
  assert len(l1) >= STEPS and set(l1) == set(l2)
  worst = max(abs(l1[k] - l2[k]) / max(abs(l1[k]), 1e-6) for k in l1)
  config = EXPERIMENTS[name].get_config('smoke')
  config.train.num_steps = STEPS
  (s1, d1), (s2, d2) = load_state(config, str(one)), load_state(config, str(two))  # 1 device
  assert d1 == d2  # the same data position
  assert int(s1.step) == int(s2.step) == STEPS
  pairs = zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True)
  worst_param = max(float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3))) for a, b in pairs)
  print(f'{name}: max relative loss difference {worst:.2e}, parameters {worst_param:.2e}')
  assert worst <= TOL and worst_param <= TOL
  # The 2-process checkpoint evaluates in one process on one device.
  os.remove(two / 'eval' / f'step_{STEPS}.json')
  out = run_cli([*_args(name, two), '--mode=eval'], timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  values = json.loads((two / 'eval' / f'step_{STEPS}.json').read_text())
  assert values['modes_covered'] >= 0 and 'protocol' in values
  if name != 'ddpm_ring8':
    return
  # Sample i depends on (seed, i) only: 2 processes x 4 devices and 1 process x 8 devices write
  # the same samples from the same checkpoint.
  shutil.copytree(two, tmp_path / 'copy')
  sample = ['--mode=sample', '--num_samples=64']
  status = local_multiprocess.run([*_args(name, two), *sample], num=2, devices=4, timeout=300)
  assert status == 0, [(two / f'process_{i}.log').read_text()[-3000:] for i in range(2)]
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  out = run_cli([*_args(name, tmp_path / 'copy'), *sample], timeout=300, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  path = os.path.join('samples', f'step_{STEPS}.npz')
  with np.load(two / path) as a, np.load(tmp_path / 'copy' / path) as b:
    assert a['samples'].shape == (64, 2)
    np.testing.assert_array_equal(a['samples'], b['samples'])
