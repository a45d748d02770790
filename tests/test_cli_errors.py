"""Bad input: one clear error line, a non-zero exit, and nothing written or destroyed.

Most cases run in one gen.main process (tests/cli_batch.py): a process per case would spend
seconds each starting Python and importing JAX.
"""

import json
import os

import pytest

from tests.conftest import REPO, run_cli, run_python, script_result

SMOKE = '--config=experiments/ddpm_ring8.py:smoke'

# name -> (overrides, text the error line must contain)
BAD_INPUTS = {
  'unknown objective': (['--config.objective.name=ddpmm'], "objective.name='ddpmm'"),
  'unknown model': (['--config.model.name=resnet'], "model.name='resnet'"),
  'unknown dataset': (['--config.data.name=ring9'], "data.name='ring9'"),
  'unknown sampler': (
    ['--config.diffusion.sample.sampler=ddjm'],
    "diffusion.sample.sampler='ddjm'",
  ),
  'unknown metric': (['--config.eval.metrics=fid'], "eval.metrics: 'fid'"),
  'inception score of 2-D points': (
    ['--config.eval.metrics=inception_score'],
    "eval.metrics 'inception_score' needs a feature network with class logits",
  ),
  'bad metric option': (
    ['--config.eval.kid_subsets=0'],
    'eval.kid_subsets must be an integer >= 1',
  ),
  'unknown feature network': (
    ['--config.eval.metrics=fd', '--config.eval.features=vgg'],
    "eval.features: 'vgg' is unknown",
  ),
  'sampler for another process': (
    ['--config.diffusion.sample.sampler=heun'],
    "diffusion.sample.sampler='heun' needs a continuous-time process",
  ),
  'sampler option out of range': (
    ['--config.diffusion.sample.sampler=ddim', '--config.diffusion.sample.eta=2'],
    'diffusion.sample.eta=2.0 must be in [0, 1]',
  ),
  'config typo': (['--config.optim.lrr=0.1'], '--config.optim.lrr: no such config field'),
  'bad value type': (['--config.optim.lr=fast'], '--config.optim.lr'),
  'negative lr': (['--config.optim.lr=-0.001'], 'optim.lr must be > 0'),
  'zero lr': (['--config.optim.lr=0'], 'optim.lr must be > 0'),
  'ema rate': (['--config.train.ema_rate=1.5'], 'train.ema_rate'),
  'nonfinite policy': (['--config.train.on_nonfinite=ignore'], 'train.on_nonfinite'),
  'batch not divisible': (
    ['--config.data.batch_size=12'],
    'data.batch_size=12 must be a positive multiple of the device count 8',
  ),
  'batch larger than the data': (
    ['--config.data.name=digits', '--config.model.name=unet', '--config.data.batch_size=2048'],
    'data.batch_size=2048 is larger than the 1500 training examples',
  ),
  'points into the U-Net': (['--config.model.name=unet'], "model.name='unet' takes images"),
  'image shape the U-Net cannot take': (
    [
      '--config.data.name=digits',
      '--config.model.name=unet',
      '--config.model.unet.ch_mult=1,2,2,2,2',
    ],
    'H and W must be divisible by 16',
  ),
  'images into the MLP': (
    ['--config.data.name=digits'],
    "model.name='mlp' takes flat vectors",
  ),
}


def _batch(cases: list[list[str]], tmp_path) -> list[dict]:
  """Runs the command lines in one gen.main process (tests/cli_batch.py, 8 simulated devices)."""
  path = tmp_path / 'cases.json'
  path.write_text(json.dumps(cases))
  return script_result([os.path.join(REPO, 'tests', 'cli_batch.py'), str(path)])


def _case_args(case: str, root) -> list[str]:
  """The command line of a BAD_INPUTS case, with its own workdir and data folder under root."""
  return [
    SMOKE,
    f'--workdir={root / case / "run"}',
    f'--config.data.data_dir={root / case / "tfds"}',
    *BAD_INPUTS[case][0],
  ]


@pytest.fixture(scope='module')
def bad_input_results(tmp_path_factory):
  """Every BAD_INPUTS case, run once in a single gen.main process: (root, case -> result)."""
  root = tmp_path_factory.mktemp('bad_inputs')
  cases = sorted(BAD_INPUTS)
  results = _batch([_case_args(c, root) for c in cases], root)
  return root, dict(zip(cases, results, strict=True))


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly(case, bad_input_results):
  root, results = bad_input_results
  out = results[case]
  assert out['returncode'] == 2
  last = out['stderr'].strip().splitlines()[-1]
  assert last.startswith('error: ') and BAD_INPUTS[case][1] in last, out['stderr'][-2000:]
  assert 'Traceback' not in out['stderr']
  assert not (root / case / 'run').exists()  # nothing written


