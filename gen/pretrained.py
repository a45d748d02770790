"""Pretrained networks: another run's EMA parameters, used frozen (DESIGN.md, "Pretrained
networks").

`config.pretrained.<role> = 'WORKDIR'` or `'WORKDIR@STEP'` names a run (its latest checkpoint, or
that of STEP) whose EMA parameters this run uses and never updates: a distillation teacher, the
autoencoder of latent diffusion, a classifier for guidance. An objective declares its roles in
its module, `PRETRAINED = {role: (objective names the referenced run may have, ...)}` (an empty
tuple: any; gen.objectives.pretrained_roles), and the roles it can do without in
`OPTIONAL_PRETRAINED`; `experiments.base.get_config` adds `config.pretrained.<role> = ''` (unset)
for each.

The loop (gen.setup.build) restores each reference once, onto the current mesh and before
anything compiles, after checking that the run's saved config has an objective the role
accepts; the objective gets them in `from_config(config, spec, pretrained)` (the referenced run's
config and objective, to build its networks) and `init(rng, batch, params)` (role -> parameters,
kept in the state). Each checkpoint records every reference's path, step and parameter hash
(`records`), and a resume whose references resolve differently is refused (`check_resume`).
"""

import dataclasses
import hashlib
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from gen.errors import ConfigError
from gen.utils import checkpoint as ckpt_lib
from gen.utils import workdir as workdir_lib

SAVED_KEY = 'gen_pretrained'  # in a checkpoint's data state: {role: {workdir, step, sha256}}


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """One resolved reference.

  Attributes:
    role: the config.pretrained field.
    workdir: the referenced run directory (absolute).
    step: the checkpoint step restored.
    config: that run's saved config (W/config.json).
    objective: that run's objective (its networks' apply functions, samplers, ...).
    params: its EMA parameters, replicated on this run's mesh.
    digest: sha256 of the parameters' bytes, in tree order.
  """

  role: str
  workdir: str
  step: int
  config: ml_collections.ConfigDict
  objective: Any
  params: Any
  digest: str

  def record(self) -> dict[str, Any]:
    return {'workdir': self.workdir, 'step': self.step, 'sha256': self.digest}


def parse(role: str, value: str) -> tuple[str, int | None]:
  """'WORKDIR' or 'WORKDIR@STEP' -> (absolute workdir, step or None)."""
  workdir, at, step = value.rpartition('@') if '@' in value else (value, '', '')
  if at and not (step.isdigit() and workdir):
    raise ConfigError(
      f"pretrained.{role}={value!r}: expected 'WORKDIR' or 'WORKDIR@STEP' with an integer STEP"
    )
  return os.path.abspath(os.path.expanduser(workdir)), int(step) if at else None


def digest(params: Any) -> str:
  """sha256 over every parameter leaf's dtype, shape and bytes, in tree order."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
    leaf = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def load(role: str, value: str, accepted: tuple[str, ...], mesh, build, restore) -> Pretrained:
  """Restores the run `value` names for `role` onto `mesh`; ConfigError (one line) for a missing
  run, a missing step or checkpoint, or a run of an objective the role does not accept.

  The referenced run is built like any run: `build(config, mesh)` is gen.setup.build and
  `restore(setup, manager, step)` gen.setup.restore_or_init."""
  workdir, step = parse(role, value)
  where = f'pretrained.{role}={value!r}'
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise ConfigError(f'{where}: {workdir} holds no run (no config.json)')
  config = workdir_lib.read_config(workdir)
  name = config.objective.name
  if accepted and name not in accepted:
    raise ConfigError(
      f'{where} is a run of objective.name={name!r}; the {role} role takes one of {list(accepted)}'
    )
  setup = build(config, mesh)
  manager = ckpt_lib.make_manager(os.path.join(workdir, 'checkpoints'), 1, read_only=True)
  try:
    steps = sorted(manager.all_steps())
    if step is not None and step not in steps:
      raise ConfigError(f'{where}: no checkpoint of step {step} (saved: {steps})')
    state, _ = restore(setup, manager, step)
  finally:
    manager.close()
  if state is None:
    raise ConfigError(f'{where}: {workdir} has no checkpoint yet; train it first')
  return Pretrained(
    role,
    workdir,
    int(state.step),
    config,
    setup.objective,
    state.ema_params,
    digest(state.ema_params),
  )


def load_all(
  config: ml_collections.ConfigDict,
  declared: dict[str, tuple[str, ...]],
  mesh,
  build,
  restore,
  optional: tuple[str, ...] = (),
) -> dict[str, Pretrained]:
  """Every reference `config.pretrained` sets for the objective's `declared` roles (role ->
  accepted objective names); a role in `optional` may stay unset (''); `build` and `restore` as
  in `load`."""
  section = config.get('pretrained') or {}
  unknown = sorted(set(section) - set(declared))
  if unknown:
    raise ConfigError(
      f'pretrained.{unknown[0]}: objective.name={config.objective.name!r} has no such role; '
      f'it takes {sorted(declared)}'
    )
  out = {}
  for role, accepted in declared.items():
    value = section.get(role, '')
    if not value and role in optional:
      continue
    if not value:
      raise ConfigError(
        f'pretrained.{role} is required by objective.name={config.objective.name!r}: '
        "set it to 'WORKDIR' or 'WORKDIR@STEP' of a trained run"
      )
    out[role] = load(role, value, tuple(accepted), mesh, build, restore)
  return out


def records(pretrained: dict[str, Pretrained]) -> dict[str, dict[str, Any]]:
  """What a checkpoint records of the references: role -> {workdir, step, sha256}."""
  return {role: p.record() for role, p in sorted(pretrained.items())}


def check_resume(saved: dict[str, Any] | None, pretrained: dict[str, Pretrained]) -> None:
  """Refuses to resume a run whose references resolve to other parameters than it was saved
  with (another path, step or parameter hash)."""
  now = records(pretrained)
  saved = saved or {}
  for role in sorted(set(saved) | set(now)):
    if saved.get(role) != now.get(role):
      was, got = saved.get(role, {}), now.get(role, {})
      raise ConfigError(
        f'pretrained.{role} changed since the last checkpoint: it was {was.get("workdir")}@'
        f'{was.get("step")} (sha256 {str(was.get("sha256"))[:12]}), now {got.get("workdir")}@'
        f'{got.get("step")} (sha256 {str(got.get("sha256"))[:12]}); use a new workdir'
      )
