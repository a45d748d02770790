"""Tests for the 2-D MLP denoiser: shapes, zero init, labels, embeddings."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen.errors import ConfigError
from gen.models.mlp import MLP

TINY = dict(features=(16, 16), time_dim=8)


def _init(model, seed=0, **kwargs):
  return model.init(jax.random.key(seed), jnp.zeros((4, 2)), jnp.zeros((4,)), **kwargs)


def _randomize(params, seed=1):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [0.3 * jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, leaves, strict=True)]
  return jax.tree.unflatten(treedef, noisy)


def test_output_shape_and_zero_at_init():
  model = MLP(**TINY)
  out = model.apply(_init(model), jnp.ones((4, 2)), jnp.arange(4.0))
  chex.assert_shape(out, (4, 2))
  np.testing.assert_array_equal(out, 0.0)


@pytest.mark.slow
def test_labels_change_output_and_null_label_equals_none():
  model = MLP(**TINY, num_classes=8)
  variables = _randomize(_init(model))
  x = jnp.ones((4, 2))
  t = jnp.full((4,), 10.0)
  out = model.apply(variables, x, t, labels=jnp.array([0, 1, 2, 7]))
  chex.assert_shape(out, (4, 2))
  assert len({tuple(np.round(row, 5)) for row in np.asarray(out)}) == 4
  null = model.apply(variables, x, t, labels=jnp.full((4,), 8, jnp.int32))
  np.testing.assert_array_equal(null, model.apply(variables, x, t))
  # The objective's positional call still works.
  np.testing.assert_array_equal(null, model.apply(variables, x, t, True))


def test_unconditional_mlp_rejects_labels():
  with pytest.raises(ConfigError, match='model.mlp.num_classes=0'):
    _init(MLP(**TINY), labels=jnp.zeros((4,), jnp.int32))


@pytest.mark.slow  # > 5 s of compiling: the full suite only
def test_fourier_embedding_same_parameters_deterministic_features():
  sinusoidal, fourier = MLP(**TINY), MLP(**TINY, embedding='fourier')
  a, b = _init(fourier, seed=0), _init(fourier, seed=1)
  assert jax.tree.structure(a) == jax.tree.structure(_init(sinusoidal))
  x, t = jnp.ones((4, 2)), jnp.linspace(0.0, 1.0, 4)
  # Inits from different rngs hold the same (trained) leaves only: the frequencies are not state.
  assert set(a) == set(b) == {'params'}
  assert jax.tree.structure(a) == jax.tree.structure(b)
  variables = _randomize(a)
  np.testing.assert_allclose(
    fourier.apply(variables, x, t), jax.jit(fourier.apply)(variables, x, t), atol=1e-5
  )
  assert not np.allclose(fourier.apply(variables, x, t), sinusoidal.apply(variables, x, t))
  with pytest.raises(ConfigError, match='model.mlp.embedding'):
    _init(MLP(**TINY, embedding='nope'))
