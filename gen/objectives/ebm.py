"""Energy-based models: contrastive divergence with Langevin negatives, score matching, RBMs.

An EBM defines p_theta(x) = exp(-E_theta(x)) / Z_theta. Its log-likelihood gradient is
  grad_theta log p(x) = -grad_theta E(x) + E_{x- ~ p_theta}[grad_theta E(x-)],
so maximum likelihood needs samples of the model ("negatives"); score matching avoids them by
fitting the score grad_x log p = -grad_x E instead. The losses (pure functions):

  'cd'         contrastive divergence (Hinton 2002; Du & Mordatch 2019, IGEBM):
               E(x+) - E(sg(x-)) + alpha (E(x+)^2 + E(x-)^2), negatives x- from K Langevin steps
               x <- x - (a/2) grad E(x) + noise_scale sqrt(a) xi, started from noise, from data
               (CD-k), or from a replay buffer of persistent chains (IGEBM/JEM: re-initialised
               with probability reinit_prob; reinit_prob = 0 is persistent CD, Tieleman 2008)
  'exact_sm'   Hyvarinen (2005): E[ 0.5 |s(x)|^2 + tr(grad_x s(x)) ], exact Jacobian trace
  'sliced_sm'  Song et al. (2019): E_v[ v^T grad_x s(x) v + 0.5 (v^T s(x))^2 ]; variance-reduced
               form E_v[ v^T grad_x s(x) v ] + 0.5 |s(x)|^2 (their eq. 8) when projections are
               isotropic with E[v v^T] = I
  'dsm'        Vincent (2011): E[ 0.5 |s(x + sigma eps) + eps / sigma|^2 ], one noise level

with s = -grad_x E for an energy network, or the output of a score network. A Bernoulli RBM
(gen.models.energy.RBM, free energy F) trains with 'cd' and block-Gibbs negatives.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen import state as state_lib
from gen.models import energy as energy_lib
from gen.objectives.contract import Capabilities, Samples
from gen.samplers.langevin import langevin_step

NET = 'energy'
LOSSES = ('cd', 'exact_sm', 'sliced_sm', 'dsm')
CHAIN_INITS = ('noise', 'data', 'buffer')
PROJECTIONS = ('rademacher', 'gaussian')
TRAJECTORY_FRAMES = 8

# -- losses ---------------------------------------------------------------------------------


def contrastive_divergence_loss(
  e_pos: jax.Array, e_neg: jax.Array, alpha: float = 0.0
) -> tuple[jax.Array, dict]:
  """mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2) (IGEBM, Du & Mordatch 2019).

  The negatives' energies must come from samples under stop_gradient: the loss's parameter
  gradient is then the CD estimate of the negative log-likelihood gradient; the alpha term keeps
  energies near zero (their magnitude is otherwise free). Returns (loss, terms)."""
  cd = jnp.mean(e_pos) - jnp.mean(e_neg)
  reg = jnp.mean(jnp.square(e_pos)) + jnp.mean(jnp.square(e_neg))
  return cd + alpha * reg, {'cd': cd, 'energy_reg': reg}


def exact_score_matching_loss(score_fn: Callable, x: jax.Array) -> tuple[jax.Array, dict]:
  """Hyvarinen (2005), eq. 4: E[0.5 |s(x)|^2 + tr(grad_x s(x))], the Jacobian trace computed
  exactly with one forward-mode pass per dimension (for low-dimensional data).

  `score_fn` maps [B, D] -> [B, D] with rows independent (no batch statistics)."""
  chex.assert_rank(x, 2)
  s = score_fn(x)
  basis = jnp.eye(x.shape[1], dtype=x.dtype)
  # d s_i / d x_i for all i: the JVP along e_i, column i, summed over i.
  diag = jax.vmap(lambda e: jax.jvp(score_fn, (x,), (jnp.broadcast_to(e, x.shape),))[1])(basis)
  trace = jnp.einsum('ibi->b', diag)
  norm = 0.5 * jnp.sum(jnp.square(s), axis=1)
  return jnp.mean(norm + trace), {'sm_norm': jnp.mean(norm), 'sm_trace': jnp.mean(trace)}


def sliced_score_matching_loss(
  score_fn: Callable,
  x: jax.Array,
  key: jax.Array,
  num_projections: int = 1,
  projection: str = 'rademacher',
  variance_reduced: bool = True,
) -> tuple[jax.Array, dict]:
  """Sliced score matching (Song, Garg, Shi & Ermon 2019): random projections v replace the
  Jacobian trace by v^T (grad_x s) v, one Jacobian-vector product per projection.

  Plain (their eq. 7): E_v[v^T grad s v + 0.5 (v^T s)^2]. Variance-reduced (SSM-VR, their eq. 8):
  E_v[v^T grad s v] + 0.5 |s|^2, which has the same expectation when E[v v^T] = I (Rademacher or
  standard Gaussian v) and usually a lower variance (not always: with Gaussian v it is higher
  when s^T J s < -|s|^4 / 4). In expectation both equal exact score matching."""
  flat = x.reshape(x.shape[0], -1)
  shape = (num_projections, *x.shape)
  if projection == 'rademacher':
    v = jax.random.rademacher(key, shape, x.dtype)
  else:
    v = jax.random.normal(key, shape, x.dtype)
  s, jvp = jax.linearize(score_fn, x)  # one forward pass; J v for each projection after
  jv = jax.vmap(jvp)(v)  # [M, B, ...]
  vjv = jnp.sum((v * jv).reshape(num_projections, flat.shape[0], -1), axis=-1)  # [M, B]
  if variance_reduced:
    norm = 0.5 * jnp.sum(jnp.square(s.reshape(flat.shape[0], -1)), axis=-1)
  else:
    vs = jnp.sum((v * s[None]).reshape(num_projections, flat.shape[0], -1), axis=-1)
    norm = jnp.mean(0.5 * jnp.square(vs), axis=0)
  trace = jnp.mean(vjv, axis=0)
  return jnp.mean(norm + trace), {'sm_norm': jnp.mean(norm), 'sm_trace': jnp.mean(trace)}


def denoising_score_matching_loss(
  score_fn: Callable, x: jax.Array, key: jax.Array, sigma: float
) -> tuple[jax.Array, dict]:
  """Vincent (2011): E[0.5 |s(x~) - grad log q(x~ | x)|^2], x~ = x + sigma eps, whose target is
  -(x~ - x) / sigma^2 = -eps / sigma. The optimum is the score of the noised data distribution
  q_sigma (not of the data itself)."""
  eps = jax.random.normal(key, x.shape, x.dtype)
  s = score_fn(x + sigma * eps)
  err = jnp.sum(jnp.square(s + eps / sigma).reshape(x.shape[0], -1), axis=-1)
  return 0.5 * jnp.mean(err), {}


# -- negatives -----------------------------------------------------------------------------


def langevin_negatives(
  energy_fn: Callable,
  x: jax.Array,
  key: jax.Array,
  num_steps: int,
  step_size: float,
  noise_scale: float = 1.0,
  grad_clip: float = 0.0,
  mala: bool = False,
  bounds: tuple[float, float] | None = None,
  trajectory: bool = False,
):
  """K Langevin/SGLD steps on E (gen.samplers.langevin_step with score -grad E) as a lax.scan.

  Args:
    energy_fn: [B, ...] -> [B] energies.
    x: [B, ...] chain starts.
    key: randomness.
    num_steps: K.
    step_size: a; the update is x - (a/2) grad E + noise_scale sqrt(a) xi.
    noise_scale: multiplier of the noise (IGEBM uses a large gradient step and small noise).
    grad_clip: clip grad E elementwise to [-c, c] (0: off), as IGEBM/JEM do for stability.
    mala: Metropolis-adjusted Langevin (Roberts & Tweedie 1996): accept each proposal with
      probability min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x))); needs noise_scale 1
      and no clipping (else the proposal density is not the one the ratio uses).
    bounds: keep the chain in [lo, hi] (image data range): clamped after each step, or with
      MALA proposals outside rejected (which keeps MALA exact for the truncated density).
    trajectory: also return the states after each step.

  Returns:
    (negatives [B, ...], stats {'chain_grad_norm', 'mala_acceptance'}, path or None).
  """
  grad_e = jax.grad(lambda v: jnp.sum(energy_fn(v)))

  def score(v):
    g = grad_e(v)
    return -(jnp.clip(g, -grad_clip, grad_clip) if grad_clip else g), g

  def log_q(to, frm, s_frm):  # log N(to; frm + (a/2) s(frm), a I) up to a constant
    d = to - frm - 0.5 * step_size * s_frm
    return -jnp.sum(jnp.square(d).reshape(d.shape[0], -1), axis=1) / (2 * step_size)

  def body(carry, k):
    v = carry
    s, g = score(v)
    k_step, k_acc = jax.random.split(k)
    prop = langevin_step(v, s, k_step, step_size, noise_scale)
    if bounds is not None and not mala:
      prop = jnp.clip(prop, *bounds)
    acc = jnp.ones((v.shape[0],), v.dtype)
    if mala:
      s_prop, _ = score(prop)
      log_ratio = energy_fn(v) - energy_fn(prop) + log_q(v, prop, s_prop) - log_q(prop, v, s)
      accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
      if bounds is not None:
        inside = (prop >= bounds[0]) & (prop <= bounds[1])
        accept &= jnp.all(inside.reshape(inside.shape[0], -1), axis=1)
      acc = accept.astype(v.dtype)
      prop = jnp.where(accept.reshape((-1,) + (1,) * (v.ndim - 1)), prop, v)
    gnorm = jnp.mean(jnp.sqrt(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1)))
    return prop, (
      {'chain_grad_norm': gnorm, 'mala_acceptance': jnp.mean(acc)},
      prop if trajectory else None,
    )

  x, (stats, path) = jax.lax.scan(body, x, jax.random.split(key, num_steps))
  if not mala:
    del stats['mala_acceptance']
  return jax.lax.stop_gradient(x), jax.tree.map(jnp.mean, stats), path


# -- the objective ---------------------------------------------------------------------------


def _apply(module: nn.Module, params, collections: dict, x, train: bool):
  variables = {'params': params, **collections}
  if train and collections:
    out, mutated = module.apply(variables, x, train=True, mutable=list(collections))
    return out, {**collections, **mutated}
  return module.apply(variables, x, train=train), collections


@dataclasses.dataclass(frozen=True)
class EBM:
  """An energy (or score) network trained with one of LOSSES (see the module docstring).

  Attributes:
    model: flax module `f(x, train)`: energies [B] ('energy' output) or scores [B, ...].
    output: 'energy' or 'score' (a score network cannot do 'cd' or produce energies).
    loss: one of LOSSES.
    tx, lr_fn, ema_rate: optimizer, its schedule, EMA decay.
    shape: one example's shape.
    alpha: CD energy-magnitude penalty.
    chain_steps, step_size, noise_scale, chain_grad_clip, mala: the Langevin negatives; for an
      RBM (`gibbs`), chain_steps block-Gibbs sweeps (CD-k) instead.
    chain_init: 'noise' | 'data' | 'buffer'.
    buffer_size, reinit_prob: the replay buffer of persistent chains (state.extra['buffer']).
    init_range: noise starts are uniform in [-init_range, init_range] per coordinate.
    bounds: clamp chains (and samples) to this range (images: (-1, 1)); None: no clamp.
    sample_steps: Langevin steps (Gibbs sweeps) from noise when sampling.
    num_projections, projection, variance_reduced: sliced score matching.
    dsm_sigma: the noise level of 'dsm'.
    gibbs: the model is an RBM on binary data (data binarised at 0; samples mapped to {-1, 1}).
    use_ema: sample from the EMA parameters.
  """

  capabilities = Capabilities()

  model: nn.Module
  output: str
  loss: str
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  ema_rate: float
  shape: tuple[int, ...]
  ema_warmup: float = 0.0
  alpha: float = 1.0
  chain_steps: int = 20
  step_size: float = 0.01
  noise_scale: float = 1.0
  chain_grad_clip: float = 0.0
  mala: bool = False
  chain_init: str = 'buffer'
  buffer_size: int = 10_000
  reinit_prob: float = 0.05
  init_range: float = 1.0
  bounds: tuple[float, float] | None = None
  sample_steps: int = 100
  num_projections: int = 1
  projection: str = 'rademacher'
  variance_reduced: bool = True
  dsm_sigma: float = 0.1
  gibbs: bool = False
  use_ema: bool = True

  # -- the network as energy and score ---------------------------------------------------------

  def energy(self, params, collections, x, train=False):
    return _apply(self.model, params, collections, x, train)

  def score_fn(self, params, collections) -> Callable:
    """x -> grad_x log p(x): -grad_x E for an energy network, the output of a score network."""
    if self.output == 'score':
      return lambda x: _apply(self.model, params, collections, x, False)[0]
    energy = lambda x: jnp.sum(_apply(self.model, params, collections, x, False)[0])
    return lambda x: -jax.grad(energy)(x)

  def _binarize(self, x):
    return (x > 0).astype(x.dtype).reshape(x.shape[0], -1)

  def _noise(self, key, num):
    if self.gibbs:
      return jax.random.bernoulli(key, 0.5, (num, *self.shape)).astype(jnp.float32).reshape(num, -1)
    return jax.random.uniform(
      key, (num, *self.shape), minval=-self.init_range, maxval=self.init_range
    )

  def _chain(self, params, collections, x, key, num_steps, trajectory=False):
    if self.gibbs:
      v, pv = energy_lib.gibbs_chain(params, x, key, num_steps)
      return v, {}, None
    energy_fn = lambda v: self.energy(params, collections, v)[0]
    return langevin_negatives(
      energy_fn,
      x,
      key,
      num_steps,
      self.step_size,
      self.noise_scale,
      self.chain_grad_clip,
      self.mala,
      self.bounds,
      trajectory,
    )

  # -- the objective contract -----------------------------------------------------------------

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> state_lib.TrainState:
    """The network, plus the replay buffer and its ages when chain_init='buffer'."""
    x = jnp.asarray(example_batch['x'])
    if self.gibbs:
      x = self._binarize(x)
    k_net, k_buf = jax.random.split(rng)
    variables = dict(self.model.init(k_net, x, train=False))
    params = variables.pop('params')
    extra = {NET: variables}
    if self.chain_init == 'buffer':
      extra['buffer'] = self._noise(k_buf, self.buffer_size)
      extra['buffer_age'] = jnp.zeros((self.buffer_size,), jnp.int32)
    return state_lib.create_state({NET: params}, {NET: self.tx}, extra=extra)

  def _negatives(self, state, x_pos, key):
    """Chain starts (noise / data / replay buffer), K steps, and the buffer written back."""
    params, coll = state.params[NET], state.extra[NET]
    k_idx, k_re, k_noise, k_chain = jax.random.split(key, 4)
    b = x_pos.shape[0]
    extra, stats = {}, {}
    if self.chain_init == 'noise':
      start = self._noise(k_noise, b)
    elif self.chain_init == 'data':
      start = x_pos
    else:
      # distinct rows, so every negative is written back (no two chains share a slot)
      idx = jax.random.choice(k_idx, self.buffer_size, (b,), replace=False)
      fresh = jax.random.bernoulli(k_re, self.reinit_prob, (b,))
      mask = fresh.reshape((-1,) + (1,) * (x_pos.ndim - 1))
      start = jnp.where(mask, self._noise(k_noise, b), state.extra['buffer'][idx])
      age = jnp.where(fresh, 0, state.extra['buffer_age'][idx])
      stats['buffer_age'] = jnp.mean(age.astype(jnp.float32))
    neg, chain_stats, _ = self._chain(params, coll, start, k_chain, self.chain_steps)
    stats.update(chain_stats)
    if self.chain_init == 'buffer':
      extra['buffer'] = state.extra['buffer'].at[idx].set(neg)
      extra['buffer_age'] = state.extra['buffer_age'].at[idx].set(age + self.chain_steps)
    return neg, extra, stats

  def loss_fn(self, params, state, x, neg, key):
    """The loss of one batch given the negatives `neg` (CD; None otherwise); returns
    (loss, (updated collections, terms))."""
    coll = state.extra[NET]
    if self.loss == 'cd':
      e_pos, coll = self.energy(params, coll, x, train=True)
      e_neg, coll = self.energy(params, coll, neg, train=True)
      loss, terms = contrastive_divergence_loss(e_pos, e_neg, 0.0 if self.gibbs else self.alpha)
      terms['energy/data'] = jnp.mean(e_pos)
      terms['energy/negative'] = jnp.mean(e_neg)
      terms['energy/gap'] = terms['energy/negative'] - terms['energy/data']
      return loss, (coll, terms)
    score_fn = self.score_fn(params, coll)
    if self.loss == 'exact_sm':
      loss, terms = exact_score_matching_loss(score_fn, x)
    elif self.loss == 'sliced_sm':
      loss, terms = sliced_score_matching_loss(
        score_fn, x, key, self.num_projections, self.projection, self.variance_reduced
      )
    else:
      loss, terms = denoising_score_matching_loss(score_fn, x, key, self.dsm_sigma)
    return loss, (coll, terms)

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """Negatives (CD: chains with the current parameters, replay buffer written back), then one
    optimizer step on the loss; returns (state, metrics)."""
    x = self._binarize(batch['x']) if self.gibbs else batch['x']
    k_neg, k_loss = jax.random.split(key)
    neg, extra, stats = None, {}, {}
    if self.loss == 'cd':
      neg, extra, stats = self._negatives(state, x, k_neg)
      if self.gibbs:
        _, pv = energy_lib.gibbs_chain(state.params[NET], x, k_loss, 1)
        stats['recon_error'] = jnp.mean(jnp.square(pv - x))
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (loss, (coll, terms)), grads = grad_fn(state.params[NET], state, x, neg, k_loss)
    state, grad_norm = state_lib.apply_gradients(
      state, NET, grads, self.tx, self.ema_rate, self.ema_warmup
    )
    state = state.replace(extra={**state.extra, NET: coll, **extra})
    metrics = {'loss': loss, f'grad_norm/{NET}': grad_norm, 'lr': self.lr_fn(state.step)}
    return state, {**metrics, **terms, **stats}

  def _params(self, state):
    return (state.ema_params if self.use_ema else state.params)[NET]

  def _sample(self, state, rng, num, trajectory=False):
    k_init, k_chain = jax.random.split(rng)
    params, coll = self._params(state), state.extra[NET]
    start = self._noise(k_init, num)
    if self.output == 'score':  # score network: Langevin on the learned score directly
      score_fn = self.score_fn(params, coll)

      def body(x, k):
        x = langevin_step(x, score_fn(x), k, self.step_size, self.noise_scale)
        x = jnp.clip(x, *self.bounds) if self.bounds is not None else x
        return x, x if trajectory else None

      x, path = jax.lax.scan(body, start, jax.random.split(k_chain, self.sample_steps))
      return start, x, path
    if self.gibbs:
      v, pv = energy_lib.gibbs_chain(params, start, k_chain, self.sample_steps)
      x = (2.0 * pv - 1.0).reshape(num, *self.shape)  # mean of the last visible layer, in [-1, 1]
      return start, x, None
    x, _, path = self._chain(params, coll, start, k_chain, self.sample_steps, trajectory)
    return start, x, path

  def sample_protocol(self) -> dict[str, Any]:
    """How `sample` draws, for the eval JSON's protocol: the chain, its length and steps."""
    if self.gibbs:
      return {'sampler': 'block_gibbs', 'chain_steps': self.sample_steps, 'use_ema': self.use_ema}
    return {
      'sampler': 'mala' if self.mala else 'langevin',
      'chain_steps': self.sample_steps,
      'step_size': self.step_size,
      'noise_scale': self.noise_scale,
      'chain_grad_clip': self.chain_grad_clip,
      'init': f'uniform[-{self.init_range}, {self.init_range}]',
      'use_ema': self.use_ema,
    }

  def sample(self, state: state_lib.TrainState, rng: jax.Array, num: int, labels=None) -> Samples:
    """`num` samples from `sample_steps` chain steps started from noise (NFE = gradient calls;
    unconditional: `labels` is ignored)."""
    del labels
    _, x, _ = self._sample(state, rng, num)
    return Samples(
      x, None, {'nfe': jnp.asarray(self.sample_steps * (2 if self.mala else 1), jnp.int32)}
    )

  def pictures(self, state: state_lib.TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Images: 8 chains from noise to samples; other data: none."""
    return {'trajectory': self.trajectory(state, key, 8)} if len(self.shape) == 3 else {}

  def picture_captions(self) -> dict[str, str]:
    what = 'Gibbs chain' if self.gibbs else 'Langevin chain'
    return {'trajectory': f'{what}: one row per sample, noise (left) to sample (right)'}

  def trajectory(self, state: state_lib.TrainState, rng: jax.Array, num: int) -> jax.Array:
    """[TRAJECTORY_FRAMES, num, ...]: Langevin chains from noise (left) to the samples."""
    if self.gibbs:
      start, x, _ = self._sample(state, rng, num)
      start = 2.0 * start.reshape(num, *self.shape) - 1.0
      return jnp.stack([start, x])
    start, _, path = self._sample(state, rng, num, trajectory=True)
    full = jnp.concatenate([start[None], path], axis=0)
    last = full.shape[0] - 1
    index = sorted({round(i * last / (TRAJECTORY_FRAMES - 1)) for i in range(TRAJECTORY_FRAMES)})
    return full[jnp.asarray(index)]
