"""The FID Inception weights: gen's flat `.npz` file, and pytorch-fid's file converted into it.

The file: `save_params` writes `gen.metrics.inception.InceptionV3`'s parameters as one flat,
deterministic `.npz` (names as in `flatten_params`, checked against `param_shapes` by
`check_flat_params`), `load_params` reads it back, `weights_path` finds it
(`<data_dir>/gen_inception/fid_inception_v3.npz` or $GEN_INCEPTION_WEIGHTS; evaluation
downloads nothing) and `weights_checksum` identifies it.

`prepare(source, out)` is what `gen prepare --inception` runs: it copies or downloads `source`
(a path, a file:// or http(s):// address; default pytorch-fid's release file), checks its sha256
against the prefix in its name (torch.hub's naming: `pt_inception-2015-12-05-6726825d.pth`) or
a given one, reads it with `gen.utils.pth` (a restricted unpickler: no torch, no code run),
maps the names and layouts to gen's InceptionV3 and writes the flat `.npz` that
`weights_path` finds.

The mapping (pytorch-fid / torchvision names -> gen's flat names):

  <module>.conv.weight        [O, I, kh, kw]  -> <module>/conv/kernel  [kh, kw, I, O]
  <module>.bn.weight          [C]             -> <module>/bn/scale
  <module>.bn.bias            [C]             -> <module>/bn/bias
  <module>.bn.running_mean    [C]             -> <module>/bn/mean
  <module>.bn.running_var     [C]             -> <module>/bn/var
  <module>.bn.num_batches_tracked             -> dropped (training bookkeeping)
  fc.weight                   [1008, 2048]    -> fc/kernel  [2048, 1008]
  fc.bias                     [1008]          -> fc/bias
  AuxLogits.*                                 -> dropped (auxiliary head, unused at inference)

where <module> is e.g. `Conv2d_1a_3x3` or `Mixed_5b.branch5x5_1` ('.' becomes '/'). Every
name of gen's InceptionV3 must be produced exactly once with the right shape, or the conversion
fails naming the differences.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gen.errors import ConfigError
from gen.metrics import inception
from gen.metrics.inception import INPUT_SIZE, PYTORCH_FID_FILE, InceptionV3
from gen.utils import pth

PYTORCH_FID_URL = inception.PYTORCH_FID_URL
WEIGHTS_ENV = 'GEN_INCEPTION_WEIGHTS'
WEIGHTS_SUBDIR = 'gen_inception'
WEIGHTS_FILE = 'fid_inception_v3.npz'
PREPARE = 'gen prepare --inception'


class WeightsError(ConfigError):
  """The weights file could not be fetched, failed its hash, or is not the expected network."""


_BN_LEAVES = {
  'weight': 'scale',
  'bias': 'bias',
  'running_mean': 'mean',
  'running_var': 'var',
}
_DROPPED_LEAVES = ('num_batches_tracked',)
_DROPPED_PREFIXES = ('AuxLogits.',)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A PyTorch state dict as NumPy arrays, from a `.pth` (read without torch by
  `gen.utils.pth`, which refuses any pickle that would run code) or an `.npz`."""
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as data:
      return {k: np.asarray(data[k]) for k in data.files}
  return pth.read_state_dict(path)


