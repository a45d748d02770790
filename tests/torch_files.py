"""torch.save's two file layouts, written without torch (for gen.utils.pth's tests).

Stand-in `torch` modules exist only while pickling, so the pickle names the same globals a real
torch file names; torch itself is never imported."""

import collections
import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np

from gen.utils import pth


class _FakeStorage:
  def __init__(self, key, array):
    self.key, self.array = key, array


@contextlib.contextmanager
def _fake_torch():
  """`torch._utils._rebuild_tensor_v2` and `torch.FloatStorage`/`LongStorage` for the pickler,
  in sys.modules only inside the `with` (pickle looks globals up there)."""
  torch = types.ModuleType('torch')
  utils = types.ModuleType('torch._utils')

  def _rebuild_tensor_v2(*args):
    raise AssertionError('only pickled, never called')

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = (
    'torch._utils',
    '_rebuild_tensor_v2',
  )
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils
  for name in ('FloatStorage', 'LongStorage'):
    setattr(torch, name, type(name, (), {'__module__': 'torch'}))
  saved = {k: sys.modules.get(k) for k in ('torch', 'torch._utils')}
  sys.modules.update({'torch': torch, 'torch._utils': utils})
  try:
    yield torch
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


class _Tensor:
  """Pickles as torch pickles a tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, torch, storage, offset, size, stride):
    self.torch, self.storage, self.args = torch, storage, (offset, size, stride)

  def __reduce__(self):
    offset, size, stride = self.args
    rebuild = self.torch._utils._rebuild_tensor_v2
    return rebuild, (self.storage, offset, size, stride, False, collections.OrderedDict())


def _tensors(torch, arrays):
  """name -> _Tensor over its own storage (C order); one transposed view shares a storage."""
  out, storages = {}, {}
  for i, (name, array) in enumerate(arrays.items()):
    storage = _FakeStorage(str(i), np.ascontiguousarray(array))
    storages[storage.key] = storage
    strides = tuple(s // array.itemsize for s in storage.array.strides)
    out[name] = _Tensor(torch, storage, 0, array.shape, strides)
  first = out[next(iter(out))]
  if len(first.args[1]) == 2:  # a transposed view of the first tensor, as torch would store it
    (rows, cols), (s0, s1) = first.args[1], first.args[2]
    out['view.T'] = _Tensor(torch, first.storage, 0, (cols, rows), (s1, s0))
  return out, storages


def _storage_type(torch, array):
  return torch.LongStorage if array.dtype == np.int64 else torch.FloatStorage


class _Pickler(pickle.Pickler):
  def __init__(self, file, torch, legacy):
    super().__init__(file, protocol=2)
    self.torch, self.legacy = torch, legacy

  def persistent_id(self, obj):
    if not isinstance(obj, _FakeStorage):
      return None
    kind = _storage_type(self.torch, obj.array)
    if self.legacy:
      return ('storage', kind, obj.key, 'cpu', obj.array.size, None)
    return ('storage', kind, obj.key, 'cpu', obj.array.size)


def write_pth(path, arrays, legacy=False, payload=None):
  """Writes `arrays` as torch.save would (zip layout, or the legacy one); `payload` replaces the
  pickled object (for hostile files)."""
  with _fake_torch() as torch:
    state, storages = _tensors(torch, arrays)
    obj = collections.OrderedDict(state) if payload is None else payload
    buffer = io.BytesIO()
    _Pickler(buffer, torch, legacy).dump(obj)
  if legacy:
    with open(path, 'wb') as f:
      for header in (pth.LEGACY_MAGIC, 1001, {'little_endian': True}):
        pickle.dump(header, f, protocol=2)
      f.write(buffer.getvalue())
      keys = sorted(storages)
      pickle.dump(keys, f, protocol=2)
      for key in keys:
        data = storages[key].array
        f.write(
          np.int64(data.size).astype('<i8').tobytes()
          + data.astype(data.dtype.newbyteorder('<')).tobytes()
        )
  else:
    with zipfile.ZipFile(path, 'w') as archive:
      archive.writestr('archive/data.pkl', buffer.getvalue())
      archive.writestr('archive/version', '3\n')
      for key, storage in storages.items():
        archive.writestr(f'archive/data/{key}', storage.array.tobytes())
