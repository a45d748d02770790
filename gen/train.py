"""THE training loop: one set of small functions trains every objective (GAN, EBM, diffusion).

The loop never asks which paradigm it runs. It builds the mesh, the data, the objective and its
state; compiles `objective.step` once with shardings; and around it logs, checkpoints, draws
pictures and evaluates. `train_and_evaluate`, `evaluate` and `sample` are the three modes of
`gen.main`.
"""

import collections
import contextlib
import dataclasses
import json
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen import data as data_lib
from gen import distributed, objectives
from gen import metrics as metrics_lib
from gen.errors import ConfigError
from gen.metrics import evaluation
from gen.state import TrainState
from gen.utils import checkpoint as ckpt_lib
from gen.utils import images
from gen.utils import lock as lock_lib
from gen.utils import workdir as workdir_lib
from gen.utils.writers import MetricWriter

ON_NONFINITE = ('stop', 'skip_step', 'rollback')
ROLLBACKS_KEY = 'gen_rollbacks'  # saved next to the data position: the seed offset after rollbacks
# The loop waits for step k - STEPS_IN_FLIGHT's outputs before it dispatches step k. Without a
# bound, JAX queues every step until the next log; with many devices on XLA:CPU (the README's
# 8-device command) a long queue of collective steps deadlocked in the all-reduce rendezvous (6
# of 8 device threads arrived, rc 134 after 40 s), and on accelerators each queued step holds
# its input batch in memory. Two steps in flight keep the device busy while the host dispatches.
STEPS_IN_FLIGHT = 2
MAX_GRID = 100  # an image picture shows up to this many samples (sample.num = 100: all of them)


# The seed offset of each purpose that draws randomness outside the train step (whose key is
# fold_in(key(seed), step)): key(seed + offset) folded with the step it serves.
SEED_OFFSETS = {'eval': 1, 'picture': 2, 'strips': 4, 'bpd': 5}


def purpose_key(seed: int, purpose: str, step: int) -> jax.Array:
  """fold_in(key(seed + SEED_OFFSETS[purpose]), step): the same checkpoint, the same draws."""
  return jax.random.fold_in(jax.random.key(seed + SEED_OFFSETS[purpose]), step)


class NonFiniteError(RuntimeError):
  """A step produced a non-finite loss or gradient and `train.on_nonfinite` is 'stop' (or
  'rollback' gave up after `train.max_rollbacks` tries)."""


class Diverged(Exception):
  """Raised inside the loop when `train.on_nonfinite` is 'rollback' and a step was not finite."""

  def __init__(self, step: int, bad: list[str]):
    super().__init__(f'step {step}: non-finite {", ".join(bad)}')
    self.step = step


# ---------------------------------------------------------------------------------------------
# Set-up: everything here validates and builds; nothing is compiled or written.


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a run is made of, built from the config before anything compiles."""

  config: ml_collections.ConfigDict
  spec: data_lib.DatasetSpec
  objective: Any
  mesh: Mesh
  metrics: tuple[str, ...] = ()  # eval.metrics resolved ('auto' expanded): the final numbers
  proxy_metrics: tuple[str, ...] = ()  # eval.proxy_metrics resolved: logged during training

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P('data'))


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis 'data' over all devices of all processes."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',))


def validate_train_config(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
  """Checks the loop's own fields; objectives, models and data check theirs."""
  t = config.train
  if t.num_steps < 0:
    raise ConfigError(f'train.num_steps must be >= 0, got {t.num_steps}')
  if t.log_every < 0:
    raise ConfigError(f'train.log_every must be >= 0 (0: about 100 logs a run), got {t.log_every}')
  for field in ('ckpt_every', 'sample_every', 'max_to_keep'):
    if t[field] < 1:
      raise ConfigError(f'train.{field} must be >= 1, got {t[field]}')
  if t.eval_every < 0:
    raise ConfigError(f'train.eval_every must be >= 0 (0: only at the end), got {t.eval_every}')
  if not 0 <= t.ema_rate < 1:
    raise ConfigError(f'train.ema_rate must be in [0, 1), got {t.ema_rate}')
  if t.ema_warmup != 0 and not t.ema_warmup > 1:
    raise ConfigError(f'train.ema_warmup must be 0 (off) or > 1, got {t.ema_warmup}')
  if t.on_nonfinite not in ON_NONFINITE:
    raise ConfigError(f'train.on_nonfinite={t.on_nonfinite!r}; choose one of {ON_NONFINITE}')
  if t.max_rollbacks < 0:
    raise ConfigError(f'train.max_rollbacks must be >= 0, got {t.max_rollbacks}')
  if config.sample.num < 1 or config.eval.num_samples < 1:
    raise ConfigError('sample.num and eval.num_samples must be >= 1')
  batch, n = config.data.batch_size, mesh.size
  k = t.grad_accum
  if isinstance(k, bool) or not isinstance(k, int) or k < 1 or batch % k:
    raise ConfigError(
      f'train.grad_accum={k!r} must be an integer >= 1 that divides data.batch_size={batch}'
    )
  if batch < 1 or batch % n:
    raise ConfigError(
      f'data.batch_size={batch} must be a positive multiple of the device count {n} '
      f'(e.g. {max(n, batch // n * n or n)})'
    )


