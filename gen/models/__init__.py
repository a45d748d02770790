"""Networks, selected by name from one explicit dict (no registration by import)."""

from typing import Any

import flax.linen as nn

from gen.errors import ConfigError
from gen.models import energy, gan, mlp, unet


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


# name -> factory(example shape, **that model's config section) -> flax module f(x, t, train)
MODELS = {'mlp': _make_mlp, 'unet': _make_unet}


def make(name: str, shape: tuple[int, ...], kwargs: dict[str, Any]) -> nn.Module:
  """Builds network `name` for examples of `shape`; fails before compiling on a bad choice."""
  if name in energy.ENERGY_MODELS:
    raise ConfigError(
      f"model.name={name!r} is an energy/score network: it needs objective.name='ebm'"
    )
  if name in gan.GAN_MODELS:
    raise ConfigError(
      f"model.name={name!r} is a GAN generator/discriminator pair: it needs objective.name='gan'; "
      f'diffusion objectives take one of {sorted(MODELS)}'
    )
  if name not in MODELS:
    raise ConfigError(f'model.name={name!r} is unknown; choose one of {sorted(MODELS)}')
  try:
    return MODELS[name](tuple(shape), **kwargs)
  except TypeError as e:  # an unexpected keyword from the config section
    raise ConfigError(f'model.{name}: {e}') from None


def from_config(model_config, shape: tuple[int, ...], **extra) -> nn.Module:
  """`make` from a config section: `name` plus a sub-section of that name with its kwargs.

  `extra` holds what the objective decides rather than the model section (e.g. num_classes).
  """
  section = model_config.get(model_config.name) if model_config.name in MODELS else None
  kwargs = section.to_dict() if section is not None else {}
  return make(model_config.name, shape, {**kwargs, **extra})
