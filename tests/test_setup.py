"""The step-0 state, compiled as a program that runs once (gen.utils.once)."""

import importlib

import chex
import jax
import numpy as np
import pytest

from gen import setup as setup_lib
from tests.conftest import ONE_DEVICE


@pytest.mark.slow
@pytest.mark.parametrize('name', ['ddpm_digits', 'dcgan_digits', 'sngan_digits'])
def test_init_compiled_for_one_run_matches_the_default_compile_to_rounding(name, tmp_path):
  """init_state compiles the initialiser with RUN_ONCE_CPU_OPTIONS (LLVM -O1 on CPU). The
  step-0 state (parameters, optimizer state, EMA) is the default compile's up to float rounding:
  integers equal, floats at most 4 ulp apart (measured differences: experiments/RESULTS.md)."""
  config = importlib.import_module(f'experiments.{name}').get_config('smoke')
  config.data.data_dir = str(tmp_path)
  setup = setup_lib.build(config, ONE_DEVICE)
  state = setup_lib.init_state(setup)
  args = setup_lib.init_args(setup, jax.random.key(config.seed))
  default = jax.jit(setup.objective.init, out_shardings=setup.replicated)(*args)
  chex.assert_trees_all_equal_structs(state, default)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(default), strict=True):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == 'f':
      np.testing.assert_array_max_ulp(a, b, maxulp=4)
    else:
      np.testing.assert_array_equal(a, b)
