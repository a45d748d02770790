"""A digits classifier that gen trains itself: the feature network of FD-digits and digits IS.

FID needs InceptionV3 weights that this machine cannot download; the 8x8 digits need no
ImageNet network anyway. gen trains a small CNN on the digits train split (1,500 images,
seed 0, under a minute on a 2-core CPU) and caches it in the data directory:

  conv 3x3 32 -> ReLU -> conv 3x3 64 -> ReLU -> 2x2 average pool -> dense 128 -> ReLU  (features)
  -> dense 10 (logits)

Its 128 penultimate activations play InceptionV3's pool3 (FD-digits, KID, precision/recall,
density/coverage, memorisation) and its logits play Inception's logits (the digits Inception
Score). Training draws one-pixel shifts and slight Gaussian noise, so that the features of
imperfect samples stay meaningful. The cache is `<data_dir>/gen_digits_classifier/`, or
`$GEN_CACHE_DIR/gen_digits_classifier/` where that variable is set (one cache for every data
folder: the classifier is trained on the embedded digits, the same everywhere), with
`params.npz` and `info.json` (recipe, test accuracy, sha256 of the parameters); it is rebuilt
when missing or when its recipe differs from `RECIPE`. Test accuracy must reach
`MIN_TEST_ACCURACY`, or building fails (nothing is cached).

Images enter in gen's data space [-1, 1] and are quantised like a saved PNG (uint8) first, for
samples and data alike (`preprocess`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from gen.data import digits
from gen.metrics.features import jit

RECIPE = {
  'network': 'digits_cnn_v1',  # conv32-conv64-avgpool-dense128-dense10
  'data': 'digits train split (1,500 images)',
  'steps': 2000,
  'batch_size': 128,
  'optimizer': 'adamw lr 2e-3 cosine, weight decay 1e-4',
  'augmentation': 'random shift of up to 1 pixel, Gaussian noise std 0.05',
  'seed': 0,
}
MIN_TEST_ACCURACY = 0.97
FEATURE_DIM = 128
IS_LOGITS = "softmax of the digits classifier's 10 logits (with its bias)"
PREPROCESSING = {'quantise': 'uint8 (round((x + 1) / 2 * 255))', 'resize': 'none (8x8x1)'}
CACHE_DIR = 'gen_digits_classifier'


class DigitsCNN(nn.Module):
  """The classifier; returns {'features': [N, 128], 'logits': [N, 10]}."""

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    x = nn.relu(nn.Conv(32, (3, 3), name='conv1')(x))
    x = nn.relu(nn.Conv(64, (3, 3), name='conv2')(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(FEATURE_DIM, name='dense1')(x))
    return {'features': features, 'logits': nn.Dense(10, name='logits')(features)}


def preprocess(images: jax.Array) -> jax.Array:
  """Data space [-1, 1] -> the 256 levels of a saved PNG, back in [-1, 1] (float32)."""
  levels = jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255)
  return levels / 127.5 - 1.0


def apply(params, images: jax.Array) -> dict[str, jax.Array]:
  """Features and logits of images [N, 8, 8, 1] in data space (pure; jit it)."""
  return DigitsCNN().apply({'params': params}, preprocess(images))


def _augment(key: jax.Array, x: jax.Array) -> jax.Array:
  """A random shift of up to one pixel (edge pixels are background: -1) plus slight noise."""
  k_shift, k_noise = jax.random.split(key)
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
  offsets = jax.random.randint(k_shift, (x.shape[0], 2), 0, 3)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), x.shape[1:])
  shifted = jax.vmap(crop)(padded, offsets)
  return shifted + 0.05 * jax.random.normal(k_noise, x.shape)


def train_classifier(recipe: dict = RECIPE) -> tuple[dict, float]:
  """Trains the CNN on the digits train split; returns (params, test accuracy)."""
  images, labels = digits.digits_arrays()
  n = digits.NUM_TRAIN
  x_train, y_train = jnp.asarray(images[:n]), jnp.asarray(labels[:n])
  model = DigitsCNN()
  key = jax.random.key(recipe['seed'])
  params = model.init(key, x_train[:1])['params']
  steps, batch = recipe['steps'], recipe['batch_size']
  tx = optax.adamw(optax.cosine_decay_schedule(2e-3, steps), weight_decay=1e-4)
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    logits = model.apply({'params': p}, preprocess(x))['logits']
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jit
  def one_step(p, o, step):
    k_idx, k_aug = jax.random.split(jax.random.fold_in(key, step))
    idx = jax.random.choice(k_idx, n, (batch,), replace=False)
    grads = jax.grad(loss_fn)(p, _augment(k_aug, x_train[idx]), y_train[idx])
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), o

  # A Python loop over the jitted step: XLA's CPU backend ran this step ~50x slower inside a
  # lax.scan (measured: 0.5 s vs 9 ms per step), and the classifier trains once per data dir.
  for step in range(steps):
    params, opt_state = one_step(params, opt_state, step)
  logits = jit(apply)(params, jnp.asarray(images[n:]))['logits']
  accuracy = float(np.mean(np.asarray(jnp.argmax(logits, -1)) == labels[n:]))
  return jax.device_get(params), accuracy


def _flat(params: dict) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {'/'.join(k.key for k in path): np.asarray(v) for path, v in leaves}


def _unflat(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = jnp.asarray(value)
  return tree


def params_checksum(params: dict) -> str:
  """sha256 over the parameters in name order (what reference statistics record)."""
  h = hashlib.sha256()
  for name, value in sorted(_flat(params).items()):
    h.update(name.encode())
    h.update(np.ascontiguousarray(value, np.float32).tobytes())
  return h.hexdigest()


def _read_cache(params_path: str, info_path: str) -> tuple[dict, dict] | None:
  """The cached (params, info) when both files exist, hold RECIPE and match their checksum."""
  if not (os.path.exists(params_path) and os.path.exists(info_path)):
    return None
  with open(info_path) as f:
    info = json.load(f)
  if info.get('recipe') != RECIPE:
    logging.info('the cached digits classifier has another recipe: retraining it')
    return None
  with np.load(params_path) as z:
    params = _unflat(dict(z))
  if params_checksum(params) != info['sha256']:
    logging.warning('%s does not match its checksum: retraining the classifier', params_path)
    return None
  return params, info


@contextlib.contextmanager
def _exclusive(folder: str):
  """Holds an exclusive lock on `folder`/.lock: one process trains the classifier while the
  others wait for it and then read its cache (instead of all of them training it at once)."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, '.lock'), 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def load_or_train(data_dir: str) -> tuple[dict, dict]:
  """The cached classifier of `data_dir` (trained and cached first when missing or stale).

  Processes that share the cache folder train it once: the first holds a file lock while it
  trains, and the others wait for the lock and read what it cached.

  Returns:
    (params, info): info holds the recipe, test_accuracy and sha256.
  """
  folder = os.path.join(os.environ.get('GEN_CACHE_DIR') or data_dir, CACHE_DIR)
  params_path, info_path = os.path.join(folder, 'params.npz'), os.path.join(folder, 'info.json')
  cached = _read_cache(params_path, info_path)  # the common case takes no lock
  if cached is not None:
    return cached
  with _exclusive(folder):
    cached = _read_cache(params_path, info_path)  # trained by another process meanwhile
    if cached is not None:
      return cached
    logging.info('training the digits classifier (cached in %s)', folder)
    params, accuracy = train_classifier()
    if accuracy < MIN_TEST_ACCURACY:
      raise RuntimeError(
        f'the digits classifier reached {accuracy:.3f} test accuracy, below {MIN_TEST_ACCURACY}'
      )
    info = {'recipe': RECIPE, 'test_accuracy': accuracy, 'sha256': params_checksum(params)}
    buffer = io.BytesIO()
    np.savez(buffer, **_flat(params))
    for path, payload in (
      (params_path, buffer.getvalue()),
      (info_path, json.dumps(info, indent=2)),
    ):
      tmp = f'{path}.{os.getpid()}.tmp'  # a reader without the lock sees whole files only
      with open(tmp, 'wb' if isinstance(payload, bytes) else 'w') as f:
        f.write(payload)
      os.replace(tmp, path)
    logging.info('digits classifier: test accuracy %.4f', accuracy)
  return _unflat(_flat(params)), info
