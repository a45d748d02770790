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

with s = -grad_x E for an energy network, or the output of a score network. The Bernoulli RBM,
with block-Gibbs negatives, is its own objective (gen.objectives.rbm).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen import models
from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives.contract import Capabilities, Samples
from gen.samplers.langevin import langevin_negatives, langevin_step

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
    chain_steps, step_size, noise_scale, chain_grad_clip, mala: the Langevin negatives.
    chain_init: 'noise' | 'data' | 'buffer'.
    buffer_size, reinit_prob: the replay buffer of persistent chains (state.extra['buffer']).
    init_range: noise starts are uniform in [-init_range, init_range] per coordinate.
    bounds: clamp chains (and samples) to this range (images: (-1, 1)); None: no clamp.
    sample_steps: Langevin steps from noise when sampling.
    num_projections, projection, variance_reduced: sliced score matching.
    dsm_sigma: the noise level of 'dsm'.
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

  # -- what a subclass with other chains changes (gen.objectives.rbm) ------------------------

  def _data(self, x):
    """The training data as the network sees it."""
    return x

  def _diagnostics(self, state, x, key) -> dict[str, jax.Array]:
    """Extra per-step metrics."""
    del state, x, key
    return {}

  def _noise(self, key, num):
    return jax.random.uniform(
      key, (num, *self.shape), minval=-self.init_range, maxval=self.init_range
    )

  def _chain(self, params, collections, x, key, num_steps, trajectory=False):
    """(chain ends, chain statistics, path or None) after `num_steps` steps from `x`."""
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
    x = self._data(jnp.asarray(example_batch['x']))
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
      loss, terms = contrastive_divergence_loss(e_pos, e_neg, self.alpha)
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
    x = self._data(batch['x'])
    k_neg, k_loss = jax.random.split(key)
    neg, extra, stats = None, {}, {}
    if self.loss == 'cd':
      neg, extra, stats = self._negatives(state, x, k_neg)
      stats.update(self._diagnostics(state, x, k_loss))
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
    x, _, path = self._chain(params, coll, start, k_chain, self.sample_steps, trajectory)
    return start, x, path

  def sample_protocol(self) -> dict[str, Any]:
    """How `sample` draws, for the eval JSON's protocol: the chain, its length and steps."""
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
    return {'trajectory': 'Langevin chain: one row per sample, noise (left) to sample (right)'}

  def trajectory(self, state: state_lib.TrainState, rng: jax.Array, num: int) -> jax.Array:
    """[TRAJECTORY_FRAMES, num, ...]: Langevin chains from noise (left) to the samples."""
    start, _, path = self._sample(state, rng, num, trajectory=True)
    full = jnp.concatenate([start[None], path], axis=0)
    last = full.shape[0] - 1
    index = sorted({round(i * last / (TRAJECTORY_FRAMES - 1)) for i in range(TRAJECTORY_FRAMES)})
    return full[jnp.asarray(index)]


# -- config.ebm -----------------------------------------------------------------------------

MODEL_KINDS = ('energy', 'score')


def default_config() -> ml_collections.ConfigDict:
  """config.ebm: the loss, the training chains, score matching's settings, and sampling."""
  c = ml_collections.ConfigDict()
  c.loss = 'cd'  # cd | exact_sm | sliced_sm | dsm
  c.energy_alpha = 1.0  # cd: weight of the energy-magnitude penalty
  c.chain_steps = 20  # cd: Langevin steps per negative
  c.step_size = 0.01  # Langevin a: x <- x - a/2 grad E + noise_scale sqrt(a) xi
  c.noise_scale = 1.0
  c.chain_grad_clip = 0.0  # clip grad E elementwise in the chains; 0: off
  c.mala = False  # Metropolis-adjusted Langevin (needs noise_scale 1, no clipping)
  c.chain_init = 'buffer'  # noise | data (CD-k) | buffer (replay; reinit_prob 0: PCD)
  c.buffer_size = 10_000
  c.reinit_prob = 0.05
  c.init_range = 1.0  # noise starts: uniform in [-r, r] per coordinate
  c.sm_projections = 1  # sliced_sm: projections per example
  c.sm_projection = 'rademacher'  # rademacher | gaussian
  c.sm_variance_reduced = True  # sliced_sm: SSM-VR (Song et al. 2019, eq. 8)
  c.dsm_sigma = 0.1  # dsm: the noise level
  c.sample = ml_collections.ConfigDict(dict(chain_steps=100))  # chain steps from noise
  return c


