"""The `gen` console script: `gen train|eval|sample|prepare|stats|score|report|compare [flags]`.

`gen train --config=... --workdir=...` is `python -m gen.main --mode=train ...` (likewise eval,
sample). `gen prepare --dataset=NAME [--data_dir=D]` builds a TFDS dataset once, and `gen
prepare --inception [--source=PATH|URL] [--sha256=HEX]` fetches, checks and converts FID's
Inception weights: the only steps that may download. `gen stats --dataset=NAME --split=S
[--features=auto]` stores reference statistics with their recipe; `gen score A B` scores any set
A (an .npz, an image folder, NAME:SPLIT) against any set B as --mode=eval would (gen/score.py);
`gen report --workdir=W`
writes W/report.html; `gen compare W1 W2 ...` prints one table across runs (a sweep's summary).
"""

import os
import sys

from absl import app, flags

from gen.utils import paths

COMMANDS = ('train', 'eval', 'sample', 'prepare', 'stats', 'score', 'report', 'compare')
USAGE = f'usage: gen {{{",".join(COMMANDS)}}} [--flags]; `gen COMMAND --help` lists the flags'


def _prepare(argv) -> None:
  del argv
  from gen import data
  from gen.errors import ConfigError
  from gen.metrics import inception_weights

  f = flags.FLAGS
  if not (f.dataset or f.inception):
    print(
      'error: gen prepare needs --dataset=NAME (a TFDS dataset) or --inception (the FID '
      'Inception weights), or both',
      file=sys.stderr,
    )
    sys.exit(2)
  data_dir = paths.absolute(f.data_dir or data.default_data_dir())
  try:
    if f.inception:
      url = '://' in f.source
      source = f.source if url else paths.absolute(f.source)
      out, digest = inception_weights.prepare(
        source, f.out and paths.absolute(f.out), f.sha256, data_dir
      )
      print(f'wrote {out} (sha256 {digest}) from {source}')
    if f.dataset:
      data.prepare(f.dataset, data_dir)
      print(f'prepared {f.dataset} in {data_dir}')
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def _stats(argv) -> None:
  del argv
  from gen import data
  from gen.errors import ConfigError
  from gen.metrics import reference

  f = flags.FLAGS
  data_dir = paths.absolute(f.data_dir or data.default_data_dir())
  try:
    path = reference.make_stats(f.dataset, f.split, f.features, data_dir, f.overwrite)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(path)


def _score(argv) -> None:
  from gen import score

  f = flags.FLAGS
  if len(argv) != 3:
    print(
      f'error: gen score takes two sets A B (.npz, image folder or NAME:SPLIT), got {argv[1:]}',
      file=sys.stderr,
    )
    sys.exit(2)
  options = {
    name: f[name].value
    for name in (
      'is_splits',
      'kid_subsets',
      'kid_subset_size',
      'pr_k',
      'dc_k',
      'fd_bootstrap',
      'fd_infinity',
    )
  }
  sys.exit(
    score.score_main(
      argv[1],
      argv[2],
      output=f.output and paths.absolute(f.output),
      features=f.features,
      metrics=[m for m in f.metrics if m],
      options=options,
      seed=f.seed,
      dataset=f.dataset,
      data_dir=f.data_dir and paths.absolute(f.data_dir),
      key=f.key,
      num=f.num,
    )
  )


def _report(argv) -> None:
  del argv
  from gen import report

  out = flags.FLAGS.output_dir
  sys.exit(report.report_main(paths.absolute(flags.FLAGS.workdir), out and paths.absolute(out)))


def _compare(argv) -> None:
  from gen import compare

  f = flags.FLAGS
  workdirs = [paths.absolute(w) for w in argv[1:]]
  sys.exit(compare.compare_main(workdirs, f.format, f.fields, f.sort))


HELP_FLAGS = ('--help', '-h', '--helpshort', '-?')
SYNOPSIS = {
  'train': 'gen train --config=FILE[:ARG] --workdir=W [--config.a.b=v ...]',
  'eval': 'gen eval --workdir=W [--config=FILE] [--step=N] [--output_dir=D]',
  'sample': 'gen sample --workdir=W [--num_samples=N] [--step=N] [--output_dir=D]',
  'prepare': 'gen prepare --dataset=NAME | --inception [--source=PATH|URL] [--data_dir=D]',
  'stats': 'gen stats --dataset=NAME [--split=S] [--features=auto]',
  'score': 'gen score A B   (each an .npz with samples, an image folder or NAME:SPLIT)',
  'report': 'gen report --workdir=W [--output_dir=D]',
  'compare': 'gen compare W1 W2 ... [--format=markdown|csv]',
}


def _wants_help(rest) -> bool:
  return any(a in HELP_FLAGS for a in rest)


