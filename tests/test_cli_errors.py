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


@pytest.mark.parametrize(
  'case',
  ['missing file', 'syntax error', 'unknown variant', 'variant of a missing file'],
)
def test_config_file_that_does_not_load(case, tmp_path):
  broken = tmp_path / 'broken.py'
  broken.write_text('def get_config(:\n  pass\n')
  config, expected = {
    'missing file': ('experiments/nope.py', '--config=experiments/nope.py: no such file'),
    'syntax error': (str(broken), f'SyntaxError in {broken}, line 1'),
    'unknown variant': (
      'experiments/ddpm_ring8.py:bogus',
      '--config=experiments/ddpm_ring8.py:bogus: ValueError: experiments/ddpm_ring8.py: '
      "unknown variant 'bogus'",
    ),
    'variant of a missing file': ('experiments/nope.py:smoke', 'no such file'),
  }[case]
  wd = tmp_path / 'run'
  proc = run_cli([f'--config={config}', f'--workdir={wd}'], timeout=120)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], proc.stderr
  assert not wd.exists()


def test_empty_dataset_name(tmp_path):
  wd = tmp_path / 'run'
  proc = run_cli([SMOKE, f'--workdir={wd}', '--config.data.name='], timeout=120)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: data.name='' is empty; choose an embedded dataset"), last
  assert 'Traceback' not in proc.stderr and not wd.exists()


@pytest.mark.parametrize('mode', ['train', 'sample', 'eval'])
def test_corrupt_saved_config_is_named_and_kept(mode, tmp_path):
  wd = tmp_path / 'run'
  wd.mkdir()
  (wd / 'config.json').write_text('{"data": {"name": "ring8",')  # cut off mid-write
  before = (wd / 'config.json').read_bytes()
  args = [f'--workdir={wd}', f'--mode={mode}'] + ([SMOKE] if mode == 'train' else [])
  proc = run_cli(args, timeout=120)
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {wd}/config.json is unreadable (JSONDecodeError'), last
  assert 'Traceback' not in proc.stderr
  assert (wd / 'config.json').read_bytes() == before and os.listdir(wd) == ['config.json']


def test_sample_mode_reads_the_runs_own_config(tmp_path):
  """Trained with overrides (ckpt_every, log_every), sampled with the README's plain command
  or with no --config at all: the run's W/config.json decides, intervals never block."""
  wd = tmp_path / 'run'
  train_args = [
    SMOKE,
    f'--workdir={wd}',
    '--config.train.ckpt_every=5',
    '--config.train.log_every=2',
  ]
  assert run_cli(train_args).returncode == 0
  for args in ([SMOKE], []):
    proc = run_cli([*args, f'--workdir={wd}', '--mode=sample', '--num_samples=16'])
    assert proc.returncode == 0, (args, proc.stderr[-2000:])
  assert (wd / 'samples' / 'step_20.npz').exists()
  proc = run_cli([f'--workdir={wd}', '--mode=train'])
  assert proc.returncode == 2 and '--config is required to train' in proc.stderr


def test_fields_that_only_steer_training_never_block(tmp_path):
  from experiments import ddpm_ring8
  from gen.errors import ConfigError
  from gen.utils import workdir as workdir_lib

  saved = ddpm_ring8.get_config('smoke')
  workdir_lib.write_config(str(tmp_path), saved)
  changed = ddpm_ring8.get_config('smoke')
  for field in ('num_steps', 'log_every', 'ckpt_every', 'sample_every', 'eval_every'):
    changed.train[field] += 7
  workdir_lib.check_workdir(str(tmp_path), changed, 'train')
  changed.sample.num_steps = 5  # how to sample: free in eval and sample mode only
  for mode in ('sample', 'eval'):
    workdir_lib.check_workdir(str(tmp_path), changed, mode)
  with pytest.raises(ConfigError, match=r'different config \(sample\.num_steps\)'):
    workdir_lib.check_workdir(str(tmp_path), changed, 'train')
  changed.optim.lr *= 2
  for mode in ('sample', 'eval'):
    with pytest.raises(ConfigError, match=r'different config \(optim\.lr\)'):
      workdir_lib.check_workdir(str(tmp_path), changed, mode)
  restored = workdir_lib.read_config(str(tmp_path))
  assert restored.model.mlp.features == saved.model.mlp.features  # tuples come back as tuples
  assert workdir_lib.config_to_dict(restored) == workdir_lib.config_to_dict(saved)
