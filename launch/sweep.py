"""`python -m launch.sweep --config=experiments/NAME.py[:arg] --workdir_root=R [--parallel=N]
[--dry_run] [--config.a.b=v ...]`: one `gen.main` training run per entry of the experiment's
`sweep()`, then one summary table.

The experiment file defines, next to `get_config(arg=None)`,

  def sweep():
    return [{'optim.lr': 3e-4}, {'optim.lr': 1e-3}, {'optim.lr': 3e-3}]

a list of override dicts (dotted config path -> value), each applied on top of `get_config(arg)`.
Every path must name an existing leaf of that config and every value must have the field's type
(an int is fine for a float field, a list for a tuple); both are checked, and the extra
`--config.a.b=v` overrides given here (applied to every run) too, before anything starts.

Run i trains in `R/<name_i>`, the name built from its overrides (`optim.lr=0.001` -> `lr_0.001`,
several joined by `-`, characters outside [A-Za-z0-9_.=-] replaced by `_`, made unique), as

  sys.executable -m gen.main --config=... --workdir=R/<name> --config.optim.lr=0.001 [extra]

started from the repository root with its output (stdout and stderr) appended to `R/<name>.log`
(the config file, R and any folder in the extra overrides are made absolute first, against the
current directory, so the sweep can be started from any folder),
at most N at a time (with N > 1, XLA_PYTHON_CLIENT_PREALLOCATE=false unless set, so that runs
can share a GPU). A workdir that already holds the same run continues it (gen.main resumes from
its last checkpoint). A line per finished run gives its exit status; at the end the `gen compare`
table of the runs that succeeded is printed and written to `R/summary.md`. Exit status: 0 if every
run succeeded, 1 if one failed, 2 for bad input (one `error:` line, nothing started), 128+signal
if the sweep was interrupted (running runs get the signal, save a checkpoint and stop).

`--dry_run` prints each run's command line, one per line, and exits.
"""

