"""Tests for the DDPM/ADM U-Net: shapes, init, attention, labels, embeddings, jit, config errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen.errors import ConfigError
from gen.models import embeddings
from gen.models.unet import AttentionBlock, UNet, check_input_shape

# Tiny widths keep the whole file fast on CPU; eager ops compile once per shape and are reused.
TINY = dict(ch=8, ch_mult=(1, 2), num_res_blocks=1, num_groups=4)


def _init(model, shape, seed=0, **kwargs):
  """Jitted, with an 'rbg' key: op-by-op init with threefry keys compiles ~20 s of tiny
  programs on 2 CPU cores; this takes ~4 s."""
  x = jnp.zeros((2, *shape), jnp.float32)
  t = jnp.zeros((2,), jnp.float32)
  init = jax.jit(lambda key: model.init(key, x, t, **kwargs))
  return init(jax.random.key(seed, impl='rbg'))


def _randomize(params, seed=1):
  """Replaces every leaf by N(0, 0.1^2) so zero-initialised convs no longer hide the input
  (NumPy draws: no compiling)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: jnp.asarray(rng.normal(0.0, 0.1, v.shape).astype(v.dtype)), params)


def _num_params(model, shape):
  variables = jax.eval_shape(lambda: _init(model, shape))
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables))


@pytest.mark.slow
@pytest.mark.parametrize('shape', [(8, 8, 1), (32, 32, 3)])
def test_output_shape_matches_input_and_is_zero_at_init(shape):
  model = UNet(**TINY)
  variables = _init(model, shape)
  x = jax.random.normal(jax.random.key(2), (2, *shape))
  out = model.apply(variables, x, jnp.array([3.0, 500.0]))
  chex.assert_shape(out, (2, *shape))
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, 0.0)


@pytest.mark.slow
def test_output_depends_on_time():
  model = UNet(**TINY)
  variables = _randomize(_init(model, (8, 8, 1)))
  x = jnp.broadcast_to(jax.random.normal(jax.random.key(3), (1, 8, 8, 1)), (2, 8, 8, 1))
  out = model.apply(variables, x, jnp.array([1.0, 700.0]))
  chex.assert_tree_all_finite(out)
  assert not np.allclose(out[0], out[1], atol=1e-5)


@pytest.mark.slow
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


@pytest.mark.slow
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
  with pytest.raises(
    ConfigError, match=r'model.unet.ch_mult=\(1, 2\).*divisible by 2.*at most 1 level'
  ):
    check_input_shape((9, 9, 1), (1, 2), 64, 8)
  with pytest.raises(ConfigError, match=r'8x8 images 4 times.*at most 4 levels'):
    check_input_shape((8, 8, 1), (1, 2, 2, 2, 2), 64, 8)


def test_check_input_shape_rejects_bad_num_groups():
  with pytest.raises(ConfigError, match='model.unet.num_groups=8'):
    check_input_shape((8, 8, 1), (1, 2), 12, 8)


def test_model_raises_config_error_before_compiling():
  with pytest.raises(ConfigError, match='model.unet.ch_mult'):
    _init(UNet(**TINY), (9, 9, 1))


def test_parameter_count_is_stable_and_quadratic_in_width():
  small = _num_params(UNet(ch=16, ch_mult=(1, 2), num_groups=8), (8, 8, 1))
  large = _num_params(UNet(ch=32, ch_mult=(1, 2), num_groups=8), (8, 8, 1))
  assert small > 0
  # Convolutions and the time MLP are quadratic in width; biases and the stem are linear.
  assert 3.5 < large / small < 4.05
  # Pinned so that an accidental architecture change shows up here; update it on purpose.
  assert small == 246_577


@pytest.mark.slow
def test_attention_block_shape_and_identity_at_init():
  block = AttentionBlock(num_heads=2, num_groups=4)
  x = jax.random.normal(jax.random.key(6), (2, 4, 4, 8))
  variables = block.init(jax.random.key(0), x)
  np.testing.assert_array_equal(block.apply(variables, x), x)  # zero-init output projection
  out = block.apply(_randomize(variables), x)
  chex.assert_shape(out, x.shape)
  chex.assert_tree_all_finite(out)
  assert not np.allclose(out, x, atol=1e-4)
  # Every position attends to every other: changing one pixel changes all outputs.
  moved = block.apply(_randomize(variables), x.at[:, 0, 0].add(1.0))
  assert not np.any(np.all(np.isclose(moved[:, 3, 3], out[:, 3, 3]), axis=-1))


@pytest.mark.slow
def test_attention_adds_parameters_and_changes_output():
  plain = UNet(**TINY)
  attn = UNet(**TINY, attn_resolutions=(4,), num_heads=2)
  # At 4x4: 1 block down, 2 up (num_res_blocks + 1) and the middle one; each is GroupNorm +
  # qkv + output projection.
  width = 2 * TINY['ch']
  per_block = 2 * width + (width * 3 * width + 3 * width) + (width * width + width)
  assert _num_params(attn, (8, 8, 1)) - _num_params(plain, (8, 8, 1)) == 4 * per_block
  assert _num_params(UNet(**TINY, attn_resolutions=(4,), mid_attention=False), (8, 8, 1)) == (
    _num_params(plain, (8, 8, 1)) + 3 * per_block
  )

  variables = _randomize(_init(attn, (8, 8, 1)))
  x = jax.random.normal(jax.random.key(7), (2, 8, 8, 1))
  t = jnp.array([5.0, 50.0])
  out = attn.apply(variables, x, t)
  chex.assert_shape(out, (2, 8, 8, 1))
  # Zeroing every attention output projection removes attention: the output must change.
  no_attn = jax.tree_util.tree_map_with_path(
    lambda path, v: jnp.zeros_like(v) if 'proj_out' in jax.tree_util.keystr(path) else v,
    variables,
  )
  assert not np.allclose(out, attn.apply(no_attn, x, t), atol=1e-5)


