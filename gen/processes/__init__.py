"""Forward noising processes q(x_t | x_0) = N(alpha_t x_0, sigma_t^2 I), selected by name.

Every process is a `flax.struct.PyTreeNode` (so it can be closed over or passed through `jit`;
its scalar hyperparameters are static fields) with this interface:

  is_discrete: bool                 class constant; True only for DiscreteVP.
  t_min, t_max                      Python numbers: the time range (discrete: ints 0 and T-1).
  prior_std: float                  std of x at t_max used to start sampling
                                    (VP, sub-VP, RF, discrete: 1; VE, EDM: sigma_max).
  marginal(t) -> (alpha_t, sigma_t) each [B] for t [B] (int steps if discrete, else float).
  add_noise(x0, t, eps)             x_t = alpha_t x0 + sigma_t eps (t [B], x0 [B, ...]).
  log_snr(t)                        lambda_t = 2 log(alpha_t / sigma_t), decreasing in t.
  model_time(t) -> [B] float32      the network's time input, in about [0, 1000]:
                                    discrete t itself; t in [0, 1] -> 1000 t; EDM: an affine map of
                                    ln(sigma) onto [0, 1000] (see EDMProcess.model_time).
  time_grid(num_steps, kind, rho)   [num_steps + 1] times from t_max down to t_min; kind 'uniform'
                                    or 'karras' (Karras et al. 2022, eq. 5, in the process's
                                    `noise_level`, mapped back to t).
Continuous processes only:
  marginal_derivatives(t)           (d alpha_t/dt, d sigma_t/dt), each [B].
  sde(t) -> (f_t, g_t^2)            the linear SDE dx = f_t x dt + g_t dW with these marginals.
  noise_level(t), t_from_noise_level(s)   the monotone level that Karras spacing uses.

Build one from a config with `make(name, **kwargs)`; the names are the keys of `PROCESSES`.
"""

import inspect
import math
from collections.abc import Callable
from typing import Any

from gen.errors import ConfigError
from gen.processes.base import ContinuousProcess
from gen.processes.discrete import (
  DiscreteVP,
  cosine_schedule,
  linear_schedule,
  scaled_linear_schedule,
)
from gen.processes.flow import RectifiedFlow
from gen.processes.ve import VESDE, EDMProcess
from gen.processes.vp import VPSDE, SubVPSDE

Process = DiscreteVP | ContinuousProcess

# name -> factory(**kwargs) -> process
PROCESSES: dict[str, Callable[..., Process]] = {
  'discrete_linear': linear_schedule,
  'discrete_cosine': cosine_schedule,
  'discrete_scaled_linear': scaled_linear_schedule,
  'vp': VPSDE,
  'subvp': SubVPSDE,
  've': VESDE,
  'edm': EDMProcess,
  'rectified_flow': RectifiedFlow,
}


def _beta_range(lo: str, hi: str, upper: float) -> Callable[[dict], str | None]:
  def check(a):
    if not (0 < a[lo] <= a[hi] < upper):
      return f'{lo} and {hi} must satisfy 0 < {lo} <= {hi} < {upper}, got {a[lo]}, {a[hi]}'
    return None

  return check


def _sigma_range(a):
  if not 0 < a['sigma_min'] < a['sigma_max']:
    return (
      f'sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, '
      f'got {a["sigma_min"]}, {a["sigma_max"]}'
    )
  return None


def _positive(field: str) -> Callable[[dict], str | None]:
  return lambda a: None if a[field] > 0 else f'{field} must be > 0, got {a[field]}'


def _timesteps(a):
  n = a['num_timesteps']
  if isinstance(n, bool) or not isinstance(n, int) or n < 2:
    return f'num_timesteps must be an integer >= 2, got {n!r}'
  return None


def _vp_t_min(a):
  return None if 0 < a['t_min'] < 1 else f't_min must be in (0, 1), got {a["t_min"]}'


def _flow_times(a):
  if not 0 <= a['t_min'] < a['t_max'] <= 1:
    return f't_min and t_max must satisfy 0 <= t_min < t_max <= 1, got {a["t_min"]}, {a["t_max"]}'
  return None


# name -> checks on the (defaults-filled) keyword arguments; each returns a message or None.
_CHECKS: dict[str, tuple[Callable[[dict], str | None], ...]] = {
  'discrete_linear': (_timesteps, _beta_range('beta_start', 'beta_end', 1.0)),
  'discrete_cosine': (
    _timesteps,
    lambda a: None if a['s'] >= 0 else f's must be >= 0, got {a["s"]}',
  ),
  'discrete_scaled_linear': (_timesteps, _beta_range('beta_start', 'beta_end', 1.0)),
  'vp': (_beta_range('beta_min', 'beta_max', math.inf), _vp_t_min),
  'subvp': (_beta_range('beta_min', 'beta_max', math.inf), _vp_t_min),
  've': (_sigma_range,),
  'edm': (_sigma_range, _positive('sigma_data')),
  'rectified_flow': (_flow_times,),
}


def make(name: str, field: str = 'diffusion.process', **kwargs: Any) -> Process:
  """Builds the process `name` with keyword arguments, validating them before any compiling.

  Args:
    name: a key of PROCESSES.
    field: the config field that holds `name`; error messages name it (and its siblings
      `<parent>.<argument>` for bad argument values).
    **kwargs: the process's arguments (e.g. sigma_min=0.01); the rest take their defaults.

  Returns:
    the process.

  Raises:
    ConfigError: an unknown name, an argument the process does not take, or a bad value.
  """
  if name not in PROCESSES:
    raise ConfigError(f'{field}={name!r} is unknown; choose one of {sorted(PROCESSES)}')
  factory = PROCESSES[name]
  signature = inspect.signature(factory)
  parent = field.rpartition('.')[0]
  prefix = f'{parent}.' if parent else ''
  try:
    bound = signature.bind(**kwargs)
  except TypeError:
    bad = sorted(set(kwargs) - set(signature.parameters))
    raise ConfigError(
      f'{prefix}{bad[0] if bad else kwargs}: not an argument of {field}={name!r}; '
      f'it takes {sorted(signature.parameters)}'
    ) from None
  bound.apply_defaults()
  for check in _CHECKS[name]:
    message = check(bound.arguments)
    if message:
      raise ConfigError(f'{field}={name!r}: {prefix}{message}')
  return factory(**bound.arguments)


__all__ = [
  'PROCESSES',
  'ContinuousProcess',
  'DiscreteVP',
  'EDMProcess',
  'Process',
  'RectifiedFlow',
  'SubVPSDE',
  'VESDE',
  'VPSDE',
  'cosine_schedule',
  'linear_schedule',
  'make',
  'scaled_linear_schedule',
]
