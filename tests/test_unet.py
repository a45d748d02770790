"""Tests for the DDPM/ADM U-Net: shapes, init, conditioning, dropout, jit and config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen.errors import ConfigError
from gen.models.unet import UNet, check_input_shape

# Tiny widths keep the whole file fast on CPU; eager ops compile once per shape and are reused.
TINY = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4)


def _init(model, shape, seed=0):
  x = jnp.zeros((2, *shape), jnp.float32)
  t = jnp.zeros((2,), jnp.float32)
  return model.init(jax.random.key(seed), x, t)


def _randomize(params, seed=1):
  """Replaces every leaf by N(0, 0.1^2) so zero-initialised convs no longer hide the input."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [0.1 * jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)]
  return jax.tree.unflatten(treedef, noisy)


def _num_params(model, shape):
  variables = jax.eval_shape(lambda: _init(model, shape))
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables))


@pytest.mark.parametrize('shape', [(8, 8, 1), (32, 32, 3)])
def test_output_shape_matches_input_and_is_zero_at_init(shape):
  model = UNet(**TINY)
  variables = _init(model, shape)
  x = jax.random.normal(jax.random.key(2), (2, *shape))
  out = model.apply(variables, x, jnp.array([3.0, 500.0]))
  chex.assert_shape(out, (2, *shape))
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)


def test_output_depends_on_time():
  model = UNet(**TINY)
  variables = _randomize(_init(model, (8, 8, 1)))
  x = jnp.broadcast_to(jax.random.normal(jax.random.key(3), (1, 8, 8, 1)), (2, 8, 8, 1))
  out = model.apply(variables, x, jnp.array([1.0, 700.0]))
  chex.assert_tree_all_finite(out)
  assert not np.allclose(out[0], out[1], atol=1e-5)


def test_dropout_only_in_train_mode():
  model = UNet(**TINY, dropout=0.5)
  variables = _randomize(_init(model, (8, 8, 1)))
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1))
  t = jnp.array([10.0, 20.0])

  def run(train, seed):
    return model.apply(variables, x, t, train=train, rngs={'dropout': jax.random.key(seed)})

  assert not np.allclose(run(True, 0), run(True, 1))
  np.testing.assert_array_equal(run(False, 0), run(False, 1))
  np.testing.assert_array_equal(run(False, 0), model.apply(variables, x, t))


def test_jit_matches_eager():
  model = UNet(**TINY)
  variables = _randomize(_init(model, (8, 8, 1)))
  x = jax.random.normal(jax.random.key(5), (2, 8, 8, 1))
  t = jnp.array([0.0, 999.0])
  eager = model.apply(variables, x, t)
  jitted = jax.jit(model.apply)(variables, x, t)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


def test_check_input_shape_accepts_images():
  check_input_shape((8, 8, 1), (1, 2), 64, 8)
  check_input_shape((32, 32, 3), (1, 2, 2, 2), 64, 32)


def test_check_input_shape_rejects_points():
  with pytest.raises(ConfigError, match="model.name='mlp'"):
    check_input_shape((2,), (1, 2), 64, 8)


def test_check_input_shape_rejects_indivisible_size():
  with pytest.raises(ConfigError, match=r'model.ch_mult=\(1, 2\).*divisible by 2.*at most 1 level'):
    check_input_shape((9, 9, 1), (1, 2), 64, 8)
  with pytest.raises(ConfigError, match=r'8x8 images 4 times.*at most 4 levels'):
    check_input_shape((8, 8, 1), (1, 2, 2, 2, 2), 64, 8)


def test_check_input_shape_rejects_bad_num_groups():
  with pytest.raises(ConfigError, match='model.num_groups=8'):
    check_input_shape((8, 8, 1), (1, 2), 12, 8)


def test_model_raises_config_error_before_compiling():
  with pytest.raises(ConfigError, match='model.ch_mult'):
    _init(UNet(**TINY), (9, 9, 1))


def test_parameter_count_is_stable_and_quadratic_in_width():
  small = _num_params(UNet(ch=16, ch_mult=(1, 2), num_groups=8), (8, 8, 1))
  large = _num_params(UNet(ch=32, ch_mult=(1, 2), num_groups=8), (8, 8, 1))
  assert small > 0
  # Convolutions and the time MLP are quadratic in width; biases and the stem are linear.
  assert 3.5 < large / small < 4.05
  # Pinned so that an accidental architecture change shows up here; update it on purpose.
  assert small == 246_577
