"""`gen prepare --inception`: fetch pytorch-fid's .pth, check its sha256, convert it without torch.

Offline: the .pth files are written here in torch's own layouts (tests/torch_files.py), and the
download goes through a file:// address and an HTTP server on 127.0.0.1."""

import functools
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from gen.errors import ConfigError
from gen.metrics import inception_weights
from gen.metrics.inception_weights import WeightsError
from tests.conftest import run_python
from tests.test_inception import _assert_same, _random_params, _torch_state_dict
from tests.test_pth import Evil
from tests.torch_files import write_pth


def _hub_named(path):
  """Renames `path` as torch.hub names a release file: <stem>-<first 8 hex of sha256>.pth."""
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  named = path.with_name(f'pt_inception-test-{digest[:8]}.pth')
  path.rename(named)
  return named, digest


@pytest.fixture(scope='module')
def weights_pth(tmp_path_factory):
  """pytorch-fid's state dict layout (legacy torch file, as the 2019 release), random values."""
  params = _random_params(3)
  raw = tmp_path_factory.mktemp('pth') / 'raw.pth'
  write_pth(raw, _torch_state_dict(params), legacy=True)
  named, digest = _hub_named(raw)
  return named, digest, params


def _one_line_error(proc):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr[-2000:]
  return lines[0]


@pytest.mark.timeout(120)
def test_gen_prepare_converts_a_local_pth_with_relative_paths(weights_pth, tmp_path):
  """The README's command from another folder, with relative --source and --data_dir: the file
  lands where evaluation looks, equal to the parameters written, with no torch imported."""
  pth_file, _, params = weights_pth
  (tmp_path / 'downloads').mkdir()
  os.link(pth_file, tmp_path / 'downloads' / pth_file.name)
  code = (
    'import sys; from gen import cli; sys.argv = sys.argv[1:]; '
    'sys.modules["torch"] = None\n'  # importing torch would raise: none is needed
    'cli.main()'
  )
  proc = run_python(
    [
      '-c',
      code,
      'gen',
      'prepare',
      '--inception',
      f'--source=downloads/{pth_file.name}',
      '--data_dir=data',
    ],
    cwd=tmp_path,
    env={inception_weights.WEIGHTS_ENV: ''},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / 'data' / 'gen_inception' / 'fid_inception_v3.npz'
  assert f'wrote {out} (sha256 {inception_weights.weights_checksum(out)})' in proc.stdout
  _assert_same(inception_weights.load_params(out), params)
  assert sorted(os.listdir(out.parent)) == ['fid_inception_v3.npz']  # no download left behind


class _Quiet(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


@pytest.mark.timeout(120)
def test_download_over_http_and_file_urls(weights_pth, tmp_path):
  pth_file, digest, params = weights_pth
  server = http.server.ThreadingHTTPServer(
    ('127.0.0.1', 0), functools.partial(_Quiet, directory=str(pth_file.parent))
  )
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f'http://127.0.0.1:{server.server_address[1]}/{pth_file.name}'
    out, checksum = inception_weights.prepare(url, str(tmp_path / 'http.npz'))
    _assert_same(inception_weights.load_params(out), params)
    with pytest.raises(WeightsError, match='could not fetch .*404'):
      inception_weights.prepare(url.replace('-test-', '-gone-'), str(tmp_path / 'x.npz'))
  finally:
    server.shutdown()
    server.server_close()
  out2, checksum2 = inception_weights.prepare(pth_file.as_uri(), str(tmp_path / 'file.npz'))
  assert checksum2 == checksum == inception_weights.weights_checksum(out2)
  # --sha256 takes the place of a hash in the name (a prefix or the whole digest).
  plain = tmp_path / 'renamed.pth'
  os.link(pth_file, plain)
  for given in (digest, digest[:12].upper()):
    _, checksum3 = inception_weights.prepare(str(plain), str(tmp_path / 'sha.npz'), given)
    assert checksum3 == checksum


@pytest.mark.timeout(120)
def test_bad_hash_hostile_pickle_and_wrong_network_are_refused_with_one_line(weights_pth, tmp_path):
  pth_file, digest, _ = weights_pth
  out = tmp_path / 'data' / 'w.npz'
  # A corrupt download: the name promises another hash.
  corrupt = tmp_path / f'pt_inception-2015-12-05-{digest[:7]}0.pth'
  if corrupt.name.endswith(f'{digest[:8]}.pth'):
    corrupt = tmp_path / f'pt_inception-2015-12-05-{digest[:7]}1.pth'
  os.link(pth_file, corrupt)
  with pytest.raises(WeightsError, match=f'sha256 {digest} does not start with'):
    inception_weights.prepare(str(corrupt), str(out))
  with pytest.raises(WeightsError, match='does not start with 00000000'):
    inception_weights.prepare(str(pth_file), str(out), sha256='00000000')
  # No hash to check against at all.
  unnamed = tmp_path / 'weights.pth'
  os.link(pth_file, unnamed)
  with pytest.raises(WeightsError, match='give --sha256'):
    inception_weights.prepare(str(unnamed), str(out))
  # A pickle that would run code: refused, never run.
  marker = tmp_path / 'ran'
  evil, _ = _hub_named(_write(tmp_path / 'evil.pth', payload={'fc.weight': Evil(marker)}))
  with pytest.raises(WeightsError, match=r'refusing the pickle global (posix|nt)\.system'):
    inception_weights.prepare(str(evil), str(out))
  assert not marker.exists()
  # A clean state dict of another network.
  other, _ = _hub_named(_write(tmp_path / 'other.pth'))
  with pytest.raises(ConfigError, match='does not hold the FID Inception weights'):
    inception_weights.prepare(str(other), str(out))
  assert not out.parent.exists() or os.listdir(out.parent) == []  # nothing written
  # Through the command line: one line each, exit status 2.
  for args, expected in (
    ([f'--source={evil}'], 'refusing the pickle global'),
    ([f'--source={corrupt}'], 'does not start with'),
    ([], None),
  ):
    flags = ['--inception', f'--out={out}', *args] if expected else ['--data_dir=x']
    line = _one_line_error(run_python(['-m', 'gen.cli', 'prepare', *flags], cwd=tmp_path))
    assert (expected or 'needs --dataset=NAME') in line, line
  assert not marker.exists()


def _write(path, payload=None):
  rng = np.random.default_rng(0)
  write_pth(path, {'fc.bias': rng.normal(size=3).astype(np.float32)}, payload=payload)
  return path
