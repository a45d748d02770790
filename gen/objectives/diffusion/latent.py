"""Latent diffusion (Rombach et al. 2022): the diffusion objective in the latent space of a frozen
autoencoder.

`config.pretrained.autoencoder` names a trained `autoencoder`, `vae` or `vqvae` run; the
diffusion objective of `config.diffusion` then models its scaled latents

  z = c E(x),       E: the run's `encode_latent` (a VAE's posterior mean, a VQ-VAE's quantised
                    latents, an autoencoder's code), c: the latent scale factor,

and every diffusion field (process, parameterisation, weighting, time sampling, conditioning
and classifier-free guidance, samplers) applies to z as it would to pixels. `sample` runs the
configured sampler in latent space and returns D(z / c) (the run's `decode_latent`; a VQ-VAE
quantises first), so `--mode=sample`, `--mode=eval` and every image metric see data-space
samples.

The scale factor c (`diffusion.latent_scale`; 0: measured) brings the latents to about unit
standard deviation, the scale the forward process assumes: c = 1 / std of the first training
batch's latents (Rombach et al.'s `scale_by_std`), kept in the state from then on and logged as
'latent_scale'. The autoencoder's parameters are the referenced run's EMA parameters, kept in
the state (extra 'autoencoder') and never updated; every step encodes its batch inside the
jitted step.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from gen import state as state_lib
from gen.objectives.autoencoder import NET as AE_NET
from gen.objectives.contract import Capabilities, Samples
from gen.objectives.diffusion.objective import Diffusion

ROLE = 'autoencoder'


@dataclasses.dataclass(frozen=True)
class LatentDiffusion:
  """A `Diffusion` on the latents of a frozen autoencoder (module docstring).

  Attributes:
    inner: the diffusion objective, built for one latent's shape.
    autoencoder: the referenced run's objective (gen.objectives.autoencoder.AutoencoderBase).
    shape: one data example's shape.
    latent_scale: c when > 0; 0: measured on the first training batch.
  """

  capabilities = Capabilities(grad_accum=True, bfloat16=True)

  inner: Diffusion
  autoencoder: Any
  shape: tuple[int, ...]
  latent_scale: float = 0.0

  def _ae_params(self, state: state_lib.TrainState) -> Any:
    return state.extra[ROLE][AE_NET]

  def scale(self, state: state_lib.TrainState) -> jax.Array:
    """c, or 1 before the first step has measured it."""
    c = state.extra['latent_scale']
    return jnp.where(c > 0, c, 1.0)

  def encode(self, state: state_lib.TrainState, x: jax.Array) -> jax.Array:
    """E(x) [B, *latent_shape], unscaled, without gradient."""
    return jax.lax.stop_gradient(self.autoencoder.encode_latent(self._ae_params(state), x))

  def decode(self, state: state_lib.TrainState, z: jax.Array) -> jax.Array:
    """D(z / c): scaled latents [B, *latent_shape] to data."""
    return self.autoencoder.decode_latent(self._ae_params(state), z / self.scale(state))

  def init(self, rng: jax.Array, example_batch: dict[str, Any], pretrained: dict[str, Any]):
    """The denoiser's step-0 state on latents, holding the autoencoder's parameters and c."""
    b = example_batch['x'].shape[0]
    latents = {**example_batch, 'x': jnp.zeros((b, *self.inner.shape), jnp.float32)}
    state = self.inner.init(rng, latents)
    extra = {
      **state.extra,
      ROLE: pretrained[ROLE],
      'latent_scale': jnp.asarray(self.latent_scale, jnp.float32),
    }
    return state.replace(extra=extra)

  def step(self, state: state_lib.TrainState, batch: dict[str, Any], key: jax.Array):
    """The diffusion step on c E(x); c measured on this batch if not yet set."""
    z = self.encode(state, batch['x'])
    c = state.extra['latent_scale']
    c = jnp.where(c > 0, c, 1.0 / jnp.maximum(jnp.std(z), 1e-12))
    state, metrics = self.inner.step(state, {**batch, 'x': z * c}, key)
    state = state.replace(extra={**state.extra, 'latent_scale': c})
    return state, {**metrics, 'latent_scale': c}

  def sample(self, state: state_lib.TrainState, rng: jax.Array, num: int, labels=None) -> Samples:
    """`num` latent samples of the configured sampler, decoded; the sampler's NFE (the decoder
    adds one call per sample)."""
    out = self.inner.sample(state, rng, num, labels)
    return Samples(self.decode(state, out.x), out.labels, out.stats)

  def sample_protocol(self) -> dict[str, Any]:
    return {
      **self.inner.sample_protocol(),
      'space': 'latent',
      'latent_shape': list(self.inner.shape),
      'decoder': type(self.autoencoder).__name__,
    }

  def pictures(self, state: state_lib.TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """Images: the latent denoising trajectory of 8 samples, every state decoded."""
    if len(self.shape) != 3:
      return {}
    path = self.inner.trajectory(state, key, 8)  # [frames, 8, *latent]
    frames = self.decode(state, path.reshape((-1, *self.inner.shape)))
    return {'trajectory': frames.reshape((path.shape[0], 8, *self.shape))}

  def picture_captions(self) -> dict[str, str]:
    return {
      'trajectory': 'denoising in latent space: one row per sample, noise (left) to sample '
      '(right), every state decoded'
    }
