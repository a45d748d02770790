"""Converts pytorch-fid's FID Inception weights into the flat .npz that gen's FID reads.

gen never downloads anything. To make FID available, once, on a machine with network access:

  # 1. pytorch-fid's port of TF's inception-2015-12-05 graph (95 MB; sha256 starts 6726825d):
  wget https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

  # 2. torch is needed by this script only, to read the .pth (the CPU wheel is enough):
  pip install torch

  # 3. convert; the file goes where gen looks for it (gen.metrics.inception.weights_path):
  #    $GEN_INCEPTION_WEIGHTS if set, else <data_dir>/gen_inception/fid_inception_v3.npz
  #    (data_dir: --data_dir, else $TFDS_DATA_DIR or ~/tensorflow_datasets)
  python tools/convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth
  python tools/convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth --data_dir=/data
  python tools/convert_fid_inception.py pt_inception-2015-12-05-6726825d.pth --out=/x/w.npz

The script prints the sha256 of the written file (`weights_checksum`), which evaluation
records next to FID numbers. The input may also be the state dict already saved with
`numpy.savez(path, **{k: v.numpy() for k, v in state_dict.items()})` (a `.npz`), which needs
no torch; tests use that.

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
name of gen's InceptionV3 must be produced exactly once with the right shape, or the script
fails naming the differences.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from collections.abc import Mapping

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BN_LEAVES = {
  'weight': 'scale',
  'bias': 'bias',
  'running_mean': 'mean',
  'running_var': 'var',
}
_DROPPED_LEAVES = ('num_batches_tracked',)
_DROPPED_PREFIXES = ('AuxLogits.',)


def _inception():
  """gen.metrics.inception, importable from a checkout that is not installed."""
  try:
    from gen.metrics import inception
  except ImportError:
    sys.path.insert(0, REPO)
    from gen.metrics import inception
  return inception


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A PyTorch state dict as NumPy arrays, from a `.pth` (needs torch) or an `.npz`."""
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as data:
      return {k: np.asarray(data[k]) for k in data.files}
  try:
    import torch
  except ImportError:
    sys.exit(
      f'reading {path} needs PyTorch: `pip install torch` (only this script uses it), or '
      'pass the state dict saved with numpy.savez as a .npz'
    )
  state = torch.load(path, map_location='cpu', weights_only=True)
  if not isinstance(state, Mapping):
    raise ValueError(f'{path} holds a {type(state).__name__}, not a state dict')
  return {
    k: v.detach().cpu().numpy() if hasattr(v, 'detach') else np.asarray(v) for k, v in state.items()
  }


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
    raise ValueError(f'unexpected state dict entry {name!r}')
  path = module.replace('.', '/')
  if module.endswith('.conv') and leaf == 'weight':
    if value.ndim != 4:
      raise ValueError(f'{name}: a conv weight must be 4-D [O, I, kh, kw]; got {value.shape}')
    return f'{path}/kernel', np.ascontiguousarray(value.transpose(2, 3, 1, 0))
  if module.endswith('.bn') and leaf in _BN_LEAVES:
    return f'{path}/{_BN_LEAVES[leaf]}', value
  raise ValueError(f'unexpected state dict entry {name!r} with shape {value.shape}')


def convert_state_dict(state: Mapping[str, np.ndarray], source: str = 'the state dict') -> dict:
  """pytorch-fid state dict -> gen's nested InceptionV3 params, checked name by name."""
  inception = _inception()
  flat = {}
  for name, value in state.items():
    converted = convert_name(name, value)
    if converted is None:
      continue
    key, array = converted
    if key in flat:
      raise ValueError(f'{source}: two entries map to {key}')
    flat[key] = array
  inception.check_flat_params(flat, source)
  return inception.unflatten_params(flat)


def _check_hub_hash(path: str) -> None:
  """torch.hub names files <name>-<first 8 hex digits of sha256>.pth: check a download."""
  match = re.search(r'-([0-9a-f]{8,})\.pth$', os.path.basename(path))
  if not match:
    return
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  if not digest.hexdigest().startswith(match.group(1)):
    sys.exit(
      f'{path}: sha256 {digest.hexdigest()} does not start with {match.group(1)} as its name '
      'says: the download is corrupt or a different file'
    )


def convert_file(src: str, out: str) -> str:
  """Converts `src` (.pth or .npz state dict) and writes `out`; returns out's sha256."""
  _check_hub_hash(src)
  params = convert_state_dict(read_state_dict(src), src)
  return _inception().save_params(params, out)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('src', help='pt_inception-2015-12-05-6726825d.pth, or an .npz state dict')
  parser.add_argument('--out', default=None, help='output .npz (default: where gen looks)')
  parser.add_argument(
    '--data_dir', default=None, help='data folder for the default output (default: gen default)'
  )
  args = parser.parse_args(argv)
  inception = _inception()
  out = args.out or inception.default_weights_path(args.data_dir)
  checksum = convert_file(args.src, out)
  n = sum(int(np.prod(s)) for s in inception.param_shapes().values())
  print(f'wrote {out}: {len(inception.param_shapes())} arrays, {n:,} float32 values')
  print(f'sha256 {checksum}')


if __name__ == '__main__':
  main()
