"""Bad input: one clear error line, a non-zero exit, and nothing written or destroyed."""

import os

import pytest

from tests.conftest import run_cli

SMOKE = '--config=experiments/ddpm_ring8.py:smoke'

# (overrides, text the error line must contain, extra environment)
BAD_INPUTS = {
  'unknown objective': (['--config.objective.name=ddpmm'], "objective.name='ddpmm'", None),
  'unknown model': (['--config.model.name=resnet'], "model.name='resnet'", None),
  'unknown dataset': (['--config.data.name=ring9'], "data.name='ring9'", None),
  'unknown sampler': (['--config.sample.sampler=ddjm'], "sample.sampler='ddjm'", None),
  'unknown metric': (['--config.eval.metrics=fid'], "eval.metrics: 'fid'", None),
  'inception score of 2-D points': (
    ['--config.eval.metrics=inception_score'],
    "eval.metrics 'inception_score' needs a feature network with class logits",
    None,
  ),
  'bad metric option': (
    ['--config.eval.kid_subsets=0'],
    'eval.kid_subsets must be an integer >= 1',
    None,
  ),
  'unknown feature network': (
    ['--config.eval.metrics=fd', '--config.eval.features=vgg'],
    "eval.features: 'vgg' is unknown",
    None,
  ),
  'sampler for another process': (
    ['--config.sample.sampler=heun'],
    "sample.sampler='heun' needs a continuous-time process",
    None,
  ),
  'sampler option out of range': (
    ['--config.sample.sampler=ddim', '--config.sample.eta=2'],
    'sample.eta=2.0 must be in [0, 1]',
    None,
  ),
  'config typo': (['--config.optim.lrr=0.1'], '--config.optim.lrr: no such config field', None),
  'bad value type': (['--config.optim.lr=fast'], '--config.optim.lr', None),
  'negative lr': (['--config.optim.lr=-0.001'], 'optim.lr must be > 0', None),
  'zero lr': (['--config.optim.lr=0'], 'optim.lr must be > 0', None),
  'ema rate': (['--config.train.ema_rate=1.5'], 'train.ema_rate', None),
  'nonfinite policy': (['--config.train.on_nonfinite=ignore'], 'train.on_nonfinite', None),
  'batch not divisible': (
    ['--config.data.batch_size=12'],
    'data.batch_size=12 must be a positive multiple of the device count 8',
    {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
  ),
  'batch larger than the data': (
    ['--config.data.name=digits', '--config.model.name=unet', '--config.data.batch_size=2048'],
    'data.batch_size=2048 is larger than the 1500 training examples',
    None,
  ),
  'points into the U-Net': (['--config.model.name=unet'], "model.name='unet' takes images", None),
  'image shape the U-Net cannot take': (
    [
      '--config.data.name=digits',
      '--config.model.name=unet',
      '--config.model.unet.ch_mult=1,2,2,2,2',
    ],
    'H and W must be divisible by 16',
    None,
  ),
  'images into the MLP': (
    ['--config.data.name=digits'],
    "model.name='mlp' takes flat vectors",
    None,
  ),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly(case, tmp_path):
  overrides, expected, env = BAD_INPUTS[case]
  wd = tmp_path / 'run'
  data_dir = tmp_path / 'tfds'
  proc = run_cli(
    [SMOKE, f'--workdir={wd}', f'--config.data.data_dir={data_dir}', *overrides],
    env=env,
    timeout=120,
  )
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and expected in last, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not wd.exists()  # nothing written


def test_missing_tfds_dataset_says_how_to_prepare(tmp_path):
  wd, data_dir = tmp_path / 'run', tmp_path / 'tfds'
  data_dir.mkdir()
  proc = run_cli(
    [
      SMOKE,
      f'--workdir={wd}',
      '--config.data.name=mnist',
      '--config.model.name=unet',
      f'--config.data.data_dir={data_dir}',
    ]
  )
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert 'not prepared' in last and 'gen prepare --dataset=mnist' in last
  assert not wd.exists() and os.listdir(data_dir) == []


def test_workdir_of_another_run_is_refused_and_kept(tmp_path):
  wd = tmp_path / 'run'
  assert run_cli([SMOKE, f'--workdir={wd}']).returncode == 0
  before = {p: os.path.getmtime(os.path.join(r, p)) for r, _, fs in os.walk(wd) for p in fs}
  proc = run_cli([SMOKE, f'--workdir={wd}', '--config.model.mlp.features=64,64'])
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert 'holds a run with a different config (model.mlp.features)' in last
  assert '--allow_config_change' in last
  after = {p: os.path.getmtime(os.path.join(r, p)) for r, _, fs in os.walk(wd) for p in fs}
  assert after == before  # nothing touched


def test_non_writable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  proc = run_cli([SMOKE, f'--workdir={blocker}/run'])
  assert proc.returncode == 2
  assert 'is not writable' in proc.stderr.strip().splitlines()[-1]


def test_eval_of_an_empty_workdir(tmp_path):
  proc = run_cli([SMOKE, f'--workdir={tmp_path / "nothing"}', '--mode=eval'])
  assert proc.returncode == 2
  assert 'holds no run' in proc.stderr.strip().splitlines()[-1]
