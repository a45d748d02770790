"""DDPM: noise-prediction training and ancestral sampling (Ho et al. 2020).

The loss is the "simple" objective
  L(theta) = E_{x_0, t ~ U{0..T-1}, eps ~ N(0, I)} || eps - eps_theta(sqrt(abar_t) x_0 +
             sqrt(1 - abar_t) eps, t) ||^2,
the reweighted variational bound that DDPM found to give the best samples.
"""

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen import state as state_lib
from gen.processes.discrete import DiscreteVP
from gen.samplers.ddpm import ddpm_sample

NET = 'denoiser'


def ddpm_loss(
  apply_fn, params, process: DiscreteVP, x0: chex.Array, key: jax.Array, train: bool = True
) -> jax.Array:
  """The DDPM simple loss, mean over the batch and data dimensions.

  Args:
    apply_fn: `apply_fn(params, x_t, t, rngs) -> eps prediction`.
    params: the denoiser's parameters.
    process: the forward process q(x_t | x_0).
    x0: [B, ...] clean data.
    key: randomness for t, eps and dropout.
    train: whether dropout is active.

  Returns:
    scalar loss.
  """
  key_t, key_eps, key_dropout = jax.random.split(key, 3)
  t = jax.random.randint(key_t, (x0.shape[0],), 0, process.num_timesteps)
  eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
  x_t = process.add_noise(x0, t, eps)
  eps_hat = apply_fn(params, x_t, t, train, key_dropout)
  chex.assert_equal_shape((eps_hat, eps))
  return jnp.mean(jnp.square(eps_hat - eps))


@dataclasses.dataclass(frozen=True)
class DDPM:
  """The DDPM objective: one network ('denoiser') predicting the added noise.

  Attributes:
    model: flax module `f(x_t, t, train) -> eps`.
    process: the discrete VP forward process.
    tx: the denoiser's optimizer.
    lr_fn: its learning-rate schedule (logged).
    ema_rate: EMA decay of the parameters.
    shape: one example's shape.
    use_ema: sample from the EMA parameters.
  """

  model: nn.Module
  process: DiscreteVP
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  ema_rate: float
  shape: tuple[int, ...]
  use_ema: bool = True

  def _apply(self, params, x, t, train, dropout_key):
    return self.model.apply({'params': params}, x, t, train, rngs={'dropout': dropout_key})

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> state_lib.TrainState:
    """Initialises the denoiser on an example batch; returns the step-0 state."""
    x = jnp.asarray(example_batch['x'])
    params = self.model.init(rng, x, jnp.zeros((x.shape[0],), jnp.int32))['params']
    return state_lib.create_state({NET: params}, {NET: self.tx})

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """One Adam step on the DDPM loss; returns (state, metrics)."""
    loss_fn = lambda p: ddpm_loss(self._apply, p, self.process, batch['x'], key)
    loss, grads = jax.value_and_grad(loss_fn)(state.params[NET])
    new_state, grad_norm = state_lib.apply_gradients(state, NET, grads, self.tx, self.ema_rate)
    metrics = {'loss': loss, f'grad_norm/{NET}': grad_norm, 'lr': self.lr_fn(state.step)}
    return new_state, metrics

  def sample(self, state: state_lib.TrainState, rng: jax.Array, num: int) -> dict[str, jax.Array]:
    """Draws `num` samples by ancestral sampling from the (EMA) denoiser."""
    params = (state.ema_params if self.use_ema else state.params)[NET]
    key_init, key_chain = jax.random.split(rng)
    x_T = jax.random.normal(key_init, (num, *self.shape))
    eps_fn = lambda x, t: self._apply(params, x, t, False, key_chain)
    return {'samples': ddpm_sample(eps_fn, self.process, x_T, key_chain)}
