"""One convolution, jax against torch, forward and each gradient (prints one JSON line a shape).

    pip install -e ".[bench]"        # torch==2.13.0 (CPU build)
    python benchmarks/conv_kernels.py
    python benchmarks/conv_kernels.py --shapes=32x32x32x128x128x3 --repeats=5 --threads=2

A shape is BxHxWxCxOxK: batch, height, width, input and output channels, kernel size ('SAME'
padding, stride 1). Timed (median of --repeats after one untimed call, GFLOP/s counting
2 B H W C O K^2 per pass):
  jax_forward          jax.lax.conv_general_dilated, NHWC x HWIO, jitted;
  jax_input_grad       XLA's transpose of it with respect to the input;
  jax_kernel_grad_xla  XLA's transpose with respect to the kernel (what jax.grad gives);
  jax_kernel_grad_gen  gen.models.conv.kernel_grad_matmul (the CPU kernel gradient of gen's
                       convolutions, used where gen.models.conv.matmul_pays says so);
  torch_forward        torch.nn.functional.conv2d, NCHW, inference mode;
  torch_input_grad / torch_kernel_grad  torch.ops.aten.convolution_backward for one of the two.
The two libraries alternate shape by shape in this one process; --threads sets torch's intra-op
threads (XLA's pool uses every core). Measured numbers go to experiments/RESULTS.md.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gen.models import conv

DEFAULT_SHAPES = '32x32x32x128x128x3,32x32x32x192x64x1,64x16x16x64x64x3,64x16x16x96x32x1'


def _median_seconds(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(shape: tuple[int, ...], repeats: int) -> dict:
  """GFLOP/s of each pass for one shape (module docstring)."""
  import torch

  b, h, w, c, o, k = shape
  flops = 2 * b * h * w * c * o * k * k
  rng = np.random.default_rng(0)
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  kernel = (rng.normal(size=(k, k, c, o)) / k).astype(np.float32)
  dy = rng.normal(size=(b, h, w, o)).astype(np.float32)
  xj, kj, dyj = jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(dy)
  pad = (k - 1) // 2
  pads = ((pad, k - 1 - pad), (pad, k - 1 - pad))
  dn = ('NHWC', 'HWIO', 'NHWC')
  forward = jax.jit(
    lambda x_, k_: lax.conv_general_dilated(x_, k_, (1, 1), pads, dimension_numbers=dn)
  )
  input_grad = jax.jit(lambda x_, k_, dy_: jax.vjp(lambda a: forward(a, k_), x_)[1](dy_)[0])
  kernel_grad = jax.jit(lambda x_, k_, dy_: jax.vjp(lambda a: forward(x_, a), k_)[1](dy_)[0])
  kernel_grad_gen = jax.jit(
    lambda x_, dy_: conv.kernel_grad_matmul(x_, dy_, kernel.shape, (1, 1), pads)
  )
  jax_fns = {
    'jax_forward': lambda: jax.block_until_ready(forward(xj, kj)),
    'jax_input_grad': lambda: jax.block_until_ready(input_grad(xj, kj, dyj)),
    'jax_kernel_grad_xla': lambda: jax.block_until_ready(kernel_grad(xj, kj, dyj)),
    'jax_kernel_grad_gen': lambda: jax.block_until_ready(kernel_grad_gen(xj, dyj)),
  }
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  kt = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
  dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())

  def torch_backward(mask):
    return lambda: torch.ops.aten.convolution_backward(
      dyt, xt, kt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask
    )

  with torch.inference_mode():
    torch_fns = {
      'torch_forward': lambda: torch.nn.functional.conv2d(xt, kt, padding=pad),
      'torch_input_grad': torch_backward([True, False, False]),
      'torch_kernel_grad': torch_backward([False, True, False]),
    }
    record = {'shape_bhwcok': list(shape), 'gflop_per_pass': round(flops / 1e9, 3)}
    for name, fn in [*jax_fns.items(), *torch_fns.items()]:
      record[name] = round(flops / _median_seconds(fn, repeats) / 1e9, 2)
  # gen's kernel gradient equals XLA's (relative to its largest entry)
  want = np.asarray(kernel_grad(xj, kj, dyj))
  got = np.asarray(kernel_grad_gen(xj, dyj))
  record['gen_vs_xla_max_rel_diff'] = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
  return record


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shapes', default=DEFAULT_SHAPES, help='comma list of BxHxWxCxOxK')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads')
  args = parser.parse_args(argv)
  shapes = []
  for text in args.shapes.split(','):
    parts = text.split('x')
    if len(parts) != 6 or not all(p.isdigit() and int(p) > 0 for p in parts):
      parser.error(f'--shapes: {text!r} is not BxHxWxCxOxK with positive integers')
    shapes.append(tuple(int(p) for p in parts))
  try:
    import torch
  except ImportError:
    parser.error('torch is not installed: pip install -e ".[bench]"')
  torch.set_num_threads(args.threads)
  for shape in shapes:
    record = measure(shape, args.repeats)
    record.update(torch=torch.__version__, jax=jax.__version__, torch_threads=args.threads)
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
