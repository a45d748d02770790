"""Checkpoints: an orbax CheckpointManager holding the full TrainState and the data position.

Each step directory has two items: `state` (the TrainState, restored onto the current mesh, so a
checkpoint saved on 8 devices restores on 1) and `data` (the grain iterator state, as JSON).
"""

from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


def make_manager(
  directory: str, max_to_keep: int, save_interval_steps: int = 1, read_only: bool = False
) -> ocp.CheckpointManager:
  """An async CheckpointManager over `directory` with items 'state' and 'data'."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    save_interval_steps=save_interval_steps,
    enable_async_checkpointing=True,
    read_only=read_only,
    create=not read_only,
  )
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'data'))


def save(
  manager: ocp.CheckpointManager, step: int, state: Any, data_state: Any, force: bool = False
) -> bool:
  """Starts an async save of (state, data iterator state) at `step`; returns whether it saved."""
  args = ocp.args.Composite(
    state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state or {})
  )
  return manager.save(step, args=args, force=force)


def abstract_like(state: Any, sharding: jax.sharding.Sharding) -> Any:
  """Shape/dtype/sharding targets for restoring `state`'s structure onto `sharding`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any):
  """Restores (state, data_state) of `step` onto the shardings in `abstract_state`."""
  args = ocp.args.Composite(
    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
  )
  restored = manager.restore(step, args=args)
  return restored['state'], restored['data']


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None):
  """Restores `step`, or the newest readable step; returns (step, state, data) or None.

  Orbax lists only finalised steps, so a save cut off midway is never seen; a finalised step
  that fails to read (a corrupted file) is skipped with a warning and the next older one tried.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if step is not None:
    if step not in steps:
      raise FileNotFoundError(f'no checkpoint for step {step}; available: {sorted(steps)}')
    steps = [step]
  for s in steps:
    try:
      state, data = restore(manager, s, abstract_state)
      return s, state, data
    except Exception as e:  # noqa: BLE001 — any unreadable step is skipped, not fatal
      if step is not None:
        raise
      logging.warning(
        'checkpoint step %d is unreadable (%s: %s); trying an older one',
        s,
        type(e).__name__,
        str(e).splitlines()[0][:200],
      )
  return None
