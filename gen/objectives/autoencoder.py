"""The deterministic autoencoder (objective `autoencoder`), and what its family shares with the
VAE (gen.objectives.vae) and the VQ-VAE (gen.objectives.vqvae).

An autoencoder maps data x to a latent z = E(x) and back, x_hat = D(z). The deterministic one
minimises a reconstruction error

  L(theta) = E_{x, eps} err( D(E(x + s eps)), x )         (mean over dims of the squared
                                                          ('mse') or absolute ('l1') error)

with s = `autoencoder.noise_std`: s > 0 is a denoising autoencoder (Vincent et al. 2008), whose
encoder sees x corrupted by Gaussian noise while the loss compares with the clean x.

An autoencoder has no prior. `sample` decodes z drawn from a diagonal Gaussian fitted to the
training latents (a running mean and variance in the state: Ghosh et al. 2020's "ex-post density
estimation"), a baseline for the VAE's and latent diffusion's samples.

What the family shares (`AutoencoderBase`): one network 'autoencoder' = {'encoder', 'decoder',
...} with one optimizer; pictures of reconstructions next to their inputs (8 images of the first
training batch, kept in the state, since `pictures` sees no data); the eval metric
'reconstruction' (`reconstruction_metrics`: the error on held-out data); and the frozen use by
latent diffusion (`config.pretrained.autoencoder`): `encode_latent(params, x)`,
`decode_latent(params, z)` and `latent_shape`, on another run's EMA parameters.
"""

import abc
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gen import models
from gen import state as state_lib
from gen.errors import ConfigError
from gen.models import autoencoder as ae_models
from gen.objectives.contract import Capabilities, Samples

NET = 'autoencoder'
MODEL_KINDS = ('autoencoder',)
LOSSES = ('mse', 'l1')
PICTURE_ROWS = 8  # inputs of the reconstruction picture (from the first training batch)
MOMENT_DECAY = 0.99  # the running latent mean and variance of the deterministic autoencoder


def reconstruction_error(kind: str, x_hat: jax.Array, x: jax.Array) -> jax.Array:
  """[B] per-example error, the mean over the data dims of (x_hat - x)^2 ('mse') or |x_hat - x|
  ('l1')."""
  diff = (x_hat - x).reshape(x.shape[0], -1)
  return jnp.mean(diff**2 if kind == 'mse' else jnp.abs(diff), axis=-1)


def check_choice(field: str, value: str, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f'{field}={value!r} is unknown; choose one of {list(allowed)}')


def network_fields(config: ml_collections.ConfigDict, spec, encoder_factor: int = 1) -> dict:
  """The `AutoencoderBase` fields every objective of the family builds the same way: networks
  (config.model, of kind 'autoencoder'), optimizer (config.optim), EMA (config.train), shapes."""
  encoder, decoder = models.from_config(
    config, spec.shape, MODEL_KINDS, encoder_factor=encoder_factor
  )
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  return dict(
    encoder=encoder,
    decoder=decoder,
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    latent_shape=tuple(ae_models.latent_shape(encoder, tuple(spec.shape), encoder_factor)),
    use_ema=config.sample.use_ema,
  )


