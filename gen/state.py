"""TrainState and the update rules every objective shares: optimizer step, EMA, optimizers.

The state holds every array a run changes (so a checkpoint restores it exactly) and nothing
static: optimizers and network `apply` functions live in the objective, which closes over them.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from gen.errors import ConfigError

PyTree = Any


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during a run, keyed by network name.

  Attributes:
    step: scalar int32, number of completed training steps.
    params: network name -> parameter tree (a GAN has 'generator' and 'discriminator').
    opt_state: network name -> optax state of that network's optimizer.
    ema_params: network name -> exponential moving average of its parameters.
    extra: objective-owned arrays (batch statistics, replay buffers, power-iteration vectors).
  """

  step: jax.Array
  params: dict[str, PyTree]
  opt_state: dict[str, PyTree]
  ema_params: dict[str, PyTree]
  extra: dict[str, PyTree] = flax.struct.field(default_factory=dict)


def create_state(
  params: dict[str, PyTree], txs: dict[str, optax.GradientTransformation], extra=None
) -> TrainState:
  """A step-0 state: one optimizer state per network, EMA initialised to the parameters."""
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state={name: txs[name].init(p) for name, p in params.items()},
    ema_params=jax.tree.map(jnp.copy, params),
    extra=extra or {},
  )


def apply_gradients(
  state: TrainState,
  name: str,
  grads: PyTree,
  tx: optax.GradientTransformation,
  ema_rate: float,
  ema_warmup: float = 0.0,
) -> tuple[TrainState, jax.Array]:
  """One optimizer step of network `name` plus its EMA update; returns (state, grad norm).

  EMA: `ema <- d * ema + (1 - d) * params` (optax.incremental_update), applied after the
  optimizer step, as in DDPM and score_sde, with the decay d = `ema_decay(state.step, ...)`.
  `step` is not advanced here: a step may update several networks (a GAN's discriminator and
  generator) and the loop counts steps.
  """
  updates, opt_state = tx.update(grads, state.opt_state[name], state.params[name])
  params = optax.apply_updates(state.params[name], updates)
  decay = ema_decay(state.step, ema_rate, ema_warmup)
  ema = optax.incremental_update(params, state.ema_params[name], step_size=1.0 - decay)
  state = state.replace(
    params={**state.params, name: params},
    opt_state={**state.opt_state, name: opt_state},
    ema_params={**state.ema_params, name: ema},
  )
  return state, optax.tree.norm(grads)


def ema_decay(step: jax.Array, rate: float, warmup: float) -> jax.Array:
  """The EMA decay of the update after `step` completed steps: min(rate, (1 + step) / (warmup
  + step)), or `rate` when `warmup` is 0.

  The warm-up is TensorFlow's `ExponentialMovingAverage(num_updates=step)` with `warmup` = 10:
  the first update keeps 0.1 of the initial weights, and the initialisation's share of the EMA
  after t steps is prod_s d_s ~ (9! / t^9) instead of rate^t (0.999^2000 = 13.5% of a
  2,000-step run's EMA would still be the random initialisation). The decay reaches `rate`
  after (warmup rate - 1) / (1 - rate) steps (8,990 for 0.999): until then the EMA averages
  roughly the last 1/(warmup - 1) of the run.
  """
  if not warmup:
    return jnp.asarray(rate, jnp.float32)
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(rate), (1.0 + t) / (warmup + t))


SCHEDULES = ('constant', 'cosine')
OPTIMIZERS = ('adam', 'rmsprop')
# An optimizer config section's fields and defaults (config.optim; a GAN's gan.optim_d).
OPTIMIZER_DEFAULTS = dict(
  optimizer='adam',  # adam (AdamW) | rmsprop
  lr=1e-3,
  b1=0.9,
  b2=0.999,
  weight_decay=0.0,
  warmup_steps=0,
  schedule='constant',  # constant | cosine (decays to 0 at train.num_steps)
  grad_clip=0.0,  # global-norm clipping; 0 disables
)


def make_optimizer(
  *,
  lr: float,
  optimizer: str = 'adam',
  b1: float = 0.9,
  b2: float = 0.999,
  weight_decay: float = 0.0,
  warmup_steps: int = 0,
  schedule: str = 'constant',
  grad_clip: float = 0.0,
  total_steps: int = 1,
  field: str = 'optim',
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Adam(W) or RMSProp with optional linear warm-up, cosine decay and global-norm clipping.

  Args:
    optimizer: 'adam' (AdamW) or 'rmsprop' (decay 0.99, eps 1e-8: PyTorch's defaults, which
      the WGAN paper's weight-clipping runs used; b1/b2 are ignored).
    lr, b1, b2, weight_decay: AdamW hyper-parameters (Kingma & Ba 2015; Loshchilov & Hutter 2019).
    warmup_steps: linear warm-up from 0 to `lr`.
    schedule: 'constant' or 'cosine' (decay to 0 at `total_steps`).
    grad_clip: clip the global gradient norm to this value; 0 disables.
    total_steps: run length, for the cosine schedule.
    field: config path named in error messages.

  Returns:
    (transformation, learning-rate schedule) — the schedule is logged by the objective.
  """
  if not lr > 0:
    raise ConfigError(f'{field}.lr must be > 0, got {lr}')
  for name, beta in (('b1', b1), ('b2', b2)):
    if not 0 <= beta < 1:
      raise ConfigError(f'{field}.{name} must be in [0, 1), got {beta}')
  if weight_decay < 0 or warmup_steps < 0 or grad_clip < 0:
    raise ConfigError(f'{field}.weight_decay, warmup_steps and grad_clip must be >= 0')
  if optimizer not in OPTIMIZERS:
    raise ConfigError(f'{field}.optimizer={optimizer!r} is unknown; choose one of {OPTIMIZERS}')
  if schedule not in SCHEDULES:
    raise ConfigError(f'{field}.schedule={schedule!r} is unknown; choose one of {SCHEDULES}')
  if schedule == 'cosine' and warmup_steps:
    lr_fn = optax.warmup_cosine_decay_schedule(
      0.0, lr, warmup_steps, max(total_steps, warmup_steps + 1)
    )
  elif schedule == 'cosine':  # no warm-up: the first update already uses the full `lr`
    lr_fn = optax.cosine_decay_schedule(lr, max(total_steps, 1))
  elif warmup_steps:
    lr_fn = optax.linear_schedule(0.0, lr, warmup_steps)
  else:
    lr_fn = optax.constant_schedule(lr)
  if optimizer == 'adam':
    tx = optax.adamw(lr_fn, b1=b1, b2=b2, weight_decay=weight_decay)
  else:
    tx = optax.chain(
      optax.add_decayed_weights(weight_decay), optax.rmsprop(lr_fn, decay=0.99, eps=1e-8)
    )
  if grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
  return tx, lr_fn