def _print_help(command: str, module) -> None:
  """`gen COMMAND --help`: the command's synopsis and the flags its module defines (absl's own
  --help lists only the flags of the main module, which for a console script is none)."""
  print(f'usage: {SYNOPSIS[command]}\n')
  print(flags.FLAGS.module_help(module))
  sys.exit(0)


def _run(fn, command: str, rest) -> None:
  if _wants_help(rest):
    _print_help(command, sys.modules[__name__])
  app.run(fn, argv=[f'gen {command}', *rest])


def main() -> None:
  """Entry point of the `gen` console script."""
  if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
    print(USAGE, file=sys.stderr)
    sys.exit(2)
  command, rest = sys.argv[1], sys.argv[2:]
  # Experiment files import `experiments.base`: resolve it from the current folder, as
  # `python -m gen.main` does (gen.main also adds the folder above a --config's experiments/).
  sys.path.insert(0, os.getcwd())
  if command == 'prepare':
    from gen.metrics import inception

    flags.DEFINE_string('dataset', None, 'TFDS dataset name, e.g. mnist, or digits.')
    flags.DEFINE_string('data_dir', '', "TFDS data folder ('' = $TFDS_DATA_DIR or default).")
    flags.DEFINE_bool('inception', False, "Fetch, check and convert FID's Inception weights.")
    flags.DEFINE_string(
      'source', inception.PYTORCH_FID_URL, 'With --inception: a .pth path or http(s)/file URL.'
    )
    flags.DEFINE_string(
      'sha256', None, "With --inception: the source's sha256 (or a prefix); default: from its name."
    )
    flags.DEFINE_string(
      'out', None, 'With --inception: the .npz to write (default: where evaluation looks).'
    )
    _run(_prepare, 'prepare', rest)
  if command == 'stats':
    flags.DEFINE_string('dataset', None, 'Dataset name, e.g. digits or cifar10.')
    flags.DEFINE_string('split', 'test', 'Split whose statistics to store.')
    flags.DEFINE_string('features', 'auto', 'Feature network (auto: the dataset default).')
    flags.DEFINE_string('data_dir', '', "TFDS data folder ('' = $TFDS_DATA_DIR or default).")
    flags.DEFINE_bool('overwrite', False, 'Recompute even when stored statistics match.')
    flags.mark_flag_as_required('dataset')
    _run(_stats, 'stats', rest)
  if command == 'score':
    from gen.metrics import evaluation

    d = evaluation.DEFAULT_OPTIONS
    flags.DEFINE_string('features', 'auto', 'Feature network (auto: from the dataset).')
    flags.DEFINE_list('metrics', ['auto'], 'Comma-separated metrics (auto: all that apply).')
    flags.DEFINE_string(
      'dataset', None, "Dataset whose 'auto' features to use, when no input is one."
    )
    flags.DEFINE_string('data_dir', '', "TFDS data folder ('' = $TFDS_DATA_DIR or default).")
    flags.DEFINE_string('output', None, 'Write the JSON here instead of printing it.')
    flags.DEFINE_string('key', 'samples', 'The array of an .npz input.')
    flags.DEFINE_integer('num', 0, 'At most this many examples of a NAME:SPLIT input (0: all).')
    flags.DEFINE_integer('seed', 0, "KID's subsets and the bootstrap (a run's config.seed).")
    for name in evaluation.OPTION_FIELDS:
      flags.DEFINE_integer(name, d[name], f'As eval.{name}.')
    flags.DEFINE_integer('fd_bootstrap', d['fd_bootstrap'], 'As eval.fd_bootstrap (-1: auto).')
    flags.DEFINE_bool('fd_infinity', d['fd_infinity'], 'As eval.fd_infinity.')
    _run(_score, 'score', rest)
  if command == 'report':
    flags.DEFINE_string('workdir', None, 'Run directory to report on.')
    flags.DEFINE_string('output_dir', None, 'Write the report here (the run is only read).')
    flags.mark_flag_as_required('workdir')
    _run(_report, 'report', rest)
  if command == 'compare':
    flags.DEFINE_enum('format', 'markdown', ['markdown', 'csv'], 'Table format.')
    flags.DEFINE_string(
      'fields', 'auto', 'Config fields as columns, e.g. optim.lr (auto: those that differ).'
    )
    flags.DEFINE_string('sort', None, 'Sort rows by this column (-name: descending).')
    _run(_compare, 'compare', rest)
  from gen import main as gen_main

  if _wants_help(rest):
    _print_help(command, gen_main)
  argv = [f'gen {command}', *rest, f'--mode={command}']
  app.run(gen_main.main, argv=argv, flags_parser=gen_main.parse_flags)


if __name__ == '__main__':
  main()
