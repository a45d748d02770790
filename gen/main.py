"""`python -m gen.main --config=experiments/NAME.py[:arg] --workdir=W [--mode=train|eval|sample]`.

Bad input (an unknown name, a bad value, a workdir holding another run, a config file that is
missing or does not load) fails with one line naming the field or file and what is allowed,
before anything is compiled or written.

Paths: `--workdir`, `--compilation_cache` and `--config.data.data_dir` are made absolute here,
against the current directory (`~` expanded), so relative paths work from any folder. An
experiment file `.../experiments/NAME.py` may be given from any folder too: the folder above
`experiments/` goes on the import path (experiment files import `experiments.base`).

In `--mode=eval|sample`, `--config` is optional: `W/config.json` is the run's own config. These
modes only read what training writes; with `--output_dir=D` they write to D instead of W (D gets
`samples/`, `eval/` and `tb/` as W would), so a run on a read-only mount can be evaluated.
"""

import os
import re
import sys
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

from gen.errors import ConfigError
from gen.utils import paths

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  'config', None, 'Experiment file, e.g. experiments/ddpm_ring8.py[:smoke].', lock_config=True
)
flags.DEFINE_string(
  'workdir', None, 'Run directory (config, checkpoints, metrics, samples); relative or ~ is fine.'
)
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample'], 'What to do.')
flags.DEFINE_integer('num_samples', 1000, '--mode=sample: how many samples to write.')
flags.DEFINE_integer('step', None, '--mode=eval|sample: checkpoint step (default: latest).')
flags.DEFINE_string(
  'output_dir',
  None,
  '--mode=eval|sample: write samples, eval JSON and pictures to this folder (laid out as in the '
  'workdir) and only read the workdir, e.g. a read-only or shared run.',
)
flags.DEFINE_bool('allow_config_change', False, 'Continue a workdir whose config differs.')
flags.DEFINE_bool(
  'multihost', False, 'Start jax.distributed (every process runs this command; see launch/).'
)
flags.DEFINE_string('coordinator_address', None, '--multihost: host:port of process 0.')
flags.DEFINE_integer('num_processes', None, '--multihost: number of processes.')
flags.DEFINE_integer('process_id', None, '--multihost: this process (0 .. num_processes - 1).')
flags.DEFINE_list('local_device_ids', None, '--multihost: local device ids, e.g. 0,1.')
flags.DEFINE_string(
  'compilation_cache',
  '',
  "JAX's persistent compilation cache folder; '' = $JAX_COMPILATION_CACHE_DIR if set, else "
  "<workdir>/../.jax_cache; 'none' = off.",
)


def enable_compilation_cache(workdir: str, folder: str) -> None:
  """Turns on JAX's persistent compilation cache (a restart skips recompiling)."""
  import jax

  if folder == 'none':
    return
  default = os.path.join(os.path.dirname(paths.absolute(workdir)), '.jax_cache')
  folder = paths.absolute(folder or os.environ.get('JAX_COMPILATION_CACHE_DIR') or default)
  if not _writable_folder(folder):  # a read-only run's parent: cache somewhere writable
    fallback = os.path.join(tempfile.gettempdir(), f'gen_jax_cache_{os.getuid()}')
    logging.info('compilation cache %s is not writable; using %s', folder, fallback)
    folder = fallback
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def _writable_folder(folder: str) -> bool:
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return False
  return os.access(folder, os.W_OK | os.X_OK)


class _QuietLibraries:
  """A log filter: orbax and absl-internal INFO chatter hides gen's own progress lines, and
  orbax's warnings and errors come without their tracebacks (a failed save is reported once,
  as one `error:` line, by the loop)."""

  NOISY = ('/orbax/', '/tensorflow_datasets/', '/grain/')

  def filter(self, record) -> bool:
    if record.name == 'asyncio' and 'exception was never retrieved' in str(record.msg):
      return False  # orbax's write tasks of a failed save, seen again at exit
    noisy = any(p in record.pathname for p in self.NOISY)
    if noisy and record.levelno >= 30:
      record.exc_info = record.exc_text = None
    return record.levelno >= 30 or not noisy


def _quiet_closed_loop(unraisable) -> None:
  """sys.unraisablehook: after a failed async save, tensorstore's remaining write callbacks reach
  orbax's already closed event loop and each would print a traceback ('Event loop is closed');
  the failure itself is reported once, by the loop. Everything else goes to the default hook."""
  e = unraisable.exc_value
  if isinstance(e, RuntimeError) and str(e) == 'Event loop is closed':
    return
  sys.__unraisablehook__(unraisable)


