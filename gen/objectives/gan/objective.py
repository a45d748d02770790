"""The GAN objective: a generator/discriminator pair, one jitted step of n_critic discriminator
updates and one generator update (the contract: gen/objectives/contract.py)."""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen import state as state_lib
from gen.models import precision
from gen.objectives.contract import Capabilities, Samples
from gen.objectives.gan.loss import (
  LOSSES,
  clip_weights,
  diff_augment,
  gradient_penalty,
  pack,
  r1_penalty,
  rejection_sample,
)
from gen.samplers.editing import slerp

G, D = 'generator', 'discriminator'
INTERPOLATION_FRAMES = 8


def _apply(module: nn.Module, params, collections: dict, *args, train: bool, dtype='float32'):
  """module(*args) with its non-parameter collections (batch statistics, spectral-norm vectors);
  in training mode returns the updated collections too. With dtype 'bfloat16' the network
  computes in bfloat16 (gen.models.precision); its output and collections come back in their
  float32 dtypes, so losses, penalties and the saved state stay float32."""

  def run(p, *a):
    variables = {'params': p, **collections}
    if train and collections:
      out, mutated = module.apply(variables, *a, train=True, mutable=list(collections))
      return out, {**collections, **mutated}
    return module.apply(variables, *a, train=train), collections

  out, new = precision.apply_in(dtype, run, params, *args)
  if dtype == 'float32':
    return out, new
  as_before = lambda after, before: after.astype(before.dtype)
  return out.astype(jnp.float32), jax.tree.map(as_before, new, collections)