@dataclasses.dataclass(frozen=True)
class AutoencoderBase(abc.ABC):
  """An encoder/decoder pair trained by a subclass's `step`.

  Attributes:
    encoder, decoder: flax modules `encoder(x, train)` -> the encoder's output (a subclass reads
      it: the latent, a VAE's mean and log-variance) and `decoder(z, train)` -> data space.
    tx, lr_fn: the optimizer of the 'autoencoder' network and its schedule.
    ema_rate, ema_warmup: its EMA (gen.state.ema_decay).
    shape: one example's shape; latent_shape: one latent's.
    use_ema: sample, picture and reconstruct with the EMA parameters.
  """

  capabilities = Capabilities(reconstruction=True)

  encoder: nn.Module
  decoder: nn.Module
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  ema_rate: float
  ema_warmup: float
  shape: tuple[int, ...]
  latent_shape: tuple[int, ...]
  use_ema: bool = True

  # -- networks -------------------------------------------------------------------------------

  @property
  def is_image(self) -> bool:
    return len(self.shape) == 3

  def params_of(self, state: state_lib.TrainState) -> Any:
    """The parameters that sample, picture and reconstruct: EMA or raw, per `use_ema`."""
    return (state.ema_params if self.use_ema else state.params)[NET]

  def encode(self, params, x, train: bool = False, key=None) -> jax.Array:
    rngs = {'dropout': key} if key is not None else {}
    return self.encoder.apply({'params': params['encoder']}, x, train, rngs=rngs)

  def decode(self, params, z, train: bool = False, key=None) -> jax.Array:
    rngs = {'dropout': key} if key is not None else {}
    return self.decoder.apply({'params': params['decoder']}, z, train, rngs=rngs)

  def to_data(self, x_hat: jax.Array) -> jax.Array:
    """A decoder's data-space output as data: images clipped to their range [-1, 1]."""
    return jnp.clip(x_hat, -1.0, 1.0) if self.is_image else x_hat

  def init_params(self, rng: jax.Array, x: jax.Array) -> dict[str, Any]:
    """{'encoder', 'decoder'} initialised on data x (a subclass adds its own leaves)."""
    key_e, key_d = jax.random.split(rng)
    params = {'encoder': self.encoder.init(key_e, x, False)['params']}
    h = self.encoder.apply({'params': params['encoder']}, x, False)
    z = h[..., : self.latent_shape[-1]]
    params['decoder'] = self.decoder.init(key_d, z, False)['params']
    return params

  # -- what a subclass defines ----------------------------------------------------------------

  @abc.abstractmethod
  def encode_latent(self, params, x: jax.Array) -> jax.Array:
    """The latent of x [B, ...] that latent diffusion models: [B, *latent_shape]."""

  def decode_latent(self, params, z: jax.Array) -> jax.Array:
    """Data [B, *shape] from latents z [B, *latent_shape] (the decoder's mean)."""
    return self.to_data(self.decode(params, z))

  @abc.abstractmethod
  def prior_sample(self, state: state_lib.TrainState, key: jax.Array, num: int) -> jax.Array:
    """[num, *latent_shape] latents from the objective's prior."""

  def extra_state(self, params) -> dict[str, Any]:
    """Objective-owned arrays of the step-0 state (besides the picture inputs), given the
    initial parameters."""
    return {}

  def extra_pictures(self, state, params, key) -> dict[str, jax.Array]:
    return {}

  def extra_captions(self) -> dict[str, str]:
    return {}

  def extra_reconstruction_metrics(self, params, x, state) -> dict[str, jax.Array]:
    return {}

  # -- shared pieces of the contract ----------------------------------------------------------

  def reconstruct(self, params, x: jax.Array) -> jax.Array:
    return self.decode_latent(params, self.encode_latent(params, x))

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> state_lib.TrainState:
    """The step-0 state: the networks, their optimizer and EMA, and the objective's arrays."""
    x = jnp.asarray(example_batch['x'])
    params = self.init_params(rng, x)
    rows = min(PICTURE_ROWS, x.shape[0])
    extra = {'picture_x': jnp.zeros((rows, *self.shape), x.dtype), **self.extra_state(params)}
    return state_lib.create_state({NET: params}, {NET: self.tx}, extra)

  def remember_inputs(self, state: state_lib.TrainState, x: jax.Array) -> dict[str, Any]:
    """state.extra with the picture inputs taken from the step-0 batch (kept afterwards)."""
    kept = state.extra['picture_x']
    first = x[: kept.shape[0]]
    return {**state.extra, 'picture_x': jnp.where(state.step == 0, first, kept)}

  def apply_gradients(self, state, grads, extra) -> tuple[state_lib.TrainState, jax.Array]:
    state, norm = state_lib.apply_gradients(
      state, NET, grads, self.tx, self.ema_rate, self.ema_warmup
    )
    return state.replace(extra=extra), norm

  def sample(self, state: state_lib.TrainState, key: jax.Array, num: int, labels=None) -> Samples:
    """`num` decodings (the decoder's mean) of latents from the prior; one decoder call each."""
    z = self.prior_sample(state, key, num)
    x = self.decode_latent(self.params_of(state), z)
    return Samples(x, None, {'nfe': jnp.ones((), jnp.int32)})

  def sample_protocol(self) -> dict[str, Any]:
    return {'sampler': 'decode_prior', 'prior': self.prior_name, 'use_ema': self.use_ema}

  prior_name = 'none'

  def pictures(self, state: state_lib.TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Images: the picture inputs next to their reconstructions, plus the subclass's; other
    data: none (the loop's scatter shows the samples)."""
    if not self.is_image:
      return {}
    params = self.params_of(state)
    x = state.extra['picture_x']
    out = {'reconstructions': jnp.stack([x, self.reconstruct(params, x)])}
    return {**out, **self.extra_pictures(state, params, key)}

  def picture_captions(self) -> dict[str, str]:
    return {
      'reconstructions': 'one row per training image: the input (left), its reconstruction',
      **self.extra_captions(),
    }

  def reconstruction_metrics(self, state, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    """On held-out data x: 'recon_mse' and 'recon_l1' (means over examples and dims, data in
    the data's own scale: [-1, 1] for images), plus the subclass's."""
    params = self.params_of(state)
    x_hat = self.reconstruct(params, x)
    return {
      'recon_mse': jnp.mean(reconstruction_error('mse', x_hat, x)),
      'recon_l1': jnp.mean(reconstruction_error('l1', x_hat, x)),
      **self.extra_reconstruction_metrics(params, x, state),
    }


@dataclasses.dataclass(frozen=True)
class Autoencoder(AutoencoderBase):
  """The deterministic (optionally denoising) autoencoder of the module docstring.

  Attributes:
    loss: 'mse' or 'l1' (`reconstruction_error`).
    noise_std: s, the std of the Gaussian corruption of the encoder's input; 0: none.
  """

  loss: str = 'mse'
  noise_std: float = 0.0
  prior_name = 'gaussian_fit_to_training_latents'

  def encode_latent(self, params, x):
    return self.encode(params, x)

  def extra_state(self, params):
    zeros = jnp.zeros(self.latent_shape, jnp.float32)
    return {'latent_mean': zeros, 'latent_var': jnp.ones(self.latent_shape, jnp.float32)}

  def prior_sample(self, state, key, num):
    eps = jax.random.normal(key, (num, *self.latent_shape))
    return state.extra['latent_mean'] + jnp.sqrt(state.extra['latent_var']) * eps

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """One optimizer step on the reconstruction error; the latents' running moments."""
    x = batch['x']
    key_noise, key_drop = jax.random.split(key)
    x_in = x + self.noise_std * jax.random.normal(key_noise, x.shape) if self.noise_std else x

    def loss_fn(params):
      z = self.encode(params, x_in, True, key_drop)
      x_hat = self.decode(params, z, True, jax.random.fold_in(key_drop, 1))
      return jnp.mean(reconstruction_error(self.loss, x_hat, x)), z

    (loss, z), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params[NET])
    extra = self.remember_inputs(state, x)
    z = jax.lax.stop_gradient(z)
    d = jnp.where(state.step == 0, 0.0, MOMENT_DECAY)  # the first batch sets the moments
    mean = d * extra['latent_mean'] + (1 - d) * jnp.mean(z, axis=0)
    var = d * extra['latent_var'] + (1 - d) * jnp.var(z, axis=0)
    extra = {**extra, 'latent_mean': mean, 'latent_var': var}
    state, norm = self.apply_gradients(state, grads, extra)
    return state, {'loss': loss, f'grad_norm/{NET}': norm, 'lr': self.lr_fn(state.step)}


def default_config() -> ml_collections.ConfigDict:
  """config.autoencoder: the reconstruction error and the denoising corruption."""
  return ml_collections.ConfigDict(dict(loss='mse', noise_std=0.0))


def from_config(config: ml_collections.ConfigDict, spec) -> Autoencoder:
  """The deterministic autoencoder of `config.autoencoder` and the shared sections."""
  a = config.autoencoder
  check_choice('autoencoder.loss', a.loss, LOSSES)
  if a.noise_std < 0:
    raise ConfigError(f'autoencoder.noise_std must be >= 0, got {a.noise_std}')
  return Autoencoder(**network_fields(config, spec), loss=a.loss, noise_std=a.noise_std)
