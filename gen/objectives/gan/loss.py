"""The GAN losses, penalties and tricks as pure functions (the table of losses: the package
docstring, gen/objectives/gan/__init__.py): the discriminator/generator losses, the gradient
penalty, R1, weight clipping, DiffAugment, PacGAN packing and discriminator rejection sampling."""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

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
