"""Compiling a program that runs once (an initialiser): XLA:CPU at LLVM -O1.

An initialiser runs once per run, so its compile is all of its cost. At
`xla_backend_optimization_level=1` a U-Net's or InceptionV3's initialiser compiles in a fraction
of the default (-O3) time (experiments/RESULTS.md), with the same values up to float rounding
(tests/test_setup.py). The options are passed to this one compile, on CPU only: GPU and TPU
compiles, and the train step and the samplers (run thousands of times; -O1 changes the train
step's bits), keep XLA's defaults.
"""

import jax

RUN_ONCE_CPU_OPTIONS = {'xla_backend_optimization_level': 1}


def call_once(fn, *args, platform: str | None = None, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)(*args)`, compiled with RUN_ONCE_CPU_OPTIONS where `platform`
  (default: JAX's default backend) is 'cpu'."""
  platform = platform or jax.default_backend()
  lowered = jax.jit(fn, **jit_kwargs).lower(*args)
  options = RUN_ONCE_CPU_OPTIONS if platform == 'cpu' else None
  return lowered.compile(compiler_options=options)(*args)
