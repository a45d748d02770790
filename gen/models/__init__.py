"""Networks, chosen one way: `MODELS`, one explicit dict of name -> `Model` (no registration by
import). Each entry says what kind of network it builds, its constructor and the defaults of its
config section `config.model.<name>`; an objective asks for the kinds it can train.

Kinds:
  denoiser  f(x, t, train, labels=None): a diffusion network (mlp, unet).
  gan_pair  (generator, discriminator) (gan_mlp, dcgan).
  energy    E(x, train) -> [B] (energy_mlp, energy_conv).
  score     s(x, train) -> x's shape (score_mlp).
  rbm       a binary restricted Boltzmann machine (rbm).
  autoencoder  (encoder, decoder) (conv_autoencoder, mlp_autoencoder; gen.models.autoencoder).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from gen.errors import ConfigError
from gen.models import autoencoder, energy, gan, mlp, unet


def _make_mlp(shape: tuple[int, ...], **kwargs) -> nn.Module:
  if len(shape) != 1:
    raise ConfigError(
      f"model.name='mlp' takes flat vectors such as 2-D points, but the data has shape {shape}; "
      "use model.name='unet' for images"
    )
  return mlp.MLP(**kwargs)


def _make_unet(shape: tuple[int, ...], **kwargs) -> nn.Module:
  defaults = unet.UNet.__dataclass_fields__
  get = lambda name: kwargs.get(name, defaults[name].default)
  unet.check_input_shape(
    shape,
    ch_mult=get('ch_mult'),
    ch=get('ch'),
    num_groups=get('num_groups'),
    attn_resolutions=get('attn_resolutions'),
    num_heads=get('num_heads'),
    head_dim=get('head_dim'),
  )
  return unet.UNet(**kwargs)


def _energy_net(name: str) -> Callable:
  def make(shape: tuple[int, ...], **kwargs) -> nn.Module:
    vector = name in ('energy_mlp', 'score_mlp')
    if vector and len(shape) != 1:
      raise ConfigError(f'model.name={name!r} takes vectors; the data has shape {shape}')
    if not vector and len(shape) != 3:
      raise ConfigError(f'model.name={name!r} takes images; the data has shape {shape}')
    return energy.make(name, kwargs)

  return make


def _gan_pair(name: str) -> Callable:
  def make(shape: tuple[int, ...], num_classes: int = 0, conditioning: str = 'projection', **kw):
    return gan.make_pair(name, shape, kw, num_classes, conditioning)

  return make


@dataclasses.dataclass(frozen=True)
class Model:
  """One entry of MODELS: `build(example shape, **objective's extras, **section)`."""

  kind: str
  build: Callable[..., Any]
  defaults: dict[str, Any]


MODELS = {
  'mlp': Model(
    'denoiser', _make_mlp, dict(features=(256, 256, 256), time_dim=64, embedding='sinusoidal')
  ),
  'unet': Model(
    'denoiser',
    _make_unet,
    dict(
      ch=64,
      ch_mult=(1, 2),
      num_res_blocks=2,
      attn_resolutions=(),  # image heights that get self-attention, e.g. (16,)
      num_heads=1,
      dropout=0.0,
      num_groups=8,
      embedding='sinusoidal',  # sinusoidal | fourier (time/noise-level features)
      remat=False,  # recompute block activations in the backward pass (memory for FLOPs)
    ),
  ),
  'gan_mlp': Model(
    'gan_pair',
    _gan_pair('gan_mlp'),
    dict(
      g_features=(256, 256, 256),
      d_features=(256, 256, 256),
      g_norm='none',  # batch | layer | none
      d_norm='none',
      spectral_norm=False,  # on every discriminator layer
    ),
  ),
  'dcgan': Model(
    'gan_pair',
    _gan_pair('dcgan'),
    dict(
      g_ch=64,
      d_ch=64,
      g_norm='batch',  # batch (DCGAN) | layer | none
      d_norm='batch',  # batch (DCGAN) | layer (WGAN-GP) | none (SNGAN)
      spectral_norm=False,
      extra_convs=False,  # True: SNGAN's "standard CNN" (a 3x3 conv at every resolution)
    ),
  ),
  'energy_mlp': Model(
    'energy', _energy_net('energy_mlp'), dict(features=(128, 128, 128), spectral_norm=False)
  ),
  'score_mlp': Model(
    'score', _energy_net('score_mlp'), dict(features=(128, 128, 128), spectral_norm=False)
  ),
  'energy_conv': Model(
    'energy', _energy_net('energy_conv'), dict(ch=32, num_levels=2, spectral_norm=False)
  ),
  'rbm': Model('rbm', lambda shape, **kw: energy.make('rbm', kw), dict(num_hidden=64)),
  # encoder/decoder pairs; the objective passes encoder_factor (2: a VAE's mean and log-variance)
  'conv_autoencoder': Model(
    'autoencoder',
    autoencoder.make_conv_pair,
    dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, latent_channels=4, num_groups=8, dropout=0.0),
  ),
  'mlp_autoencoder': Model(
    'autoencoder', autoencoder.make_mlp_pair, dict(features=(256, 256), latent_dim=2)
  ),
}


def of_kinds(kinds: tuple[str, ...]) -> list[str]:
  """The MODELS names of the given kinds."""
  return sorted(n for n, m in MODELS.items() if m.kind in kinds)


def make(
  name: str,
  shape: tuple[int, ...],
  section: dict[str, Any],
  kinds: tuple[str, ...],
  objective: str,
  **extra,
) -> Any:
  """Builds network `name` for examples of `shape` from its config section, for an objective
  that trains networks of `kinds`; fails before compiling on a bad choice.

  Args:
    name: a MODELS key (config.model.name).
    shape: one example's shape.
    section: config.model.<name> as a dict.
    kinds: the kinds the objective takes.
    objective: the objective's name, for the error messages.
    **extra: what the objective decides rather than the section (num_classes, conditioning).
  """
  if name not in MODELS:
    raise ConfigError(f'model.name={name!r} is unknown; choose one of {sorted(MODELS)}')
  model = MODELS[name]
  if model.kind not in kinds:
    raise ConfigError(
      f'model.name={name!r} is a network of kind {model.kind!r}; objective.name={objective!r} '
      f'takes one of {of_kinds(kinds)}'
    )
  unknown = sorted(set(section) - set(model.defaults))
  if unknown:
    raise ConfigError(f'model.{name}: unknown fields {unknown}; it takes {sorted(model.defaults)}')
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
  try:
    return model.build(tuple(shape), **extra, **kwargs)
  except TypeError as e:  # a keyword the network does not take
    raise ConfigError(f'model.{name}: {e}') from None


def from_config(config, shape: tuple[int, ...], kinds: tuple[str, ...], **extra) -> Any:
  """`make` for `config.model.name`, its section `config.model.<name>`, the objective
  `config.objective.name`."""
  name = config.model.name
  section = config.model.get(name) if name in MODELS else None
  kwargs = section.to_dict() if section is not None else {}
  return make(name, shape, kwargs, kinds, config.objective.name, **extra)
