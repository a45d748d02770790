"""Objectives, selected by `config.objective.name` from one explicit dict.

An objective exposes pure functions (see DESIGN.md, "The objective contract"):
  init(rng, example_batch) -> TrainState
  step(state, batch, key) -> (state, metrics)   # metrics: flat dict of scalars
  sample(state, rng, num) -> {'samples': [num, ...], 'labels': [num] (conditional only)}
"""

import ml_collections

from gen import models
from gen import state as state_lib
from gen.data import DatasetSpec
from gen.errors import ConfigError
from gen.objectives import diffusion
from gen.processes.discrete import linear_schedule

DDPM_SAMPLERS = ('ddpm',)


def _make_ddpm(config: ml_collections.ConfigDict, spec: DatasetSpec) -> diffusion.DDPM:
  obj = config.objective
  if obj.num_timesteps < 1:
    raise ConfigError(f'objective.num_timesteps must be >= 1, got {obj.num_timesteps}')
  if not 0 < obj.beta_start <= obj.beta_end < 1:
    raise ConfigError(
      'objective.beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, '
      f'got {obj.beta_start}, {obj.beta_end}'
    )
  if config.sample.sampler not in DDPM_SAMPLERS:
    raise ConfigError(
      f'sample.sampler={config.sample.sampler!r} is unknown for objective ddpm; '
      f'choose one of {DDPM_SAMPLERS}'
    )
  model = models.from_config(config.model, spec.shape)
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  return diffusion.DDPM(
    model=model,
    process=linear_schedule(obj.num_timesteps, obj.beta_start, obj.beta_end),
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    shape=tuple(spec.shape),
    use_ema=config.sample.use_ema,
  )


# name -> factory(config, dataset spec) -> objective
OBJECTIVES = {'ddpm': _make_ddpm}


def make(config: ml_collections.ConfigDict, spec: DatasetSpec):
  """Builds the objective that `config.objective.name` names, validating its fields."""
  name = config.objective.name
  if name not in OBJECTIVES:
    raise ConfigError(f'objective.name={name!r} is unknown; choose one of {sorted(OBJECTIVES)}')
  return OBJECTIVES[name](config, spec)
