"""Objectives, chosen by `config.objective.name` from one explicit dict, `OBJECTIVES`.

An objective is a module (or any object) with two functions:
  default_config() -> ConfigDict        its config section `config.<section>`, with defaults
  from_config(config, spec) -> objective  checks its section (errors name `<section>.<field>`)
                                          and the shared ones it reads (model, optim, train,
                                          sample), and builds an object that follows the contract
                                          of gen/objectives/contract.py.
`config.objective.name` is a key of OBJECTIVES, or 'package.module:attr' for an objective that
lives outside gen (a research repository, a test): its section is `config.<attr>`. Experiment
files build their config with `experiments.base.get_config(objective=...)`, which adds the
objective's section.
"""

import importlib
from typing import Any

import ml_collections

from gen.data import DatasetSpec
from gen.errors import ConfigError
from gen.objectives import autoencoder, contract, diffusion, ebm, gan, rbm, vae, vqvae

# name -> module with default_config() and from_config(config, spec)
OBJECTIVES = {
  'diffusion': diffusion,
  'gan': gan,
  'ebm': ebm,
  'rbm': rbm,
  'autoencoder': autoencoder,
  'vae': vae,
  'vqvae': vqvae,
}


def resolve(name: str) -> Any:
  """The module (or object) that objective `name` names; ConfigError for an unknown one."""
  if name in OBJECTIVES:
    return OBJECTIVES[name]
  if ':' not in name:
    raise ConfigError(
      f'objective.name={name!r} is unknown; choose one of {sorted(OBJECTIVES)} or '
      "'package.module:attr'"
    )
  module_name, attr = name.split(':', 1)
  try:
    found = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ConfigError(f'objective.name={name!r} cannot be imported: {e}') from None
  for fn in ('default_config', 'from_config'):
    if not callable(getattr(found, fn, None)):
      raise ConfigError(f'objective.name={name!r} has no {fn}(); see gen/objectives/__init__.py')
  return found


def pretrained_roles(found: Any) -> dict[str, tuple[str, ...]]:
  """The pretrained roles an objective module declares (its optional PRETRAINED dict: role ->
  the objective names a referenced run may have; gen.pretrained)."""
  return dict(getattr(found, 'PRETRAINED', {}))


def optional_pretrained_roles(found: Any) -> tuple[str, ...]:
  """The declared roles an objective works without (its optional OPTIONAL_PRETRAINED tuple):
  unset ('') means no reference, as for diffusion in data space (role 'autoencoder')."""
  return tuple(getattr(found, 'OPTIONAL_PRETRAINED', ()))


def section(name: str) -> str:
  """The config section of objective `name`: its OBJECTIVES key, or the attr of 'module:attr'."""
  return name.split(':', 1)[1] if ':' in name else name


def default_config(name: str) -> ml_collections.ConfigDict:
  """Objective `name`'s config section with its defaults."""
  return resolve(name).default_config()


def make(config: ml_collections.ConfigDict, spec: DatasetSpec, pretrained=None):
  """Builds the objective that `config.objective.name` names, validating its fields; an
  objective that declares pretrained roles (gen.pretrained) gets the resolved references."""
  name = config.objective.name
  found = resolve(name)
  if section(name) not in config:
    raise ConfigError(
      f'objective.name={name!r} needs the config section {section(name)!r}: build the config '
      f'with experiments.base.get_config(objective={name!r})'
    )
  if pretrained_roles(found):
    objective = found.from_config(config, spec, pretrained or {})
  else:
    objective = found.from_config(config, spec)
  contract.check(objective, name)
  return objective
