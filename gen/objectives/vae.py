"""The variational autoencoder (Kingma & Welling 2014), objective `vae`.

The encoder gives a diagonal Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)) and the
decoder a likelihood p(x|z); the prior is p(z) = N(0, I). Training maximises the evidence lower
bound with a weight beta on its KL term (the beta-VAE, Higgins et al. 2017):

  ELBO_beta(x) = E_{q(z|x)} [log p(x|z)] - beta KL(q(z|x) || p(z)),
  KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)                (closed form)

with z = mu + sigma eps, eps ~ N(0, I) (the reparameterisation trick: one draw per example and
step) and beta raised linearly from 0 over `vae.kl_warmup_steps` (0: beta from the start). The
loss is -ELBO_beta per example divided by the data dims (nats/dim).

The decoder likelihood (`vae.decoder`, each with one scale for all dims: `vae.decoder_std` > 0
fixed, 0 learned):
  gaussian   N(x; D(z), s^2)
  logistic   Logistic(x; D(z), s), the density of PixelCNN++'s mixture component
  bernoulli  x in {-1, 1} as Bernoulli(sigmoid(D(z))) over (x + 1) / 2 (binary data)
Training uses the densities. Bits/dim of discrete data (eval.num_bins > 0 levels in [-1, 1]) use
the probability of each level's bin, the outermost bins extended to infinity (Ho et al. 2020's
discretised decoder, Salimans et al. 2017), so that the bound is one of discrete data, as the
DDPM bound is.

Bits/dim (the likelihood capability; `bits_per_dim`): with k = `vae.likelihood.num_importance`
posterior draws z_i per example and w_i = p(x|z_i) p(z_i) / q(z_i|x),
  'bpd_elbo'  -(mean_i log p(x|z_i) - KL) / (D ln 2)         (beta = 1: the ELBO itself)
  'bpd'       -log((1/k) sum_i w_i) / (D ln 2)                (IWAE, Burda et al. 2016)
The importance-weighted bound is tighter (log p(x) >= IWAE_k >= ELBO) and approaches log p(x)
as k grows.

`sample` decodes z ~ N(0, I) to the decoder's mean, or with `vae.sample.noise` draws x ~ p(x|z)
(the model's own distribution: on 2-D data it shows the decoder's blur); `encode_latent` (latent
diffusion's data) is the posterior mean mu(x). Pictures add latent interpolations between the
posterior means of pairs of training images.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import log_ndtr, ndtr

from gen.errors import ConfigError
from gen.objectives import autoencoder as ae_lib
from gen.objectives.autoencoder import NET, AutoencoderBase
from gen.objectives.contract import Capabilities, Samples

DECODERS = ('gaussian', 'logistic', 'bernoulli')
INTERPOLATION_FRAMES = 8
LOGVAR_RANGE = (-30.0, 20.0)  # the encoder's log-variance, clipped (exp stays finite)


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """[B] KL(N(mean, diag exp(logvar)) || N(0, I)), summed over the latent dims."""
  kl = 0.5 * (mean**2 + jnp.exp(logvar) - 1.0 - logvar)
  return jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1)


def gaussian_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """[B] log N(z; mean, diag exp(logvar)), summed over the dims."""
  lp = -0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 * jnp.exp(-logvar))
  return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)


def _log_pdf_cdf(kind: str, u: jax.Array, log_scale: jax.Array):
  """(log density at standardised u, log CDF, log survival function) of the standard
  `kind` ('gaussian' or 'logistic') distribution, the density including -log scale."""
  if kind == 'gaussian':
    log_pdf = -0.5 * u**2 - 0.5 * math.log(2 * math.pi) - log_scale
    return log_pdf, log_ndtr(u), log_ndtr(-u)
  log_pdf = -u - 2.0 * jax.nn.softplus(-u) - log_scale
  return log_pdf, jax.nn.log_sigmoid(u), jax.nn.log_sigmoid(-u)


def decoder_log_prob(
  kind: str, out: jax.Array, log_scale: jax.Array, x: jax.Array, num_bins: int = 0
) -> jax.Array:
  """[B] log p(x | z) summed over the data dims, for the decoder's output `out` = D(z).

  Args:
    kind: one of DECODERS (module docstring).
    out: the decoder's output, x's shape: the location, or the Bernoulli logits.
    log_scale: the log of the scale s (a scalar), for 'gaussian' and 'logistic'.
    x: data in [-1, 1] (images) or any real values (num_bins = 0).
    num_bins: 0: the density of continuous x; K >= 2: the probability of x's bin among K
      evenly spaced levels of [-1, 1], half-width 1 / (K - 1), the outermost bins open.
  """
  b = x.shape[0]
  if kind == 'bernoulli':
    target = (x + 1.0) / 2.0
    lp = target * jax.nn.log_sigmoid(out) + (1.0 - target) * jax.nn.log_sigmoid(-out)
    return jnp.sum(lp.reshape(b, -1), axis=-1)
  inv_s = jnp.exp(-log_scale)
  if not num_bins:
    lp, _, _ = _log_pdf_cdf(kind, (x - out) * inv_s, log_scale)
    return jnp.sum(lp.reshape(b, -1), axis=-1)
  half = 1.0 / (num_bins - 1)
  upper, lower = (x + half - out) * inv_s, (x - half - out) * inv_s
  _, log_cdf_upper, _ = _log_pdf_cdf(kind, upper, log_scale)
  _, _, log_sf_lower = _log_pdf_cdf(kind, lower, log_scale)
  cdf = ndtr if kind == 'gaussian' else jax.nn.sigmoid
  mass = cdf(upper) - cdf(lower)
  log_pdf_mid, _, _ = _log_pdf_cdf(kind, (x - out) * inv_s, log_scale)
  # Where the bin's mass is below float32's resolution, the density times the bin width
  # (PixelCNN++'s fallback); the mass itself otherwise.
  mid = jnp.where(mass > 1e-5, jnp.log(jnp.maximum(mass, 1e-12)), log_pdf_mid + math.log(2 * half))
  lp = jnp.where(x < -1.0 + half, log_cdf_upper, jnp.where(x > 1.0 - half, log_sf_lower, mid))
  return jnp.sum(lp.reshape(b, -1), axis=-1)


@dataclasses.dataclass(frozen=True)
class VAE(AutoencoderBase):
  """The VAE of the module docstring.

  Attributes:
    beta: the KL weight (1: the ELBO).
    kl_warmup_steps: beta rises linearly from 0 over this many steps; 0: none.
    decoder_kind: one of DECODERS.
    decoder_std: the decoder's fixed scale s (gaussian, logistic); 0: learned (a parameter
      'log_scale' of the autoencoder network).
    num_importance: k, the posterior draws per example of `bits_per_dim`.
    sample_noise: `sample` draws x ~ p(x|z) instead of returning the decoder's mean.
  """

  capabilities = Capabilities(likelihood=True, reconstruction=True)
  prior_name = 'standard_normal'

  beta: float = 1.0
  kl_warmup_steps: int = 0
  decoder_kind: str = 'gaussian'
  decoder_std: float = 0.0
  num_importance: int = 100
  sample_noise: bool = False

  @property
  def data_dims(self) -> int:
    return math.prod(self.shape)

  def init_params(self, rng, x):
    params = super().init_params(rng, x)
    if self.decoder_kind != 'bernoulli' and not self.decoder_std:
      params['log_scale'] = jnp.zeros((), jnp.float32)
    return params

  def log_scale(self, params) -> jax.Array:
    if 'log_scale' in params:
      return params['log_scale']
    return jnp.asarray(math.log(self.decoder_std or 1.0), jnp.float32)

  def posterior(self, params, x, train: bool = False, key=None):
    """(mean, log-variance) of q(z|x), each [B, *latent_shape]."""
    h = self.encode(params, x, train, key)
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, jnp.clip(logvar, *LOGVAR_RANGE)

  def beta_at(self, step: jax.Array) -> jax.Array:
    """beta after the linear warm-up (`kl_warmup_steps`)."""
    if not self.kl_warmup_steps:
      return jnp.asarray(self.beta, jnp.float32)
    frac = (jnp.asarray(step, jnp.float32) + 1.0) / self.kl_warmup_steps
    return self.beta * jnp.minimum(frac, 1.0)

  def loss(self, params, x, key, beta, train: bool = True):
    """(-ELBO_beta per example / data dims, averaged over the batch; (reconstruction nats, KL
    nats) per example, averaged), one reparameterised draw per example."""
    key_eps, key_enc, key_dec = jax.random.split(key, 3)
    mean, logvar = self.posterior(params, x, train, key_enc)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key_eps, mean.shape)
    out = self.decode(params, z, train, key_dec)
    rec = -decoder_log_prob(self.decoder_kind, out, self.log_scale(params), x)
    kl = gaussian_kl(mean, logvar)
    loss = jnp.mean(rec + beta * kl) / self.data_dims
    return loss, (jnp.mean(rec), jnp.mean(kl))

  def step(self, state, batch, key):
    """One optimizer step on -ELBO_beta; logs the reconstruction and KL terms (nats per
    example), beta and the decoder scale."""
    x = batch['x']
    beta = self.beta_at(state.step)
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (loss, (rec, kl)), grads = grad_fn(state.params[NET], x, key, beta)
    state, norm = self.apply_gradients(state, grads, self.remember_inputs(state, x))
    metrics = {
      'loss': loss,
      'rec_nats': rec,
      'kl_nats': kl,
      'beta': beta,
      'decoder_scale': jnp.exp(self.log_scale(state.params[NET])),
      f'grad_norm/{NET}': norm,
      'lr': self.lr_fn(state.step),
    }
    return state, metrics

  # -- latents, samples, pictures --------------------------------------------------------------

  def encode_latent(self, params, x):
    return self.posterior(params, x)[0]

  def decode_latent(self, params, z):
    out = self.decode(params, z)
    return self.to_data(
      2.0 * jax.nn.sigmoid(out) - 1.0 if self.decoder_kind == 'bernoulli' else out
    )

  def prior_sample(self, state, key, num):
    return jax.random.normal(key, (num, *self.latent_shape))

  def sample(self, state, key, num, labels=None):
    """`num` decodings of z ~ N(0, I): the decoder's mean, or draws of p(x|z) (`sample_noise`)."""
    if not self.sample_noise:
      return super().sample(state, key, num, labels)
    key_z, key_x = jax.random.split(key)
    params = self.params_of(state)
    out = self.decode(params, self.prior_sample(state, key_z, num))
    if self.decoder_kind == 'bernoulli':
      x = 2.0 * jax.random.bernoulli(key_x, jax.nn.sigmoid(out)).astype(out.dtype) - 1.0
    else:
      noise = jax.random.normal if self.decoder_kind == 'gaussian' else jax.random.logistic
      x = out + jnp.exp(self.log_scale(params)) * noise(key_x, out.shape)
    return Samples(self.to_data(x), None, {'nfe': jnp.ones((), jnp.int32)})

  def sample_protocol(self):
    return {**super().sample_protocol(), 'decoder_noise': self.sample_noise}

  def extra_pictures(self, state, params, key):
    """Latent interpolations: between the posterior means of consecutive pairs of the picture
    inputs, linearly, decoded."""
    x = state.extra['picture_x']
    pairs = x.shape[0] // 2
    if not pairs:
      return {}
    mean = self.encode_latent(params, x[: 2 * pairs])
    za, zb = mean[0::2], mean[1::2]
    t = jnp.linspace(0.0, 1.0, INTERPOLATION_FRAMES).reshape((-1, 1) + (1,) * za.ndim)
    path = (1 - t) * za[None] + t * zb[None]  # [frames, pairs, *latent]
    frames = self.decode_latent(params, path.reshape((-1, *self.latent_shape)))
    return {'interpolation': frames.reshape((INTERPOLATION_FRAMES, pairs, *self.shape))}

  def extra_captions(self):
    return {
      'interpolation': 'one row per pair of training images: decodings along the line between '
      'their posterior means, first (left) to second (right)'
    }

  def extra_reconstruction_metrics(self, params, x, state):
    mean, logvar = self.posterior(params, x)
    return {'kl_nats': jnp.mean(gaussian_kl(mean, logvar))}

  # -- the likelihood capability ------------------------------------------------------------

  def bits_per_dim(self, state, x, key, num_bins: int = 0) -> dict[str, jax.Array]:
    """{'bpd' (IWAE_k), 'bpd_elbo', 'bpd_nfe' (k decoder calls per example)} of data x
    (module docstring), the decoder's probability of x's bin where `num_bins` > 0."""
    params = self.params_of(state)
    mean, logvar = self.posterior(params, x)
    std = jnp.exp(0.5 * logvar)
    log_scale = self.log_scale(params)

    def draw(key_i):  # one posterior draw per example: (log w, log p(x|z)), each [B]
      z = mean + std * jax.random.normal(key_i, mean.shape)
      log_px = decoder_log_prob(self.decoder_kind, self.decode(params, z), log_scale, x, num_bins)
      zeros = jnp.zeros_like(z)
      log_w = log_px + gaussian_log_density(z, zeros, zeros) - gaussian_log_density(z, mean, logvar)
      return log_w, log_px

    k = self.num_importance
    log_w, log_px = jax.lax.map(draw, jax.random.split(key, k), batch_size=min(k, 8))
    iwae = jax.nn.logsumexp(log_w, axis=0) - math.log(k)
    elbo = jnp.mean(log_px, axis=0) - gaussian_kl(mean, logvar)
    per_dim = self.data_dims * math.log(2)
    return {
      'bpd': -jnp.mean(iwae) / per_dim,
      'bpd_elbo': -jnp.mean(elbo) / per_dim,
      'bpd_nfe': jnp.asarray(k, jnp.int32),
    }

  def likelihood_protocol(self) -> dict[str, Any]:
    return {
      'method': 'iwae',
      'num_importance': self.num_importance,
      'decoder': self.decoder_kind,
      'bpd_elbo': 'analytic KL; log p(x|z) averaged over the same k posterior draws',
    }


