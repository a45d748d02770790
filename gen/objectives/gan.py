"""Generative adversarial networks: the loss family, penalties, and one jitted step.

A generator G maps z ~ N(0, I) to data; a discriminator D maps data to a logit (a critic value
for the Wasserstein losses). With r = D(x) on real and f = D(G(z)) on generated data and
softplus(a) = log(1 + e^a), so that -log sigmoid(a) = softplus(-a):

  loss              discriminator minimises                generator minimises
  minimax           softplus(-r) + softplus(f)             -softplus(f)   (= log(1 - D(G(z))))
  non_saturating    softplus(-r) + softplus(f)             softplus(-f)   (= -log D(G(z)))
  least_squares     ((r - 1)^2 + f^2) / 2                  (f - 1)^2 / 2
  hinge             relu(1 - r) + relu(1 + f)              -f
  wasserstein       f - r                                  -f

each averaged over the batch. Regularisers: weight clipping (WGAN), the gradient penalty
(WGAN-GP) and the R1 penalty, as separate pure functions below.

One training step (`GAN.step`) does `n_critic` discriminator updates in a `lax.scan`, each on its
own slice of the real batch (the batch is split into n_critic parts, so every critic step sees
fresh data as in Gulrajani et al.'s code), then one generator update on batch / n_critic latents.
The two networks have their own optimizers (TTUR: Heusel et al. 2017) and the generator keeps an
EMA (Yazici et al. 2019) that sampling uses.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen import state as state_lib
from gen.models import precision
from gen.objectives.contract import Capabilities, Samples
from gen.samplers.editing import slerp

G, D = 'generator', 'discriminator'
INTERPOLATION_FRAMES = 8

# -- losses ---------------------------------------------------------------------------------


def minimax_d_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
  """-E[log D(x)] - E[log(1 - D(G(z)))] with D = sigmoid(logit): the discriminator side of the
  original GAN game (Goodfellow et al. 2014, eq. 1); its optimum is D* = p_data/(p_data + p_g).
  Shared by the minimax and non-saturating losses."""
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def minimax_g_loss(fake: jax.Array) -> jax.Array:
  """E[log(1 - D(G(z)))] = -E[softplus(f)]: the saturating generator loss of the minimax game
  (Goodfellow et al. 2014). Its gradient in f is -sigmoid(f), which vanishes when D confidently
  rejects the samples (f -> -inf): the failure the non-saturating loss fixes."""
  return -jnp.mean(jax.nn.softplus(fake))


def non_saturating_g_loss(fake: jax.Array) -> jax.Array:
  """-E[log D(G(z))] = E[softplus(-f)]: the non-saturating generator loss (Goodfellow et al. 2014,
  section 3). Same fixed point as minimax, but gradient 1 - sigmoid(f) -> 1 as f -> -inf."""
  return jnp.mean(jax.nn.softplus(-fake))


def least_squares_d_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
  """LSGAN (Mao et al. 2017, eq. 2 with a=0, b=c=1): (E[(D(x) - 1)^2] + E[D(G(z))^2]) / 2."""
  return 0.5 * (jnp.mean(jnp.square(real - 1.0)) + jnp.mean(jnp.square(fake)))


def least_squares_g_loss(fake: jax.Array) -> jax.Array:
  """LSGAN generator: E[(D(G(z)) - 1)^2] / 2 (Mao et al. 2017)."""
  return 0.5 * jnp.mean(jnp.square(fake - 1.0))


def hinge_d_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
  """Hinge loss (Lim & Ye 2017; SNGAN, Miyato et al. 2018): E[relu(1 - D(x))] +
  E[relu(1 + D(G(z)))]."""
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def hinge_g_loss(fake: jax.Array) -> jax.Array:
  """Hinge generator loss: -E[D(G(z))] (Lim & Ye 2017)."""
  return -jnp.mean(fake)


def wasserstein_d_loss(real: jax.Array, fake: jax.Array) -> jax.Array:
  """WGAN critic (Arjovsky et al. 2017): E[D(G(z))] - E[D(x)]; minus the Kantorovich-Rubinstein
  estimate of W1 when D is 1-Lipschitz (enforced by clipping or a gradient penalty)."""
  return jnp.mean(fake) - jnp.mean(real)


def wasserstein_g_loss(fake: jax.Array) -> jax.Array:
  """WGAN generator: -E[D(G(z))] (Arjovsky et al. 2017)."""
  return -jnp.mean(fake)


# name -> (discriminator loss, generator loss, D's output is a logit of real-vs-fake)
LOSSES = {
  'minimax': (minimax_d_loss, minimax_g_loss, True),
  'non_saturating': (minimax_d_loss, non_saturating_g_loss, True),
  'least_squares': (least_squares_d_loss, least_squares_g_loss, False),
  'hinge': (hinge_d_loss, hinge_g_loss, False),
  'wasserstein': (wasserstein_d_loss, wasserstein_g_loss, False),
}


# -- regularisers ---------------------------------------------------------------------------


def gradient_penalty(d_fn: Callable, real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """WGAN-GP (Gulrajani et al. 2017, eq. 3): E[(||grad_x D(x_hat)||_2 - 1)^2] at random
  interpolates x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per example. Multiply by lambda (10)."""
  chex.assert_equal_shape((real, fake))
  e = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = e * real + (1.0 - e) * fake
  grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(x_hat)  # rows are independent: per-example grads
  norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(d_fn: Callable, real: jax.Array) -> jax.Array:
  """R1 (Mescheder et al. 2018, eq. 9): E_x[||grad_x D(x)||^2] on real data; the loss adds
  gamma / 2 times it."""
  grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(real)
  return jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1))


def clip_weights(params, bound: float):
  """WGAN weight clipping (Arjovsky et al. 2017, algorithm 1): every parameter into [-c, c]."""
  return jax.tree.map(lambda w: jnp.clip(w, -bound, bound), params)


# -- discriminator inputs: DiffAugment and packing ------------------------------------------

AUGMENTATIONS = ('color', 'translation', 'cutout')


def diff_augment(x: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """Differentiable augmentation (Zhao et al. 2020, DiffAugment) of NHWC images in [-1, 1].

  Applied with fresh randomness to every batch the discriminator sees, real and generated, in
  both players' steps, so gradients flow through it to the generator. Policies (the paper's):
  'color' (brightness +U[-0.5, 0.5], saturation x U[0, 2], contrast x U[0.5, 1.5]),
  'translation' (shift by up to 1/8 of the size, zero padding), 'cutout' (a zeroed square of
  half the size at a random place).
  """
  chex.assert_rank(x, 4)
  b, h, w, _ = x.shape
  keys = jax.random.split(key, 6)
  if 'color' in policy:
    u = lambda k, lo, hi: jax.random.uniform(k, (b, 1, 1, 1), x.dtype, lo, hi)
    x = x + u(keys[0], -0.5, 0.5)
    mean = jnp.mean(x, axis=3, keepdims=True)
    x = mean + (x - mean) * u(keys[1], 0.0, 2.0)
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    x = mean + (x - mean) * u(keys[2], 0.5, 1.5)
  if 'translation' in policy:
    sh, sw = max(1, int(h * 0.125 + 0.5)), max(1, int(w * 0.125 + 0.5))
    padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))
    dy = jax.random.randint(keys[3], (b,), 0, 2 * sh + 1)
    dx = jax.random.randint(keys[4], (b,), 0, 2 * sw + 1)
    crop = lambda img, i, j: jax.lax.dynamic_slice(img, (i, j, 0), (h, w, img.shape[-1]))
    x = jax.vmap(crop)(padded, dy, dx)
  if 'cutout' in policy:
    ch, cw = max(1, int(h * 0.5 + 0.5)), max(1, int(w * 0.5 + 0.5))
    k1, k2 = jax.random.split(keys[5])
    cy = jax.random.randint(k1, (b, 1, 1), 0, h + (1 - ch % 2))
    cx = jax.random.randint(k2, (b, 1, 1), 0, w + (1 - cw % 2))
    # Rows cy - ch // 2 ... cy - ch // 2 + ch - 1 (DiffAugment's grid), clipped to the image.
    dr = jnp.arange(h)[None, :, None] - cy
    dc = jnp.arange(w)[None, None, :] - cx
    inside = (dr >= -(ch // 2)) & (dr <= (ch - 1) // 2) & (dc >= -(cw // 2)) & (dc <= (cw - 1) // 2)
    x = x * (~inside)[..., None].astype(x.dtype)
  return x


def pack(x: jax.Array, m: int) -> jax.Array:
  """PacGAN (Lin et al. 2018): m examples become one discriminator input, concatenated along the
  last axis ([B, ..., C] -> [B / m, ..., m C]); the discriminator judges them jointly."""
  if m == 1:
    return x
  rows = x.reshape(x.shape[0] // m, m, *x.shape[1:])
  rows = jnp.moveaxis(rows, 1, -2)  # [B/m, ..., m, C]
  return rows.reshape(*rows.shape[:-2], m * x.shape[-1])


# -- sampling-time helpers -------------------------------------------------------------------


def rejection_sample(
  key: jax.Array, candidates: jax.Array, logits: jax.Array, num: int, percentile: float
) -> tuple[jax.Array, jax.Array]:
  """Discriminator rejection sampling (Azadi et al. 2019, eq. 8) under jit, with a fixed size.

  With D's logit l(x) ~ log p_data(x)/p_g(x) (exact at the optimal discriminator), accept x with
  probability sigmoid(F(x)), F = l - l_max - log(1 - exp(l - l_max - eps)) - gamma, where l_max is
  the largest logit among the candidates and gamma the `percentile` of F over them. The accepted
  candidates come first (in random order); if fewer than `num` were accepted, the rest is filled
  with rejected ones.

  Returns:
    (samples [num, ...], acceptance rate over the candidates).
  """
  k_u, k_order = jax.random.split(key)
  l_max = jnp.max(logits)
  f = logits - l_max - jnp.log1p(-jnp.exp(logits - l_max - 1e-6))
  gamma = jnp.percentile(f, percentile)
  accept = jax.random.uniform(k_u, f.shape) < jax.nn.sigmoid(f - gamma)
  order = jnp.argsort(jnp.where(accept, 0.0, 1.0) + 0.5 * jax.random.uniform(k_order, f.shape))
  return candidates[order[:num]], jnp.mean(accept.astype(jnp.float32))


# -- the objective ---------------------------------------------------------------------------


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