def convert_name(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
  """One state-dict entry -> (gen flat name, float32 array), or None for a dropped entry."""
  if name.startswith(_DROPPED_PREFIXES) or name.rsplit('.', 1)[-1] in _DROPPED_LEAVES:
    return None
  value = np.asarray(value, np.float32)
  if name == 'fc.weight':
    return 'fc/kernel', np.ascontiguousarray(value.T)
  if name == 'fc.bias':
    return 'fc/bias', value
  module, sep, leaf = name.rpartition('.')
  if not sep:
    raise WeightsError(f'unexpected state dict entry {name!r}')
  path = module.replace('.', '/')
  if module.endswith('.conv') and leaf == 'weight':
    if value.ndim != 4:
      raise WeightsError(f'{name}: a conv weight must be 4-D [O, I, kh, kw]; got {value.shape}')
    return f'{path}/kernel', np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if module.endswith('.bn') and leaf in _BN_LEAVES:
    return f'{path}/{_BN_LEAVES[leaf]}', value
  raise WeightsError(f'unexpected state dict entry {name!r} with shape {value.shape}')


def convert_state_dict(state: Mapping[str, np.ndarray], source: str = 'the state dict') -> dict:
  """pytorch-fid state dict -> gen's nested InceptionV3 params, checked name by name."""
  flat = {}
  for name, value in state.items():
    converted = convert_name(name, value)
    if converted is None:
      continue
    key, array = converted
    if key in flat:
      raise WeightsError(f'{source}: two entries map to {key}')
    flat[key] = array
  check_flat_params(flat, source)
  return unflatten_params(flat)


def expected_hash(name: str) -> str | None:
  """torch.hub's convention: `<name>-<first hex digits of the sha256>.pth`; None without one."""
  match = re.search(r'-([0-9a-f]{8,64})\.pth$', os.path.basename(name))
  return match.group(1) if match else None


def check_hash(path: str, prefix: str | None) -> None:
  """Raises WeightsError unless `path`'s sha256 starts with `prefix` (no check for None)."""
  if prefix is None:
    return
  actual = weights_checksum(path)  # the sha256 of any file
  if not actual.startswith(prefix.lower()):
    raise WeightsError(
      f'{path}: sha256 {actual} does not start with {prefix}: the download is corrupt or a '
      'different file'
    )


def convert_file(src: str, out: str, sha256: str | None = None) -> str:
  """Converts `src` (.pth or .npz state dict) and writes `out`; returns out's sha256. The file
  must match `sha256` (a prefix or the digest), else the hash prefix in its name, if any."""
  check_hash(src, sha256 or expected_hash(src))
  try:
    state = read_state_dict(src)
  except Exception as e:  # noqa: BLE001  (any way an untrusted file fails to parse is its own)
    raise WeightsError(f'{src} is not a readable state dict: {type(e).__name__}: {e}') from None
  params = convert_state_dict(state, src)
  return save_params(params, out)


def fetch(source: str, folder: str) -> str:
  """Copies or downloads `source` (path, file:// or http(s)://) into `folder`; returns the path.
  Raises WeightsError with one line when it cannot."""
  parsed = urllib.parse.urlparse(source)
  name = os.path.basename(parsed.path) or 'weights.pth'
  dest = os.path.join(folder, name)
  try:
    if parsed.scheme in ('http', 'https', 'file'):
      with urllib.request.urlopen(source, timeout=60) as response, open(dest, 'wb') as f:
        shutil.copyfileobj(response, f)
    else:
      shutil.copyfile(os.path.expanduser(source), dest)
  except (OSError, ValueError) as e:
    raise WeightsError(f'could not fetch {source}: {e}') from None
  return dest


def prepare(
  source: str = PYTORCH_FID_URL,
  out: str | None = None,
  sha256: str | None = None,
  data_dir: str | None = None,
) -> tuple[str, str]:
  """Fetches, checks and converts `source`; writes `out` (default: where evaluation looks in
  `data_dir`). Returns (out, sha256 of out).

  The fetched file must match `sha256` (a prefix or the whole digest), else the prefix in its
  name; a source with neither is refused, so nothing unchecked becomes FID's network. Raises
  WeightsError (a ConfigError) with one line for every failure: unreachable source, hash
  mismatch, a pickle that is not a plain state dict, or the wrong network.
  """
  if not (sha256 or expected_hash(urllib.parse.urlparse(source).path)):
    raise WeightsError(
      f'{source}: nothing to check it against: its name has no torch.hub `-<sha256 prefix>.pth` '
      f"ending; give --sha256=HEX (pytorch-fid's {inception.PYTORCH_FID_FILE} starts "
      f'{expected_hash(inception.PYTORCH_FID_FILE)})'
    )
  out = os.path.abspath(os.path.expanduser(out or default_weights_path(data_dir)))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(out), prefix='.download_') as tmp:
    local = fetch(source, tmp)
    return out, convert_file(local, out, sha256 or expected_hash(local))


# ---------------------------------------------------------------------------------------------
# The weights file: one flat .npz, found locally


@functools.cache
def param_shapes() -> dict[str, tuple[int, ...]]:
  """Flat name -> shape of every parameter, e.g. 'Mixed_5b/branch1x1/conv/kernel'."""
  x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  tree = jax.eval_shape(InceptionV3().init, jax.random.key(0), x)['params']
  return {k: tuple(v.shape) for k, v in flatten_params(tree).items()}