@dataclasses.dataclass(frozen=True)
class GAN:
  """A generator/discriminator pair trained adversarially (see the module docstring).

  Attributes:
    generator, discriminator: flax modules `G(z, labels, train)`, `D(x, labels, train)` (logit).
    loss: one of LOSSES.
    tx_g, tx_d, lr_g, lr_d: the two optimizers and their schedules.
    ema_rate: generator EMA decay.
    shape: one example's shape.
    latent_dim: z dimension.
    n_critic: discriminator updates per generator update.
    gp_weight: lambda of the gradient penalty (0: off; WGAN-GP uses 10).
    r1_weight: gamma of the R1 penalty, which adds gamma / 2 E||grad D(x)||^2 (0: off).
    clip_value: WGAN weight clipping bound c for every discriminator parameter (0: off).
    augment: DiffAugment policies applied to every discriminator input (images only).
    pack: PacGAN degree m (1: off).
    num_classes: > 0 for a conditional GAN (fake labels uniform over the classes).
    rejection_sampling, drs_candidates, drs_percentile: discriminator rejection sampling at
      sampling time, from drs_candidates x num candidates with gamma at drs_percentile of F.
    use_ema: sample from the generator's EMA parameters.
    compute_dtype: 'float32' or 'bfloat16': both networks' arithmetic (gen.models.precision);
      parameters, optimizer states, losses and penalties stay float32.
  """

  capabilities = Capabilities(bfloat16=True)

  generator: nn.Module
  discriminator: nn.Module
  loss: str
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  lr_g: optax.Schedule
  lr_d: optax.Schedule
  ema_rate: float
  shape: tuple[int, ...]
  ema_warmup: float = 0.0
  latent_dim: int = 100
  n_critic: int = 1
  gp_weight: float = 0.0
  r1_weight: float = 0.0
  clip_value: float = 0.0
  augment: tuple[str, ...] = ()
  pack: int = 1
  num_classes: int = 0
  rejection_sampling: bool = False
  drs_candidates: int = 4
  drs_percentile: float = 80.0
  use_ema: bool = True
  compute_dtype: str = 'float32'

  # -- the two networks -----------------------------------------------------------------------

  def generate(self, params, collections, z, labels=None, train=False):
    """G(z) and G's updated collections. Batch-norm generators always use the statistics of the
    batch they generate (also at sampling, where the EMA parameters have no running averages of
    their own); only the generator step keeps the running averages."""
    batch_norm = bool(collections) and 'batch_stats' in collections
    train = train or batch_norm
    return _apply(
      self.generator, params, collections, z, labels, train=train, dtype=self.compute_dtype
    )

  def d_input(self, x, key=None):
    """What D sees of data x [B, ...]: DiffAugment (with `key`), then packing to [B / pack, ...]."""
    if self.augment and key is not None:
      x = diff_augment(x, key, self.augment)
    return pack(x, self.pack)

  def discriminate(self, params, collections, x, labels=None, key=None, train=True):
    """D's logits [B / pack] of data x [B, ...] (augmented with `key`, then packed)."""
    x = self.d_input(x, key)
    return _apply(
      self.discriminator, params, collections, x, labels, train=train, dtype=self.compute_dtype
    )

  def _latents(self, key, num):
    k_z, k_y = jax.random.split(key)
    z = jax.random.normal(k_z, (num, self.latent_dim))
    labels = jax.random.randint(k_y, (num,), 0, self.num_classes) if self.num_classes else None
    return z, labels

  # -- the objective contract -----------------------------------------------------------------

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> state_lib.TrainState:
    """Initialises both networks (and their batch statistics / spectral-norm vectors)."""
    x = jnp.asarray(example_batch['x'])
    n = x.shape[0] // (self.n_critic * self.pack) * self.pack
    k_g, k_d = jax.random.split(rng)
    z = jnp.zeros((n, self.latent_dim))
    labels = jnp.zeros((n // self.pack,), jnp.int32) if self.num_classes else None
    g_labels = jnp.zeros((n,), jnp.int32) if self.num_classes else None
    g_vars = self.generator.init(k_g, z, g_labels, train=False)
    d_vars = self.discriminator.init(k_d, pack(x[:n], self.pack), labels, train=False)
    split = lambda v: (v.pop('params'), v)
    (g_params, g_rest), (d_params, d_rest) = split(dict(g_vars)), split(dict(d_vars))
    state = state_lib.create_state(
      {G: g_params, D: d_params}, {G: self.tx_g, D: self.tx_d}, extra={G: g_rest, D: d_rest}
    )
    return state

  def d_loss(self, d_params, state, real, labels, key):
    """The discriminator's loss on one real batch and as many generated examples, with penalties.

    Returns (loss, (updated D collections, diagnostics))."""
    k_z, k_ar, k_af, k_gp = jax.random.split(key, 4)
    z, fake_labels = self._latents(k_z, real.shape[0])
    if self.num_classes:
      fake_labels = labels  # fakes of the same classes: the conditional game per class
    fake, _ = self.generate(state.params[G], state.extra[G], z, fake_labels)
    fake = jax.lax.stop_gradient(fake)
    d_labels = labels[:: self.pack] if labels is not None else None
    coll = state.extra[D]
    real_logits, coll = self.discriminate(d_params, coll, real, d_labels, k_ar)
    fake_logits, coll = self.discriminate(d_params, coll, fake, d_labels, k_af)
    loss = LOSSES[self.loss][0](real_logits, fake_logits)
    aux = self._diagnostics(real_logits, fake_logits)
    if self.gp_weight or self.r1_weight:  # on D's own (augmented, packed) inputs
      d_fn = lambda v: _apply(
        self.discriminator, d_params, coll, v, d_labels, train=False, dtype=self.compute_dtype
      )[0]
      ka, kb, ke = jax.random.split(k_gp, 3)
      real_in = self.d_input(real, ka)
      if self.gp_weight:
        fake_in = self.d_input(fake, kb)
        aux['gradient_penalty'] = gradient_penalty(d_fn, real_in, fake_in, ke)
        loss = loss + self.gp_weight * aux['gradient_penalty']
      if self.r1_weight:
        aux['r1'] = r1_penalty(d_fn, real_in)
        loss = loss + 0.5 * self.r1_weight * aux['r1']
    return loss, (coll, aux)

  def _diagnostics(self, real_logits, fake_logits):
    if LOSSES[self.loss][2]:  # D(x) as a probability
      return {
        'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
        'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
      }
    out = {'d_real': jnp.mean(real_logits), 'd_fake': jnp.mean(fake_logits)}
    if self.loss == 'wasserstein':
      out['wasserstein'] = out['d_real'] - out['d_fake']
    return out

  def g_loss(self, g_params, state, num, key):
    """The generator's loss on `num` latents; returns (loss, (updated G collections, D(G(z))))."""
    k_z, k_aug = jax.random.split(key)
    z, labels = self._latents(k_z, num)
    fake, g_coll = self.generate(g_params, state.extra[G], z, labels, train=True)
    d_labels = labels[:: self.pack] if labels is not None else None
    logits, _ = self.discriminate(state.params[D], state.extra[D], fake, d_labels, k_aug)
    return LOSSES[self.loss][1](logits), (g_coll, logits)

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """n_critic discriminator updates (lax.scan over slices of the batch), one generator update."""
    n = self.n_critic
    per_step = batch['x'].shape[0] // n
    # Slice k takes rows k, k + n, ...: every slice stays spread over the devices of the batch.
    slices = lambda a: jnp.moveaxis(a[: per_step * n].reshape(per_step, n, *a.shape[1:]), 1, 0)
    key_d, key_g = jax.random.split(key)
    xs = {'x': slices(batch['x']), 'key': jax.random.split(key_d, n)}
    if self.num_classes:
      xs['label'] = slices(batch['label'])

    def d_update(st, inp):
      grad_fn = jax.value_and_grad(self.d_loss, has_aux=True)
      (loss, (coll, aux)), grads = grad_fn(st.params[D], st, inp['x'], inp.get('label'), inp['key'])
      st, grad_norm = state_lib.apply_gradients(st, D, grads, self.tx_d, 0.0)
      if self.clip_value:
        clipped = clip_weights(st.params[D], self.clip_value)
        st = st.replace(params={**st.params, D: clipped}, ema_params={**st.ema_params, D: clipped})
      st = st.replace(extra={**st.extra, D: coll})
      return st, {'loss/discriminator': loss, 'grad_norm/discriminator': grad_norm, **aux}

    state, d_metrics = jax.lax.scan(d_update, state, xs)
    grad_fn = jax.value_and_grad(self.g_loss, has_aux=True)
    (g_loss, (g_coll, _)), grads = grad_fn(state.params[G], state, per_step, key_g)
    state, g_norm = state_lib.apply_gradients(
      state, G, grads, self.tx_g, self.ema_rate, self.ema_warmup
    )
    state = state.replace(extra={**state.extra, G: g_coll})
    metrics = jax.tree.map(jnp.mean, d_metrics)
    metrics.update(
      {
        'loss/generator': g_loss,
        'grad_norm/generator': g_norm,
        'lr/generator': self.lr_g(state.step),
        'lr/discriminator': self.lr_d(state.step),
      }
    )
    return state, metrics

  def _g_params(self, state):
    return (state.ema_params if self.use_ema else state.params)[G]

  def sample_protocol(self) -> dict[str, Any]:
    """How `sample` draws, for the eval JSON's protocol: G(z), z ~ N(0, I), and the rejection
    sampling settings where it is on."""
    out = {'sampler': 'generator', 'latent_dim': self.latent_dim, 'use_ema': self.use_ema}
    if self.rejection_sampling:
      out['sampler'] = 'discriminator_rejection_sampling'
      out['drs_candidates'] = self.drs_candidates
      out['drs_percentile'] = self.drs_percentile
    return out

  def sample(self, state: state_lib.TrainState, rng: jax.Array, num: int, labels=None) -> Samples:
    """`num` samples G(z) (labels cycle through the classes when conditional, unless given);
    with rejection_sampling, the survivors of discriminator rejection sampling and the
    acceptance rate ('drs_acceptance')."""
    k_z, k_drs = jax.random.split(rng)
    nfe = {'nfe': jnp.ones((), jnp.int32)}
    if not self.num_classes:
      labels = None
    elif labels is None:
      labels = jnp.arange(num, dtype=jnp.int32) % self.num_classes
    if not self.rejection_sampling:
      z = jax.random.normal(k_z, (num, self.latent_dim))
      x, _ = self.generate(self._g_params(state), state.extra[G], z, labels)
      return Samples(x, labels, nfe)
    m = num * self.drs_candidates
    z = jax.random.normal(k_z, (m, self.latent_dim))
    x, _ = self.generate(self._g_params(state), state.extra[G], z)
    logits, _ = self.discriminate(state.params[D], state.extra[D], x, train=False)
    x, acceptance = rejection_sample(k_drs, x, logits, num, self.drs_percentile)
    return Samples(x, None, {**nfe, 'drs_acceptance': acceptance})

  def pictures(self, state: state_lib.TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Images: 8 linear and 8 spherical latent interpolations; other data: none."""
    return {'interpolation': self.interpolation(state, key, 8)} if len(self.shape) == 3 else {}

  def picture_captions(self) -> dict[str, str]:
    return {'interpolation': 'latent interpolation: rows 1-8 linear, rows 9-16 spherical (slerp)'}

  def interpolation(self, state: state_lib.TrainState, rng: jax.Array, num: int) -> jax.Array:
    """[INTERPOLATION_FRAMES, 2 num, ...]: G along straight lines between `num` pairs of latents
    (rows 0..num-1) and along great circles between the same pairs (rows num..2num-1, slerp:
    White 2016; Gaussian latents concentrate on a sphere, where the straight line's middle is not
    typical)."""
    k0, k1 = jax.random.split(rng)
    z0 = jax.random.normal(k0, (num, self.latent_dim))
    z1 = jax.random.normal(k1, (num, self.latent_dim))
    w = jnp.linspace(0.0, 1.0, INTERPOLATION_FRAMES)
    lin = jax.vmap(lambda t: (1 - t) * z0 + t * z1)(w)
    sph = jax.vmap(lambda t: slerp(z0, z1, t))(w)
    z = jnp.concatenate([lin, sph], axis=1).reshape(-1, self.latent_dim)
    labels = None
    if self.num_classes:
      labels = jnp.tile(jnp.arange(2 * num, dtype=jnp.int32) % self.num_classes, len(w))
    x, _ = self.generate(self._g_params(state), state.extra[G], z, labels)
    return x.reshape(len(w), 2 * num, *self.shape)


def num_params(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))
