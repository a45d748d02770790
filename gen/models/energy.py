"""Energy and score networks for energy-based models, and the Bernoulli RBM.

An energy network maps x to a scalar E_theta(x) per example ([B]); the model density is
p(x) ∝ exp(-E(x)) and its score is -grad_x E. Smooth activations (SiLU/Swish) keep the input
gradient that Langevin dynamics and score matching differentiate well-behaved (ReLU energies
have piecewise-constant gradients). A score network outputs the vector field s(x) directly
(score matching without an energy). All are flax modules `f(x, train=False)`; spectral
normalisation (Miyato et al. 2018) on every layer is optional, its vectors in 'batch_stats'.
"""

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen.errors import ConfigError


def _dense(width: int, sn: bool, x, train: bool, **kw):
  layer = nn.Dense(width, **kw)
  return nn.SpectralNorm(layer)(x, update_stats=train) if sn else layer(x)


class EnergyMLP(nn.Module):
  """E(x) for vectors: Dense/SiLU stack -> scalar [B].

  Attributes:
    features: hidden widths.
    spectral_norm: spectrally normalise every layer.
  """

  features: Sequence[int] = (128, 128, 128)
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    chex.assert_rank(x, 2)
    h = x
    for width in self.features:
      h = nn.silu(_dense(width, self.spectral_norm, h, train))
    return _dense(1, self.spectral_norm, h, train)[:, 0]


class ScoreMLP(nn.Module):
  """s(x) for vectors: Dense/SiLU stack -> R^D, a direct score field (no energy behind it)."""

  features: Sequence[int] = (128, 128, 128)
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    chex.assert_rank(x, 2)
    h = x
    for width in self.features:
      h = nn.silu(_dense(width, self.spectral_norm, h, train))
    return _dense(x.shape[-1], self.spectral_norm, h, train)


class EnergyConvNet(nn.Module):
  """E(x) for NHWC images, in the spirit of IGEBM (Du & Mordatch 2019): a 3x3 convolution, then
  per resolution two 3x3 convolutions (the second strided) with SiLU, global sum pooling, and a
  linear head -> scalar [B].

  Attributes:
    ch: channels of the first level (doubling per level).
    num_levels: strided levels.
    spectral_norm: spectrally normalise every layer.
  """

  ch: int = 32
  num_levels: int = 2
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    chex.assert_rank(x, 4)
    sn = self.spectral_norm

    def conv(width, h, stride=1):
      layer = nn.Conv(width, (3, 3), strides=(stride, stride), padding='SAME')
      return nn.SpectralNorm(layer)(h, update_stats=train) if sn else layer(h)

    h = nn.silu(conv(self.ch, x))
    width = self.ch
    for _ in range(self.num_levels):
      h = nn.silu(conv(width, h))
      width *= 2
      h = nn.silu(conv(width, h, stride=2))
    h = jnp.sum(h, axis=(1, 2))
    return _dense(1, sn, h, train)[:, 0]


class RBM(nn.Module):
  """Bernoulli-Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002).

  E(v, h) = -b.v - c.h - v W h over binary v [B, V], h [B, H]. Summing h out gives the free
  energy F(v) = -b.v - sum_j softplus(c_j + (v W)_j), with p(v) ∝ exp(-F(v)); the module's
  call returns F(v) [B], so the contrastive-divergence loss of every EBM applies: the gradient
  of mean F(v+) - mean F(v-) is minus the positive-minus-negative correlations of CD.

  Attributes:
    num_hidden: H.
  """

  num_hidden: int = 64

  @nn.compact
  def __call__(self, v, train: bool = False):
    del train
    w = self.param('w', nn.initializers.normal(0.01), (v.shape[-1], self.num_hidden))
    b = self.param('b', nn.initializers.zeros, (v.shape[-1],))
    c = self.param('c', nn.initializers.zeros, (self.num_hidden,))
    return -v @ b - jnp.sum(jax.nn.softplus(c + v @ w), axis=-1)


def rbm_hidden_probs(params, v):
  """p(h = 1 | v) = sigmoid(c + v W)."""
  return jax.nn.sigmoid(params['c'] + v @ params['w'])


def rbm_visible_probs(params, h):
  """p(v = 1 | h) = sigmoid(b + W h)."""
  return jax.nn.sigmoid(params['b'] + h @ params['w'].T)


def gibbs_chain(params, v, key, num_steps: int):
  """`num_steps` block-Gibbs sweeps v -> h -> v (lax.scan); returns (v, p(v=1|h) of the last)."""

  def sweep(carry, k):
    v, _ = carry
    kh, kv = jax.random.split(k)
    h = jax.random.bernoulli(kh, rbm_hidden_probs(params, v)).astype(v.dtype)
    pv = rbm_visible_probs(params, h)
    return (jax.random.bernoulli(kv, pv).astype(v.dtype), pv), None

  (v, pv), _ = jax.lax.scan(sweep, (v, jnp.zeros_like(v)), jax.random.split(key, num_steps))
  return v, pv


# model.name -> module class, for objective 'ebm' (the config section holds its fields)
ENERGY_MODELS = {
  'energy_mlp': EnergyMLP,
  'energy_conv': EnergyConvNet,
  'score_mlp': ScoreMLP,
  'rbm': RBM,
}


def make(name: str, kwargs: dict) -> nn.Module:
  """The energy/score network `name` from its config section, checked before compiling."""
  cls = ENERGY_MODELS[name]
  fields = set(cls.__dataclass_fields__) - {'parent', 'name'}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ConfigError(f'model.{name}: unknown fields {unknown}; it takes {sorted(fields)}')
  kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return cls(**kw)
