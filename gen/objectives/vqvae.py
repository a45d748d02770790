"""The vector-quantised autoencoder (van den Oord et al. 2017, "Neural Discrete Representation
Learning"), objective `vqvae`.

The encoder's output z_e (a d-vector per latent position) is replaced by its nearest code of a
codebook {e_1..e_K}, z_q = e_k with k = argmin_j ||z_e - e_j||^2, and decoded. The argmin has
no gradient; the straight-through estimator passes the decoder's gradient at z_q to z_e
unchanged (z_q = z_e + sg(e_k - z_e), sg: stop-gradient). The loss, each term a mean over
positions and dims:

  L = err(D(z_q), x) + ||sg(z_e) - e_k||^2 + beta ||z_e - sg(e_k)||^2
      reconstruction    codebook loss         commitment loss (beta: `vqvae.beta`, 0.25)

With `vqvae.codebook = 'ema'` (the paper's appendix A.1) the codebook loss is dropped and the codes
follow exponential moving averages of their assigned encodings instead, with decay gamma:
  N_k <- gamma N_k + (1 - gamma) n_k,   m_k <- gamma m_k + (1 - gamma) sum_{i: k_i = k} z_e,i,
  e_k = m_k / N~_k,  N~_k = (N_k + eps) / (sum_j N_j + K eps) sum_j N_j   (Laplace smoothing),
n_k being the batch's count of code k.

The first step sets the codes to random encodings of its batch (a data-dependent start, so no
code begins far from every encoding). Dead codes: each code's share of the batch's encodings is
tracked as a moving average u_k (decay 0.99, starting from 1/K); a code whose u_k falls below
`vqvae.dead_code_threshold` / K is restarted at a random encoding of the current batch (Dhariwal
et al. 2020, Jukebox), with u_k = 1/K again. Every step logs the codebook's perplexity
exp(-sum_k p_k log p_k) (p_k: the batch's code frequencies; K when all codes are equally used),
its usage (the fraction of codes the batch uses) and the restarts.

A VQ-VAE trained this way has no learned prior: `sample` decodes codes drawn independently per
position from the usage frequencies u (a baseline; latent diffusion on the quantised latents,
`config.pretrained.autoencoder`, is the generative model). `encode_latent` gives the quantised
latents z_q; `decode_latent` quantises its input before decoding. The pictures add the codes'
usage, one bar per code.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives import autoencoder as ae_lib
from gen.objectives.autoencoder import NET, AutoencoderBase

CODEBOOKS = ('ema', 'loss')
USAGE_DECAY = 0.99  # the moving average u of each code's share of the encodings
LAPLACE_EPS = 1e-5
USAGE_PICTURE_HEIGHT = 32


def nearest_code(z: jax.Array, codebook: jax.Array) -> jax.Array:
  """[N] index of the code nearest (squared Euclidean) to each row of z [N, d]; codebook [K, d]."""
  dist = (
    jnp.sum(z**2, axis=-1, keepdims=True) - 2.0 * z @ codebook.T + jnp.sum(codebook**2, axis=-1)
  )
  return jnp.argmin(dist, axis=-1)


def quantise(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(z_q with the straight-through gradient, code indices): z [..., d] -> z_q of z's shape,
  indices of z's shape without the last axis. The value is the nearest code; the gradient with
  respect to z is the identity (z_q = z + sg(e - z))."""
  flat = z.reshape(-1, z.shape[-1])
  codes = nearest_code(flat, codebook)
  e = codebook[codes].reshape(z.shape)
  return z + jax.lax.stop_gradient(e - z), codes.reshape(z.shape[:-1])


