"""Runs in a subprocess with 8 simulated CPU devices (set before JAX starts); prints JSON.

python tests/multidevice.py compare WORKDIR    # 30 steps on 1 device vs on 8: losses, params
python tests/multidevice.py save_on_8 WORKDIR  # 20 smoke steps on 8 devices, checkpointed
python tests/multidevice.py samples WORKDIR    # the same samples on 1, 2, 4 and 8 devices
python tests/multidevice.py accum_collectives X  # collectives of the grad_accum train step
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
from gen import setup as setup_lib
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
    states[n] = train.train_and_evaluate(config, wd, mesh=setup_lib.make_mesh(jax.devices()[:n]))
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


def samples(root: str) -> dict:
  """Samples of the step-0 state of a diffusion and a GAN experiment on 1, 2, 4, 8 devices: the
  largest difference from the 1-device samples, per experiment (sample i depends on (seed, i)
  only: stateless keys whose values do not depend on the sharding)."""
  del root
  from experiments import gan_ring8

  out = {}
  for name, module in (('ddpm_ring8', ddpm_ring8), ('gan_ring8', gan_ring8)):
    config = module.get_config('smoke')
    draws = {}
    for n in (1, 2, 4, 8):
      setup = setup_lib.build(config, setup_lib.make_mesh(jax.devices()[:n]))
      state = setup_lib.init_state(setup)
      draws[n] = np.asarray(
        setup_lib.make_sample_fn(setup, 64)(state, jax.random.key(7))['samples']
      )
    out[name] = max(float(np.max(np.abs(draws[n] - draws[1]))) for n in (2, 4, 8))
  return out


def accum_collectives(root: str) -> dict:
  """The collectives in the compiled train step of ddpm_ring8:smoke, batch 64 on 8 devices, with
  and without gradient accumulation (k = 2, 4): only the gradient all-reduce should be there."""
  del root
  out = {}
  for k in (1, 2, 4):
    config = ddpm_ring8.get_config('smoke')
    config.data.batch_size, config.train.grad_accum = 64, k
    setup = setup_lib.build(config, setup_lib.make_mesh(jax.devices()))
    state = setup_lib.init_state(setup)
    batch = setup_lib.to_global({'x': np.zeros((64, 2), np.float32)}, setup.batch_sharding)
    key = jax.random.key(0)
    text = train.make_train_step(setup).lower(state, batch, key).compile().as_text()
    ops = ('all-gather', 'all-to-all', 'collective-permute', 'all-reduce')
    out[str(k)] = {op: text.count(f' {op}(') + text.count(f' {op}-start(') for op in ops}
  return out


if __name__ == '__main__':
  modes = {
    'compare': compare,
    'save_on_8': save_on_8,
    'samples': samples,
    'accum_collectives': accum_collectives,
  }
  result = modes[sys.argv[1]](sys.argv[2])
  print('RESULT ' + json.dumps(result))
