"""THE training loop: one set of small functions trains every objective.

The loop never asks which objective it runs: it uses only the contract of
gen/objectives/contract.py. It builds the run (`gen.setup.build`: data, objective, mesh),
compiles `objective.step` once with shardings, and around it logs, checkpoints (rolling back on
a non-finite step if asked), draws pictures (gen.pictures) and evaluates (gen.modes).
`train_and_evaluate` is `gen.main`'s training mode; `gen.modes` has the eval and sample modes.
"""

import collections
import contextlib
import dataclasses
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from gen import data as data_lib
from gen import modes, pictures
from gen import pretrained as pretrained_lib
from gen import setup as setup_lib
from gen.setup import Setup
from gen.state import TrainState
from gen.utils import checkpoint as ckpt_lib
from gen.utils import lock as lock_lib
from gen.utils import workdir as workdir_lib
from gen.utils.writers import MetricWriter

ROLLBACKS_KEY = 'gen_rollbacks'  # saved next to the data position: the seed offset after rollbacks
# The loop waits for step k - STEPS_IN_FLIGHT's outputs before it dispatches step k. Without a
# bound, JAX queues every step until the next log; with many devices on XLA:CPU (the README's
# 8-device command) a long queue of collective steps deadlocked in the all-reduce rendezvous (6
# of 8 device threads arrived, rc 134 after 40 s), and on accelerators each queued step holds
# its input batch in memory. Two steps in flight keep the device busy while the host dispatches.
STEPS_IN_FLIGHT = 2


class NonFiniteError(RuntimeError):
  """A step produced a non-finite loss or gradient and `train.on_nonfinite` is 'stop' (or
  'rollback' gave up after `train.max_rollbacks` tries)."""


class Diverged(Exception):
  """Raised inside the loop when `train.on_nonfinite` is 'rollback' and a step was not finite."""

  def __init__(self, step: int, bad: list[str]):
    super().__init__(f'step {step}: non-finite {", ".join(bad)}')
    self.step = step


def make_train_step(setup: Setup):
  """`objective.step` jitted once: batch sharded over 'data', state replicated and donated.

  The step's key is `fold_in(key(seed), step)`, so resuming needs no stored key. A step whose
  metrics (loss terms, gradient norms) are not all finite leaves the state as it was, bar the
  step counter, and reports `nonfinite`; the host decides to stop or go on (train.on_nonfinite).
  """

  def train_step(state: TrainState, batch, base_key):
    key = jax.random.fold_in(base_key, state.step)
    new_state, metrics = setup.objective.step(state, batch, key)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return new_state.replace(step=state.step + 1), {**metrics, 'nonfinite': ~finite}

  return jax.jit(
    train_step,
    in_shardings=(setup.replicated, setup.batch_sharding, setup.replicated),
    out_shardings=(setup.replicated, setup.replicated),
    donate_argnums=0,
  )