import argparse
import dataclasses
import difflib
import hashlib
import importlib.util
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python launch/sweep.py` as well as `python -m launch.sweep`
  sys.path.insert(0, REPO)

from gen.utils import lock as lock_lib  # noqa: E402
from gen.utils import paths  # noqa: E402

SUMMARY_FILE = 'summary.md'
_MAX_NAME = 100  # longer names are cut and get a hash of the whole name
_OVERRIDE_RE = re.compile(r'--config\.([A-Za-z_][A-Za-z0-9_.]*)=(.*)', re.DOTALL)


class SweepError(ValueError):
  """Bad sweep input: reported as one `error:` line (exit status 2) before any run starts."""


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  workdir: str
  log: str
  command: list[str]
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the swept values


# ---------------------------------------------------------------------------------------------
# Loading the experiment and checking its sweep.


def split_config_arg(config_arg: str) -> tuple[str, tuple[str, ...]]:
  """`experiments/X.py:smoke` -> (`experiments/X.py`, ('smoke',)), as ml_collections splits it."""
  path, *args = config_arg.split(':', 1)
  return path, tuple(args)


def load_experiment(path: str):
  """The experiment file's module (it may import `experiments.*`: the repository is on the path)."""
  if not os.path.isfile(path):
    raise SweepError(f'{path}: no such experiment file')
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  stem = re.sub(r'\W', '_', os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(f'_sweep_experiment_{stem}', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:
    raise SweepError(f'{path}: importing it raised {type(e).__name__}: {e}') from None
  return module


def leaves(config, prefix: str = '') -> dict[str, Any]:
  """Dotted path -> value of every leaf of a ConfigDict (or nested dict)."""
  out = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      out.update(leaves(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _no_field(path: str, fields: Mapping[str, Any], where: str) -> SweepError:
  sections = {p.rsplit('.', k)[0] for p in fields for k in range(1, p.count('.') + 1)}
  if path in sections:
    return SweepError(f'{where}{path} is a config section, not a field: override its fields')
  close = difflib.get_close_matches(path, list(fields), n=1)
  hint = f' (did you mean {close[0]!r}?)' if close else ''
  return SweepError(f'{where}{path}: no such config field{hint}')


def format_value(value: Any) -> str:
  """The command-line text of an override value, as `--config.a.b=TEXT` reads it back."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, int | float):
    return repr(value)
  if isinstance(value, tuple | list):
    if not value:
      return '()'
    return ','.join(repr(v) for v in value) + (',' if len(value) == 1 else '')
  return str(value)


def _parser(current: Any):
  """The parser `--config.a.b=TEXT` uses for a field holding `current` (None: other types)."""
  from absl import flags
  from ml_collections.config_flags import tuple_parser

  for kind, parser in (
    (bool, flags.BooleanParser()),
    (int, flags.IntegerParser()),
    (float, flags.FloatParser()),
    (str, flags.ArgumentParser()),
    (tuple, tuple_parser.TupleParser()),
  ):
    if isinstance(current, kind):
      return parser
  return None


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, tuple) and isinstance(b, tuple):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return True
  return type(a) is type(b) and a == b


def check_value(path: str, current: Any, value: Any, whole: Any = None) -> Any:
  """`value` for the field at `path` (now `current`); lists become tuples. SweepError if its type
  is wrong (an int may stand for a float; a tuple's elements must match the current ones when
  those all have one type) or it would not read back the same from the command line. `whole`:
  the tuple field's value when `current` is one of its elements."""

  def wrong(expected: str) -> SweepError:
    holds = current if whole is None else whole
    return SweepError(f'{path}={value!r}: expected {expected} (the field holds {holds!r})')

  if isinstance(current, bool):
    if not isinstance(value, bool):
      raise wrong('a bool')
  elif isinstance(current, int):
    if isinstance(value, bool) or not isinstance(value, int):
      raise wrong('an int')
  elif isinstance(current, float):
    if isinstance(value, bool) or not isinstance(value, int | float):
      raise wrong('a float')
  elif isinstance(current, str):
    if not isinstance(value, str):
      raise wrong('a string')
  elif isinstance(current, tuple):
    if not isinstance(value, tuple | list):
      raise wrong('a tuple')
    value = tuple(value)
    kinds = {type(v) for v in current}
    if len(kinds) == 1:
      value = tuple(
        check_value(f'{path}[{i}]', current[0], v, current) for i, v in enumerate(value)
      )
  else:
    raise SweepError(f'{path}: a field of type {type(current).__name__} cannot be overridden')
  text = format_value(value)
  try:
    back = _parser(current).parse(text)
  except (ValueError, SyntaxError) as e:
    raise SweepError(
      f'{path}={value!r}: {text!r} does not parse back on the command line: {e}'
    ) from None
  if not _same(back, float(value) if isinstance(current, float) else value):
    raise SweepError(f'{path}={value!r}: {text!r} reads back as {back!r} on the command line')
  return value


def check_sweep(config, overrides_list: Any) -> list[dict[str, Any]]:
  """The sweep's override dicts, each path checked against `config` and each value's type
  checked (lists made tuples); SweepError on the first problem."""
  if not isinstance(overrides_list, list | tuple) or not overrides_list:
    raise SweepError(f'sweep() must return a non-empty list of dicts, not {overrides_list!r}')
  fields = leaves(config)
  checked = []
  for i, overrides in enumerate(overrides_list):
    where = f'sweep()[{i}]: '
    if not isinstance(overrides, Mapping):
      raise SweepError(f'{where}{overrides!r} is not a dict of config path -> value')
    run = {}
    for path, value in overrides.items():
      if not isinstance(path, str):
        raise SweepError(f'{where}key {path!r} is not a dotted config path')
      if path not in fields:
        raise _no_field(path, fields, where)
      try:
        run[path] = check_value(path, fields[path], value)
      except SweepError as e:
        raise SweepError(f'{where}{e}') from None
    checked.append(run)
  return checked


def check_extra(config, extra: Sequence[str], swept: set[str]) -> list[str]:
  """The `--config.a.b=v` overrides for every run, each checked to name a field that exists and
  that the sweep does not set, with a value its type reads."""
  fields = leaves(config)
  for arg in extra:
    m = _OVERRIDE_RE.fullmatch(arg)
    if not m:
      raise SweepError(f'unexpected argument {arg!r}; overrides for every run: --config.a.b=VALUE')
    path, text = m.groups()
    if path not in fields:
      raise _no_field(path, fields, '--config.')
    if path in swept:
      raise SweepError(f'--config.{path}: sweep() sets this field; remove one of the two')
    try:
      if _parser(fields[path]) is not None:
        _parser(fields[path]).parse(text)
    except (ValueError, SyntaxError) as e:
      raise SweepError(f'--config.{path}={text}: {e}') from None
  return list(extra)


# ---------------------------------------------------------------------------------------------
# Names and command lines (pure).


def _name_text(value: Any) -> str:
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, tuple | list):
    return ','.join(_name_text(v) for v in value)
  return repr(value) if isinstance(value, float) else str(value)


def _labels(paths: Sequence[str]) -> dict[str, str]:
  """Each path's shortest dotted suffix that no other path ends with (`optim.lr` -> `lr`, but
  `optim.lr` and `gan.optim_d.lr` keep `optim.lr` and `optim_d.lr`)."""
  unique = list(dict.fromkeys(paths))
  labels = {}
  for path in unique:
    parts = path.split('.')
    for k in range(1, len(parts) + 1):
      label = '.'.join(parts[-k:])
      if not any(q != path and (q == label or q.endswith('.' + label)) for q in unique):
        break
    labels[path] = label
  return labels


def _sanitise(name: str) -> str:
  name = re.sub(r'[^A-Za-z0-9_.=-]+', '_', name)
  if len(name) > _MAX_NAME:
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    name = f'{name[: _MAX_NAME - 9]}-{digest}'
  return name


def run_name(overrides: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
  """A run directory name from one override dict: `{'optim.lr': 0.001}` -> `lr_0.001`, several
  joined by `-`, `default` for none; `labels` maps paths to the names used (default: the shortest
  unambiguous dotted suffix among this dict's paths)."""
  if not overrides:
    return 'default'
  labels = labels or _labels(list(overrides))
  return _sanitise('-'.join(f'{labels[p]}_{_name_text(v)}' for p, v in overrides.items()))


def run_names(overrides_list: Sequence[Mapping[str, Any]]) -> list[str]:
  """`run_name` of every run, labels chosen over the whole sweep; a repeated name gets `-2`,
  `-3`, ... (compared case-insensitively, for case-insensitive file systems; a run's log
  `<name>.log` counts as taken too)."""
  labels = _labels([p for overrides in overrides_list for p in overrides])
  names, taken = [], set()  # run folders and their logs
  for overrides in overrides_list:
    base = name = run_name(overrides, labels)
    i = 1
    while {name.casefold(), f'{name}.log'.casefold()} & taken:
      i += 1
      name = f'{base}-{i}'
    taken |= {name.casefold(), f'{name}.log'.casefold()}
    names.append(name)
  return names


def commands(
  config_path: str,
  overrides_list: Sequence[Mapping[str, Any]],
  workdir_root: str,
  extra: Sequence[str] = (),
) -> list[list[str]]:
  """The argv of every run: `sys.executable -m gen.main --config=CONFIG_PATH
  --workdir=WORKDIR_ROOT/<name> --config.PATH=VALUE ... EXTRA...` (`config_path` may end in
  `:arg`)."""
  out = []
  for name, overrides in zip(run_names(overrides_list), overrides_list, strict=True):
    out.append(
      [
        sys.executable,
        '-m',
        'gen.main',
        f'--config={config_path}',
        f'--workdir={os.path.join(workdir_root, name)}',
        *(f'--config.{p}={format_value(v)}' for p, v in overrides.items()),
        *extra,
      ]
    )
  return out


def plan(
  config_path: str,
  overrides_list: Sequence[Mapping[str, Any]],
  workdir_root: str,
  extra: Sequence[str] = (),
) -> list[Run]:
  """The runs: name, workdir, log file and command of each."""
  names = run_names(overrides_list)
  argvs = commands(config_path, overrides_list, workdir_root, extra)
  return [
    Run(
      name,
      os.path.join(workdir_root, name),
      os.path.join(workdir_root, f'{name}.log'),
      argv,
      dict(overrides),
    )
    for name, argv, overrides in zip(names, argvs, overrides_list, strict=True)
  ]


# ---------------------------------------------------------------------------------------------
# Running.


class _Stop(Exception):
  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def _raise_stop(signum, frame):
  del frame
  raise _Stop(signum)


def _last_line(path: str) -> str:
  try:
    with open(path, 'rb') as f:
      f.seek(max(0, os.path.getsize(path) - 4096))
      lines = [s.strip() for s in f.read().decode(errors='replace').splitlines() if s.strip()]
  except OSError:
    return ''
  return lines[-1][:200] if lines else ''


def run_all(runs: Sequence[Run], parallel: int = 1, env: Mapping[str, str] | None = None):
  """Runs the commands from the repository root, at most `parallel` at a time, each one's output
  appended to its log; prints a line per finished run. Returns ({name: exit status} of the runs
  that finished, the signal number that stopped the sweep or None)."""
  pending, running, results = list(runs), {}, {}
  stopped = None
  try:
    previous = signal.signal(signal.SIGTERM, _raise_stop)
  except ValueError:  # not the main thread: leave SIGTERM alone
    previous = None
  try:
    while pending or running:
      try:
        while pending and len(running) < parallel and stopped is None:
          run = pending.pop(0)
          os.makedirs(os.path.dirname(run.log) or '.', exist_ok=True)
          log = open(run.log, 'a')  # closed when the run ends
          log.write(f'$ {shlex.join(run.command)}\n')
          log.flush()
          proc = subprocess.Popen(
            run.command,
            cwd=REPO,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
          )
          running[proc] = (run, log, time.monotonic())
        for proc in [p for p in running if p.poll() is not None]:
          run, log, start = running.pop(proc)
          log.close()
          results[run.name] = proc.returncode
          status = 'ok' if proc.returncode == 0 else 'FAILED'
          if stopped is not None and proc.returncode == 128 + stopped:
            status = 'stopped'
          line = (
            f'[{len(results)}/{len(runs)}] {run.name}: exit {proc.returncode} ({status}, '
            f'{time.monotonic() - start:.1f} s; log {run.log})'
          )
          if proc.returncode != 0 and _last_line(run.log):
            line += f': {_last_line(run.log)}'
          print(line, flush=True)
        if running:
          time.sleep(0.1)
      except (KeyboardInterrupt, _Stop) as e:
        if stopped is not None:
          raise
        stopped = e.signum if isinstance(e, _Stop) else signal.SIGINT
        print(
          f'stopping: signal {stopped} to {len(running)} running run(s); '
          f'{len(pending)} not started',
          flush=True,
        )
        pending.clear()
        for proc in running:
          if proc.poll() is None:
            proc.send_signal(stopped)
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  return results, stopped


def summarize(
  workdirs: Sequence[str], path: str, fields: Sequence[str] = (), sort: str | None = None
) -> str:
  """The `gen compare` table (markdown) of `workdirs`, with the swept `fields` as columns and
  sorted by `sort` (a column; '-name' descending), also written to `path`."""
  from gen import compare

  table = compare.format_table(compare.compare(workdirs, list(fields), sort), 'markdown')
  with open(path, 'w') as f:
    f.write(table)
  return table


# ---------------------------------------------------------------------------------------------
# Command line.


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
    prog='python -m launch.sweep',
    description="One gen.main run per entry of the experiment file's sweep(), then a summary.",
    epilog='Other arguments --config.a.b=VALUE are overrides applied to every run.',
    allow_abbrev=False,
  )
  parser.add_argument('--config', required=True, help='experiments/NAME.py[:arg]')
  parser.add_argument('--workdir_root', required=True, help='runs go to ROOT/<name>')
  parser.add_argument('--parallel', type=int, default=1, help='runs at a time (default 1)')
  parser.add_argument('--dry_run', action='store_true', help='print the commands and exit')
  parser.add_argument(
    '--sort', default=None, help='sort the summary by this column, e.g. sliced_w2 or -modes_covered'
  )
  return parser.parse_known_args(argv)


def prepare(args: argparse.Namespace, extra: Sequence[str]) -> tuple[str, list[Run]]:
  """(workdir root, the checked runs) of the command line; SweepError on bad input."""
  if args.parallel < 1:
    raise SweepError(f'--parallel={args.parallel}: must be at least 1')
  path, config_args = split_config_arg(args.config)
  path = paths.absolute(path)  # relative paths and ~ mean what they mean here, not in REPO
  module = load_experiment(path)
  sweep = getattr(module, 'sweep', None)
  if not callable(sweep):
    raise SweepError(
      f'{path} has no sweep() function; add one returning a list of override dicts, '
      "e.g. [{'optim.lr': 3e-4}, {'optim.lr': 1e-3}]"
    )
  if not callable(getattr(module, 'get_config', None)):
    raise SweepError(f'{path} has no get_config() function')
  try:
    config = module.get_config(*config_args)
  except Exception as e:  # the experiment's own error, reported in one line
    raise SweepError(f'{args.config}: get_config raised {type(e).__name__}: {e}') from None
  try:
    raw = sweep()
  except Exception as e:
    raise SweepError(f'{path}: sweep() raised {type(e).__name__}: {e}') from None
  overrides_list = check_sweep(config, raw)
  extra = paths.absolute_args(check_extra(config, extra, {p for o in overrides_list for p in o}))
  config_for_runs = path + ''.join(f':{a}' for a in config_args)
  root = paths.absolute(args.workdir_root)
  runs = plan(config_for_runs, overrides_list, root, extra)
  held = [line for run in runs if (line := lock_lib.holder(run.workdir))]
  if held:  # a sweep started twice: refuse before starting anything (each run would refuse)
    more = f' (and {len(held) - 1} more run(s) of this sweep)' if len(held) > 1 else ''
    raise SweepError(held[0] + more)
  return root, runs


def main(argv: Sequence[str] | None = None) -> int:
  args, extra = _parse_args(sys.argv[1:] if argv is None else argv)
  try:
    root, runs = prepare(args, extra)
  except SweepError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.dry_run:
    for run in runs:
      print(shlex.join(run.command))
    return 0
  try:
    os.makedirs(root, exist_ok=True)
  except OSError as e:
    print(f'error: --workdir_root={args.workdir_root}: {e}', file=sys.stderr)
    return 2
  env = dict(os.environ)
  if args.parallel > 1:
    env.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  print(f'sweep: {len(runs)} run(s) in {root}, {args.parallel} at a time', flush=True)
  results, stopped = run_all(runs, args.parallel, env)
  done = [run.workdir for run in runs if results.get(run.name) == 0]
  failed = [name for name, rc in results.items() if rc != 0]
  if done:
    path = os.path.join(root, SUMMARY_FILE)
    try:
      swept = list(dict.fromkeys(f for run in runs for f in run.overrides))
      table = summarize(done, path, swept, args.sort)
    except (OSError, ValueError) as e:
      print(f'error: summary: {e}', file=sys.stderr)
      return 1
    print(f'\n{path}:\n{table}', end='', flush=True)
  else:
    print('no run succeeded: no summary', flush=True)
  if stopped is not None:
    return 128 + stopped
  if failed:
    print(f'{len(failed)} of {len(runs)} run(s) failed: {", ".join(failed)}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
