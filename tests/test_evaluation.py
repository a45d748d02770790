"""Evaluation end to end: the digits classifier, floors and ceilings, reference statistics and
their recipe, `--mode=eval` on digits, training-time proxies, and the stats/report/compare CLI.

The digits classifier trains once for this module (about a minute) in a shared temporary data
folder.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import base, ddpm_digits
from gen import data as data_lib
from gen import modes, train
from gen import setup as setup_lib
from gen.errors import ConfigError
from gen.metrics import digits_classifier, evaluation, features, reference
from gen.utils.writers import read_metrics
from tests.conftest import ONE_DEVICE, REPO

DIGITS_METRICS = {
  'fd',
  'inception_score',
  'inception_score_std',
  'kid',
  'kid_std',
  'precision',
  'recall',
  'density',
  'coverage',
  'memorisation',
  'sliced_w2',
}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A data folder holding the trained digits classifier (trained once here)."""
  folder = str(tmp_path_factory.mktemp('tfds'))
  digits_classifier.load_or_train(folder)
  return folder


def _digits_config(data_dir):
  c = base.get_config()
  c.data.name, c.data.data_dir = 'digits', data_dir
  c.eval.num_samples = 297
  return c


_TRAIN_ONCE = """
import os, sys, time
import numpy as np
from gen.metrics import digits_classifier as dc

def fake_train():  # counts its calls and stays inside the lock long enough to overlap
  with open(os.path.join(sys.argv[1], f'trained.{os.getpid()}'), 'w'):
    pass
  time.sleep(4.0)
  return {'dense': {'kernel': np.ones((2, 3), np.float32)}}, 0.99

dc.train_classifier = fake_train
open(os.path.join(sys.argv[1], f'ready.{os.getpid()}'), 'w').close()
params, info = dc.load_or_train(sys.argv[1])
assert info['test_accuracy'] == 0.99 and float(params['dense']['kernel'].sum()) == 6.0
"""


@pytest.mark.timeout(120)
def test_processes_sharing_a_cache_train_the_classifier_once(tmp_path):
  env = {**os.environ, 'GEN_CACHE_DIR': str(tmp_path), 'JAX_PLATFORMS': 'cpu'}
  procs = [
    subprocess.Popen([sys.executable, '-c', _TRAIN_ONCE, str(tmp_path)], cwd=REPO, env=env)
    for _ in range(3)
  ]
  assert [p.wait(timeout=100) for p in procs] == [0, 0, 0]
  assert len(list(tmp_path.glob('ready.*'))) == 3
  assert len(list(tmp_path.glob('trained.*'))) == 1  # the other two read its cache


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_digits_classifier_reaches_97_percent_and_is_cached(data_dir):
  params, info = digits_classifier.load_or_train(data_dir)  # from the cache now
  cache = os.path.join(os.environ['GEN_CACHE_DIR'], digits_classifier.CACHE_DIR)  # conftest's
  assert os.path.exists(os.path.join(cache, 'info.json'))
  assert not os.path.exists(os.path.join(data_dir, digits_classifier.CACHE_DIR))
  print('digits classifier test accuracy', info['test_accuracy'])
  assert info['test_accuracy'] >= 0.97
  assert info['sha256'] == digits_classifier.params_checksum(params)
  test = data_lib.make_source('digits', 'test', data_dir).get_batch(np.arange(297))
  logits = jax.jit(digits_classifier.apply)(params, test['x'])['logits']
  assert np.mean(np.argmax(logits, -1) == test['label']) == pytest.approx(info['test_accuracy'])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_class_agreement_of_labelled_test_digits_is_the_classifier_accuracy(data_dir):
  """'class_agreement' labels samples with the feature network's classifier: on the test
  digits with their true labels it is the classifier's recorded test accuracy."""
  config = _digits_config(data_dir)
  spec = data_lib.get_spec('digits', data_dir)
  ev = evaluation.Evaluator(config, spec, ('class_agreement',))
  test = data_lib.make_source('digits', 'test', data_dir).get_batch(np.arange(297))
  values, _ = ev.compute(test['x'], 0, labels=test['label'])
  _, info = digits_classifier.load_or_train(data_dir)
  assert values['class_agreement'] == pytest.approx(info['test_accuracy'])
  wrong, _ = ev.compute(test['x'], 0, labels=(test['label'] + 1) % 10)
  assert wrong['class_agreement'] < 0.05
  assert 'class_agreement' not in ev.compute(test['x'], 0)[0]  # no labels: not scored