# ---------------------------------------------------------------------------------------------
# The host side of the loop: metrics, pictures, evaluation, signals.


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks between steps (to save, then exit)."""

  def __init__(self):
    self.signum = None

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  @contextlib.contextmanager
  def installed(self):
    previous = {}
    try:
      for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      pass
    try:
      yield self
    finally:
      for sig, handler in previous.items():
        signal.signal(sig, handler)


class Interrupted(Exception):
  """The run was stopped by a signal after saving a checkpoint; `code` is the exit status."""

  def __init__(self, signum: int, step: int):
    super().__init__(f'stopped by signal {signum} at step {step}; checkpoint saved')
    self.code = 128 + signum


def _progress(step: int, total: int, seconds_per_step: float) -> str:
  done = step / max(total, 1)
  bar = '#' * int(20 * done) + '.' * (20 - int(20 * done))
  eta = max(total - step, 0) * seconds_per_step
  return f'[{bar}] {100 * done:5.1f}% ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}'


class MetricLog:
  """Collects each step's metrics on device and writes window means at log time.

  Keeping per-step arrays on device until a log (or checkpoint) step avoids a host sync on every
  step, yet a non-finite step is still named exactly. A checkpoint step checks the pending steps
  (`check`) without ending the window: the next log averages every step since the last log.
  """

  def __init__(self, writer: MetricWriter, setup: Setup):
    self.writer, self.setup = writer, setup
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    self.finite_steps: list[dict[str, Any]] = []  # checked steps of the window, on the host
    self.window_steps = 0  # steps in the window, finite or skipped
    self.last_step: int | None = None
    self.window_start = time.perf_counter()
    self.skipped = 0

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self.pending.append((step, metrics))

  def check(self, last_good_ckpt: int | None) -> None:
    """Brings the pending steps to the host and checks them for non-finite values (raising or
    skipping as train.on_nonfinite says); they stay in the window for the next log."""
    if not self.pending:
      return
    host = jax.device_get(self.pending)
    self.pending = []
    for step, m in host:
      self.window_steps += 1
      self.last_step = step
      if m.pop('nonfinite'):
        bad = sorted(k for k, v in m.items() if not np.all(np.isfinite(v))) or ['gradient']
        if self.setup.config.train.on_nonfinite == 'rollback':
          raise Diverged(step, bad)
        if self.setup.config.train.on_nonfinite == 'stop':
          raise NonFiniteError(
            f'step {step}: non-finite {", ".join(bad)}; stopped without saving (last good '
            f'checkpoint: step {last_good_ckpt}). Set train.on_nonfinite=skip_step to skip such '
            'steps instead'
          )
        logging.warning('step %d: non-finite %s; update skipped', step, ', '.join(bad))
        self.skipped += 1
      else:
        self.finite_steps.append(m)

  def flush(self, last_good_ckpt: int | None) -> None:
    """Checks the pending steps, then logs the means over the window and starts a new one."""
    self.check(last_good_ckpt)
    if not self.window_steps:
      return
    elapsed = time.perf_counter() - self.window_start
    self.window_start = time.perf_counter()
    step = self.last_step + 1
    finite_steps = self.finite_steps
    means = {k: float(np.mean([m[k] for m in finite_steps])) for k in (finite_steps or [{}])[0]}
    steps_per_sec = self.window_steps / max(elapsed, 1e-9)
    self.finite_steps, self.window_steps = [], 0
    means['steps_per_sec'] = steps_per_sec
    means['examples_per_sec'] = steps_per_sec * self.setup.config.data.batch_size
    means['skipped_steps'] = float(self.skipped)
    self.writer.write(step, means)
    total = self.setup.config.train.num_steps
    shown = ' '.join(
      f'{k}={v:.4g}' for k, v in means.items() if k.startswith('loss') or k == 'steps_per_sec'
    )
    logging.info('step %d/%d %s %s', step, total, _progress(step, total, 1 / steps_per_sec), shown)


# ---------------------------------------------------------------------------------------------
# The three modes.


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  allow_config_change: bool = False,
  mesh: Mesh | None = None,
) -> TrainState:
  """Trains (resuming from the latest checkpoint in `workdir`), logging, saving, evaluating.

  Args:
    config: the experiment config.
    workdir: the run directory.
    allow_config_change: continue a workdir whose saved config differs.
    mesh: devices to run on (default: all devices of all processes).

  Returns:
    The final TrainState.
  """
  setup = setup_lib.prepare_run(config, workdir, 'train', allow_config_change, mesh)
  with lock_lib.acquire_for_job(workdir):  # before writing or compiling anything
    if jax.process_index() == 0:
      workdir_lib.write_config(workdir, config)
    t = config.train
    manager = ckpt_lib.make_manager(os.path.join(workdir, 'checkpoints'), t.max_to_keep)
    writer = MetricWriter(workdir)
    saver = ckpt_lib.Saver(manager)
    try:
      state = _train(setup, workdir, saver, writer)
      saver.finish()
      return state
    finally:
      _close_quietly(manager)
      writer.close()


def _close_quietly(manager) -> None:
  """Closes the checkpoint manager; a save that already failed was reported by `Saver`."""
  try:
    manager.close()
  except Exception as e:  # noqa: BLE001 - the run's own error (if any) is the one to show
    logging.warning('closing the checkpoint manager: %s', ckpt_lib.describe_error(e))


@dataclasses.dataclass(frozen=True)
class _Hooks:
  """What the loop does besides stepping: pictures, evaluation, logs (each compiled once)."""

  setup: Setup
  workdir: str
  writer: MetricWriter
  picture_fn: Any  # setup_lib.make_sample_fn(setup, sample.num)
  eval_fn: Any  # setup_lib.make_sample_fn(setup, eval.num_samples)
  proxy_fn: Any  # setup_lib.make_sample_fn(setup, modes.proxy_num_samples(config))
  evaluator: Any  # modes.make_evaluator(setup)

  def picture(self, state: TrainState, step: int) -> None:
    """`W/samples/step_N.png`, also shown in TensorBoard as image 'samples'."""
    rng = setup_lib.purpose_key(self.setup.config.seed, 'picture', step)
    out = self.picture_fn(state, rng)
    path = os.path.join(self.workdir, 'samples', f'step_{step}.png')
    title = (
      f'{pictures.run_title(self.workdir, step)} ({self.setup.config.objective.name}, training)'
    )
    pictures.save_picture(self.setup, path, out.x, title, out.labels is not None)
    self.writer.write_picture(step, 'samples', path)

  def strips(self, state: TrainState, step: int) -> None:
    """The objective's own pictures (`pictures.save_objective_pictures`), also in TensorBoard."""
    rng = setup_lib.purpose_key(self.setup.config.seed, 'strips', step)
    stem = os.path.join(self.workdir, 'samples', f'step_{step}')
    title = pictures.run_title(self.workdir, step)
    for method, path in pictures.save_objective_pictures(
      self.setup, state, stem, rng, title
    ).items():
      self.writer.write_picture(step, f'samples/{method}', path)

  def evaluate(self, state: TrainState, step: int) -> None:
    """The final numbers: `W/eval/step_N.json` and `eval/*` in the logs and TensorBoard."""
    values = modes.compute_metrics(
      self.setup, state, step, self.eval_fn, self.evaluator, workdir=self.workdir
    )
    if values:
      modes.write_eval(self.workdir, step, values)
      scalars = modes.eval_scalars(values)
      self.writer.write(step, scalars)
      logging.info('eval at step %d: %s', step, scalars)
      neighbours = os.path.join(self.workdir, 'samples', f'step_{step}_neighbours.png')
      if 'memorisation' in values:
        self.writer.write_picture(step, 'samples/neighbours', neighbours)

  def proxy(self, state: TrainState, step: int) -> None:
    """The cheap training-time proxy (`proxy_*` in the logs; never in W/eval)."""
    values = modes.compute_metrics(
      self.setup, state, step, self.proxy_fn, self.evaluator, proxy=True
    )
    if values:
      self.writer.write(step, values)
      logging.info('proxy metrics at step %d: %s', step, values)