def build(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Setup:
  """Validates the config and builds dataset spec, objective and mesh (no compiling)."""
  mesh = make_mesh() if mesh is None else mesh
  validate_train_config(config, mesh)
  spec = data_lib.get_spec(config.data.name, config.data.data_dir or None)
  if config.data.batch_size > spec.num_train:
    raise ConfigError(
      f'data.batch_size={config.data.batch_size} is larger than the {spec.num_train} training '
      f'examples of {spec.name!r}'
    )
  objective = objectives.make(config, spec)
  if config.train.compute_dtype not in ('float32', 'bfloat16'):
    raise ConfigError(
      f"train.compute_dtype={config.train.compute_dtype!r}: choose 'float32' or 'bfloat16'"
    )
  if config.train.compute_dtype != 'float32' and not hasattr(objective, 'compute_dtype'):
    raise ConfigError(
      f'train.compute_dtype={config.train.compute_dtype!r} is implemented for diffusion and GAN '
      f"objectives; objective.name={config.objective.name!r} needs 'float32'"
    )
  if config.train.grad_accum > 1 and not hasattr(objective, 'grad_accum'):
    raise ConfigError(
      f'train.grad_accum={config.train.grad_accum}: gradient accumulation is implemented for '
      f'diffusion objectives; objective.name={config.objective.name!r} needs 1'
    )
  names = metrics_lib.resolve(config.eval.metrics, spec, objective)
  metrics_lib.validate(names, spec)
  if 'bpd' in names and not metrics_lib.has_likelihood(objective):
    raise ConfigError(
      f"eval.metrics 'bpd' needs an objective with a likelihood (diffusion); "
      f'objective.name={config.objective.name!r} has none'
    )
  proxy = metrics_lib.resolve(config.eval.proxy_metrics, spec, objective)
  metrics_lib.validate(proxy, spec, 'eval.proxy_metrics')
  if 'auto' in config.eval.proxy_metrics:  # the final metrics that come from samples
    proxy = tuple(n for n in names if metrics_lib.METRICS[n] != 'model')
  evaluation.validate_options(config, spec, names + proxy)
  return Setup(config, spec, objective, mesh, names, proxy)


# ---------------------------------------------------------------------------------------------
# Compiled pieces.


def example_batch(setup: Setup) -> dict[str, np.ndarray]:
  """Zeros shaped like one global batch: enough to initialise networks, consumes no data."""
  batch = {'x': np.zeros((setup.config.data.batch_size, *setup.spec.shape), np.float32)}
  if setup.spec.num_classes:
    batch['label'] = np.zeros((setup.config.data.batch_size,), np.int32)
  return batch


def init_state(setup: Setup) -> TrainState:
  """The step-0 state, replicated over the mesh."""
  init = jax.jit(setup.objective.init, out_shardings=setup.replicated)
  return init(jax.random.key(setup.config.seed), example_batch(setup))


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


def _per_example_shardings(setup: Setup, fn, num: int, *args):
  """Output shardings of `fn(*args)`: arrays with `num` rows sharded over devices where `num`
  divides evenly, everything else (a scalar NFE, say) replicated."""
  shapes = jax.eval_shape(fn, *args)
  split = num % setup.mesh.size == 0

  def pick(leaf):
    rows = leaf.ndim and leaf.shape[0] == num
    return setup.batch_sharding if split and rows else setup.replicated

  return jax.tree.map(pick, shapes)


def make_sample_fn(setup: Setup, num: int):
  """`objective.sample` for `num` samples, jitted; samples sharded over devices if they divide."""
  compiled = {}

  def run(state, rng):
    if 'fn' not in compiled:
      sample = lambda st, r: setup.objective.sample(st, r, num)
      out = _per_example_shardings(setup, sample, num, state, rng)
      compiled['fn'] = jax.jit(sample, out_shardings=out)
    return distributed.to_host(compiled['fn'](state, rng))

  return run


# objective method -> file suffix of its picture: each returns [frames, rows, ...] for image data
STRIPS = {'trajectory': '_trajectory', 'interpolation': '_interpolation'}
# objective method -> what its strip's rows are ({num}: the rows per kind)
STRIP_TITLES = {
  'trajectory': 'denoising: one row per sample, noise (left) to sample (right)',
  'interpolation': 'latent interpolation: rows 1-{num} linear, rows {n1}-{n2} spherical (slerp)',
}


def save_strip_pictures(
  setup: Setup, state: TrainState, stem: str, rng, num: int = 8, title: str = ''
) -> dict[str, str]:
  """For image data, the objective's strips as `{stem}{suffix}.png`, one row per path, frames
  left to right (process 0 writes): a diffusion model's denoising trajectory (noise on the
  left), a GAN's latent interpolations. Objectives without such a method, and 2-D data, draw
  nothing. Each picture is titled `title` (run and step) and what its rows show. Returns
  {method: path} of the pictures written."""
  written = {}
  if setup.spec.kind != 'images':
    return written
  for method, suffix in STRIPS.items():
    if not hasattr(setup.objective, method):
      continue
    fn = jax.jit(lambda st, r, m=method: getattr(setup.objective, m)(st, r, num))
    frames = np.asarray(distributed.to_host(fn(state, rng)))  # [F, rows, H, W, C]
    if jax.process_index() != 0:
      continue
    rows = np.swapaxes(frames, 0, 1).reshape((-1,) + frames.shape[2:])
    what = STRIP_TITLES[method].format(num=num, n1=num + 1, n2=2 * num)
    images.save_samples_picture(
      stem + suffix + '.png',
      rows,
      kind='images',
      ncols=frames.shape[0],
      title=f'{title}\n{what}' if title else what,
    )
    written[method] = stem + suffix + '.png'
  return written


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's rows -> one global array per field, sharded over the mesh."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------
# The host side of the loop: metrics, pictures, evaluation, signals.


def make_loader_iter(setup: Setup, split: str = 'train'):
  """The grain iterator over this process's shard of the training data."""
  loader = data_lib.make_loader(
    setup.config.data.name,
    split=split,
    global_batch_size=setup.config.data.batch_size,
    seed=setup.config.seed,
    data_dir=setup.config.data.data_dir or None,
  )
  return iter(loader)


def reference_data(setup: Setup, num: int) -> np.ndarray:
  """Up to `num` test-split examples (data space) to compare samples with."""
  source = data_lib.make_source(setup.spec.name, 'test', setup.config.data.data_dir or None)
  return source.get_batch(np.arange(min(num, len(source))))['x']


def run_title(workdir: str, step: int) -> str:
  """'<run folder> step N': how pictures name what they show."""
  return f'{os.path.basename(os.path.normpath(workdir))} step {step}'


def save_picture(
  setup: Setup, path: str, samples: np.ndarray, title: str = '', conditional: bool = False
) -> None:
  """Image grid, or a scatter over the data with the mode centres (process 0 only).

  Conditional samples come with labels cycling through the classes, so their grid has one
  column per class (each column one class).
  """
  if jax.process_index() != 0:
    return
  if setup.spec.kind == 'points':
    images.save_samples_picture(
      path,
      samples,
      kind='points',
      data=reference_data(setup, 2000),
      centers=setup.spec.mode_centers,
      title=title,
      mode_std=setup.spec.mode_std,
    )
  elif conditional:
    n = setup.spec.num_classes
    shown = samples[: n * max(1, min(10, len(samples) // n))]
    title = f'{title}\none column per class 0-{n - 1}' if title else ''
    images.save_samples_picture(path, shown, kind='images', ncols=n, title=title)
  else:
    images.save_samples_picture(path, samples[:MAX_GRID], kind='images', title=title)


def make_evaluator(setup: Setup) -> evaluation.Evaluator | None:
  """The run's Evaluator (feature network, reference statistics), None without sample metrics.

  Built before the loop compiles anything: a missing weights file or split fails early."""
  names = tuple(dict.fromkeys(setup.metrics + setup.proxy_metrics))
  if all(metrics_lib.METRICS[n] == 'model' for n in names):
    return None
  return evaluation.Evaluator(setup.config, setup.spec, names, setup.mesh)


def _eval_rng(setup: Setup, step: int) -> tuple[jax.Array, str]:
  seed = setup.config.seed + SEED_OFFSETS['eval']
  return purpose_key(setup.config.seed, 'eval', step), f'fold_in(key({seed}), {step})'


def compute_metrics(
  setup: Setup,
  state: TrainState,
  step: int,
  sample_fn=None,
  evaluator: evaluation.Evaluator | None = None,
  proxy: bool = False,
  workdir: str | None = None,
) -> dict[str, Any]:
  """Samples and computes `setup.metrics` (or, with `proxy`, `setup.proxy_metrics` on
  `eval.proxy_num_samples`, keys prefixed 'proxy_').

  Args:
    setup: the run.
    state: the state to evaluate.
    step: its step (seeds the samples: the same checkpoint always gets the same samples).
    sample_fn: `make_sample_fn(setup, n)` for the n used, made once by a caller that evaluates
      repeatedly, so that sampling compiles once.
    evaluator: `make_evaluator(setup)`, likewise.
    proxy: the cheap training-time proxy instead of the final numbers.
    workdir: where the final evaluation draws `samples/step_N_neighbours.png` (memorisation).

  Returns:
    Flat metric values; the final evaluation adds 'protocol' and 'bounds' (nested dicts).
  """
  names = setup.proxy_metrics if proxy else setup.metrics
  if not names:
    return {}
  num = proxy_num_samples(setup.config) if proxy else setup.config.eval.num_samples
  values: dict[str, Any] = {}
  sample_names = tuple(n for n in names if metrics_lib.METRICS[n] != 'model')
  rng, rng_text = _eval_rng(setup, step)
  if sample_names:
    evaluator = evaluator or make_evaluator(setup)
    sample_fn = sample_fn or make_sample_fn(setup, num)
    out = sample_fn(state, rng)
    samples = np.asarray(out['samples'])
    values, extras = evaluator.compute(samples, setup.config.seed, sample_names, not proxy)
    if 'nfe' in out:
      values['sample_nfe'] = int(out['nfe'])
    if 'acceptance' in out:  # discriminator rejection sampling
      values['drs_acceptance'] = float(out['acceptance'])
    if workdir and 'nn_index' in extras:
      save_neighbours_picture(setup, workdir, step, samples, extras)
  if 'bpd' in names:
    values.update(compute_bpd(setup, state, step))
  if proxy:
    return {f'proxy_{k}': v for k, v in values.items()}
  protocol = {'num_samples': num, 'sample_seed': rng_text}
  if sample_names:
    protocol = evaluator.protocol(num, rng_text, setup.objective.sample_protocol())
    if setup.config.eval.bounds and setup.spec.kind == 'images':
      values['bounds'] = evaluator.bounds(num, setup.config.seed)
  if 'bpd' in names:
    ev = setup.config.eval
    protocol['bpd'] = {'n': ev.bpd_num, 'num_bins': ev.num_bins, 'trace': ev.bpd_trace}
  values['protocol'] = protocol
  return values


def proxy_num_samples(config: ml_collections.ConfigDict) -> int:
  """eval.proxy_num_samples capped at eval.num_samples (0: eval.num_samples)."""
  num = config.eval.num_samples
  return min(config.eval.proxy_num_samples or num, num)


def save_neighbours_picture(setup: Setup, workdir: str, step: int, samples, extras) -> None:
  """`samples/step_N_neighbours.png`: the 16 samples nearest to a training example (in feature
  space), each above its nearest training example: where to look for memorised images."""
  if jax.process_index() != 0 or setup.spec.kind != 'images':
    return
  order = np.argsort(extras['nn_distance'])[:16]
  source = data_lib.make_source(setup.spec.name, 'train', setup.config.data.data_dir or None)
  train = source.get_batch(np.asarray(extras['nn_index'])[order])['x']
  rows = []
  for half in (slice(0, 8), slice(8, 16)):
    rows += [samples[order][half], train[half]]
  grid = np.concatenate(rows)
  path = os.path.join(workdir, 'samples', f'step_{step}_neighbours.png')
  title = (
    f'{run_title(workdir, step)}\nrows 1, 3: the 16 samples nearest to a training example; '
    'rows 2, 4: that training example'
  )
  images.save_samples_picture(path, grid, kind='images', ncols=len(grid) // 4, title=title)


def compute_bpd(setup: Setup, state: TrainState, step: int) -> dict[str, float]:
  """Bits/dim of `eval.bpd_num` test examples under the model (`objective.bits_per_dim`)."""
  ev = setup.config.eval
  x = reference_data(setup, ev.bpd_num)
  x = x[: len(x) - len(x) % setup.mesh.size] if len(x) >= setup.mesh.size else x
  sharding = setup.batch_sharding if len(x) % setup.mesh.size == 0 else setup.replicated
  x = jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])  # multi-host too
  key = purpose_key(setup.config.seed, 'bpd', step)
  fn = jax.jit(
    lambda st, xx, k: setup.objective.bits_per_dim(
      st, xx, k, ev.num_bins, ev.bpd_trace, ev.bpd_rtol, ev.bpd_atol
    )
  )
  out = distributed.to_host(fn(state, x, key))
  return {'bpd': float(out['bpd']), 'bpd_nfe': int(out['bpd_nfe'])}


def eval_scalars(values: dict[str, Any]) -> dict[str, float]:
  """The eval JSON's numbers as log scalars `eval/<name>` (its protocol and bounds are not)."""
  return {f'eval/{k}': v for k, v in values.items() if isinstance(v, int | float)}


def write_eval(workdir: str, step: int, values: dict[str, Any]) -> str:
  """Writes `W/eval/step_N.json` (process 0 only) and returns its path."""
  path = os.path.join(workdir, 'eval', f'step_{step}.json')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      json.dump({'step': step, **values}, f, indent=2, sort_keys=True)
    os.replace(path + '.tmp', path)
  return path


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


def prepare_run(
  config,
  workdir: str,
  mode: str,
  allow_config_change: bool = False,
  mesh: Mesh | None = None,
  output_dir: str | None = None,
) -> Setup:
  """Validates everything (config, data, workdir) before anything is compiled or written."""
  setup = build(config, mesh)
  workdir_lib.check_workdir(workdir, config, mode, allow_config_change, output_dir)
  return setup


def restore_or_init(setup: Setup, manager, step: int | None = None, move_unreadable=False):
  """(state, data iterator state or None); (None, None) when there is no checkpoint.

  An unreadable newest checkpoint is skipped for an older one; with `move_unreadable`
  (training) it is also moved aside (`<step>.unreadable`), so that the run can save it again."""
  abstract = jax.eval_shape(setup.objective.init, jax.random.key(0), example_batch(setup))
  abstract = ckpt_lib.abstract_like(abstract, setup.replicated)
  restored = ckpt_lib.restore_latest(manager, abstract, step, move_unreadable)
  if restored is None:
    if step is not None:
      raise FileNotFoundError(f'no checkpoint for step {step}')
    return None, None
  step, state, data_state = restored
  logging.info('restored checkpoint of step %d', step)
  return state, data_state


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
  setup = prepare_run(config, workdir, 'train', allow_config_change, mesh)
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
  picture_fn: Any  # make_sample_fn(setup, sample.num)
  eval_fn: Any  # make_sample_fn(setup, eval.num_samples)
  proxy_fn: Any  # make_sample_fn(setup, proxy_num_samples(config))
  evaluator: Any  # make_evaluator(setup)

  def picture(self, state: TrainState, step: int) -> None:
    """`W/samples/step_N.png`, also shown in TensorBoard as image 'samples'."""
    rng = purpose_key(self.setup.config.seed, 'picture', step)
    out = self.picture_fn(state, rng)
    path = os.path.join(self.workdir, 'samples', f'step_{step}.png')
    title = f'{run_title(self.workdir, step)} ({self.setup.config.objective.name}, training)'
    save_picture(self.setup, path, out['samples'], title, 'labels' in out)
    self.writer.write_picture(step, 'samples', path)

  def strips(self, state: TrainState, step: int) -> None:
    """The objective's strips (`save_strip_pictures`), also as TensorBoard images."""
    rng = purpose_key(self.setup.config.seed, 'strips', step)
    stem = os.path.join(self.workdir, 'samples', f'step_{step}')
    title = run_title(self.workdir, step)
    for method, path in save_strip_pictures(self.setup, state, stem, rng, title=title).items():
      self.writer.write_picture(step, f'samples/{method}', path)

  def evaluate(self, state: TrainState, step: int) -> None:
    """The final numbers: `W/eval/step_N.json` and `eval/*` in the logs and TensorBoard."""
    values = compute_metrics(
      self.setup, state, step, self.eval_fn, self.evaluator, workdir=self.workdir
    )
    if values:
      write_eval(self.workdir, step, values)
      scalars = eval_scalars(values)
      self.writer.write(step, scalars)
      logging.info('eval at step %d: %s', step, scalars)
      neighbours = os.path.join(self.workdir, 'samples', f'step_{step}_neighbours.png')
      if 'memorisation' in values:
        self.writer.write_picture(step, 'samples/neighbours', neighbours)

  def proxy(self, state: TrainState, step: int) -> None:
    """The cheap training-time proxy (`proxy_*` in the logs; never in W/eval)."""
    values = compute_metrics(self.setup, state, step, self.proxy_fn, self.evaluator, proxy=True)
    if values:
      self.writer.write(step, values)
      logging.info('proxy metrics at step %d: %s', step, values)


def _train(setup: Setup, workdir: str, saver, writer: MetricWriter) -> TrainState:
  config = setup.config
  state, data_state = restore_or_init(setup, saver.manager, move_unreadable=True)
  if state is None:
    state = init_state(setup)
  rollbacks = 0
  if data_state:
    data_state = dict(data_state)
    rollbacks = int(data_state.pop(ROLLBACKS_KEY, 0))
  data_iter = make_loader_iter(setup)
  if data_state:
    data_lib.restore_iterator(data_iter, data_state)
  start = int(state.step)
  moved = writer.start_at(start)  # a resume continues the log; it does not repeat steps
  if moved:
    logging.info(
      'resuming at step %d: moved %d later log lines to metrics.superseded.jsonl', start, moved
    )
  eval_fn = make_sample_fn(setup, config.eval.num_samples)  # (each compiles on first use)
  proxy_fn = make_sample_fn(setup, proxy_num_samples(config))
  hooks = _Hooks(
    setup,
    workdir,
    writer,
    make_sample_fn(setup, config.sample.num),
    eval_fn,
    eval_fn if proxy_num_samples(config) == config.eval.num_samples else proxy_fn,
    make_evaluator(setup),
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
      state, data_state = restore_or_init(setup, manager, move_unreadable=True)
      data_iter = make_loader_iter(setup)
      if state is None:
        state = init_state(setup)
      else:
        data_state = dict(data_state)
        data_state.pop(ROLLBACKS_KEY, None)
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
  batch = to_global(next(data_iter), setup.batch_sharding)
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
          saver.save(done, state, data_state)
          last_ckpt = done
        log.window_start += time.perf_counter() - side_start
        if stop.signum is not None:
          saver.finish()
          logging.warning('signal %d: saved checkpoint of step %d; exiting', stop.signum, done)
          raise Interrupted(stop.signum, done)
        if done < t.num_steps:
          batch = to_global(next(data_iter), setup.batch_sharding)
    log.flush(last_ckpt)
  except Diverged as e:
    e.step_fn = step_fn  # the compiled step serves the rolled-back state too
    raise
  return state


def _restore_for_reading(config, workdir: str, mode: str, step: int | None, output_dir=None):
  setup = prepare_run(config, workdir, mode, output_dir=output_dir)
  manager = ckpt_lib.make_manager(
    os.path.join(workdir, 'checkpoints'), config.train.max_to_keep, read_only=True
  )
  try:
    state, _ = restore_or_init(setup, manager, step)
  finally:
    manager.close()
  if state is None:
    raise FileNotFoundError(f'--workdir={workdir} has no checkpoint to {mode}; train first')
  return setup, state


def evaluate(
  config, workdir: str, step: int | None = None, output_dir: str | None = None
) -> dict[str, float]:
  """`--mode=eval`: metrics of the latest (or `step`'s) checkpoint -> `W/eval/step_N.json`
  (with `output_dir`, `D/eval/step_N.json`; the workdir is only read)."""
  setup, state = _restore_for_reading(config, workdir, 'eval', step, output_dir)
  out = output_dir or workdir
  step = int(state.step)
  values = compute_metrics(setup, state, step, workdir=out)
  path = write_eval(out, step, values)
  writer = MetricWriter(out, jsonl=False)  # TensorBoard only: metrics.jsonl is training's
  writer.write(step, eval_scalars(values))
  writer.close()
  logging.info('eval at step %d: %s (written to %s)', step, values, path)
  return values


def sample(
  config, workdir: str, num: int, step: int | None = None, output_dir: str | None = None
) -> str:
  """`--mode=sample`: `num` samples from the EMA parameters -> `W/samples/step_N.npz` and its
  own pictures `step_N_sampled*.png` (never over training's `step_N.png`); with `output_dir`
  they go to `D/samples/` and the workdir is only read.

  The samples are drawn with the final evaluation's key (`_eval_rng`): with `num` =
  eval.num_samples they are the samples `--mode=eval` scores, so `gen score` of the `.npz`
  against the reference split reproduces the eval JSON's numbers."""
  if num < 1:
    raise ConfigError(f'--num_samples must be >= 1, got {num}')
  setup, state = _restore_for_reading(config, workdir, 'sample', step, output_dir)
  step = int(state.step)
  rng, rng_text = _eval_rng(setup, step)
  out = make_sample_fn(setup, num)(state, rng)
  path = os.path.join(output_dir or workdir, 'samples', f'step_{step}.npz')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    with open(path + '.tmp', 'wb') as f:
      np.savez(f, **arrays)
    os.replace(path + '.tmp', path)
    picture = path[: -len('.npz')] + '_sampled.png'
    title = f'{run_title(workdir, step)} (--mode=sample, {num} samples)'
    save_picture(setup, picture, arrays['samples'], title, 'labels' in arrays)
  stem = path[: -len('.npz')] + '_sampled'
  title = f'{run_title(workdir, step)} (--mode=sample)'
  save_strip_pictures(setup, state, stem, jax.random.fold_in(rng, 1), title=title)
  logging.info('wrote %d samples of step %d (key %s) to %s', num, step, rng_text, path)
  return path