@pytest.mark.parametrize(
  'case', ['config typo', pytest.param('batch not divisible', marks=pytest.mark.slow)]
)
def test_bad_input_in_its_own_process(case, tmp_path):
  """Two of the cases as real `python -m gen.main` processes: the batch behaves as they do."""
  proc = run_cli(
    _case_args(case, tmp_path),
    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
    timeout=120,
  )
  assert proc.returncode == 2
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and BAD_INPUTS[case][1] in last, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and not (tmp_path / case / 'run').exists()


def test_more_bad_inputs_in_one_process(tmp_path):
  """A missing TFDS dataset, an unwritable or empty workdir, an empty dataset name, and a
  corrupt W/config.json in train, sample and eval mode (named, never overwritten)."""
  data_dir, blocker, corrupt = tmp_path / 'tfds', tmp_path / 'a_file', tmp_path / 'corrupt'
  data_dir.mkdir()
  blocker.write_text('not a folder')
  corrupt.mkdir()
  (corrupt / 'config.json').write_text('{"data": {"name": "ring8",')  # cut off mid-write
  before = (corrupt / 'config.json').read_bytes()
  run = tmp_path / 'run'
  mnist = ['--config.data.name=mnist', '--config.model.name=unet']
  cases = {
    'missing tfds dataset': (
      [SMOKE, f'--workdir={run}', *mnist, f'--config.data.data_dir={data_dir}'],
      'not prepared',
    ),
    'non-writable workdir': ([SMOKE, f'--workdir={blocker}/run'], 'is not writable'),
    'eval of an empty workdir': (
      [SMOKE, f'--workdir={tmp_path / "nothing"}', '--mode=eval'],
      'holds no run',
    ),
    'empty dataset name': (
      [SMOKE, f'--workdir={run}', '--config.data.name='],
      "data.name='' is empty; choose an embedded dataset",
    ),
  }
  for mode in ('train', 'sample', 'eval'):
    cases[f'corrupt config, {mode}'] = (
      [f'--workdir={corrupt}', f'--mode={mode}'] + ([SMOKE] if mode == 'train' else []),
      f'{corrupt}/config.json is unreadable (JSONDecodeError',
    )
  results = _batch([args for args, _ in cases.values()], tmp_path)
  for (name, (_, expected)), out in zip(cases.items(), results, strict=True):
    assert out['returncode'] == 2, (name, out)
    last = out['stderr'].strip().splitlines()[-1]
    assert last.startswith('error: ') and expected in last, (name, out['stderr'][-2000:])
    assert 'Traceback' not in out['stderr'], name
  assert not run.exists() and not (tmp_path / 'nothing').exists()
  assert 'gen prepare --dataset=mnist' in results[0]['stderr'] and os.listdir(data_dir) == []
  assert (corrupt / 'config.json').read_bytes() == before and os.listdir(corrupt) == ['config.json']


@pytest.mark.slow
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


@pytest.mark.slow
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
  changed.diffusion.sample.num_steps = 5  # how to sample: free in eval and sample mode only
  for mode in ('sample', 'eval'):
    workdir_lib.check_workdir(str(tmp_path), changed, mode)
  with pytest.raises(ConfigError, match=r'different config \(diffusion\.sample\.num_steps\)'):
    workdir_lib.check_workdir(str(tmp_path), changed, 'train')
  changed.optim.lr *= 2
  for mode in ('sample', 'eval'):
    with pytest.raises(ConfigError, match=r'different config \(optim\.lr\)'):
      workdir_lib.check_workdir(str(tmp_path), changed, mode)
  restored = workdir_lib.read_config(str(tmp_path))
  assert restored.model.mlp.features == saved.model.mlp.features  # tuples come back as tuples
  assert workdir_lib.config_to_dict(restored) == workdir_lib.config_to_dict(saved)


@pytest.mark.slow  # three processes of the CLI
@pytest.mark.timeout(300)
def test_each_command_help_lists_its_own_flags_and_no_tpu_probe_line():
  """`gen train --help` (the console script, whose main module defines no flags) lists
  --config, --workdir and --mode; `gen score --help` its options; no TPU-probe INFO line."""
  train = run_python(['-m', 'gen.cli', 'train', '--help'])
  assert train.returncode == 0, train.stderr
  assert train.stdout.startswith('usage: gen train --config=FILE')
  for flag in ('--config:', '--workdir:', '--mode:', '--num_samples:'):
    assert flag in train.stdout, flag
  score = run_python(['-m', 'gen.cli', 'score', '-h'])
  assert score.returncode == 0 and '--fd_bootstrap:' in score.stdout and '--num:' in score.stdout
  for proc in (train, score):
    assert "Unable to initialize backend 'tpu'" not in proc.stderr
  bad = run_python(['-m', 'gen.cli', 'stats', '--dataset=digits', '--split=nope'])
  assert bad.returncode == 2 and "Unable to initialize backend 'tpu'" not in bad.stderr