def _positive_int(field: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f'{field} must be an integer >= 1, got {value!r}')


def check_chains(section, field: str, batch_size: int) -> None:
  """The chain fields an EBM and an RBM share (chain_init, chain_steps, the replay buffer)."""
  if section.chain_init not in CHAIN_INITS:
    raise ConfigError(
      f'{field}.chain_init={section.chain_init!r} is unknown; choose one of {list(CHAIN_INITS)}'
    )
  for name in ('chain_steps', 'buffer_size'):
    _positive_int(f'{field}.{name}', section[name])
  _positive_int(f'{field}.sample.chain_steps', section.sample.chain_steps)
  if not 0 <= section.reinit_prob <= 1:
    raise ConfigError(f'{field}.reinit_prob must be in [0, 1], got {section.reinit_prob}')
  if section.chain_init == 'buffer' and section.buffer_size < batch_size:
    raise ConfigError(
      f'{field}.buffer_size={section.buffer_size} must hold at least one batch '
      f'(data.batch_size={batch_size})'
    )


def _check(config: ml_collections.ConfigDict, spec) -> None:
  """Every combination of config.ebm that cannot work fails here, before compiling."""
  e, name = config.ebm, config.model.name
  if e.loss not in LOSSES:
    raise ConfigError(f'ebm.loss={e.loss!r} is unknown; choose one of {list(LOSSES)}')
  kind = models.MODELS[name].kind if name in models.MODELS else None
  if kind == 'score' and e.loss == 'cd':
    raise ConfigError(
      f"ebm.loss='cd' needs energies: model.name={name!r} is a score network; use one of "
      f'{models.of_kinds(("energy",))}, or a score-matching loss'
    )
  if e.loss == 'exact_sm' and (len(spec.shape) != 1 or spec.shape[0] > 64):
    raise ConfigError(
      "ebm.loss='exact_sm' computes the Jacobian trace exactly (one pass per dimension): "
      f"for vectors of <= 64 dims, not {spec.name!r} {spec.shape}; use 'sliced_sm' or 'dsm'"
    )
  check_chains(e, 'ebm', config.data.batch_size)
  if e.sm_projection not in PROJECTIONS:
    raise ConfigError(
      f'ebm.sm_projection={e.sm_projection!r} is unknown; choose one of {list(PROJECTIONS)}'
    )
  _positive_int('ebm.sm_projections', e.sm_projections)
  for field in ('step_size', 'init_range', 'dsm_sigma'):
    if not e[field] > 0:
      raise ConfigError(f'ebm.{field} must be > 0, got {e[field]}')
  if e.noise_scale < 0 or e.chain_grad_clip < 0 or e.energy_alpha < 0:
    raise ConfigError('ebm.noise_scale, ebm.chain_grad_clip and ebm.energy_alpha must be >= 0')
  if e.mala and (e.noise_scale != 1.0 or e.chain_grad_clip):
    raise ConfigError(
      'ebm.mala=True corrects the Langevin proposal N(x - a/2 grad E, a I): it needs '
      f'ebm.noise_scale=1 and chain_grad_clip=0, got {e.noise_scale}, {e.chain_grad_clip}'
    )


def from_config(config: ml_collections.ConfigDict, spec) -> EBM:
  """The EBM of `config.ebm` (and the shared model, optim, train and sample sections) for data
  `spec`, every field checked before compiling."""
  model = models.from_config(config, spec.shape, MODEL_KINDS)
  _check(config, spec)
  e = config.ebm
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  return EBM(
    model=model,
    output=models.MODELS[config.model.name].kind,
    loss=e.loss,
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    alpha=e.energy_alpha,
    chain_steps=e.chain_steps,
    step_size=e.step_size,
    noise_scale=e.noise_scale,
    chain_grad_clip=e.chain_grad_clip,
    mala=e.mala,
    chain_init=e.chain_init,
    buffer_size=e.buffer_size,
    reinit_prob=e.reinit_prob,
    init_range=e.init_range,
    bounds=(-1.0, 1.0) if spec.kind == 'images' else None,
    sample_steps=e.sample.chain_steps,
    num_projections=e.sm_projections,
    projection=e.sm_projection,
    variance_reduced=e.sm_variance_reduced,
    dsm_sigma=e.dsm_sigma,
    use_ema=config.sample.use_ema,
  )