def default_config() -> ml_collections.ConfigDict:
  """config.vae: the KL weight and its warm-up, the decoder likelihood, and (sub-section
  `likelihood`, free in --mode=eval) the importance samples of bits/dim."""
  c = ml_collections.ConfigDict()
  c.beta = 1.0
  c.kl_warmup_steps = 0
  c.decoder = 'gaussian'  # gaussian | logistic | bernoulli
  c.decoder_std = 0.0  # the decoder's scale s; 0: learned
  c.likelihood = ml_collections.ConfigDict(dict(num_importance=100))
  # How `sample` decodes (free in --mode=eval): noise False: the decoder's mean; True: x ~ p(x|z).
  c.sample = ml_collections.ConfigDict(dict(noise=False))
  return c


def from_config(config: ml_collections.ConfigDict, spec) -> VAE:
  """The VAE of `config.vae` and the shared sections, every field checked before compiling."""
  v = config.vae
  ae_lib.check_choice('vae.decoder', v.decoder, DECODERS)
  if not v.beta >= 0:
    raise ConfigError(f'vae.beta must be >= 0, got {v.beta}')
  if v.kl_warmup_steps < 0:
    raise ConfigError(f'vae.kl_warmup_steps must be >= 0, got {v.kl_warmup_steps}')
  if v.decoder_std < 0:
    raise ConfigError(f'vae.decoder_std must be >= 0 (0: learned), got {v.decoder_std}')
  if v.likelihood.num_importance < 1:
    raise ConfigError(
      f'vae.likelihood.num_importance must be >= 1, got {v.likelihood.num_importance}'
    )
  bpd = 'bpd' in config.eval.metrics or 'auto' in config.eval.metrics
  if v.decoder == 'bernoulli' and bpd and config.eval.num_bins != 2:
    raise ConfigError(
      "vae.decoder='bernoulli' is a likelihood of binary data: bits/dim need eval.num_bins=2, "
      f'not {config.eval.num_bins} (or leave bpd out of eval.metrics)'
    )
  return VAE(
    **ae_lib.network_fields(config, spec, encoder_factor=2),
    beta=v.beta,
    kl_warmup_steps=v.kl_warmup_steps,
    decoder_kind=v.decoder,
    decoder_std=v.decoder_std,
    num_importance=v.likelihood.num_importance,
    sample_noise=v.sample.noise,
  )
