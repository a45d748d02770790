"""Checkpoints: an orbax CheckpointManager holding the full TrainState and the data position.

Each step directory has two items: `state` (the TrainState, restored onto the current mesh, so a
checkpoint saved on 8 devices restores on 1) and `data` (the grain iterator state, as JSON).

Saves are asynchronous. Before each one, `Saver` checks that the checkpoint folder has room for
it (the size of the last checkpoint, or of the state before the first) and stops before writing
if not. It notices a save that failed anyway in orbax's background thread (a full disk, an
unwritable folder) after the next training step. Either way the run stops with one line
(`CheckpointSaveError`): what failed, the free space, and the last good checkpoint, from which a
resume goes on; every earlier checkpoint stays readable. A finalised step that cannot be read is
skipped; in training it is moved aside as `<step>.unreadable` (never deleted), so that the run
can save that step again.
"""

import os
import re
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

UNREADABLE_SUFFIX = '.unreadable'


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be saved; the run stops (earlier checkpoints are kept)."""


def make_manager(
  directory: str, max_to_keep: int, save_interval_steps: int = 1, read_only: bool = False
) -> ocp.CheckpointManager:
  """An async CheckpointManager over `directory` (made absolute: orbax refuses relative paths)
  with items 'state' and 'data'."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    save_interval_steps=save_interval_steps,
    enable_async_checkpointing=True,
    read_only=read_only,
    create=not read_only,
  )
  directory = os.path.abspath(os.path.expanduser(directory))
  return ocp.CheckpointManager(directory, options=options, item_names=('state', 'data'))


def describe_error(e: BaseException) -> str:
  """The cause of a failed save in a few words: the OS error where orbax/tensorstore name one
  (`File too large`, `No space left on device`, ...), else the error's first line."""
  text = ' '.join(str(e).split())
  found = re.search(r':\s*([^:\[]+?)\s*\[os_error_code=.?(\d+)', text)
  if found:
    return f'{found.group(1).strip()} (errno {found.group(2)})'
  return f'{type(e).__name__}: {text[:300]}'


class Saver:
  """Starts async saves and turns a failed one into `CheckpointSaveError` as soon as it is seen.

  `check()` is cheap (orbax's in-progress flag) and runs after every step; `finish()` waits for
  the last save.
  """

  def __init__(self, manager: ocp.CheckpointManager):
    self.manager = manager
    self.pending: int | None = None  # the step of a save that has not been confirmed yet

  def _kept(self, step: int) -> str:
    """Free space and the last good checkpoint, for the one-line error."""
    kept = sorted(s for s in self.manager.all_steps() if s != step)
    folder = os.fspath(self.manager.directory)
    free = f'{_megabytes(free_bytes(folder))} free in {folder}'
    if not kept:
      return f'{free}; no earlier checkpoint (a restart begins at step 0)'
    return (
      f'{free}; the last good checkpoint is step {kept[-1]} (kept: {kept}); make room and run '
      'the same command again to resume from it'
    )

  def _failed(self, step: int, e: BaseException) -> CheckpointSaveError:
    return CheckpointSaveError(
      f'saving the checkpoint of step {step} failed ({describe_error(e)}); stopped; '
      f'{self._kept(step)}'
    )

  def check_space(self, step: int, state: Any) -> None:
    """Raises CheckpointSaveError, before writing, if the checkpoint of `step` cannot fit:
    it needs about the size of the last saved step (the state's bytes before the first)."""
    folder = os.fspath(self.manager.directory)
    need = self.bytes_needed(state)
    free = free_bytes(folder)
    if free < need:
      raise CheckpointSaveError(
        f'not enough disk space for the checkpoint of step {step} (it needs about '
        f'{_megabytes(need)}); stopped before writing it; {self._kept(step)}'
      )

  def bytes_needed(self, state: Any) -> int:
    """The room a new checkpoint needs: the last one's size (the state's bytes before the
    first), plus 10% and 1 MB for metadata."""
    need = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, 'nbytes'))
    steps = self.manager.all_steps()
    if steps:
      last = os.path.join(os.fspath(self.manager.directory), str(max(steps)))
      need = max(need, folder_bytes(last))
    return int(need * 1.1) + (1 << 20)

  def save(self, step: int, state: Any, data_state: Any) -> None:
    """Starts the save of `step` (after confirming the previous one and checking for room)."""
    self.finish()
    self.check_space(step, state)
    try:
      save(self.manager, step, state, data_state, force=True)
    except Exception as e:  # noqa: BLE001 - any failure to start a save stops the run
      raise self._failed(step, e) from None
    self.pending = step

  def check(self) -> None:
    """Raises CheckpointSaveError if the pending save has ended in failure (never blocks)."""
    if self.pending is not None and not self.manager.is_saving_in_progress():
      self.finish()

  def finish(self) -> None:
    """Waits for the pending save; raises CheckpointSaveError if it failed."""
    if self.pending is None:
      return
    step, self.pending = self.pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._failed(step, e) from None


def free_bytes(folder: str) -> int:
  """Free bytes on the filesystem of `folder` (or of its nearest existing parent)."""
  while not os.path.exists(folder) and os.path.dirname(folder) != folder:
    folder = os.path.dirname(folder)
  return shutil.disk_usage(folder).free


def folder_bytes(folder: str) -> int:
  """Bytes of the files under `folder`."""
  total = 0
  for root, _, files in os.walk(folder):
    for name in files:
      try:
        total += os.path.getsize(os.path.join(root, name))
      except OSError:
        pass
  return total


def _megabytes(n: int) -> str:
  return f'{n / 1e6:.1f} MB'


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


def move_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames step `step`'s folder to `<step>.unreadable` (`.unreadable.1`, ... if taken), on
  process 0, then reloads the manager on every process; returns the new path."""
  folder = os.path.join(os.fspath(manager.directory), str(step))
  target, i = folder + UNREADABLE_SUFFIX, 0
  while os.path.exists(target):
    i += 1
    target = f'{folder}{UNREADABLE_SUFFIX}.{i}'
  if jax.process_index() == 0:
    os.rename(folder, target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f'gen_move_aside_{step}')
  manager.reload()
  return target


def restore_latest(
  manager: ocp.CheckpointManager,
  abstract_state: Any,
  step: int | None = None,
  move_unreadable: bool = False,
):
  """Restores `step`, or the newest readable step; returns (step, state, data) or None.

  Orbax lists only finalised steps, so a save cut off midway is never seen; a finalised step
  that fails to read (a corrupted file) is skipped with a warning and the next older one tried.
  With `move_unreadable` (training), a skipped step is also moved aside (`move_aside`): the run
  will save that step again, and orbax refuses to save over an existing step.
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
      why = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'
      if move_unreadable:
        moved = move_aside(manager, s)
        logging.warning('checkpoint step %d is unreadable (%s); moved to %s', s, why, moved)
      else:
        logging.warning('checkpoint step %d is unreadable (%s); trying an older one', s, why)
  return None
