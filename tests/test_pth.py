"""gen.utils.pth reads torch .pth state dicts without torch and refuses pickles that run code.

The files are written here the way torch.save writes them (both layouts), through stand-in
`torch` modules that exist only while pickling; torch itself is never imported."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from gen.utils import pth
from tests.torch_files import write_pth


def _arrays():
  rng = np.random.default_rng(0)
  return {
    'fc.weight': rng.standard_normal((5, 3)).astype(np.float32),
    'conv.weight': rng.standard_normal((2, 3, 3, 3)).astype(np.float32),
    'bn.num_batches_tracked': np.array(7, np.int64),
  }


@pytest.mark.parametrize('legacy', [False, True])
def test_both_layouts_read_back_every_tensor(tmp_path, legacy):
  arrays = _arrays()
  path = tmp_path / 'w.pth'
  write_pth(path, arrays, legacy=legacy)
  got = pth.read_state_dict(path)
  assert sorted(got) == sorted([*arrays, 'view.T'])
  for name, array in arrays.items():
    np.testing.assert_array_equal(got[name], array)
    assert got[name].dtype == array.dtype and got[name].shape == array.shape
  np.testing.assert_array_equal(got['view.T'], arrays['fc.weight'].T)  # a strided view


class Evil:
  """Unpickles as os.system(`touch marker`): what a hostile .pth does with pickle.load."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('legacy', [False, True])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, legacy):
  path, marker = tmp_path / 'evil.pth', tmp_path / 'ran'
  write_pth(path, _arrays(), legacy=legacy, payload={'x': Evil(marker)})
  with pytest.raises(pth.UnsafePickleError, match=r'refusing the pickle global (posix|nt)\.system'):
    pth.read_state_dict(path)
  assert not marker.exists()
  # The control: plain pickle runs it (so the file is really hostile).
  if legacy:
    with open(path, 'rb') as f:
      for _ in range(4):  # magic number, protocol, system info, then the object
        pickle.load(f)
  else:
    with zipfile.ZipFile(path) as archive:
      pickle.loads(archive.read('archive/data.pkl'))
  assert marker.exists()


def test_a_non_state_dict_and_a_truncated_file_are_refused(tmp_path):
  path = tmp_path / 'list.pth'
  write_pth(path, _arrays(), payload=[1, 2])
  with pytest.raises(ValueError, match='not a state dict'):
    pth.read_state_dict(path)
  path = tmp_path / 'legacy.pth'
  write_pth(path, _arrays(), legacy=True)
  data = path.read_bytes()
  path.write_bytes(data[:-8])
  with pytest.raises(pickle.UnpicklingError, match='truncated'):
    pth.read_state_dict(path)
  path.write_bytes(b'not a torch file at all')
  with pytest.raises((ValueError, pickle.UnpicklingError)):
    pth.read_state_dict(path)