def resolve_config(config, workdir: str, mode: str):
  """The config to run: `--config` with its folders made absolute, or in eval/sample mode
  without `--config`, the run's own `W/config.json`."""
  from gen.utils import workdir as workdir_lib

  if config is None:
    if mode == 'train':
      raise ConfigError('--config is required to train (e.g. --config=experiments/ddpm_ring8.py)')
    return workdir_lib.read_config(workdir)
  if config.data.data_dir:
    config.data.data_dir = paths.absolute(config.data.data_dir)
  for role, value in (config.get('pretrained') or {}).items():  # 'WORKDIR[@STEP]'
    if value:
      workdir, at, step = value.rpartition('@') if '@' in value else (value, '', '')
      config.pretrained[role] = paths.absolute(workdir) + at + step
  return config


def run(argv) -> int:
  """Runs the selected mode; returns the process exit status."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from gen import modes, train
  from gen.utils import checkpoint as ckpt_lib

  logging.get_absl_handler().addFilter(_QuietLibraries())
  sys.unraisablehook = _quiet_closed_loop
  from gen import distributed

  if distributed.wanted(FLAGS.multihost):
    ids = [int(i) for i in FLAGS.local_device_ids] if FLAGS.local_device_ids else None
    distributed.initialize(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, local_device_ids=ids
    )
  if not FLAGS.workdir:
    print('error: --workdir is required', file=sys.stderr)
    return 2
  workdir = paths.absolute(FLAGS.workdir)
  output_dir = paths.absolute(FLAGS.output_dir) if FLAGS.output_dir else None
  if output_dir and FLAGS.mode == 'train':
    print(
      'error: --output_dir is for --mode=eval|sample; training writes its workdir', file=sys.stderr
    )
    return 2
  try:
    config = resolve_config(FLAGS.config, workdir, FLAGS.mode)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  enable_compilation_cache(output_dir or workdir, FLAGS.compilation_cache)
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(config, workdir, FLAGS.allow_config_change)
    elif FLAGS.mode == 'eval':
      modes.evaluate(config, workdir, FLAGS.step, output_dir=output_dir)
    else:
      modes.sample(config, workdir, FLAGS.num_samples, FLAGS.step, output_dir=output_dir)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except ckpt_lib.CheckpointSaveError as e:
    print(f'error: {e}', file=sys.stderr)
    _exit_now(1)  # orbax's cancelled background writes must not print at shutdown
  except train.NonFiniteError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except train.Interrupted as e:
    logging.warning('%s', e)
    return e.code
  return 0


def _exit_now(code: int) -> None:
  """Exits at once, without the interpreter's shutdown, after a failed save: the manager is
  closed and everything saved is final or left as a `*-tmp` folder that orbax ignores, but
  tensorstore's cancelled writes would each print a traceback while Python shuts down."""
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def main(argv) -> None:
  sys.exit(run(argv))


def _config_arg(argv: list[str]) -> str | None:
  """The value of `--config=V` (or `--config V`) in `argv`, None without one."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg[len('--config=') :]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def check_config_file(value: str) -> None:
  """Fails with one line when the `--config` file does not exist; puts the folder above an
  `experiments/` folder on the import path (experiment files import `experiments.base`)."""
  path = value.partition(':')[0]
  if not os.path.isfile(os.path.expanduser(path)):
    where = f' (in {os.getcwd()})' if not os.path.isabs(os.path.expanduser(path)) else ''
    raise ConfigError(f'--config={value}: no such file{where}')
  root = paths.repo_root_of_experiment(os.path.expanduser(path))
  if root and root not in sys.path:
    sys.path.insert(0, root)


def _load_error(value: str, e: BaseException) -> str:
  """One line for a config file that does not load (syntax error, a raise in get_config)."""
  if isinstance(e, SyntaxError):
    return f'--config={value}: SyntaxError in {e.filename}, line {e.lineno}: {e.msg}'
  text = (str(e).strip().splitlines() or [''])[0]
  return f'--config={value}: {type(e).__name__}: {text}'


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a missing or broken config file, a config typo (`--config.optim.lrr`)
  or a bad flag is reported as one line (exit status 2)."""
  value = _config_arg(argv[1:])
  try:
    if value is not None:
      check_config_file(value)
    return FLAGS(argv)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
  except flags.Error as e:
    text = str(e)
    if 'Error whilst parsing config file' in text:  # get_config raised: its last line says why
      lines = [line.strip() for line in text.splitlines() if line.strip()]
      text = f'--config={value}: {lines[-1]}'
    print(f'error: {text}', file=sys.stderr)
  except (AttributeError, KeyError) as e:
    names = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    if not names:  # not an override: the config file itself raised
      print(f'error: {_load_error(value, e)}', file=sys.stderr)
      sys.exit(2)
    key = re.search(r'(\w+)', str(e))  # the missing field's name comes first
    bad = next((n for n in names if key and f'.{key.group(1)}' in n), names[0])
    match = re.search(r'Did you mean "([^"]+)"', str(e))
    hint = f' (did you mean {match.group(1)!r}?)' if match else ''
    print(f'error: {bad}: no such config field{hint}', file=sys.stderr)
  except Exception as e:  # noqa: BLE001 - loading the config file ran its code
    print(f'error: {_load_error(value, e)}', file=sys.stderr)
  sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
