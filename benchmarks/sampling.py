"""Sampling throughput on the digits U-Net: 100-step DDIM and the adaptive ODE (prints JSON).

    python benchmarks/sampling.py                       # batch 64, both samplers
    python benchmarks/sampling.py --batch=256 --repeats=5

It builds an experiment's objective exactly as `gen.main` does (default
`experiments/score_sde_vp_digits.py`: the digits U-Net on the VP SDE, so both a DDIM grid and a
continuous-time ODE solve apply) with freshly initialised parameters, or with the trained EMA
parameters of a run directory (--workdir, with that run's --experiment). The cost per network
call does not depend on training; the adaptive solver's step count does, so quote dopri5's NFE
from a trained run:
    python benchmarks/sampling.py --experiment=edm_digits --workdir=runs/edm_digits
Each line: {"sampler", "device", "batch", "nfe", "compile_seconds" (ahead-of-time lower +
compile of the whole sampler), "seconds_per_batch" (best of --repeats), "samples_per_sec",
"ms_per_nfe"}.
"""

import argparse
import importlib
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen import modes, objectives, samplers  # noqa: E402
from gen.data import DatasetSpec  # noqa: E402

SPEC = DatasetSpec('digits', 'images', (8, 8, 1), 10, 1500)


def benchmark(
  experiment: str, workdir: str | None, sampler: str, batch: int, repeats: int, options: dict
) -> dict:
  """Compiles and times one sampler on the digits U-Net; returns the JSON record."""
  config = importlib.import_module(f'experiments.{experiment}').get_config()
  if workdir:
    setup, state = modes._restore_for_reading(config, workdir, 'sample', None)
    objective = setup.objective
  else:
    objective = objectives.make(config, SPEC)
    x = jax.numpy.zeros((batch, *SPEC.shape))
    state = jax.jit(objective.init)(jax.random.key(0), {'x': x})
  params = state.ema_params['denoiser']
  process = objective.process
  ts = samplers.timesteps(process, options.pop('num_steps'), 'uniform')

  def run(params, key):
    k_init, k_run = jax.random.split(key)
    x_init = process.prior_std * jax.random.normal(k_init, (batch, *SPEC.shape))
    result = samplers.run(
      sampler, objective.denoise_fn(params), process, x_init, k_run, ts, **options
    )
    return result.samples, result.nfe

  start = time.perf_counter()
  compiled = jax.jit(run).lower(params, jax.random.key(1)).compile()
  compile_seconds = time.perf_counter() - start
  best, nfe = float('inf'), None
  for i in range(repeats):
    start = time.perf_counter()
    samples, nfe = jax.block_until_ready(compiled(params, jax.random.key(2 + i)))
    best = min(best, time.perf_counter() - start)
  nfe = int(nfe)
  return {
    'experiment': experiment,
    'trained': bool(workdir),
    'sampler': sampler,
    'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}',
    'batch': batch,
    'nfe': nfe,
    'compile_seconds': round(compile_seconds, 2),
    'seconds_per_batch': round(best, 3),
    'samples_per_sec': round(batch / best, 1),
    'ms_per_nfe': round(1000 * best / nfe, 2),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--experiment', default='score_sde_vp_digits')
  parser.add_argument('--workdir', default=None, help='a run of --experiment to take params from')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=3, help='timed runs (the best is reported)')
  parser.add_argument('--ddim_steps', type=int, default=100)
  parser.add_argument('--rtol', type=float, default=1e-5)
  parser.add_argument('--atol', type=float, default=1e-5)
  args = parser.parse_args(argv)
  runs = [
    ('ddim', {'num_steps': args.ddim_steps, 'eta': 0.0}),
    ('dopri5', {'num_steps': 2, 'rtol': args.rtol, 'atol': args.atol}),
  ]
  for sampler, options in runs:
    record = benchmark(args.experiment, args.workdir, sampler, args.batch, args.repeats, options)
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