def _train(setup: Setup, workdir: str, saver, writer: MetricWriter) -> TrainState:
  config = setup.config
  state, data_state = setup_lib.restore_or_init(setup, saver.manager, move_unreadable=True)
  if state is None:
    state = setup_lib.init_state(setup)
  rollbacks = 0
  if data_state:
    data_state = dict(data_state)
    rollbacks = int(data_state.pop(ROLLBACKS_KEY, 0))
    pretrained_lib.check_resume(data_state.pop(pretrained_lib.SAVED_KEY, None), setup.pretrained)
  data_iter = setup_lib.make_loader_iter(setup)
  if data_state:
    data_lib.restore_iterator(data_iter, data_state)
  start = int(state.step)
  moved = writer.start_at(start)  # a resume continues the log; it does not repeat steps
  if moved:
    logging.info(
      'resuming at step %d: moved %d later log lines to metrics.superseded.jsonl', start, moved
    )
  eval_fn = setup_lib.make_sample_fn(setup, config.eval.num_samples)  # (each compiles on first use)
  proxy_fn = setup_lib.make_sample_fn(setup, modes.proxy_num_samples(config))
  hooks = _Hooks(
    setup,
    workdir,
    writer,
    setup_lib.make_sample_fn(setup, config.sample.num),
    eval_fn,
    eval_fn if modes.proxy_num_samples(config) == config.eval.num_samples else proxy_fn,
    modes.make_evaluator(setup),
  )
  t0 = time.perf_counter()
  if start < config.train.num_steps:
    state = _loop_with_rollback(setup, state, data_iter, saver, hooks, rollbacks)
  final = int(state.step)
  if final > start or not os.path.exists(os.path.join(workdir, 'samples', f'step_{final}.png')):
    hooks.picture(state, final)
    hooks.strips(state, final)
    hooks.evaluate(state, final)
  logging.info('training done at step %d (%.1f s)', final, time.perf_counter() - t0)
  return state


