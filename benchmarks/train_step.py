"""Throughput of one DDPM eps-MSE training step of the U-Net: prints one JSON line per config.

    python benchmarks/train_step.py                                  # digits and cifar10
    python benchmarks/train_step.py --configs=cifar10 --batch=8 --steps=3   # cifar10 on a CPU

Each line: {"config", "device", "batch", "params", "compile_seconds", "examples_per_sec"
(median over --steps timed steps after --warmup), "step_flops" (XLA cost analysis),
"achieved_flops_per_sec", "peak_memory_bytes" (compiled: temp + arguments + outputs - donated
aliases), "device_peak_bytes_in_use" (the allocator's peak; null where the backend has no
memory stats, e.g. CPU)}.

The loss is a minimal local DDPM loss (Ho et al. 2020), not gen.objectives, so the numbers
measure the network: t ~ U{0..999}, linear betas 1e-4..0.02, x_t = sqrt(abar) x0 +
sqrt(1 - abar) eps, loss = mean (eps - f(x_t, t))^2, Adam, params and optimizer state donated.
"""

import argparse
import json
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen.models.unet import UNet

# name -> (example shape, UNet kwargs, default batch)
CONFIGS = {
  'digits': (
    (8, 8, 1),
    dict(ch=64, ch_mult=(1, 2), num_res_blocks=2, attn_resolutions=(4,), dropout=0.0),
    128,
  ),
  # DDPM's CIFAR-10 network (Ho et al. 2020): 35.7M parameters there, 38.3M here because the
  # ADM scale-shift conditioning doubles every res-block's embedding projection.
  'cifar10': (
    (32, 32, 3),
    dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1),
    128,
  ),
}

NUM_TIMESTEPS = 1000


def make_train_step(model: UNet, optimizer: optax.GradientTransformation):
  """Returns step(params, opt_state, x0, key) -> (params, opt_state, loss) for the eps loss."""
  betas = jnp.linspace(1e-4, 0.02, NUM_TIMESTEPS, dtype=jnp.float32)
  alpha_bars = jnp.cumprod(1.0 - betas)

  def loss_fn(params, x0, key):
    t_key, noise_key, dropout_key = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, NUM_TIMESTEPS)
    eps = jax.random.normal(noise_key, x0.shape, x0.dtype)
    abar = alpha_bars[t][:, None, None, None]
    x_t = jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps
    rngs = {'dropout': dropout_key}
    pred = model.apply({'params': params}, x_t, t.astype(jnp.float32), True, rngs=rngs)
    return jnp.mean((pred - eps) ** 2)

  def step(params, opt_state, x0, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, x0, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


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


def benchmark(name: str, batch: int | None, steps: int, warmup: int, seed: int = 0) -> dict:
  """Compiles and times the train step of config `name`; returns the JSON record."""
  shape, kwargs, default_batch = CONFIGS[name]
  batch = batch or default_batch
  model = UNet(**kwargs)
  optimizer = optax.adam(2e-4)
  key = jax.random.key(seed)
  x0 = jax.random.uniform(jax.random.fold_in(key, 1), (batch, *shape), minval=-1.0, maxval=1.0)
  params = jax.jit(model.init)(key, x0[:1], jnp.zeros((1,)))['params']
  opt_state = optimizer.init(params)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

  jitted = jax.jit(make_train_step(model, optimizer), donate_argnums=(0, 1))
  start = time.perf_counter()
  compiled = jitted.lower(params, opt_state, x0, key).compile()
  compile_seconds = time.perf_counter() - start

  times = []
  for i in range(warmup + steps):
    step_key = jax.random.fold_in(key, i)
    start = time.perf_counter()
    params, opt_state, loss = compiled(params, opt_state, x0, step_key)
    jax.block_until_ready((params, opt_state, loss))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  if not np.isfinite(float(loss)):
    raise FloatingPointError(f'{name}: the loss is {float(loss)}')

  median = statistics.median(times)
  flops = _cost(compiled, 'flops')
  return {
    'config': name,
    'device': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}',
    'batch': batch,
    'params': num_params,
    'compile_seconds': round(compile_seconds, 3),
    'examples_per_sec': round(batch / median, 2),
    'step_flops': flops,
    'achieved_flops_per_sec': None if flops is None else flops / median,
    'peak_memory_bytes': _compiled_memory(compiled),
    'device_peak_bytes_in_use': _device_peak(),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', default='digits,cifar10', help=f'comma list of {list(CONFIGS)}')
  parser.add_argument('--batch', type=int, default=None, help='overrides every default batch')
  parser.add_argument('--steps', type=int, default=20, help='timed steps (median reported)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  args = parser.parse_args(argv)
  names = [n for n in args.configs.split(',') if n]
  unknown = sorted(set(names) - set(CONFIGS))
  if unknown:
    parser.error(f'--configs: unknown {unknown}; choose from {sorted(CONFIGS)}')
  # CPU cannot reuse donated buffers; the warning is noise here.
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  for name in names:
    print(json.dumps(benchmark(name, args.batch, args.steps, args.warmup)), flush=True)


if __name__ == '__main__':
  main()