def flatten_params(params: Mapping) -> dict[str, Any]:
  """Nested params -> {'Mixed_5b/branch1x1/conv/kernel': array, ...}.

  The naming: '<module>/<submodule>.../<leaf>', modules as in pytorch-fid's state dict
  (Conv2d_1a_3x3, Mixed_5b/branch5x5_1, ...), each BasicConv with 'conv/kernel' (HWIO) and
  'bn/scale', 'bn/bias', 'bn/mean', 'bn/var'; the classifier 'fc/kernel' [2048, 1008] and
  'fc/bias' [1008].
  """
  return traverse_util.flatten_dict(dict(params), sep='/')


def unflatten_params(flat: Mapping[str, Any]) -> dict:
  """The inverse of `flatten_params`."""
  return traverse_util.unflatten_dict(dict(flat), sep='/')


def default_weights_path(data_dir: str | os.PathLike | None = None) -> str:
  """Where the weights belong: $GEN_INCEPTION_WEIGHTS, else
  <data_dir>/gen_inception/fid_inception_v3.npz (data_dir None: gen's default data folder,
  $TFDS_DATA_DIR or ~/tensorflow_datasets). Does not check that the file exists."""
  env = os.environ.get(WEIGHTS_ENV)
  if env:
    return os.path.abspath(os.path.expanduser(env))
  if not data_dir:
    from gen.data.registry import default_data_dir

    data_dir = default_data_dir()
  return os.path.abspath(
    os.path.join(os.path.expanduser(os.fspath(data_dir)), WEIGHTS_SUBDIR, WEIGHTS_FILE)
  )


def _missing_weights(path: str) -> ConfigError:
  return ConfigError(
    f'FID is unavailable: the Inception weights file {path} does not exist (evaluation '
    f'downloads nothing). Create it once with `{PREPARE} --out={path}`, which fetches '
    f'{PYTORCH_FID_FILE}, checks its sha256 and converts it (no torch needed; '
    f'`--source=FILE` converts a copy already on this machine), or point ${WEIGHTS_ENV} at an '
    'existing file.'
  )


def weights_path(data_dir: str | os.PathLike | None = None) -> str:
  """`default_weights_path`, raising ConfigError (how to create it) when the file is missing."""
  path = default_weights_path(data_dir)
  if not os.path.isfile(path):
    raise _missing_weights(path)
  return path


def weights_checksum(path: str | os.PathLike) -> str:
  """sha256 (hex) of the weights file. `save_params` writes byte-identical files for identical
  parameters, so this identifies the weights an FID was computed with."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def check_flat_params(flat: Mapping[str, Any], source: str) -> None:
  """Raises ConfigError unless `flat` has exactly InceptionV3's names and shapes."""
  expected = param_shapes()
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  wrong = sorted(
    f'{k}: {tuple(np.shape(flat[k]))} (want {expected[k]})'
    for k in set(expected) & set(flat)
    if tuple(np.shape(flat[k])) != expected[k]
  )
  if missing or unexpected or wrong:
    show = lambda names: ', '.join(names[:5]) + (f' ... ({len(names)} in all)' if names else '')
    raise ConfigError(
      f'{source} does not hold the FID Inception weights: missing [{show(missing)}], '
      f'unexpected [{show(unexpected)}], wrong shapes [{show(wrong)}]; recreate it with '
      f'`{PREPARE}`'
    )


def save_params(params: Mapping, path: str | os.PathLike) -> str:
  """Writes `params` as a flat .npz (float32, names as in `flatten_params`); returns its sha256.

  The archive is written deterministically (sorted names, fixed timestamps, no compression) and
  atomically (temporary file, then rename), so equal parameters give equal checksums.
  """
  flat = {k: np.asarray(v, np.float32) for k, v in flatten_params(params).items()}
  check_flat_params(flat, 'the parameters to save')
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp_', suffix='.npz')
  try:
    with os.fdopen(fd, 'wb') as f, zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as zf:
      for name in sorted(flat):
        info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        with zf.open(info, 'w', force_zip64=True) as entry:
          np.lib.format.write_array(entry, np.ascontiguousarray(flat[name]), allow_pickle=False)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return weights_checksum(path)


def load_params(path: str | os.PathLike) -> dict:
  """Reads a flat .npz written by `save_params` (or the converter) into nested params.

  Raises ConfigError when the file is missing (saying how to create it) or does not hold
  exactly InceptionV3's parameters.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isfile(path):
    raise _missing_weights(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {k: np.asarray(data[k], np.float32) for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ConfigError(f'cannot read the Inception weights {path}: {e}') from e
  check_flat_params(flat, path)
  return unflatten_params(flat)