def resolved_log_every(t: ml_collections.ConfigDict) -> int:
  """train.log_every, 0 (auto) meaning num_steps // 100 (at least 1): about 100 points in
  every curve whatever the run's length."""
  return t.log_every or max(1, t.num_steps // 100)


def base_key(seed: int, rollbacks: int) -> jax.Array:
  """The key every step folds its step number into; each rollback moves to a new one."""
  key = jax.random.key(seed)
  return jax.random.fold_in(key, 2**31 - rollbacks) if rollbacks else key


def _loop_with_rollback(setup: Setup, state, data_iter, saver, hooks, rollbacks: int):
  """`_loop`, and with train.on_nonfinite='rollback': on a non-finite step, go back to the last
  good checkpoint (state and data position; the step-0 state if none was saved yet), move to a
  new key, and continue; give up after train.max_rollbacks rollbacks in this process. A bad step
  is caught before the next save, so checkpoints only ever hold finite states."""
  tries = 0
  step_fn = None
  while True:
    try:
      return _loop(setup, state, data_iter, saver, hooks, rollbacks, step_fn)
    except Diverged as e:
      tries += 1
      limit = setup.config.train.max_rollbacks
      manager = saver.manager
      saver.finish()
      last = manager.latest_step()
      if tries > limit:
        kept = f'the last good checkpoint (step {last}) is kept' if last else 'no checkpoint yet'
        raise NonFiniteError(
          f'{e}; gave up after {limit} rollbacks (train.max_rollbacks); {kept}'
        ) from None
      state, data_state = setup_lib.restore_or_init(setup, manager, move_unreadable=True)
      data_iter = setup_lib.make_loader_iter(setup)
      if state is None:
        state = setup_lib.init_state(setup)
      else:
        data_state = dict(data_state)
        data_state.pop(ROLLBACKS_KEY, None)
        data_state.pop(pretrained_lib.SAVED_KEY, None)
        data_lib.restore_iterator(data_iter, data_state)
      rollbacks += 1
      step_fn = getattr(e, 'step_fn', None)
      hooks.writer.start_at(int(state.step))  # the abandoned steps leave the log
      logging.warning(
        '%s: rolled back to step %d with a new key (rollback %d of at most %d)',
        e,
        int(state.step),
        tries,
        limit,
      )
      hooks.writer.write(int(state.step), {'rollbacks': float(rollbacks)})


def _loop(
  setup: Setup, state, data_iter, saver, hooks: _Hooks, rollbacks: int = 0, step_fn=None
) -> TrainState:
  """Steps from `state.step` to `train.num_steps`; logs, draws, evaluates and saves on the way."""
  t = setup.config.train
  start = int(state.step)
  last_ckpt = start if start else None
  # Made under jit: a replicated array on every device of every process (device_put of a host
  # value cannot target another process's devices).
  key = jax.jit(lambda: base_key(setup.config.seed, rollbacks), out_shardings=setup.replicated)()
  batch = setup_lib.to_global(next(data_iter), setup.batch_sharding)
  if step_fn is None:
    t0 = time.perf_counter()
    step_fn = make_train_step(setup).lower(state, batch, key).compile()
    compile_seconds = time.perf_counter() - t0
    logging.info('compiled the train step in %.1f s (starting at step %d)', compile_seconds, start)
    hooks.writer.write(start, {'compile_seconds': compile_seconds})

  log = MetricLog(hooks.writer, setup)
  log_every = resolved_log_every(t)
  stop = StopSignal()
  try:
    with stop.installed():
      in_flight: collections.deque = collections.deque()
      for step in range(start, t.num_steps):
        if len(in_flight) >= STEPS_IN_FLIGHT:  # see STEPS_IN_FLIGHT
          jax.block_until_ready(in_flight.popleft())
        state, metrics = step_fn(state, batch, key)
        in_flight.append(metrics)
        log.add(step, metrics)
        saver.check()  # a save that failed in the background stops the run here
        done = step + 1
        if done % log_every == 0 or done == t.num_steps:
          log.flush(last_ckpt)
        side_start = time.perf_counter()  # pictures, evals, saves: not counted as step time
        if done % t.sample_every == 0 and done != t.num_steps:
          hooks.picture(state, done)
        if t.eval_every and done % t.eval_every == 0 and done != t.num_steps:
          hooks.proxy(state, done)
        if done % t.ckpt_every == 0 or done == t.num_steps or stop.signum is not None:
          log.check(last_ckpt)  # only finite states are saved
          data_state = {**data_lib.iterator_state(data_iter), ROLLBACKS_KEY: rollbacks}
          if setup.pretrained:  # what the frozen networks were: a resume must find the same
            data_state[pretrained_lib.SAVED_KEY] = pretrained_lib.records(setup.pretrained)
          saver.save(done, state, data_state)
          last_ckpt = done
        log.window_start += time.perf_counter() - side_start
        if stop.signum is not None:
          saver.finish()
          logging.warning('signal %d: saved checkpoint of step %d; exiting', stop.signum, done)
          raise Interrupted(stop.signum, done)
        if done < t.num_steps:
          batch = setup_lib.to_global(next(data_iter), setup.batch_sharding)
    log.flush(last_ckpt)
  except Diverged as e:
    e.step_fn = step_fn  # the compiled step serves the rolled-back state too
    raise
  return state