def test_attention_resolution_never_reached_is_a_config_error():
  with pytest.raises(ConfigError, match=r'model.unet.attn_resolutions=\(3,\).*\[8, 4\]'):
    check_input_shape((8, 8, 1), (1, 2), 64, 8, attn_resolutions=(3,))
  with pytest.raises(ConfigError, match='model.unet.attn_resolutions'):
    _init(UNet(**TINY, attn_resolutions=(2,)), (8, 8, 1))
  with pytest.raises(ConfigError, match='model.unet.num_heads=3'):
    check_input_shape((8, 8, 1), (1, 2), 64, 8, attn_resolutions=(8,), num_heads=3)
  with pytest.raises(ConfigError, match='model.unet.head_dim=24'):
    check_input_shape((8, 8, 1), (1, 2), 64, 8, attn_resolutions=(8,), head_dim=24)
  check_input_shape((32, 32, 3), (1, 2, 2, 2), 128, 32, attn_resolutions=(16,), head_dim=64)


@pytest.mark.slow  # > 5 s of compiling: the full suite only
def test_labels_change_output_and_null_label_equals_none():
  model = UNet(**TINY, num_classes=3)
  variables = _randomize(_init(model, (8, 8, 1), labels=jnp.array([0, 1])))
  assert variables['params']['label_embedding']['Embed_0']['embedding'].shape == (4, 4 * 8)
  x = jnp.broadcast_to(jax.random.normal(jax.random.key(8), (1, 8, 8, 1)), (2, 8, 8, 1))
  t = jnp.array([100.0, 100.0])
  apply = jax.jit(model.apply, static_argnums=3, static_argnames='train')
  out = apply(variables, x, t, labels=jnp.array([0, 2]))
  chex.assert_tree_all_finite(out)
  assert not np.allclose(out[0], out[1], atol=1e-5)
  null = apply(variables, x, t, False, labels=jnp.array([3, 3], jnp.int32))
  np.testing.assert_array_equal(null, apply(variables, x, t))
  np.testing.assert_array_equal(null, apply(variables, x, t, labels=None))


def test_label_errors():
  model = UNet(**TINY, num_classes=3)
  variables = _init(model, (8, 8, 1))
  x = jnp.zeros((2, 8, 8, 1))
  t = jnp.zeros((2,))
  with pytest.raises(AssertionError):
    model.apply(variables, x, t, labels=jnp.array([0, 1, 2]))  # wrong batch
  with pytest.raises(AssertionError):
    model.apply(variables, x, t, labels=jnp.array([0.0, 1.0]))  # not integers
  with pytest.raises(ConfigError, match='model.unet.num_classes=0'):
    _init(UNet(**TINY), (8, 8, 1), labels=jnp.array([0, 1]))


@pytest.mark.slow  # > 5 s of compiling: the full suite only
def test_fourier_embedding_is_fixed_and_not_a_parameter():
  sinusoidal = UNet(**TINY)
  fourier = UNet(**TINY, embedding='fourier')
  assert _num_params(fourier, (8, 8, 1)) == _num_params(sinusoidal, (8, 8, 1))
  a, b = _init(fourier, (8, 8, 1), seed=0), _init(fourier, (8, 8, 1), seed=1)
  assert set(a) == set(b) == {'params'}  # nothing but trained params, frequencies included
  t = jnp.array([0.1, 0.7])
  np.testing.assert_array_equal(
    embeddings.fourier_embedding(t, 8), embeddings.fourier_embedding(t, 8)
  )
  freqs = embeddings.fourier_frequencies(64)
  assert 10.0 < float(jnp.std(freqs)) < 22.0  # N(0, 16^2)
  # Same params, different model only in the features: the features are really used.
  variables = _randomize(a)
  x = jax.random.normal(jax.random.key(9), (2, 8, 8, 1))
  out_f, out_s = jax.jit(fourier.apply)(variables, x, t), jax.jit(sinusoidal.apply)(variables, x, t)
  assert not np.allclose(out_f, out_s)
  with pytest.raises(ConfigError, match="model.unet.embedding='gaussian'.*'fourier'"):
    _init(UNet(**TINY, embedding='gaussian'), (8, 8, 1))


@pytest.mark.slow
def test_remat_keeps_parameters_outputs_and_gradients():
  """remat=True changes what the backward pass stores, not the function or its parameters."""
  kwargs = dict(TINY, attn_resolutions=(4,), dropout=0.2)
  plain, remat = UNet(**kwargs), UNet(**kwargs, remat=True)
  params = _init(plain, (8, 8, 1))
  chex.assert_trees_all_equal(params, _init(remat, (8, 8, 1)))  # same names, same values
  params = _randomize(params)
  x = jax.random.normal(jax.random.key(6), (2, 8, 8, 1))
  t = jnp.array([5.0, 400.0])

  def loss(model, p):
    out = model.apply(p, x, t, train=True, rngs={'dropout': jax.random.key(7)})
    return jnp.mean((out - x) ** 2)

  lowered = [
    jax.jit(jax.value_and_grad(lambda p, m=m: loss(m, p))).lower(params) for m in (plain, remat)
  ]
  assert 'optimization_barrier' not in lowered[0].as_text()
  assert 'optimization_barrier' in lowered[1].as_text()  # blocks recomputed in the backward pass
  (value_plain, grads_plain), (value_remat, grads_remat) = (c.compile()(params) for c in lowered)
  np.testing.assert_allclose(value_remat, value_plain, rtol=1e-6)
  chex.assert_trees_all_close(grads_remat, grads_plain, rtol=1e-5, atol=1e-7)
