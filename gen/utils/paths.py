"""User-given paths, made absolute once, at the command-line boundary.

A relative path or `~` means what it means in the shell that typed it: resolved against the
current directory of the command that received it, before anything (orbax, a subprocess started
elsewhere, a remote worker) can read it relative to another folder. Orbax refuses relative
checkpoint paths; a launcher that starts its runs in the repository root would otherwise read
`runs/x` there.
"""

import os
from collections.abc import Sequence

# gen.main flags whose value is a folder ('' and 'none' mean "not given" / "off").
FOLDER_FLAGS = ('--workdir', '--output_dir', '--compilation_cache', '--data_dir')
# Config fields that hold a folder, as `--config.<field>=...` overrides.
CONFIG_FOLDER_FIELDS = ('data.data_dir',)
_UNSET = ('', 'none')


def absolute(path: str) -> str:
  """`path` with `~` expanded, made absolute against the current directory (normalised)."""
  return os.path.abspath(os.path.expanduser(os.fspath(path)))


def absolute_or_unset(value: str) -> str:
  """`absolute(value)`, except '' and 'none', which mean "not given" / "off"."""
  return value if value in _UNSET else absolute(value)


def absolute_config_arg(value: str) -> str:
  """`--config=` value with its file made absolute: `experiments/x.py:smoke` -> `/abs/...:smoke`."""
  path, sep, arg = value.partition(':')
  return absolute(path) + sep + arg


def absolute_args(argv: Sequence[str]) -> list[str]:
  """gen.main arguments with every folder and the config file made absolute (see module doc).

  Only `--flag=value` forms are rewritten; other arguments pass through unchanged.
  """
  folders = FOLDER_FLAGS + tuple(f'--config.{f}' for f in CONFIG_FOLDER_FIELDS)
  out = []
  for arg in argv:
    name, sep, value = arg.partition('=')
    if sep and name == '--config':
      arg = f'{name}={absolute_config_arg(value)}'
    elif sep and name in folders:
      arg = f'{name}={absolute_or_unset(value)}'
    out.append(arg)
  return out


def repo_root_of_experiment(config_path: str) -> str | None:
  """The folder that holds `experiments/` for an experiment file `.../experiments/NAME.py`
  (experiment files import `experiments.base`), or None for a config file elsewhere."""
  folder = os.path.dirname(absolute(config_path))
  if os.path.basename(folder) == 'experiments' and os.path.isfile(
    os.path.join(folder, '__init__.py')
  ):
    return os.path.dirname(folder)
  return None
