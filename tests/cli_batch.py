"""Runs many `python -m gen.main ARGS` command lines in one process (for the bad-input tests).

  python tests/cli_batch.py CASES.json    # CASES: a JSON list of argument lists

Each command line goes through gen.main's own flag parsing and `run`, as `python -m gen.main`
does (after removing the previous line's `--config.*` override flags and `FLAGS.unparse_flags()`);
its exit status and what it printed
to stderr are collected, an uncaught exception counting as exit status 1 with its traceback.
Prints `RESULT [{"returncode": ..., "stderr": ...}, ...]`. One process instead of one per case:
starting Python and importing JAX costs seconds per command line. The process has 8 simulated
CPU devices, so a batch size that does not divide by 8 is one of the cases.
"""

import contextlib
import io
import json
import os
import sys
import traceback

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
os.environ['JAX_PLATFORMS'] = 'cpu'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import flags  # noqa: E402

from gen import main as gen_main  # noqa: E402


def run_one(args: list[str]) -> dict:
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:  # the last run's overrides
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  sys.argv = ['gen.main', *args]  # config_flags reads the --config.* overrides from sys.argv
  err = io.StringIO()
  code = 0
  with contextlib.redirect_stderr(err):
    try:
      code = gen_main.run(gen_main.parse_flags(sys.argv))
    except SystemExit as e:
      code = e.code
    except Exception:  # noqa: BLE001 - a traceback is what the test must not see
      traceback.print_exc()
      code = 1
  return {'returncode': code, 'stderr': err.getvalue()}


if __name__ == '__main__':
  with open(sys.argv[1]) as f:
    cases = json.load(f)
  print('RESULT ' + json.dumps([run_one(args) for args in cases]))
