"""`python -m gen.main --config=experiments/NAME.py[:arg] --workdir=W [--mode=train|eval|sample]`.

Bad input (an unknown name, a bad value, a workdir holding another run) fails with one line
naming the field and what is allowed, before anything is compiled or written.
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  'config', None, 'Experiment file, e.g. experiments/ddpm_ring8.py[:smoke].', lock_config=True
)
flags.DEFINE_string('workdir', None, 'Run directory (config, checkpoints, metrics, samples).')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample'], 'What to do.')
flags.DEFINE_integer('num_samples', 1000, '--mode=sample: how many samples to write.')
flags.DEFINE_integer('step', None, '--mode=eval|sample: checkpoint step (default: latest).')
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
  default = os.path.join(os.path.dirname(os.path.abspath(workdir)), '.jax_cache')
  folder = folder or os.environ.get('JAX_COMPILATION_CACHE_DIR') or default
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


class _QuietLibraries:
  """A log filter: orbax and absl-internal INFO chatter hides gen's own progress lines."""

  NOISY = ('/orbax/', '/tensorflow_datasets/', '/grain/')

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(p in record.pathname for p in self.NOISY)


def run(argv) -> int:
  """Runs the selected mode; returns the process exit status."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from gen import train
  from gen.errors import ConfigError

  logging.get_absl_handler().addFilter(_QuietLibraries())
  from gen import distributed

  if distributed.wanted(FLAGS.multihost):
    ids = [int(i) for i in FLAGS.local_device_ids] if FLAGS.local_device_ids else None
    distributed.initialize(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, local_device_ids=ids
    )
  config, workdir = FLAGS.config, FLAGS.workdir
  if config is None or not workdir:
    print('error: --config and --workdir are required', file=sys.stderr)
    return 2
  enable_compilation_cache(workdir, FLAGS.compilation_cache)
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(config, workdir, FLAGS.allow_config_change)
    elif FLAGS.mode == 'eval':
      train.evaluate(config, workdir, FLAGS.step)
    else:
      train.sample(config, workdir, FLAGS.num_samples, FLAGS.step)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except train.NonFiniteError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except train.Interrupted as e:
    logging.warning('%s', e)
    return e.code
  return 0


def main(argv) -> None:
  sys.exit(run(argv))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with a config typo (`--config.optim.lrr`) reported as one line."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    key = re.search(r'(\w+)', str(e))  # the missing field's name comes first
    names = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    bad = next((n for n in names if key and f'.{key.group(1)}' in n), names[0] if names else '')
    match = re.search(r'Did you mean "([^"]+)"', str(e))
    hint = f' (did you mean {match.group(1)!r}?)' if match else ''
    print(f'error: {bad}: no such config field{hint}', file=sys.stderr)
  except flags.Error as e:
    print(f'error: {e}', file=sys.stderr)
  sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