def test_class_agreement_needs_an_objective_that_draws_labels(tmp_path):
  config = ddpm_digits.get_config('smoke')
  config.data.data_dir = str(tmp_path)
  config.eval.metrics = ('class_agreement',)
  with pytest.raises(ConfigError, match="'class_agreement' scores conditional samples"):
    setup_lib.build(config, ONE_DEVICE)
  config.diffusion.conditional = True
  setup_lib.build(config, ONE_DEVICE)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_floor_and_noise_bracket_the_digits_metrics(data_dir):
  """Real held-out digits score near the ideal, uniform noise far from it (the README's
  floors and ceilings)."""
  config = _digits_config(data_dir)
  spec = data_lib.get_spec('digits', data_dir)
  names = tuple(sorted(DIGITS_METRICS & set(evaluation.metrics_lib.METRICS)))
  ev = evaluation.Evaluator(config, spec, names)
  bounds = ev.bounds(297, seed=0)
  print(json.dumps(bounds, indent=1))
  real = {k: v['real'] for k, v in bounds.items()}
  noise = {k: v['noise'] for k, v in bounds.items()}
  assert set(real) == DIGITS_METRICS
  assert real['fd'] < 0.1 * noise['fd']
  assert real['kid'] < 0.1 * noise['kid']
  assert real['precision'] > 0.6 and real['recall'] > 0.6 and real['coverage'] > 0.6
  # Measured (n = 297): real FD 34.0 vs noise 836; precision 0.96 / 0.06, recall 0.90 / 0.01,
  # coverage 0.99 / 0.05, IS 8.41 / 2.47, memorisation of held-out digits 0.42.
  assert noise['precision'] < 0.15 and noise['recall'] < 0.15 and noise['coverage'] < 0.15
  assert real['inception_score'] > 7.0  # 10 classes, confidently recognised
  assert real['memorisation'] < 0.6  # held-out digits against the training digits
  assert real['sliced_w2'] < noise['sliced_w2']


