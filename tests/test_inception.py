"""The FID Inception network: shapes, weight conversion and files, preprocessing (CPU, fast).

The numerical match with a PyTorch build of pytorch-fid's network is checked once, outside the
suite, by tools/check_inception_against_torch.py (it needs torch).
"""

import hashlib
import json
import os

import jax
import numpy as np
import pytest

from gen import setup as setup_lib
from gen.errors import ConfigError
from gen.metrics import inception, inception_weights, sample_quality
from gen.utils.images import _to_uint8


def _random_params(seed=0):
  """Every parameter a distinct random array (no init needed): any mix-up of leaves shows."""
  rng = np.random.default_rng(seed)
  flat = {
    k: rng.normal(size=s).astype(np.float32)
    for k, s in sorted(inception_weights.param_shapes().items())
  }
  return inception_weights.unflatten_params(flat)


def _torch_state_dict(params):
  """What pytorch-fid's state dict would hold for `params`: dotted names, OIHW conv weights,
  fc.weight [out, in], BN buffers, plus the num_batches_tracked counters torch adds."""
  leaf_names = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean', 'var': 'running_var'}
  state = {}
  for key, value in inception_weights.flatten_params(params).items():
    value = np.asarray(value)
    *module, kind, leaf = key.split('/')
    prefix = '.'.join(module)
    if kind == 'fc':
      state[f'fc.{"weight" if leaf == "kernel" else "bias"}'] = (
        value.T if value.ndim == 2 else value
      )
    elif kind == 'conv':
      state[f'{prefix}.conv.weight'] = np.transpose(value, (3, 2, 0, 1))  # HWIO -> OIHW
    else:
      state[f'{prefix}.bn.{leaf_names[leaf]}'] = value
      state[f'{prefix}.bn.num_batches_tracked'] = np.array(0, np.int64)
  return state