def perplexity(counts: jax.Array) -> jax.Array:
  """exp(entropy) of the code frequencies `counts` [K] (K for uniform use, 1 for one code)."""
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def ema_codebook(
  cluster_size: jax.Array,
  embed_sum: jax.Array,
  z: jax.Array,
  codes: jax.Array,
  decay: float,
  eps: float = LAPLACE_EPS,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One EMA codebook update (module docstring): (codebook [K, d], N [K], m [K, d]) from the
  previous N [K] and m [K, d], the encodings z [n, d] and their codes [n]."""
  k = cluster_size.shape[0]
  one_hot = jax.nn.one_hot(codes, k, dtype=z.dtype)  # [n, K]
  cluster_size = decay * cluster_size + (1 - decay) * jnp.sum(one_hot, axis=0)
  embed_sum = decay * embed_sum + (1 - decay) * one_hot.T @ z
  total = jnp.sum(cluster_size)
  smoothed = (cluster_size + eps) / (total + k * eps) * total
  return embed_sum / smoothed[:, None], cluster_size, embed_sum


@dataclasses.dataclass(frozen=True)
class VQVAE(AutoencoderBase):
  """The VQ-VAE of the module docstring.

  Attributes:
    num_codes: K, the codebook size; the codes' dimension is the latent channels.
    beta: the commitment weight.
    codebook: 'ema' (moving averages; no codebook loss) or 'loss' (the codebook loss).
    ema_decay: gamma of the EMA codebook.
    dead_code_threshold: restart a code whose usage share falls below this / K; 0: never.
    loss: the reconstruction error, 'mse' or 'l1'.
  """

  prior_name = 'independent_codes_by_usage'

  num_codes: int = 64
  beta: float = 0.25
  codebook: str = 'ema'
  ema_decay: float = 0.99
  dead_code_threshold: float = 0.03
  loss: str = 'mse'

  @property
  def code_dim(self) -> int:
    return self.latent_shape[-1]

  def init_params(self, rng, x):
    key_net, key_codes = jax.random.split(rng)
    params = super().init_params(key_net, x)
    # Placeholder codes: the first step replaces them by encodings of its batch (`first_codes`).
    params['codebook'] = 0.01 * jax.random.normal(key_codes, (self.num_codes, self.code_dim))
    return params

  def extra_state(self, params):
    k = self.num_codes
    extra = {'usage': jnp.full((k,), 1.0 / k, jnp.float32)}
    if self.codebook == 'ema':  # one pseudo-encoding per code, at the code: e = m / N holds
      extra['cluster_size'] = jnp.ones((k,), jnp.float32)
      extra['embed_sum'] = params['codebook']
    return extra

  def first_codes(self, state, x, key):
    """At step 0, the state with codes set to random encodings of the batch x (a data-dependent
    initialisation: no code starts far from every encoding); afterwards, the state unchanged."""
    params = state.params[NET]

    def from_batch(p):
      flat = self.encode(p, x).reshape(-1, self.code_dim)
      return flat[jax.random.randint(key, (self.num_codes,), 0, flat.shape[0])]

    first = state.step == 0
    codebook = jax.lax.cond(first, from_batch, lambda p: p['codebook'], params)
    ema = state.ema_params[NET]
    ema_codebook_ = jnp.where(first, codebook, ema['codebook'])
    extra = state.extra
    if self.codebook == 'ema':
      extra = {**extra, 'embed_sum': jnp.where(first, codebook, extra['embed_sum'])}
    return state.replace(
      params={**state.params, NET: {**params, 'codebook': codebook}},
      ema_params={**state.ema_params, NET: {**ema, 'codebook': ema_codebook_}},
      extra=extra,
    )

  def loss_of(self, params, x, key):
    """(loss, aux): the module docstring's loss on data x, and the encodings and codes."""
    key_enc, key_dec = jax.random.split(key)
    z_e = self.encode(params, x, True, key_enc)
    z_q, codes = quantise(z_e, params['codebook'])
    x_hat = self.decode(params, z_q, True, key_dec)
    rec = jnp.mean(ae_lib.reconstruction_error(self.loss, x_hat, x))
    e = params['codebook'][codes]  # the codes' values, differentiable in the codebook
    commit = jnp.mean((z_e - jax.lax.stop_gradient(e)) ** 2)
    loss = rec + self.beta * commit
    if self.codebook == 'loss':
      loss = loss + jnp.mean((jax.lax.stop_gradient(z_e) - e) ** 2)
    flat = jax.lax.stop_gradient(z_e).reshape(-1, self.code_dim)
    return loss, {'rec': rec, 'commit': commit, 'flat': flat, 'codes': codes.reshape(-1)}

  def step(self, state, batch, key):
    """One optimizer step on the loss; the EMA codebook update and dead-code restarts; the
    codebook's perplexity, usage and restarts."""
    x = batch['x']
    key_loss, key_first, key_restart = jax.random.split(key, 3)
    state = self.first_codes(state, x, key_first)
    (loss, aux), grads = jax.value_and_grad(self.loss_of, has_aux=True)(
      state.params[NET], x, key_loss
    )
    extra = self.remember_inputs(state, x)
    state, norm = self.apply_gradients(state, grads, extra)
    flat, codes = aux['flat'], aux['codes']
    counts = jnp.sum(jax.nn.one_hot(codes, self.num_codes, dtype=jnp.float32), axis=0)
    codebook = state.params[NET]['codebook']
    if self.codebook == 'ema':
      codebook, cluster_size, embed_sum = ema_codebook(
        extra['cluster_size'], extra['embed_sum'], flat, codes, self.ema_decay
      )
      extra = {**extra, 'cluster_size': cluster_size, 'embed_sum': embed_sum}
    usage = USAGE_DECAY * extra['usage'] + (1 - USAGE_DECAY) * counts / flat.shape[0]
    dead = usage < self.dead_code_threshold / self.num_codes
    picks = flat[jax.random.randint(key_restart, (self.num_codes,), 0, flat.shape[0])]
    codebook = jnp.where(dead[:, None], picks, codebook)
    usage = jnp.where(dead, 1.0 / self.num_codes, usage)
    extra = {**extra, 'usage': usage}
    if self.codebook == 'ema':  # a restarted code's averages start at its new value
      mean_size = jnp.sum(extra['cluster_size']) / self.num_codes
      size = jnp.where(dead, mean_size, extra['cluster_size'])
      embed_sum = jnp.where(dead[:, None], picks * mean_size, extra['embed_sum'])
      extra = {**extra, 'cluster_size': size, 'embed_sum': embed_sum}
    state = self._set_codebook(state, codebook).replace(extra=extra)
    metrics = {
      'loss': loss,
      'rec': aux['rec'],
      'commit': aux['commit'],
      'codebook_perplexity': perplexity(counts),
      'codebook_usage': jnp.mean(counts > 0),
      'codebook_restarts': jnp.sum(dead),
      f'grad_norm/{NET}': norm,
      'lr': self.lr_fn(state.step),
    }
    return state, metrics

  def _set_codebook(self, state, codebook):
    """The state with the codebook `codebook` (after the EMA update and restarts) and its
    parameter EMA moved towards it (for 'loss', apply_gradients already moved it towards the
    optimizer's codebook, which only restarts change here)."""
    params = {**state.params[NET], 'codebook': codebook}
    ema = state.ema_params[NET]
    decay = state_lib.ema_decay(state.step, self.ema_rate, self.ema_warmup)
    if self.codebook == 'ema':
      old = state.ema_params[NET]['codebook']  # apply_gradients left it as the old EMA
      ema = {**ema, 'codebook': optax.incremental_update(codebook, old, 1.0 - decay)}
    return state.replace(
      params={**state.params, NET: params}, ema_params={**state.ema_params, NET: ema}
    )

  # -- latents, samples, pictures --------------------------------------------------------------

  def snap(self, params, z: jax.Array) -> jax.Array:
    """Each d-vector of z replaced by its nearest code, exactly (no gradient path)."""
    codebook = params['codebook']
    codes = nearest_code(z.reshape(-1, self.code_dim), codebook)
    return codebook[codes].reshape(z.shape)

  def encode_latent(self, params, x):
    return self.snap(params, self.encode(params, x))

  def decode_latent(self, params, z):
    return self.to_data(self.decode(params, self.snap(params, z)))

  def prior_sample(self, state, key, num):
    positions = self.latent_shape[:-1]
    logits = jnp.log(jnp.maximum(state.extra['usage'], 1e-12))
    codes = jax.random.categorical(key, logits, shape=(num, *positions))
    return self.params_of(state)['codebook'][codes]

  def extra_pictures(self, state, params, key):
    """The codes' usage u as bars, one column per code (index order), the tallest full height."""
    usage = state.extra['usage']
    height = jnp.round(USAGE_PICTURE_HEIGHT * usage / jnp.maximum(jnp.max(usage), 1e-12))
    rows = jnp.arange(USAGE_PICTURE_HEIGHT)[::-1, None]  # the bottom row is 0
    bars = jnp.where(rows < height[None, :], 1.0, -1.0)  # [height, K], white bars on black
    image = jnp.repeat(bars[..., None], self.shape[-1], axis=-1)
    return {'codebook_usage': image[None, None]}

  def extra_captions(self):
    return {
      'codebook_usage': 'codebook usage: one column per code (index order), bar height its '
      'share of the training encodings (moving average), the most used full height'
    }

  def extra_reconstruction_metrics(self, params, x, state):
    codes = nearest_code(self.encode(params, x).reshape(-1, self.code_dim), params['codebook'])
    counts = jnp.sum(jax.nn.one_hot(codes, self.num_codes, dtype=jnp.float32), axis=0)
    return {'codebook_perplexity': perplexity(counts), 'codebook_usage': jnp.mean(counts > 0)}


def default_config() -> ml_collections.ConfigDict:
  """config.vqvae: the codebook, its update, the commitment weight and dead-code restarts."""
  c = ml_collections.ConfigDict()
  c.num_codes = 64
  c.beta = 0.25  # commitment
  c.codebook = 'ema'  # ema (moving averages) | loss (the codebook loss)
  c.ema_decay = 0.99
  c.dead_code_threshold = 0.03  # restart codes used less than this share of 1/K; 0: never
  c.loss = 'mse'  # mse | l1
  return c


def from_config(config: ml_collections.ConfigDict, spec) -> VQVAE:
  """The VQ-VAE of `config.vqvae` and the shared sections, every field checked first."""
  v = config.vqvae
  ae_lib.check_choice('vqvae.codebook', v.codebook, CODEBOOKS)
  ae_lib.check_choice('vqvae.loss', v.loss, ae_lib.LOSSES)
  if v.num_codes < 2:
    raise ConfigError(f'vqvae.num_codes must be >= 2, got {v.num_codes}')
  if not v.beta >= 0:
    raise ConfigError(f'vqvae.beta must be >= 0, got {v.beta}')
  if not 0 < v.ema_decay < 1:
    raise ConfigError(f'vqvae.ema_decay must be in (0, 1), got {v.ema_decay}')
  if not 0 <= v.dead_code_threshold < 1:
    raise ConfigError(f'vqvae.dead_code_threshold must be in [0, 1), got {v.dead_code_threshold}')
  return VQVAE(
    **ae_lib.network_fields(config, spec),
    num_codes=v.num_codes,
    beta=v.beta,
    codebook=v.codebook,
    ema_decay=v.ema_decay,
    dead_code_threshold=v.dead_code_threshold,
    loss=v.loss,
  )
