"""Read a PyTorch `.pth` state dict into NumPy arrays without torch, refusing any code.

A `.pth` written by `torch.save` is a pickle whose tensors point at raw storages by
"persistent id". Two layouts exist:

- the zip layout (torch >= 1.6): `<name>/data.pkl` plus one file `<name>/data/<key>` of raw
  little-endian bytes per storage;
- the legacy layout: five pickles in a row (magic number, protocol version, system info, the
  object, the list of storage keys), then each storage as an int64 element count and its bytes.

A pickle can call any importable function while it loads, so a hostile file could run code with
`pickle.load`. `_Unpickler.find_class` admits only what a state dict needs:
`torch._utils._rebuild_tensor_v2` (rebuilt here from NumPy as a strided view of the storage),
`collections.OrderedDict`, and the typed storage names (`torch.FloatStorage`, ...), which only
name a dtype. Every other global raises `UnsafePickleError` naming it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

__all__ = ['UnsafePickleError', 'read_state_dict']

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
  'DoubleStorage': np.float64,
  'FloatStorage': np.float32,
  'HalfStorage': np.float16,
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle asks for a global that a state dict does not need."""


class _StorageType:
  """What a typed storage name (`torch.FloatStorage`) unpickles to: only its dtype."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_DTYPES[name])


class _Storage:
  """A storage whose bytes may arrive after the pickle (the legacy layout)."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype, self.numel = dtype, numel
    self.array: np.ndarray | None = None


class _Tensor:
  """A tensor waiting for its storage's bytes: materialised by `_resolve`."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def numpy(self) -> np.ndarray:
    data = self.storage.array
    if data is None:
      raise pickle.UnpicklingError('a tensor refers to a storage the file does not contain')
    if not self.size:
      return data[self.offset].copy()
    end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
    if min(self.size) > 0 and (self.offset < 0 or end > data.size):
      raise pickle.UnpicklingError('a tensor reaches past the end of its storage')
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
      data[self.offset :],
      shape=self.size,
      strides=tuple(s * itemsize for s in self.stride),
      writeable=False,
    )
    return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *_):
  del requires_grad, hooks
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError('_rebuild_tensor_v2 got something other than a storage')
  return _Tensor(storage, int(storage_offset), size, stride)


class _Unpickler(pickle.Unpickler):
  def __init__(self, file, storages: dict[str, _Storage], read_bytes=None):
    super().__init__(file)
    self._storages = storages
    self._read_bytes = read_bytes  # key -> bytes (zip layout); None: the bytes come later

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return _rebuild_tensor_v2
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if module == 'torch' and name in _DTYPES:
      return _StorageType(name)
    raise UnsafePickleError(f'refusing the pickle global {module}.{name}: not part of a state dict')

  def persistent_load(self, pid: Any) -> _Storage:
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
      raise UnsafePickleError(f'refusing the persistent id {str(pid)[:80]}: not a storage')
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f'storage {key} has no known type')
    if key not in self._storages:
      storage = _Storage(storage_type.dtype, numel)
      if self._read_bytes is not None:
        raw = self._read_bytes(key)
        if len(raw) != numel * storage.dtype.itemsize:
          raise pickle.UnpicklingError(f'storage {key} holds {len(raw)} bytes, not {numel} values')
        storage.array = np.frombuffer(raw, storage.dtype.newbyteorder('<'))
      self._storages[key] = storage
    return self._storages[key]


def _resolve(obj: Any, source: str) -> dict[str, np.ndarray]:
  if not isinstance(obj, dict):
    raise ValueError(f'{source} holds a {type(obj).__name__}, not a state dict')
  out = {}
  for name, value in obj.items():
    if not isinstance(value, _Tensor):
      raise ValueError(f'{source}: entry {name!r} is a {type(value).__name__}, not a tensor')
    out[str(name)] = value.numpy()
  return out


def _read_zip(path: str) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pickles) != 1:
      raise ValueError(f'{path}: a torch zip file has one data.pkl; found {len(pickles)}')
    prefix = pickles[0][: -len('data.pkl')]

    def read_bytes(key: str) -> bytes:
      try:
        return archive.read(f'{prefix}data/{key}')
      except KeyError:
        raise pickle.UnpicklingError(f'{path}: storage {key} is missing') from None

    unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), {}, read_bytes)
    return _resolve(unpickler.load(), path)


def _read_legacy(path: str) -> dict[str, np.ndarray]:
  with open(path, 'rb') as f:
    header = _Unpickler(f, {})
    if header.load() != LEGACY_MAGIC:
      raise ValueError(f'{path} is neither a torch zip file nor a legacy torch file')
    header.load()  # protocol version
    header.load()  # system info (a dict of plain values)
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(f, storages).load()
    keys = _Unpickler(f, {}).load()
    for key in keys:
      storage = storages.get(str(key))
      if storage is None:
        raise pickle.UnpicklingError(f'{path}: storage {key} is listed but never used')
      (numel,) = np.frombuffer(f.read(8), '<i8')
      raw = f.read(int(numel) * storage.dtype.itemsize)
      if numel != storage.numel or len(raw) != storage.numel * storage.dtype.itemsize:
        raise pickle.UnpicklingError(f'{path}: storage {key} is truncated')
      storage.array = np.frombuffer(raw, storage.dtype.newbyteorder('<'))
  return _resolve(obj, path)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The tensors of the state dict in `path` (either layout) as NumPy arrays, name -> array.

  Raises:
    UnsafePickleError: the pickle names a global outside the allowed set (nothing is called).
    ValueError, pickle.UnpicklingError: not a state dict of tensors, or a truncated file.
  """
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    return _read_zip(path)
  return _read_legacy(path)
