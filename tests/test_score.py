"""`gen score A B`: inputs (.npz, image folders, dataset splits), the metrics against direct
computations, PNG folders scoring as their arrays, and one-line errors. The reproduction of an
eval JSON from `--mode=sample`'s .npz is in tests/test_evaluation.py (it needs the digits
classifier)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments import base
from gen import score
from gen.errors import ConfigError
from gen.metrics import evaluation, frechet, precision_recall, reference, sample_quality
from tests.conftest import run_python


def _images(seed, n=40, shape=(8, 8, 1)):
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _write_npz(path, samples):
  np.savez(path, samples=samples)
  return str(path)


def _write_folder(folder, images):
  folder.mkdir()
  for i, im in enumerate(images):
    Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f'{i:04d}.png')
  return str(folder)


def test_default_options_are_the_base_configs_eval_options():
  ev = base.get_config().eval
  assert evaluation.DEFAULT_OPTIONS == {k: ev[k] for k in evaluation.DEFAULT_OPTIONS}


@pytest.mark.timeout(120)
def test_points_against_a_toy_split_match_direct_computations(tmp_path):
  """An .npz of 2-D points against ring8:test (identity features): FD, KID, precision/recall
  and density/coverage equal the metric functions applied to the arrays themselves."""
  x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32) * 2
  result = score.score(_write_npz(tmp_path / 'a.npz', x), 'ring8:test', num=500)
  m, p = result['metrics'], result['protocol']
  examples = np.concatenate(list(reference.split_examples('ring8', 'test', None, 500)))
  ref = reference.Reference(frechet.fit_gaussian(examples), examples.astype(np.float32), None, {})
  path = str(tmp_path / 'a.npz')
  assert p['a'] == {'input': path, 'path': path, 'kind': 'npz', 'n': 300}
  assert p['b']['kind'] == 'split' and p['b']['n'] == 500
  assert p['features']['name'] == 'identity' and p['options']['fd_bootstrap'] == 100
  assert m['fd'] == frechet.frechet_distance(frechet.fit_gaussian(x), ref.stats)
  assert (m['fd_low'], m['fd_high']) == frechet.frechet_bootstrap(x, ref.stats, 100, 0)
  assert (m['kid'], m['kid_std']) == sample_quality.kid(x, ref.features, 100, 1000, 0)
  pr = precision_recall.precision_recall(ref.features, x, 3)
  assert (m['precision'], m['recall']) == (float(pr['precision']), float(pr['recall']))
  assert 'inception_score' not in m  # identity features have no logits
  assert set(m) == {'fd', 'fd_low', 'fd_high', 'kid', 'kid_std'} | {
    'precision',
    'recall',
    'density',
    'coverage',
  }


@pytest.mark.timeout(120)
@pytest.mark.parametrize('shape', [(8, 8, 1), (6, 6, 3)])
def test_png_folder_scores_as_its_arrays(tmp_path, shape):
  """A folder of 8-bit PNGs, the same images as a uint8 .npz and as data-space float32 values
  v / 127.5 - 1 give identical metrics (grey and RGB; identity features see the floats, so this
  checks the reading; the feature networks quantise first, tests/test_evaluation.py)."""
  a, b = _images(1, shape=shape), _images(2, shape=shape)
  b_path = _write_npz(tmp_path / 'b.npz', b)
  options = {'fd_bootstrap': 0, 'kid_subsets': 10}
  kwargs = dict(features='identity', options=options)
  folder = score.score(_write_folder(tmp_path / 'pngs', a), b_path, **kwargs)
  uint8 = score.score(_write_npz(tmp_path / 'u8.npz', a), b_path, **kwargs)
  floats = score.score(
    _write_npz(tmp_path / 'f.npz', a.astype(np.float32) / 127.5 - 1), b_path, **kwargs
  )
  assert folder['metrics'] == uint8['metrics'] == floats['metrics']
  assert folder['protocol']['a']['kind'] == 'folder' and folder['protocol']['a']['n'] == 40
  assert folder['protocol']['options']['kid_subsets'] == 10


def test_inputs_and_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"has no array 'samples' \(it holds \['x'\]\); use --key"):
    np.savez(tmp_path / 'x.npz', x=np.zeros((4, 2)))
    score.read_input(str(tmp_path / 'x.npz'))
  assert score.read_input(str(tmp_path / 'x.npz'), key='x').examples.shape == (4, 2)
  with pytest.raises(ConfigError, match='not a dataset split NAME:SPLIT'):
    score.read_input(str(tmp_path / 'missing.npz'))
  folder = tmp_path / 'mixed'
  folder.mkdir()
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'a.png')
  Image.fromarray(np.zeros((9, 8), np.uint8)).save(folder / 'b.png')
  with pytest.raises(ConfigError, match=r'images differ in size \(a.png is 8x8, b.png is 8x9\)'):
    score.read_input(str(folder))
  grey_and_rgb = tmp_path / 'grey_rgb'
  grey_and_rgb.mkdir()
  Image.fromarray(np.full((4, 4), 7, np.uint8)).save(grey_and_rgb / 'a.png')
  Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(grey_and_rgb / 'b.jpg', quality=100)
  assert score.read_input(str(grey_and_rgb)).examples.shape == (2, 4, 4, 3)
  x = _write_npz(tmp_path / 'a.npz', np.zeros((5, 2)))
  with pytest.raises(ConfigError, match="--metrics: 'fid' is not one of 'auto', fd, "):
    score.score(x, 'ring8:test', num=50, metrics=['fid'])
  with pytest.raises(ConfigError, match="'inception_score' needs class logits; identity"):
    score.score(x, 'ring8:test', num=50, metrics=['inception_score'])
  with pytest.raises(ConfigError, match=r'--fd_bootstrap must be -1 \(auto'):
    score.score(x, 'ring8:test', num=50, options={'fd_bootstrap': 1})
  with pytest.raises(ConfigError, match="split 'valid'|valid"):
    score.score(x, 'ring8:valid', num=50)


@pytest.mark.parametrize(
  'args, message',
  [
    (['b.npz', 'ring8:test', {}], 'error: b.npz: no such file or folder, and not a dataset'),
    (['a.npz', 'ring8:test', {'pr_k': 0}], 'error: --pr_k must be an integer >= 1, got 0'),
  ],
)
def test_score_main_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
  monkeypatch.chdir(tmp_path)
  _write_npz(tmp_path / 'a.npz', np.zeros((5, 2)))
  a, b, options = args
  assert score.score_main(a, b, num=50, options=options) == 2
  err = capsys.readouterr().err
  assert err.startswith(message) and err.count('\n') == 1, err


def test_score_main_prints_json(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  _write_npz(tmp_path / 'a.npz', np.random.default_rng(4).normal(size=(30, 2)))
  assert score.score_main('a.npz', 'ring8:test', num=100, options={'fd_bootstrap': 0}) == 0
  out = capsys.readouterr()
  printed = json.loads(out.out)
  assert 'fd_low' not in printed['metrics'] and printed['protocol']['options']['fd_bootstrap'] == 0
  assert out.err.startswith('| a | b | n_a | n_b | fd | kid |')


def _gen_score(*args, cwd):
  return run_python(['-m', 'gen.cli', 'score', *args], cwd=cwd, timeout=120)


@pytest.mark.timeout(240)
def test_cli_relative_paths_json_table_and_one_line_errors(tmp_path):
  """As a user types it, from another folder: relative inputs and --output, JSON and the table
  line; bad input exits 2 with one line and no traceback."""
  (tmp_path / 'runs').mkdir()
  _write_npz(tmp_path / 'runs' / 'a.npz', np.random.default_rng(3).normal(size=(50, 2)))
  proc = _gen_score(
    'runs/a.npz', 'ring8:test', '--num=200', '--output=runs/score.json', cwd=tmp_path
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  saved = json.loads((tmp_path / 'runs' / 'score.json').read_text())
  a = saved['protocol']['a']
  assert (
    a['input'] == 'runs/a.npz' and a['path'] == str(tmp_path / 'runs' / 'a.npz') and a['n'] == 50
  )
  table = [line for line in proc.stderr.splitlines() if line.startswith('|')]
  assert table[0].startswith('| a | b | n_a | n_b | fd | fd_low | fd_high |'), table
  assert table[2].startswith('| runs/a.npz | ring8:test | 50 |'), table
  bad = _gen_score('runs/a.npz', cwd=tmp_path)
  lines = [line for line in bad.stderr.splitlines() if line.strip()]
  assert bad.returncode == 2 and lines[-1].startswith('error: gen score takes two sets A B')
  assert 'Traceback' not in bad.stderr
  assert not os.path.exists(tmp_path / 'runs' / 'score.json.tmp')
