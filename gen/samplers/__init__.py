"""Samplers of diffusion, score and flow models, selected by `config.diffusion.sample.sampler`.

Every sampler is a pure function `fn(denoise_fn, process, x_init, key, ts, **options,
project=None, trajectory=False) -> SampleResult(samples, nfe, trajectory)` (contract in
gen.samplers.base); `SAMPLERS` maps each name to its function, the `config.diffusion.sample`
fields it takes, and where it applies:

  ddpm               ancestral DDPM, posterior variance 'beta_tilde' or 'beta'      (ddpm.py)
  ddim               DDIM with eta in [0, 1]                                       (ddpm.py)
  euler, heun, rk4   fixed-step probability-flow ODE                               (ode.py)
  dopri5             adaptive Dormand-Prince (diffrax), rtol / atol                (ode.py)
  edm                EDM's stochastic Heun sampler with churn (alpha = 1)          (ode.py)
  euler_maruyama     reverse SDE, Euler-Maruyama                                   (sde.py)
  reverse_diffusion  score_sde's reverse-diffusion predictor                       (sde.py)
  pc                 predictor-corrector with a Langevin corrector at a target SNR (sde.py)
  annealed_langevin  NCSN's annealed Langevin dynamics                             (langevin.py)
  dpm_solver_2m/3m   DPM-Solver++ multistep, orders 2 and 3                        (multistep.py)
  unipc, unipc3      UniPC (bh2) predictor-corrector multistep, orders 2 and 3     (multistep.py)

Schedules fitted to the model and data: `optimize_timesteps` (schedule.py) picks the N times of a
deterministic sampler by minimising its error against a fine solve on calibration noise (Align
Your Steps, Sabour et al. 2024, with the sampler's own error as the objective); `gaussian_flow`
(gaussian.py) carries noise through the near-Gaussian start with no network evaluation, given the
data's mean and covariance (`GaussianStats`).
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from gen.errors import ConfigError
from gen.samplers import ddpm, langevin, multistep, ode, sde
from gen.samplers.base import SPACINGS, DenoiseFn, SampleResult, timesteps
from gen.samplers.gaussian import GaussianStats, gaussian_flow
from gen.samplers.langevin import langevin_step
from gen.samplers.schedule import optimize_timesteps


@dataclasses.dataclass(frozen=True)
class Sampler:
  """A table entry.

  Attributes:
    fn: the sampler function.
    options: the `config.diffusion.sample` fields passed to it as keyword arguments.
    default_steps: N when `diffusion.sample.num_steps = 0` (None: every step of a discrete process).
    continuous_only: needs d/dt of the marginals or the SDE (not a discrete process).
    needs_sde: integrates the reverse SDE, singular at t = 1 for rectified flow.
    sigma_only: needs alpha_t = 1 (processes 've', 'edm').
  """

  fn: Callable[..., SampleResult]
  options: tuple[str, ...] = ()
  default_steps: int | None = 100
  continuous_only: bool = False
  needs_sde: bool = False
  sigma_only: bool = False


SAMPLERS: dict[str, Sampler] = {
  'ddpm': Sampler(ddpm.ddpm_sample, ('variance',), default_steps=None),
  'ddim': Sampler(ddpm.ddim_sample, ('eta',), 100),
  'euler': Sampler(functools.partial(ode.ode_sample, method='euler'), (), 100, True),
  'heun': Sampler(functools.partial(ode.ode_sample, method='heun'), (), 50, True),
  'rk4': Sampler(functools.partial(ode.ode_sample, method='rk4'), (), 25, True),
  'dopri5': Sampler(ode.adaptive_ode_sample, ('rtol', 'atol', 'max_steps'), 2, True),
  'edm': Sampler(
    ode.edm_sample, ('s_churn', 's_tmin', 's_tmax', 's_noise'), 18, True, sigma_only=True
  ),
  'euler_maruyama': Sampler(sde.euler_maruyama_sample, (), 1000, True, needs_sde=True),
  'reverse_diffusion': Sampler(sde.reverse_diffusion_sample, (), 1000, needs_sde=True),
  'pc': Sampler(sde.pc_sample, ('predictor', 'snr', 'corrector_steps'), 1000, needs_sde=True),
  'annealed_langevin': Sampler(
    langevin.annealed_langevin_sample, ('langevin_steps', 'step_ratio', 'noise_scale'), 100
  ),
  'dpm_solver_2m': Sampler(functools.partial(multistep.dpm_solver_sample, order=2), (), 20),
  'dpm_solver_3m': Sampler(functools.partial(multistep.dpm_solver_sample, order=3), (), 20),
  'unipc': Sampler(functools.partial(multistep.unipc_sample, order=2), (), 20),
  'unipc3': Sampler(functools.partial(multistep.unipc_sample, order=3), (), 20),
}

# config.diffusion.sample field -> (check, what is allowed)
_OPTION_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
  'variance': (lambda v: v in ddpm.VARIANCES, f'one of {ddpm.VARIANCES}'),
  'eta': (lambda v: 0.0 <= v <= 1.0, 'in [0, 1]'),
  'rtol': (lambda v: v > 0, '> 0'),
  'atol': (lambda v: v > 0, '> 0'),
  'max_steps': (lambda v: isinstance(v, int) and v >= 1, 'an integer >= 1'),
  's_churn': (lambda v: v >= 0, '>= 0'),
  's_tmin': (lambda v: v >= 0, '>= 0'),
  's_tmax': (lambda v: v > 0, '> 0'),
  's_noise': (lambda v: v >= 0, '>= 0'),
  'predictor': (lambda v: v in sde.PREDICTORS, f'one of {sde.PREDICTORS}'),
  'snr': (lambda v: v > 0, '> 0'),
  'corrector_steps': (lambda v: isinstance(v, int) and v >= 0, 'an integer >= 0'),
  'langevin_steps': (lambda v: isinstance(v, int) and v >= 1, 'an integer >= 1'),
  'step_ratio': (lambda v: 0 < v < 4, 'in (0, 4) (a step above 4 sigma^2 diverges)'),
  'noise_scale': (lambda v: v >= 0, '>= 0'),
}


def check(name: str, process, process_name: str, options: dict[str, Any]) -> None:
  """Raises ConfigError (naming the `diffusion.sample.*` field) for a sampler that cannot run as
  configured.

  Args:
    name: `diffusion.sample.sampler`.
    process: the process it samples.
    process_name: `diffusion.process`, for the message.
    options: the `diffusion.sample.*` fields by name (only the sampler's own are checked).
  """
  if name not in SAMPLERS:
    raise ConfigError(
      f'diffusion.sample.sampler={name!r} is unknown; choose one of {sorted(SAMPLERS)}'
    )
  entry = SAMPLERS[name]
  allowed = allowed_for(process, process_name)
  if name not in allowed:
    why = (
      'needs a continuous-time process'
      if entry.continuous_only and process.is_discrete
      else 'needs alpha_t = 1 (diffusion.process ve or edm)'
      if entry.sigma_only
      else 'integrates the reverse SDE, singular at t = 1 for rectified flow'
    )
    raise ConfigError(
      f'diffusion.sample.sampler={name!r} {why}, not diffusion.process={process_name!r}; '
      f'choose one of {allowed}'
    )
  for field in entry.options:
    ok, allowed_values = _OPTION_CHECKS[field]
    value = options[field]
    if isinstance(value, bool) or not ok(value):
      raise ConfigError(
        f'diffusion.sample.{field}={value!r} must be {allowed_values} (sampler {name!r})'
      )
  if name == 'pc' and options['predictor'] == 'euler_maruyama' and process.is_discrete:
    raise ConfigError("diffusion.sample.predictor='euler_maruyama' needs a continuous-time process")


def allowed_for(process, process_name: str) -> list[str]:
  """The sampler names that can sample `process`."""
  names = []
  for name, entry in SAMPLERS.items():
    if entry.continuous_only and process.is_discrete:
      continue
    if entry.sigma_only and process_name not in ('ve', 'edm'):
      continue
    if entry.needs_sde and process_name == 'rectified_flow':
      continue
    names.append(name)
  return names


def default_steps(name: str, process) -> int:
  """N for `diffusion.sample.num_steps = 0`: the table's default, or all T steps of a discrete
  process."""
  steps = SAMPLERS[name].default_steps
  if steps is None:
    return process.num_timesteps if process.is_discrete else 1000
  return min(steps, process.num_timesteps) if process.is_discrete else steps


def run(
  name: str,
  denoise_fn: DenoiseFn,
  process,
  x_init,
  key,
  ts,
  *,
  project=None,
  trajectory: bool = False,
  **options: Any,
) -> SampleResult:
  """Runs sampler `name`, passing it the options it takes (others are ignored)."""
  entry = SAMPLERS[name]
  kwargs = {k: options[k] for k in entry.options if k in options}
  return entry.fn(
    denoise_fn, process, x_init, key, ts, project=project, trajectory=trajectory, **kwargs
  )


__all__ = [
  'SAMPLERS',
  'SPACINGS',
  'DenoiseFn',
  'GaussianStats',
  'SampleResult',
  'Sampler',
  'allowed_for',
  'check',
  'default_steps',
  'gaussian_flow',
  'langevin_step',
  'optimize_timesteps',
  'run',
  'timesteps',
]
