"""The run directory's config: write `W/config.json`, refuse to mix two runs in one workdir."""

import json
import os
import tempfile
from typing import Any

import ml_collections

from gen.errors import ConfigError
from gen.utils import legacy

# Fields that may change between restarts of one run, and never matter to sampling: how long it
# runs and how often it logs, saves, draws and evaluates. Nothing in the state depends on them.
RUN_CONTROL_FIELDS = (
  'train.num_steps',
  'train.log_every',
  'train.ckpt_every',
  'train.sample_every',
  'train.eval_every',
  'train.max_to_keep',
)
# Sections that only say how to evaluate or sample, free to change in --mode=eval|sample: the
# shared ones, and every objective section's `sample` and `likelihood` sub-sections.
EVAL_SECTIONS = ('eval.', 'sample.')
EVAL_SUBSECTIONS = ('sample', 'likelihood')


def is_eval_field(dotted: str) -> bool:
  """Whether a config field only says how to evaluate or sample (free in --mode=eval|sample)."""
  parts = dotted.split('.')
  return dotted.startswith(EVAL_SECTIONS) or (len(parts) > 2 and parts[1] in EVAL_SUBSECTIONS)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON types (tuples become lists)."""
  return json.loads(config.to_json())


def flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  """Dotted path -> value of every leaf of a nested dict (a config as JSON)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Names of the leaves whose values differ, including leaves only one side has."""
  a, b = flatten(saved), flatten(current)
  return sorted(k for k in a.keys() | b.keys() if a.get(k, '<missing>') != b.get(k, '<missing>'))


def check_workdir(
  workdir: str,
  config: ml_collections.ConfigDict,
  mode: str,
  allow_change: bool = False,
  output_dir: str | None = None,
) -> None:
  """Fails, before anything is written, if `workdir` is not writable or holds another run.

  Args:
    workdir: the run directory (may not exist yet).
    config: the resolved config of this invocation.
    mode: 'train', 'eval' or 'sample'.
    allow_change: accept a differing saved config (--allow_config_change).
    output_dir: eval/sample mode's --output_dir: it must be writable, the workdir need not be.
  """
  path = os.path.join(workdir, 'config.json')
  if mode != 'train' and not os.path.exists(path):  # checked first: creates nothing
    raise ConfigError(f'--workdir={workdir} holds no run (no config.json); train first')
  if output_dir:
    _check_writable(output_dir, '--output_dir')
  else:
    _check_writable(workdir, hint=mode != 'train')
  if not os.path.exists(path):
    return
  saved = read_config_dict(workdir)  # an unreadable one fails here, and is never overwritten
  if allow_change:
    return
  diff = [
    k
    for k in config_diff(saved, config_to_dict(config))
    if not k.startswith(RUN_CONTROL_FIELDS) and not (mode != 'train' and is_eval_field(k))
  ]
  if diff:
    shown = ', '.join(diff[:8]) + (' ...' if len(diff) > 8 else '')
    raise ConfigError(
      f'--workdir={workdir} holds a run with a different config ({shown}); '
      'use a new workdir, or pass --allow_config_change to continue it anyway'
    )


def _check_writable(folder: str, flag: str = '--workdir', hint: bool = False) -> None:
  """Creates `folder` if needed and proves a file can be written there (then removes it)."""
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix='.write_test'):
      pass
  except OSError as e:
    more = '; pass --output_dir=D to read the run and write the results to D' if hint else ''
    raise ConfigError(f'{flag}={folder} is not writable: {e.strerror}{more}') from None


# Config fields added after runs were written, with the value that reproduces how such a run
# behaved: an older W/config.json reads as if it held them.
ADDED_FIELDS = {
  'train.ema_warmup': 0.0,  # 2026-12-03: the EMA warm-up (before: none)
  'eval.fd_infinity': False,  # 2026-12-03
  'diffusion.latent_scale': 0.0,  # 2026-12-04: latent diffusion (a diffusion run's only kind)
  'diffusion.sample.timesteps': '',  # 2026-12-06: explicit model times (before: num_steps, spacing)
}


def read_config_dict(workdir: str) -> dict[str, Any]:
  """`W/config.json` as a dict; ConfigError naming the file when it is missing or unreadable."""
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      saved = json.load(f)
  except FileNotFoundError:
    raise ConfigError(f'--workdir={workdir} holds no run (no config.json); train first') from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ConfigError(
      f'{path} is unreadable ({type(e).__name__}: {e}); it was left as it is: repair or move it'
    ) from None
  if not isinstance(saved, dict):
    raise ConfigError(f'{path} is unreadable (not a JSON object); it was left as it is')
  return upgrade(saved)


def upgrade(saved: dict[str, Any]) -> dict[str, Any]:
  """A saved config dict as today's code reads it: the v1 layout moved (gen.utils.legacy),
  fields added since (ADDED_FIELDS), the pretrained roles its objective declared since (unset:
  ''), and the sections of networks added to gen.models.MODELS since (a network the run never
  used: its defaults)."""
  from gen import models, objectives  # here: they import flax, which the workdir checks do not

  saved = legacy.from_v1(saved)  # a run written before the objective contract v2
  for dotted, value in ADDED_FIELDS.items():  # a run written before the field existed
    *parents, leaf = dotted.split('.')
    node = saved
    for part in parents:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and leaf not in node:
      node[leaf] = value
  name = (saved.get('objective') or {}).get('name')
  if isinstance(name, str) and name in objectives.OBJECTIVES:
    roles = saved.setdefault('pretrained', {})
    if isinstance(roles, dict):
      for role in objectives.pretrained_roles(objectives.OBJECTIVES[name]):
        roles.setdefault(role, '')
  sections = saved.get('model')
  if isinstance(sections, dict):
    for name, entry in models.MODELS.items():
      if name not in sections and name != sections.get('name'):
        sections[name] = config_to_dict(ml_collections.ConfigDict(entry.defaults))
  return saved


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples configs hold (config_to_dict wrote tuples as lists)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's own config, `W/config.json`, as a locked ConfigDict (for eval and sample modes
  without --config)."""
  config = ml_collections.ConfigDict(_tuples(read_config_dict(workdir)))
  config.lock()
  return config


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes the resolved config to `W/config.json` (atomically)."""
  path = os.path.join(workdir, 'config.json')
  with open(path + '.tmp', 'w') as f:
    json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)
