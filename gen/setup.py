"""A run's set-up: the config validated and built into a `Setup` (data spec, objective, mesh,
metrics) before anything compiles, and the pieces every mode shares (the step-0 state, restoring
a checkpoint, global batches, the jitted sampler, the keys of each purpose).
"""

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen import data as data_lib
from gen import distributed, objectives
from gen import metrics as metrics_lib
from gen import pretrained as pretrained_lib
from gen.errors import ConfigError
from gen.metrics import evaluation
from gen.state import TrainState
from gen.utils import checkpoint as ckpt_lib
from gen.utils import once
from gen.utils import workdir as workdir_lib

ON_NONFINITE = ('stop', 'skip_step', 'rollback')  # train.on_nonfinite

# The seed offset of each purpose that draws randomness outside the train step (whose key is
# fold_in(key(seed), step)): key(seed + offset) folded with the step it serves.
SEED_OFFSETS = {'eval': 1, 'picture': 2, 'strips': 4, 'bpd': 5, 'reconstruction': 6}


def purpose_key(seed: int, purpose: str, step: int) -> jax.Array:
  """fold_in(key(seed + SEED_OFFSETS[purpose]), step): the same checkpoint, the same draws."""
  return jax.random.fold_in(jax.random.key(seed + SEED_OFFSETS[purpose]), step)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a run is made of, built from the config before anything compiles."""

  config: ml_collections.ConfigDict
  spec: data_lib.DatasetSpec
  objective: Any
  mesh: Mesh
  metrics: tuple[str, ...] = ()  # eval.metrics resolved ('auto' expanded): the final numbers
  proxy_metrics: tuple[str, ...] = ()  # eval.proxy_metrics resolved: logged during training
  pretrained: dict = dataclasses.field(default_factory=dict)  # role -> gen.pretrained.Pretrained

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
  found = objectives.resolve(config.objective.name)
  roles, optional = objectives.pretrained_roles(found), objectives.optional_pretrained_roles(found)
  refs = pretrained_lib.load_all(config, roles, mesh, build, restore_or_init, optional)
  objective = objectives.make(config, spec, refs)
  if config.train.compute_dtype not in ('float32', 'bfloat16'):
    raise ConfigError(
      f"train.compute_dtype={config.train.compute_dtype!r}: choose 'float32' or 'bfloat16'"
    )
  caps, name = objective.capabilities, config.objective.name
  if config.train.compute_dtype != 'float32' and not caps.bfloat16:
    raise ConfigError(
      f'train.compute_dtype={config.train.compute_dtype!r}: objective.name={name!r} computes '
      "in float32 only; set train.compute_dtype='float32'"
    )
  if config.train.grad_accum > 1 and not caps.grad_accum:
    raise ConfigError(
      f'train.grad_accum={config.train.grad_accum}: objective.name={name!r} does not accumulate '
      'gradients; set train.grad_accum=1'
    )
  names = metrics_lib.resolve(config.eval.metrics, spec, objective)
  metrics_lib.validate(names, spec)
  if 'bpd' in names and not caps.likelihood:
    raise ConfigError(
      f"eval.metrics 'bpd' needs an objective with a likelihood; objective.name={name!r} has none"
    )
  if 'reconstruction' in names and not caps.reconstruction:
    raise ConfigError(
      "eval.metrics 'reconstruction' needs an objective that reconstructs (an autoencoder); "
      f'objective.name={name!r} does not'
    )
  ev = config.eval
  if 'bpd' in names:
    if isinstance(ev.num_bins, bool) or not isinstance(ev.num_bins, int) or ev.num_bins in (1,):
      raise ConfigError(f'eval.num_bins must be 0 (continuous data) or >= 2, got {ev.num_bins!r}')
    if ev.num_bins < 0 or ev.bpd_num < 1:
      raise ConfigError(
        f'eval.num_bins >= 0 and eval.bpd_num >= 1 are required; got {ev.num_bins}, {ev.bpd_num}'
      )
  proxy = metrics_lib.resolve(config.eval.proxy_metrics, spec, objective)
  metrics_lib.validate(proxy, spec, 'eval.proxy_metrics')
  if 'auto' in config.eval.proxy_metrics:  # the final metrics that come from samples
    proxy = tuple(n for n in names if metrics_lib.METRICS[n] != 'model')
  evaluation.validate_options(config, spec, names + proxy)
  if 'class_agreement' in names + proxy and not _draws_labels(objective, config, spec, refs):
    raise ConfigError(
      f"eval.metrics 'class_agreement' scores conditional samples; objective.name={name!r} "
      'draws them without labels (a conditional model: e.g. diffusion.conditional=True)'
    )
  return Setup(config, spec, objective, mesh, names, proxy, refs)


def _draws_labels(objective, config, spec, refs) -> bool:
  """Whether `objective.sample` returns labels (traced abstractly: nothing compiles)."""
  batch = {'x': np.zeros((config.data.batch_size, *spec.shape), np.float32)}
  if spec.num_classes:
    batch['label'] = np.zeros((config.data.batch_size,), np.int32)
  args = (jax.random.key(0), batch) + (({r: p.params for r, p in refs.items()},) if refs else ())
  state = jax.eval_shape(objective.init, *args)
  out = jax.eval_shape(lambda s, k: objective.sample(s, k, 10), state, jax.random.key(1))
  return out.labels is not None


# ---------------------------------------------------------------------------------------------
# Compiled pieces.


def example_batch(setup: Setup) -> dict[str, np.ndarray]:
  """Zeros shaped like one global batch: enough to initialise networks, consumes no data."""
  batch = {'x': np.zeros((setup.config.data.batch_size, *setup.spec.shape), np.float32)}
  if setup.spec.num_classes:
    batch['label'] = np.zeros((setup.config.data.batch_size,), np.int32)
  return batch


def init_args(setup: Setup, rng: jax.Array) -> tuple:
  """The arguments of `objective.init`: (rng, example batch), and the pretrained parameters
  (role -> EMA parameters) for an objective that declares roles."""
  args = (rng, example_batch(setup))
  return args + ({r: p.params for r, p in setup.pretrained.items()},) if setup.pretrained else args


def init_state(setup: Setup) -> TrainState:
  """The step-0 state, replicated over the mesh (compiled as a program that runs once:
  gen.utils.once)."""
  args = init_args(setup, jax.random.key(setup.config.seed))
  platform = setup.mesh.devices.flat[0].platform
  return once.call_once(
    setup.objective.init, *args, platform=platform, out_shardings=setup.replicated
  )


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's rows -> one global array per field, sharded over the mesh."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


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
  """`objective.sample` for `num` samples, jitted; its `Samples` on the host, the rows sharded
  over the devices where they divide."""
  compiled = {}

  def run(state, rng):
    if 'fn' not in compiled:
      sample = lambda st, r: setup.objective.sample(st, r, num)
      out = _per_example_shardings(setup, sample, num, state, rng)
      compiled['fn'] = jax.jit(sample, out_shardings=out)
    return distributed.to_host(compiled['fn'](state, rng))

  return run


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
  abstract = jax.eval_shape(setup.objective.init, *init_args(setup, jax.random.key(0)))
  abstract = ckpt_lib.abstract_like(abstract, setup.replicated)
  restored = ckpt_lib.restore_latest(manager, abstract, step, move_unreadable)
  if restored is None:
    if step is not None:
      raise FileNotFoundError(f'no checkpoint for step {step}')
    return None, None
  step, state, data_state = restored
  logging.info('restored checkpoint of step %d', step)
  return state, data_state
