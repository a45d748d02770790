"""Throughput of gen's own jitted train step for an experiment: prints one JSON line each.

    python benchmarks/train_step.py                                          # both experiments
    python benchmarks/train_step.py --experiments=ddpm_cifar10 --batch=8 --steps=3  # on a CPU
    python benchmarks/train_step.py --compute_dtype=bfloat16                 # GPU/TPU
    python benchmarks/train_step.py --experiments=ddpm_cifar10 --remat       # U-Net remat

It builds the experiment's objective exactly as `gen.main` does and times the step that
`gen.train.make_train_step` compiles (loss, gradients, Adam, EMA, non-finite guard), on random
data of the dataset's shape, so no dataset is needed. Each line: {"experiment", "device",
"batch", "params", "compile_seconds", "examples_per_sec" (median over --steps timed steps after
--warmup), "step_flops" (XLA cost analysis), "achieved_flops_per_sec", "peak_memory_bytes"
(compiled: temp + arguments + outputs - donated aliases), "device_peak_bytes_in_use" (the
allocator's peak; null where the backend has no memory stats, e.g. CPU), "matmul_peak_flops_per_sec"
(this device's dense-matmul rate, measured in the same run: square float32 (or --compute_dtype)
matmuls of sizes 1024-4096, jitted, the median time of each size, the best size),
"fraction_of_matmul_peak"}.
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import time
import warnings

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen import objectives, train  # noqa: E402
from gen import setup as setup_lib
from gen.data import DatasetSpec  # noqa: E402

# experiment -> the spec of its dataset (so the benchmark needs no prepared data)
EXPERIMENTS = {
  'ddpm_digits': DatasetSpec('digits', 'images', (8, 8, 1), 10, 1500),
  'ddpm_cifar10': DatasetSpec('cifar10', 'images', (32, 32, 3), 10, 50_000),
  'dcgan_digits': DatasetSpec('digits', 'images', (8, 8, 1), 10, 1500),
  'dcgan_cifar10': DatasetSpec('cifar10', 'images', (32, 32, 3), 10, 50_000),
}


def matmul_peak(dtype: str = 'float32', repeats: int = 5) -> float:
  """This device's dense-matmul FLOP/s: the best size among 1024, 2048, 4096 of the median of
  `repeats` timed square matmuls (medians: a CPU share limited by a cgroup quota can burst above
  its steady rate for a few milliseconds)."""
  best = 0.0
  for n in (1024, 2048, 4096):
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(f(a, b))
      times.append(time.perf_counter() - start)
    best = max(best, 2 * n**3 / statistics.median(times))
  return best


def _cost(compiled, name: str):
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list | tuple):  # older jax: one dict per program
    analysis = analysis[0] if analysis else {}
  value = (analysis or {}).get(name)
  return None if value is None else float(value)


def _compiled_memory(compiled):
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  total = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
  # Donated params/optimizer state are both argument and output; count them once.
  return int(total - getattr(stats, 'alias_size_in_bytes', 0))


def _device_peak():
  try:
    stats = jax.devices()[0].memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  return None if not stats or 'peak_bytes_in_use' not in stats else int(stats['peak_bytes_in_use'])


def benchmark(
  name: str,
  batch: int | None,
  steps: int,
  warmup: int,
  dtype: str = 'float32',
  peak=None,
  remat: bool = False,
) -> dict:
  """Compiles and times the train step of experiment `name`; returns the JSON record."""
  config = importlib.import_module(f'experiments.{name}').get_config()
  if dtype != 'float32':
    config.train.compute_dtype = dtype
  if remat:
    config.model.unet.remat = True
  spec = EXPERIMENTS[name]
  if batch:
    config.data.batch_size = batch
  batch = config.data.batch_size
  setup = setup_lib.Setup(config, spec, objectives.make(config, spec), setup_lib.make_mesh())
  state = setup_lib.init_state(setup)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  rng = np.random.default_rng(0)
  data = {
    'x': rng.uniform(-1, 1, (batch, *spec.shape)).astype(np.float32),
    'label': rng.integers(0, spec.num_classes, (batch,)).astype(np.int32),
  }
  data = setup_lib.to_global(data, setup.batch_sharding)
  key = jax.random.key(0)
  start = time.perf_counter()
  compiled = train.make_train_step(setup).lower(state, data, key).compile()
  compile_seconds = time.perf_counter() - start

  times = []
  for i in range(warmup + steps):
    start = time.perf_counter()
    state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  losses = {k: float(v) for k, v in metrics.items() if k.startswith('loss')}  # GAN: loss/...
  if not all(np.isfinite(v) for v in losses.values()):
    raise FloatingPointError(f'{name}: non-finite losses {losses}')

  median = statistics.median(times)
  flops = _cost(compiled, 'flops')
  return {
    'experiment': name,
    'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}',
    'batch': batch,
    'compute_dtype': dtype,
    'remat': remat,
    'params': num_params,
    'compile_seconds': round(compile_seconds, 3),
    'examples_per_sec': round(batch / median, 2),
    'step_flops': flops,
    'achieved_flops_per_sec': None if flops is None else flops / median,
    'peak_memory_bytes': _compiled_memory(compiled),
    'device_peak_bytes_in_use': _device_peak(),
    'matmul_peak_flops_per_sec': peak,
    'fraction_of_matmul_peak': None
    if flops is None or not peak
    else round(flops / median / peak, 4),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--experiments', default=','.join(EXPERIMENTS), help=f'comma list of {list(EXPERIMENTS)}'
  )
  parser.add_argument('--batch', type=int, default=None, help='overrides every default batch')
  parser.add_argument('--steps', type=int, default=20, help='timed steps (median reported)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  parser.add_argument('--compute_dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--remat', action='store_true', help='model.unet.remat=True (U-Nets only)')
  args = parser.parse_args(argv)
  names = [n for n in args.experiments.split(',') if n]
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    parser.error(f'--experiments: unknown {unknown}; choose from {sorted(EXPERIMENTS)}')
  # CPU cannot reuse donated buffers; the warning is noise here.
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  if args.remat and any(not n.startswith('ddpm_') for n in names):
    parser.error(f'--remat: only the U-Net experiments (ddpm_*) have blocks to remat: {names}')
  peak = matmul_peak(args.compute_dtype)
  for name in names:
    record = benchmark(
      name, args.batch, args.steps, args.warmup, args.compute_dtype, peak, args.remat
    )
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
