"""Objectives that live outside gen, as in a researcher's own repository: gen loads them by
'tests.toy_objectives:<name>' (gen.objectives.resolve) with no edit under gen/. Used by
tests/test_contract.py; this module imports nothing of the tests' harness (a `gen.main`
subprocess imports it).
"""

import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen import state as state_lib
from gen.objectives.contract import Capabilities, Samples

# -- a 30-line objective: the maximum-likelihood Gaussian N(mu, diag(sigma^2)) -----------------


class GaussianFit:
  """Fits mu and log sigma by gradient descent on the mean negative log-likelihood."""

  capabilities = Capabilities(likelihood=True)

  def __init__(self, dim, lr, ema_rate):
    self.dim, self.tx, self.ema_rate = dim, optax.adam(lr), ema_rate

  def nll(self, params, x):  # per example, in nats
    z = (x - params['mu']) * jnp.exp(-params['log_sigma'])
    return jnp.sum(0.5 * z**2 + params['log_sigma'] + 0.5 * math.log(2 * math.pi), axis=-1)

  def init(self, rng, example_batch):
    params = {'mu': jnp.zeros(self.dim), 'log_sigma': jnp.zeros(self.dim)}
    return state_lib.create_state({'gauss': params}, {'gauss': self.tx})

  def step(self, state, batch, key):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(self.nll(p, batch['x'])))(
      state.params['gauss']
    )
    state, norm = state_lib.apply_gradients(state, 'gauss', grads, self.tx, self.ema_rate)
    return state, {'loss': loss, 'grad_norm': norm}

  def sample(self, state, key, num, labels=None):
    p = state.ema_params['gauss']
    x = p['mu'] + jnp.exp(p['log_sigma']) * jax.random.normal(key, (num, self.dim))
    return Samples(x, None, {'nfe': jnp.zeros((), jnp.int32)})

  def sample_protocol(self):
    return {'sampler': 'reparameterised_normal', 'use_ema': True}

  def pictures(self, state, key):
    return {}

  def picture_captions(self):
    return {}

  def bits_per_dim(self, state, x, key, num_bins=0):
    nll = self.nll(state.ema_params['gauss'], x)
    return {'bpd': jnp.mean(nll) / (self.dim * math.log(2)), 'bpd_nfe': jnp.zeros((), jnp.int32)}

  def likelihood_protocol(self):
    return {'method': 'closed_form'}


gaussian_fit = types.SimpleNamespace(
  default_config=lambda: ml_collections.ConfigDict({'lr': 0.05}),
  from_config=lambda config, spec: GaussianFit(
    spec.shape[0], config.gaussian_fit.lr, config.train.ema_rate
  ),
)


# -- pretrained networks: a student that distils a frozen teacher run ---------------------------


class GaussianStudent(GaussianFit):
  """Fits its Gaussian to a frozen teacher's: the loss is KL(teacher || student), closed form."""

  def init(self, rng, example_batch, pretrained):
    state = super().init(rng, example_batch)
    return state.replace(extra={'teacher': pretrained['teacher']['gauss']})

  def step(self, state, batch, key):
    t = state.extra['teacher']

    def kl(p):  # KL(N(mu_t, s_t^2) || N(mu, s^2)), summed over dimensions
      var_t, var = jnp.exp(2 * t['log_sigma']), jnp.exp(2 * p['log_sigma'])
      return jnp.sum(
        p['log_sigma'] - t['log_sigma'] + (var_t + (t['mu'] - p['mu']) ** 2) / (2 * var) - 0.5
      )

    loss, grads = jax.value_and_grad(kl)(state.params['gauss'])
    state, norm = state_lib.apply_gradients(state, 'gauss', grads, self.tx, self.ema_rate)
    return state, {'loss': loss, 'grad_norm': norm}


gaussian_student = types.SimpleNamespace(
  PRETRAINED={'teacher': ('tests.toy_objectives:gaussian_fit',)},
  default_config=lambda: ml_collections.ConfigDict({'lr': 0.05}),
  from_config=lambda config, spec, pretrained: GaussianStudent(
    spec.shape[0], config.gaussian_student.lr, config.train.ema_rate
  ),
)
