"""The restricted Boltzmann machine: contrastive divergence with block-Gibbs negatives.

A Bernoulli-Bernoulli RBM (gen.models.energy.RBM) has the free energy
  F(v) = -b.v - sum_j softplus(c_j + (v W)_j),     p(v) ∝ exp(-F(v)),
over binary v (the data binarised at 0). Its maximum-likelihood gradient is the EBM's,
  grad log p(v+) = -grad F(v+) + E_{v- ~ p}[grad F(v-)],
with the negatives v- from k block-Gibbs sweeps v -> h -> v (CD-k, Hinton 2002) started from
the data, or from persistent chains in a replay buffer (PCD, Tieleman 2008: reinit_prob 0).
The loss is the EBM's 'cd' loss without the energy penalty: mean F(v+) - mean F(sg(v-)).
Samples are the mean of the last visible layer, p(v = 1 | h), mapped to [-1, 1].
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from gen import models
from gen import state as state_lib
from gen.errors import ConfigError
from gen.models import energy as energy_lib
from gen.objectives import ebm

MODEL_KINDS = ('rbm',)


class RBM(ebm.EBM):
  """The EBM objective with Gibbs chains on binary data (fields: gen.objectives.ebm.EBM; the
  Langevin fields are unused; its capabilities are the EBM's)."""

  def _data(self, x):
    return (x > 0).astype(x.dtype).reshape(x.shape[0], -1)

  def _diagnostics(self, state, x, key) -> dict[str, jax.Array]:
    """'recon_error': the mean squared error of one Gibbs sweep's p(v | h) from the data."""
    _, pv = energy_lib.gibbs_chain(state.params[ebm.NET], x, key, 1)
    return {'recon_error': jnp.mean(jnp.square(pv - x))}

  def _noise(self, key, num):
    return jax.random.bernoulli(key, 0.5, (num, *self.shape)).astype(jnp.float32).reshape(num, -1)

  def _chain(self, params, collections, x, key, num_steps, trajectory=False):
    v, _ = energy_lib.gibbs_chain(params, x, key, num_steps)
    return v, {}, None

  def _sample(self, state, rng, num, trajectory=False):
    k_init, k_chain = jax.random.split(rng)
    start = self._noise(k_init, num)
    _, pv = energy_lib.gibbs_chain(self._params(state), start, k_chain, self.sample_steps)
    return start, (2.0 * pv - 1.0).reshape(num, *self.shape), None  # in [-1, 1]

  def sample_protocol(self) -> dict[str, Any]:
    return {'sampler': 'block_gibbs', 'chain_steps': self.sample_steps, 'use_ema': self.use_ema}

  def trajectory(self, state, rng, num: int) -> jax.Array:
    """[2, num, ...]: the chains' random binary starts and the samples."""
    start, x, _ = self._sample(state, rng, num)
    return jnp.stack([2.0 * start.reshape(num, *self.shape) - 1.0, x])

  def picture_captions(self) -> dict[str, str]:
    return {'trajectory': 'Gibbs chain: one row per sample, random start (left), sample (right)'}


def default_config() -> ml_collections.ConfigDict:
  """config.rbm: CD-k or persistent CD, and sampling."""
  c = ml_collections.ConfigDict()
  c.chain_steps = 1  # Gibbs sweeps per negative (CD-k's k)
  c.chain_init = 'data'  # data (CD-k) | buffer (persistent chains; reinit_prob 0: PCD) | noise
  c.buffer_size = 10_000
  c.reinit_prob = 0.0
  c.sample = ml_collections.ConfigDict(dict(chain_steps=1000))  # Gibbs sweeps from noise
  return c


def from_config(config: ml_collections.ConfigDict, spec) -> RBM:
  """The RBM of `config.rbm` and `config.model.rbm` for (binarised) image data `spec`."""
  r = config.rbm
  if spec.kind != 'images':
    raise ConfigError(f"objective.name='rbm' trains on binarised images; {spec.name!r} is not")
  model = models.from_config(config, spec.shape, MODEL_KINDS)
  ebm.check_chains(r, 'rbm', config.data.batch_size)
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  return RBM(
    model=model,
    output='energy',
    loss='cd',
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    alpha=0.0,
    chain_steps=r.chain_steps,
    chain_init=r.chain_init,
    buffer_size=r.buffer_size,
    reinit_prob=r.reinit_prob,
    sample_steps=r.sample.chain_steps,
    use_ema=config.sample.use_ema,
  )
