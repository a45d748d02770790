"""The encoder/decoder networks (gen.models.autoencoder): shapes for every layout gen reads,
the VAE's doubled encoder output, chosen through gen.models.MODELS, and one-line errors."""

import chex
import jax
import jax.numpy as jnp
import pytest

from gen import models
from gen.errors import ConfigError
from gen.models import autoencoder

CONV = models.MODELS['conv_autoencoder'].defaults


def _pair(name, shape, factor=1, **section):
  return models.make(
    name,
    shape,
    {**models.MODELS[name].defaults, **section},
    ('autoencoder',),
    'vae',
    encoder_factor=factor,
  )


@pytest.mark.parametrize(
  'shape, ch_mult, latent',
  [
    ((8, 8, 1), (1, 2), (4, 4, 4)),
    ((32, 32, 3), (1, 2, 2), (8, 8, 4)),
    ((8, 8, 1), (1,), (8, 8, 4)),
  ],
)
def test_conv_pair_maps_images_to_latents_and_back(shape, ch_mult, latent):
  enc, dec = _pair('conv_autoencoder', shape, ch=8, ch_mult=ch_mult, num_groups=4)
  x = jnp.zeros((2, *shape))
  p_enc = enc.init(jax.random.key(0), x)
  z = enc.apply(p_enc, x)
  chex.assert_shape(z, (2, *latent))
  assert autoencoder.latent_shape(enc, shape) == latent
  p_dec = dec.init(jax.random.key(1), z)
  chex.assert_shape(dec.apply(p_dec, z), (2, *shape))


def test_a_vae_encoder_outputs_mean_and_log_variance_channels():
  enc, _ = _pair('conv_autoencoder', (8, 8, 1), factor=2, ch=8, num_groups=4, latent_channels=3)
  z = enc.apply(enc.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))), jnp.zeros((1, 8, 8, 1)))
  chex.assert_shape(z, (1, 4, 4, 6))
  assert autoencoder.latent_shape(enc, (8, 8, 1), encoder_factor=2) == (4, 4, 3)


def test_mlp_pair_for_vectors():
  enc, dec = _pair('mlp_autoencoder', (2,), factor=2, features=(16, 16), latent_dim=2)
  x = jnp.ones((5, 2))
  z = enc.apply(enc.init(jax.random.key(0), x), x)
  chex.assert_shape(z, (5, 4))
  y = dec.apply(dec.init(jax.random.key(1), z[:, :2]), z[:, :2])
  chex.assert_shape(y, (5, 2))


def test_layouts_that_cannot_work_fail_in_one_line():
  for name, shape, section, message in (
    ('conv_autoencoder', (6, 6, 1), {'ch_mult': (1, 2, 2)}, 'downsamples by 4, which must divide'),
    ('conv_autoencoder', (2,), {}, "takes images .*use model.name='mlp_autoencoder'"),
    ('conv_autoencoder', (8, 8, 1), {'ch': 6}, r'num_groups=8 must divide every level width'),
    ('mlp_autoencoder', (8, 8, 1), {}, 'takes vectors'),
  ):
    with pytest.raises(ConfigError, match=message):
      _pair(name, shape, **section)
  with pytest.raises(ConfigError, match="is a network of kind 'autoencoder'; objective.name='gan'"):
    models.make('conv_autoencoder', (8, 8, 1), dict(CONV), ('gan_pair',), 'gan')


def test_the_residual_blocks_are_the_unets_without_a_time_embedding():
  from gen.models.unet import ResBlock

  block = ResBlock(8, num_groups=4)
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
  params = block.init(jax.random.key(1), x, None)
  assert 'Dense_0' not in params['params']  # no scale-shift from a time embedding
  chex.assert_trees_all_close(block.apply(params, x, None), x)  # zero-initialised residual
