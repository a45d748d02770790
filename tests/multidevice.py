"""Runs in a subprocess with 8 simulated CPU devices (set before JAX starts); prints JSON.

python tests/multidevice.py compare WORKDIR    # 30 steps on 1 device vs on 8: losses, params
python tests/multidevice.py save_on_8 WORKDIR  # 20 smoke steps on 8 devices, checkpointed
"""

import json
import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import ddpm_ring8  # noqa: E402
from gen import train  # noqa: E402
from gen.utils.writers import read_metrics  # noqa: E402


def _losses(workdir):
  return [r['loss'] for r in read_metrics(workdir) if 'loss' in r]


def compare(root: str) -> dict:
  config = ddpm_ring8.get_config('smoke')
  config.train.num_steps = 30
  config.train.log_every = 1
  config.train.ckpt_every = 30
  config.train.sample_every = 30
  config.eval.metrics = ()
  states = {}
  for n in (1, 8):
    wd = os.path.join(root, f'dev{n}')
    states[n] = train.train_and_evaluate(config, wd, mesh=train.make_mesh(jax.devices()[:n]))
  p1, p8 = (jax.device_get(states[n].params) for n in (1, 8))
  pairs = zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True)
  diffs = [float(np.max(np.abs(a - b))) for a, b in pairs]
  return {
    'devices': jax.device_count(),
    'losses_1': _losses(os.path.join(root, 'dev1')),
    'losses_8': _losses(os.path.join(root, 'dev8')),
    'max_param_diff': max(diffs),
    'replicated_on_8': [
      len(x.sharding.device_set) == 8 and x.sharding.is_fully_replicated
      for x in jax.tree.leaves(states[8].params)
    ],
  }


def save_on_8(root: str) -> dict:
  wd = os.path.join(root, 'saved_on_8')
  train.train_and_evaluate(ddpm_ring8.get_config('smoke'), wd)
  return {'devices': jax.device_count(), 'workdir': wd}


if __name__ == '__main__':
  result = {'compare': compare, 'save_on_8': save_on_8}[sys.argv[1]](sys.argv[2])
  print('RESULT ' + json.dumps(result))
