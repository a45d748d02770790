"""Training cost per step of latent diffusion against pixel-space diffusion, side by side.

    python benchmarks/latent_step.py [--rounds=3] [--steps=30]

It builds experiments/ddpm_digits.py and experiments/ldm_digits.py as `gen.main` does, except
that ldm_digits's frozen autoencoder is vae_ldm_digits's network with freshly initialised
weights (a step costs the same whatever the weights, so no trained run is needed), and times
the step `gen.train.make_train_step` compiles for each (for ldm_digits: encoding the batch, the
denoiser's loss and gradients, Adam, EMA), alternating the two `--rounds` times on random data
of the digits' shape. Prints one JSON line: per experiment the median seconds per step in each
round, examples/s, XLA's FLOP count of the step and the compile time, and the ratio of the two
medians (ldm / ddpm: below 1 is cheaper).
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import ddpm_digits, ldm_digits, vae_ldm_digits  # noqa: E402
from gen import objectives, train  # noqa: E402
from gen import pretrained as pretrained_lib  # noqa: E402
from gen import setup as setup_lib  # noqa: E402
from gen.data import DatasetSpec  # noqa: E402

DIGITS = DatasetSpec('digits', 'images', (8, 8, 1), 10, 1500)


def _random_autoencoder(mesh) -> pretrained_lib.Pretrained:
  """vae_ldm_digits's VAE with initial weights, as a resolved pretrained reference."""
  config = vae_ldm_digits.get_config()
  objective = objectives.make(config, DIGITS)
  setup = setup_lib.Setup(config, DIGITS, objective, mesh)
  state = setup_lib.init_state(setup)
  return pretrained_lib.Pretrained(
    'autoencoder', '(initial weights)', 0, config, objective, state.ema_params, ''
  )


def _compiled_step(config, refs, mesh):
  objective = objectives.make(config, DIGITS, refs)
  setup = setup_lib.Setup(config, DIGITS, objective, mesh, pretrained=refs)
  state = setup_lib.init_state(setup)
  rng = np.random.default_rng(0)
  batch = config.data.batch_size
  data = {
    'x': rng.uniform(-1, 1, (batch, *DIGITS.shape)).astype(np.float32),
    'label': rng.integers(0, 10, (batch,)).astype(np.int32),
  }
  data = setup_lib.to_global(data, setup.batch_sharding)
  key = jax.random.key(0)
  start = time.perf_counter()
  compiled = train.make_train_step(setup).lower(state, data, key).compile()
  compile_s = time.perf_counter() - start
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else {}
  flops = float((analysis or {}).get('flops', float('nan')))
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  return compiled, state, data, key, compile_s, flops, params, batch


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=3, help='alternations of the two steps')
  parser.add_argument('--steps', type=int, default=30, help='timed steps per round')
  args = parser.parse_args(argv)
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  mesh = setup_lib.make_mesh(jax.devices()[:1])
  ldm_config = ldm_digits.get_config()
  ldm_config.pretrained.autoencoder = '(initial weights)'
  runs = {
    'ddpm_digits': _compiled_step(ddpm_digits.get_config(), {}, mesh),
    'ldm_digits': _compiled_step(ldm_config, {'autoencoder': _random_autoencoder(mesh)}, mesh),
  }
  times = {name: [] for name in runs}
  for _ in range(args.rounds):
    for name, (compiled, state, data, key, *_) in runs.items():
      state, metrics = compiled(state, data, key)  # one untimed step per round (it donates)
      jax.block_until_ready((state, metrics))
      steps = []
      for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = compiled(state, data, key)
        jax.block_until_ready((state, metrics))
        steps.append(time.perf_counter() - start)
      times[name].append(statistics.median(steps))
      runs[name] = (compiled, state, data, key, *runs[name][4:])
  out = {'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}'}
  for name, (_, _, _, _, compile_s, flops, params, batch) in runs.items():
    med = statistics.median(times[name])
    out[name] = {
      'seconds_per_step_by_round': [round(t, 5) for t in times[name]],
      'examples_per_sec': round(batch / med, 1),
      'step_flops': flops,
      'compile_seconds': round(compile_s, 2),
      'params': params,
    }
  ratio = statistics.median(times['ldm_digits']) / statistics.median(times['ddpm_digits'])
  out['time_ratio_ldm_over_ddpm'] = round(ratio, 3)
  out['flops_ratio_ldm_over_ddpm'] = round(
    out['ldm_digits']['step_flops'] / out['ddpm_digits']['step_flops'], 3
  )
  print(json.dumps(out), flush=True)


if __name__ == '__main__':
  main()