@pytest.mark.slow  # its fixture prepares digits and trains the classifier: ~75 s on 2 cores
@pytest.mark.timeout(300)
def test_reference_statistics_record_and_enforce_their_recipe(data_dir):
  spec = data_lib.get_spec('digits', data_dir)
  net = features.load('digits_cnn', spec, data_dir)
  path = reference.make_stats('digits', 'test', 'digits_cnn', data_dir)
  npz, meta = reference.paths(data_dir, 'digits', 'test', 'digits_cnn')
  assert path == npz and os.path.exists(meta)
  recipe = json.loads(open(meta).read())
  assert recipe['n'] == 297 and recipe['features']['sha256'] == net.checksum
  assert recipe['features']['preprocessing'] == digits_classifier.PREPROCESSING
  ref = reference.load('digits', 'test', net, data_dir)
  np.testing.assert_allclose(ref.stats.mean, np.mean(ref.features, 0), rtol=1e-6, atol=1e-6)
  recipe['features']['sha256'] = '0' * 64  # stats made with other weights
  with open(meta, 'w') as f:
    json.dump(recipe, f)
  with pytest.raises(ConfigError, match=r'features\.sha256: stored .*gen stats --dataset=digits'):
    reference.load('digits', 'test', net, data_dir)
  reference.make_stats('digits', 'test', 'digits_cnn', data_dir, overwrite=True)
  assert reference.load('digits', 'test', net, data_dir) is not None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eval_mode_on_digits_writes_every_metric_with_protocol_and_bounds(data_dir, tmp_path):
  config = ddpm_digits.get_config('smoke')
  config.data.data_dir = data_dir
  assert config.eval.metrics == ('auto',)
  wd = tmp_path / 'run'
  train.train_and_evaluate(config, str(wd), mesh=setup_lib.make_mesh(jax.devices()[:1]))
  values = modes.evaluate(config, str(wd), mesh=ONE_DEVICE)
  saved = json.loads((wd / 'eval' / 'step_20.json').read_text())
  assert set(saved) == DIGITS_METRICS | {
    'fd_low',  # the auto bootstrap: n = 64 < 2048
    'fd_high',
    'step',
    'bpd',
    'bpd_nfe',
    'sample_nfe',
    'protocol',
    'bounds',
  }
  assert set(values) == set(saved) - {'step'}
  protocol = saved['protocol']
  assert protocol['num_samples'] == config.eval.num_samples
  assert protocol['reference'] == {'dataset': 'digits', 'split': 'test', 'n': 297}
  assert protocol['features']['name'] == 'digits_cnn'
  assert protocol['features']['test_accuracy'] >= 0.97
  assert set(saved['bounds']) == DIGITS_METRICS
  assert np.isfinite(saved['bpd']) and saved['bpd_nfe'] == config.diffusion.num_timesteps
  assert (wd / 'samples' / 'step_20_neighbours.png').exists()
  assert protocol['options']['fd_bootstrap'] == 100
  assert saved['fd_low'] <= saved['fd'] <= saved['fd_high']
  # The same checkpoint, evaluated again, gives the same numbers (fixed sample seed).
  again = modes.evaluate(config, str(wd), mesh=ONE_DEVICE)
  for k in ('fd', 'kid', 'precision', 'sliced_w2'):
    assert again[k] == values[k], k
  # --mode=sample with eval.num_samples draws the samples eval scored: `gen score` of its .npz
  # (a relative path, typed from the run's parent folder) reproduces the eval JSON, and so does
  # a folder of the samples as 8-bit PNGs (the digits classifier quantises first).
  npz = modes.sample(config, str(wd), config.eval.num_samples, mesh=ONE_DEVICE)
  assert npz == str(wd / 'samples' / 'step_20.npz')
  pngs = tmp_path / 'pngs'
  pngs.mkdir()
  for i, x in enumerate(np.load(npz)['samples']):
    im = np.round((np.clip(x[..., 0], -1, 1) + 1) * 127.5).astype(np.uint8)
    Image.fromarray(im).save(pngs / f'{i:03d}.png')
  for source in ('run/samples/step_20.npz', 'pngs'):
    proc = _gen('score', source, 'digits:test', f'--data_dir={data_dir}', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads(proc.stdout)
    assert scored['protocol']['features'] == protocol['features']
    assert scored['protocol']['options'] == protocol['options']
    wanted = {k: v for k, v in saved.items() if k in scored['metrics']}
    assert scored['metrics'] == wanted, source
    assert set(wanted) == DIGITS_METRICS - {'memorisation', 'sliced_w2'} | {'fd_low', 'fd_high'}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_logs_proxies_and_keeps_final_numbers_apart(smoke_config, tmp_path):
  smoke_config.train.eval_every = 10
  smoke_config.eval.proxy_num_samples = 32
  wd = tmp_path / 'run'
  train.train_and_evaluate(smoke_config, str(wd), mesh=setup_lib.make_mesh(jax.devices()[:1]))
  proxies = [r for r in read_metrics(str(wd)) if 'proxy_modes_covered' in r]
  assert [r['step'] for r in proxies] == [10]
  assert {'proxy_high_quality_fraction', 'proxy_sliced_w2'} <= set(proxies[0])
  assert os.listdir(wd / 'eval') == ['step_20.json']  # only the final numbers
  final = json.loads((wd / 'eval' / 'step_20.json').read_text())
  assert final['protocol']['num_samples'] == smoke_config.eval.num_samples
  assert not any(k.startswith('proxy_') for k in final)


def _gen(*args, timeout=300, cwd=REPO):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run(
    [sys.executable, '-m', 'gen.cli', *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_stats_report_and_compare_commands(data_dir, smoke_config, tmp_path):
  out = _gen('stats', '--dataset=digits', '--split=train', f'--data_dir={data_dir}')
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().endswith('digits-train-digits_cnn.npz')
  bad = _gen('stats', '--dataset=digits', '--split=valid', f'--data_dir={data_dir}')
  assert bad.returncode == 2 and 'error:' in bad.stderr and 'valid' in bad.stderr
  runs = []
  for seed in (0, 1):
    smoke_config.seed = seed
    wd = tmp_path / f'seed{seed}'
    train.train_and_evaluate(smoke_config, str(wd), mesh=setup_lib.make_mesh(jax.devices()[:1]))
    runs.append(str(wd))
  out = _gen('report', f'--workdir={runs[0]}')
  assert out.returncode == 0, out.stderr
  page = open(os.path.join(runs[0], 'report.html')).read()
  assert 'modes_covered' in page and 'samples/step_20.png' in page
  out = _gen('compare', *runs, '--format=csv')
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 3 and 'modes_covered' in lines[0] and 'seed1' in lines[2]
  out = _gen('report', f'--workdir={tmp_path}')  # not a run directory
  assert out.returncode == 2 and out.stderr.startswith('error:')