def _assert_same(a, b):
  fa, fb = inception_weights.flatten_params(a), inception_weights.flatten_params(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_output_shapes_from_init():
  params = inception.init_params(jax.random.key(0))
  assert {k: tuple(v.shape) for k, v in inception_weights.flatten_params(params).items()} == (
    inception_weights.param_shapes()
  )
  images = np.random.default_rng(0).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
  out = inception.make_feature_fn(params)(images)
  assert set(out) == {'features', 'logits'}
  assert out['features'].shape == (2, inception.FEATURE_DIM) == (2, 2048)
  assert out['logits'].shape == (2, inception.NUM_LOGITS) == (2, 1008)
  assert out['features'].dtype == np.float32
  assert np.all(np.isfinite(out['features'])) and np.all(np.isfinite(out['logits']))
  assert np.all(np.asarray(out['features']) >= 0)  # a mean of ReLU outputs
  assert not np.allclose(out['features'][0], out['features'][1])
  # Batch sharded over gen's 'data' mesh axis: the same numbers.
  mesh = setup_lib.make_mesh(jax.devices()[:1])
  sharded = inception.make_feature_fn(params, mesh=mesh)(images)
  np.testing.assert_allclose(sharded['features'], out['features'], rtol=1e-5, atol=1e-6)


def _numpy_inception_score(logits, splits):
  """IS from probabilities in float64, written independently of gen's: exp(mean_x KL(p(y|x) ||
  p(y))) per consecutive split, with log p(y|x) as a log-softmax (no log of an underflowed p)."""
  logits = np.asarray(logits, np.float64)
  z = logits - logits.max(1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(1, keepdims=True))
  scores = []
  for part in np.array_split(logp, splits):
    py = np.exp(part).mean(0, keepdims=True)
    scores.append(np.exp(np.mean(np.sum(np.exp(part) * (part - np.log(py)), 1))))
  return np.mean(scores)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_inception_score_is_the_published_softmax_of_pool3_times_w(tmp_path):
  """Converted random weights with a non-zero fc bias and random batch-norm statistics: gen's
  'logits' are pool3 . W (no bias), its IS of them equals a NumPy IS, and the biased variant
  scores differently."""
  rng = np.random.default_rng(0)
  flat = {
    k: np.asarray(v)
    for k, v in inception_weights.flatten_params(inception.init_params(jax.random.key(0))).items()
  }
  for k in flat:
    if k.endswith('bn/mean') or k.endswith('bn/bias'):
      flat[k] = rng.normal(0.0, 0.1, flat[k].shape).astype(np.float32)
    elif k.endswith('bn/var') or k.endswith('bn/scale'):
      flat[k] = rng.uniform(0.5, 2.0, flat[k].shape).astype(np.float32)
  flat['fc/bias'] = rng.normal(0.0, 3.0, flat['fc/bias'].shape).astype(np.float32)
  images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
  features = jax.jit(inception.features)
  # pool3 does not depend on fc. Random images share most of their pool3 (its mean m): take W
  # orthogonal to m and scaled so that the logits vary by O(3) between images, where softmax
  # is neither one-hot nor uniform and the bias visibly moves the score.
  state = _torch_state_dict(inception_weights.unflatten_params(flat))
  pool3 = np.asarray(features(inception_weights.convert_state_dict(state), images)['features'])
  pool3 = pool3.astype(np.float64)
  m = pool3.mean(0)
  w = rng.normal(0.0, 1.0, state['fc.weight'].shape)
  w -= np.outer(w @ m, m) / (m @ m)
  w *= 3.0 / (pool3 @ w.T).std()
  state['fc.weight'] = w.astype(np.float32)
  out = features(inception_weights.convert_state_dict(state), images)
  pool3 = np.asarray(out['features'], np.float64)
  w, b = state['fc.weight'].astype(np.float64), state['fc.bias'].astype(np.float64)
  unbiased = pool3 @ w.T
  # float32 accumulation: the error scales with sum_i |pool3_i W_ki|, not with the logit.
  scale = (np.abs(pool3) @ np.abs(w).T).max()
  np.testing.assert_allclose(out['logits'], unbiased, rtol=0, atol=1e-5 * scale)
  gen_is, _ = sample_quality.inception_score(out['logits'], splits=2)
  assert abs(gen_is - _numpy_inception_score(out['logits'], 2)) <= 1e-9 * gen_is
  published = _numpy_inception_score(unbiased, splits=2)
  biased = _numpy_inception_score(unbiased + b, splits=2)
  assert abs(gen_is - published) <= 1e-4 * published, (gen_is, published)
  assert abs(biased - published) > 0.05 * published, (biased, published)  # the bias matters


@pytest.mark.timeout(60)
def test_converter_maps_pytorch_fid_names_and_layouts(tmp_path):
  convert = inception_weights
  params = _random_params()
  state = _torch_state_dict(params)
  # Anchors from pytorch-fid's file, independent of our own tree.
  assert state['Conv2d_1a_3x3.conv.weight'].shape == (32, 3, 3, 3)
  assert state['Mixed_6b.branch7x7_2.conv.weight'].shape == (128, 128, 1, 7)
  assert state['Mixed_7c.branch_pool.conv.weight'].shape == (192, 2048, 1, 1)
  assert state['Mixed_7c.branch3x3dbl_3b.conv.weight'].shape == (384, 384, 3, 1)
  assert state['Mixed_5b.branch_pool.bn.running_var'].shape == (32,)
  assert state['fc.weight'].shape == (1008, 2048) and state['fc.bias'].shape == (1008,)
  src = tmp_path / 'state_dict.npz'
  np.savez(src, **state)
  out = tmp_path / 'w.npz'
  checksum = convert.convert_file(str(src), str(out))
  assert checksum == inception_weights.weights_checksum(out)
  _assert_same(inception_weights.load_params(out), params)
  # An entry too many or too few is refused.
  with pytest.raises(ValueError, match='unexpected state dict entry'):
    convert.convert_state_dict({**state, 'Mixed_5b.branch1x1.conv.bias': np.zeros(64)})
  missing = {k: v for k, v in state.items() if k != 'Mixed_6e.branch_pool.bn.running_mean'}
  with pytest.raises(ConfigError, match='Mixed_6e/branch_pool/bn/mean'):
    convert.convert_state_dict(missing)
  # The auxiliary head of a torchvision-style dict is dropped.
  aux = {**state, 'AuxLogits.fc.weight': np.zeros((1008, 768), np.float32)}
  _assert_same(convert.convert_state_dict(aux), params)


@pytest.mark.timeout(60)
def test_save_load_round_trip_and_checksum(tmp_path):
  params = _random_params(1)
  a, b = tmp_path / 'a.npz', tmp_path / 'sub' / 'b.npz'
  sum_a = inception_weights.save_params(params, a)
  sum_b = inception_weights.save_params(params, b)
  assert (
    sum_a == sum_b == inception_weights.weights_checksum(a) == inception_weights.weights_checksum(b)
  )
  assert sum_a == hashlib.sha256(a.read_bytes()).hexdigest()
  assert sorted(os.listdir(tmp_path)) == ['a.npz', 'sub']  # no temporary file left behind
  _assert_same(inception_weights.load_params(a), params)
  with np.load(a) as data:
    assert 'Mixed_5b/branch1x1/conv/kernel' in data.files
    assert data['Mixed_5b/branch1x1/conv/kernel'].shape == (1, 1, 192, 64)
  changed = inception_weights.flatten_params(params)
  changed['fc/bias'] = changed['fc/bias'].copy()
  changed['fc/bias'][0] += 1.0
  assert inception_weights.save_params(inception_weights.unflatten_params(changed), b) != sum_a
  # A file of the wrong network is refused with the converter named.
  np.savez(tmp_path / 'bad.npz', **{'fc/kernel': np.zeros((2048, 1000), np.float32)})
  with pytest.raises(ConfigError, match='gen prepare --inception'):
    inception_weights.load_params(tmp_path / 'bad.npz')


@pytest.mark.timeout(30)
def test_missing_weights_raise_config_error(tmp_path, monkeypatch):
  monkeypatch.delenv(inception_weights.WEIGHTS_ENV, raising=False)
  expected = str(tmp_path / 'gen_inception' / 'fid_inception_v3.npz')
  assert inception_weights.default_weights_path(tmp_path) == expected
  for call in (
    lambda: inception_weights.weights_path(tmp_path),
    lambda: inception_weights.load_params(expected),
  ):
    with pytest.raises(ConfigError) as info:
      call()
    message = str(info.value)
    assert 'FID is unavailable' in message
    assert expected in message
    assert f'gen prepare --inception --out={expected}' in message
    assert 'pt_inception-2015-12-05-6726825d.pth' in message
  # The environment variable wins over data_dir.
  override = tmp_path / 'elsewhere.npz'
  monkeypatch.setenv(inception_weights.WEIGHTS_ENV, str(override))
  with pytest.raises(ConfigError, match='elsewhere.npz'):
    inception_weights.weights_path(tmp_path)
  override.write_bytes(b'x')
  assert inception_weights.weights_path(tmp_path) == str(override)


def _bilinear_half_pixel(a, out_size, axis):
  """PyTorch's F.interpolate(bilinear, align_corners=False) along one axis, in NumPy."""
  n = a.shape[axis]
  src = np.maximum((np.arange(out_size) + 0.5) * n / out_size - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(int), n - 1)
  i1 = np.minimum(i0 + 1, n - 1)
  w = (src - i0).reshape([-1 if d == axis else 1 for d in range(a.ndim)])
  return np.take(a, i0, axis) * (1 - w) + np.take(a, i1, axis) * w


@pytest.mark.timeout(60)
def test_preprocess_quantises_resizes_and_scales():
  rng = np.random.default_rng(0)
  # At 299x299 nothing is resampled: the output is exactly the uint8 levels of the PNG that
  # gen would save (gen.utils.images), scaled to [-1, 1]; also at exact half levels.
  x = rng.uniform(-1.2, 1.2, (2, 299, 299, 3)).astype(np.float32)
  x[1] = (rng.integers(0, 255, (299, 299, 3)) + 0.5) / 127.5 - 1
  x[0, 0, 0] = [-1.0, 1.0, 0.0]
  x[0, 0, 1] = [np.nan, 5.0, -5.0]
  y = np.asarray(inception.preprocess(x))
  assert y.shape == (2, 299, 299, 3) and y.dtype == np.float32
  levels = (y.astype(np.float64) + 1) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  np.testing.assert_array_equal(np.round(levels), _to_uint8(x))
  np.testing.assert_array_equal(np.round(levels[0, 0, :2]), [[0, 255, 128], [128, 255, 0]])

  # Grey, resized: replicated to 3 equal channels, bilinear with half-pixel centres.
  g = rng.uniform(-1, 1, (2, 8, 12, 1)).astype(np.float32)
  y = np.asarray(inception.preprocess(g))
  assert y.shape == (2, 299, 299, 3)
  assert y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
  np.testing.assert_array_equal(y[..., 0], y[..., 1])
  np.testing.assert_array_equal(y[..., 0], y[..., 2])
  q = _to_uint8(g[..., 0]).astype(np.float64)
  ref = _bilinear_half_pixel(_bilinear_half_pixel(q, 299, 1), 299, 2) / 127.5 - 1
  np.testing.assert_allclose(y[..., 0], ref, atol=1e-5)

  # Downsampling (no antialias) follows the same formula (float32 sampling positions: ~1e-5).
  big = rng.uniform(-1, 1, (1, 400, 350, 3)).astype(np.float32)
  y = np.asarray(inception.preprocess(big))
  q = _to_uint8(big).astype(np.float64)
  ref = _bilinear_half_pixel(_bilinear_half_pixel(q, 299, 1), 299, 2) / 127.5 - 1
  np.testing.assert_allclose(y, ref, atol=1e-4)

  with pytest.raises(ValueError, match='C in'):
    inception.preprocess(np.zeros((1, 8, 8, 2), np.float32))


def test_preprocessing_recipe_is_recordable():
  recipe = json.loads(json.dumps(inception.PREPROCESSING))
  assert {'quantise', 'resize', 'scale'} <= set(recipe)
  assert 'uint8' in recipe['quantise'] and '299x299 bilinear' in recipe['resize']
