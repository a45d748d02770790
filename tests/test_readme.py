"""The README's own commands, as a newcomer types them, in a fresh copy of the repository.

The two commands are read from README.md, so this fails when the README changes without it:
the main command's `gen.main` part runs with `:smoke` and its *relative* workdir from the
copy's root; then `--mode=sample`, a resume, `--mode=eval` and `gen report`. Every file the
README's run-directory section names must then exist, and the checkpoints must be final.
"""

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import REPO, read_tensorboard, run_python

README = os.path.join(REPO, 'README.md')


def _readme() -> str:
  with open(README) as f:
    return f.read()


def _section(text: str, heading: str) -> str:
  start = text.index(heading)
  end = text.find('\n## ', start + len(heading))
  return text[start : end if end > 0 else len(text)]


def _code_blocks(section: str) -> list[str]:
  return re.findall(r'```(?:bash)?\n(.*?)```', section, re.DOTALL)


def two_commands() -> tuple[str, str]:
  """(main command, test command): the first two code blocks of the fresh-machine section."""
  blocks = _code_blocks(_section(_readme(), '## Two commands for a fresh machine'))
  main, tests = (b.strip() for b in blocks[:2])
  return main, tests


def run_directory_entries() -> list[tuple[str, bool]]:
  """(path with N for the step, image data only?) of every `W/...` line of the README's
  run-directory section."""
  block = _code_blocks(_section(_readme(), '## What a run leaves in its workdir'))[0]
  entries = []
  for line in block.splitlines():
    if line.startswith('W/'):
      entries.append((line.split()[0], 'image data only' in line))
  return entries


def _copy_repository(dest: str) -> None:
  """The files a clean checkout has (tracked, plus new files git does not ignore)."""
  listed = subprocess.run(
    ['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'],
    cwd=REPO,
    capture_output=True,
    check=True,
  ).stdout.decode()
  for rel in filter(None, listed.split('\0')):
    src = os.path.join(REPO, rel)
    if os.path.isfile(src):
      os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
      shutil.copy2(src, os.path.join(dest, rel))


def test_ci_runs_exactly_the_readme_test_command():
  _, tests = two_commands()
  with open(os.path.join(REPO, '.ci', 'run')) as f:
    lines = [line.strip() for line in f]
  assert tests in lines
  fast = '.venv/bin/python -m pytest -q -m "not slow" -n 2 --dist loadfile'
  assert fast in _readme()  # the fast tier, shown


def test_main_command_is_the_documented_experiment():
  main, _ = two_commands()
  assert main.startswith('python3.11 -m venv .venv && .venv/bin/pip install')
  assert '-r requirements.lock' in main
  assert ' -m gen.main ' in main.split('&&')[-1]


@pytest.mark.timeout(600)
def test_readme_commands_in_a_fresh_copy(tmp_path):
  main, _ = two_commands()
  argv = shlex.split(main.split('&&')[-1])
  assert argv[1:3] == ['-m', 'gen.main'], argv
  gen_args = [a + ':smoke' if a.startswith('--config=') else a for a in argv[3:]]
  workdir = next(a.split('=', 1)[1] for a in gen_args if a.startswith('--workdir='))
  assert not os.path.isabs(workdir) and not workdir.startswith('~'), workdir
  root = tmp_path / 'gen'
  _copy_repository(str(root))
  env = {'TFDS_DATA_DIR': str(tmp_path / 'tfds')}

  def run(*args, module='gen.main'):
    proc = run_python(['-m', module, *args], cwd=root, env=env)
    assert proc.returncode == 0, (args, proc.stderr[-3000:])
    return proc

  run(*gen_args)  # the main command, :smoke: 20 steps, checkpoints at 10 and 20
  run(*gen_args, '--mode=sample', '--num_samples=64')
  resumed = run(*gen_args, '--config.train.num_steps=30')  # a resume: 20 -> 30
  assert 'restored checkpoint of step 20' in resumed.stderr
  run(*gen_args, '--mode=eval')
  run('report', f'--workdir={workdir}', module='gen.cli')

  w = root / workdir
  final = 30
  for entry, images_only in run_directory_entries():
    if images_only:
      continue  # ring8 is 2-D data (tests/test_evaluation.py covers the image pictures)
    sampled = entry.endswith('.npz') or '_sampled' in entry
    step = 20 if sampled else final  # --mode=sample ran on step 20
    path = w / entry[len('W/') :].replace('N', str(step))
    assert path.exists(), entry
  checkpoints = sorted(os.listdir(w / 'checkpoints'))
  assert checkpoints and not [c for c in checkpoints if 'tmp' in c], checkpoints
  assert str(final) in checkpoints
  logged = [json.loads(line)['step'] for line in open(w / 'metrics.jsonl') if '"loss"' in line]
  assert logged == sorted(set(logged)) and logged[-1] == final, logged  # no step twice
  with open(w / 'eval' / f'step_{final}.json') as f:
    assert json.load(f)['protocol']['sample']['sampler'] == 'ddpm'
  events = read_tensorboard(str(w))
  assert final in events['samples'] and final in events['eval/sliced_w2'], sorted(events)
