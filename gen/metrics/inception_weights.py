"""The FID Inception weights: pytorch-fid's file, fetched, checked and converted without torch.

`prepare(source, out)` is what `gen prepare --inception` runs: it copies or downloads `source`
(a path, a file:// or http(s):// address; default pytorch-fid's release file), checks its sha256
against the prefix in its name (torch.hub's naming: `pt_inception-2015-12-05-6726825d.pth`) or
a given one, reads it with `gen.utils.pth` (a restricted unpickler: no torch, no code run),
maps the names and layouts to gen's InceptionV3 and writes the flat `.npz` that
`inception.weights_path` finds.

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

import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping

import numpy as np

from gen.errors import ConfigError
from gen.metrics import inception
from gen.utils import pth

PYTORCH_FID_URL = inception.PYTORCH_FID_URL


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
  inception.check_flat_params(flat, source)
  return inception.unflatten_params(flat)


def expected_hash(name: str) -> str | None:
  """torch.hub's convention: `<name>-<first hex digits of the sha256>.pth`; None without one."""
  match = re.search(r'-([0-9a-f]{8,64})\.pth$', os.path.basename(name))
  return match.group(1) if match else None


def check_hash(path: str, prefix: str | None) -> None:
  """Raises WeightsError unless `path`'s sha256 starts with `prefix` (no check for None)."""
  if prefix is None:
    return
  actual = inception.weights_checksum(path)  # the sha256 of any file
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
  return inception.save_params(params, out)


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
  out = os.path.abspath(os.path.expanduser(out or inception.default_weights_path(data_dir)))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(out), prefix='.download_') as tmp:
    local = fetch(source, tmp)
    return out, convert_file(local, out, sha256 or expected_hash(local))
