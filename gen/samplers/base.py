"""What every sampler shares: the model function, the time schedule and the result.

The contract (every module in gen.samplers follows it):
- The model enters as a `DenoiseFn`, `fn(x [B, ...], t [B]) -> (x0_hat, eps_hat)`: whatever the
  network predicts (eps, x0, v, score, velocity) is converted to this pair first
  (gen.processes.parameterization), so every sampler works with every parameterisation.
- A schedule `ts` is the descending array of the N times at which the model is evaluated, made
  by `timesteps(process, N, spacing)`. A sampler steps ts[0] -> ts[1] -> ... -> ts[N-1] and the
  last transition, ts[N-1] -> clean data (alpha = 1, sigma = 0), is the model's x0 estimate at
  ts[N-1]: DDIM's last step to abar = 1, DPM-Solver's first-order step to sigma = 0, EDM's Euler
  step to sigma = 0 and score_sde's "denoise" step are all this same update.
- A sampler returns a `SampleResult(samples, nfe, trajectory)`; nfe counts network evaluations
  (an int, or an int32 array for adaptive solvers). `trajectory`, when asked for, stacks the
  state after each transition: [N, B, ...], its last entry the samples.
- Every loop over steps is one `lax.scan` (or a diffrax solve): compiling once per step count.
"""

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gen.errors import ConfigError
from gen.processes.base import expand_to, karras_sigmas

DenoiseFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
# Called on the state after each transition (including the final one, with t_next=None):
# `project(x, t_next, key) -> x`. Inpainting uses it to put the re-noised known pixels back.
ProjectFn = Callable[[jax.Array, jax.Array | None, jax.Array], jax.Array]

SPACINGS = ('uniform', 'quadratic', 'trailing', 'karras', 'logsnr')


class SampleResult(NamedTuple):
  """What a sampler returns.

  Attributes:
    samples: [B, ...] the final samples (clean data space).
    nfe: number of network evaluations (per sample batch; cond + uncond of classifier-free
      guidance share one batched call and count once).
    trajectory: [N, B, ...] the state after each transition, or None.
  """

  samples: jax.Array
  nfe: int | jax.Array
  trajectory: jax.Array | None = None


def bcast(c: chex.Array, x: chex.Array) -> jax.Array:
  """Per-example or scalar coefficient c broadcast against x [B, ...]."""
  return expand_to(c, x)


def evaluate(denoise_fn: DenoiseFn, x: jax.Array, t: chex.Array) -> tuple[jax.Array, jax.Array]:
  """The model at scalar time t for the whole batch: (x0_hat, eps_hat)."""
  t = jnp.asarray(t)
  return denoise_fn(x, jnp.full((x.shape[0],), t, t.dtype))


def alpha_sigma(process, t: chex.Array) -> tuple[jax.Array, jax.Array]:
  """(alpha_t, sigma_t) as scalars for scalar t."""
  alpha, sigma = process.marginal(jnp.reshape(jnp.asarray(t), (1,)))
  return alpha[0], sigma[0]


def schedule_coefficients(process, ts: chex.Array) -> tuple[jax.Array, jax.Array]:
  """(alpha, sigma), each [N + 1]: the marginal at every time of `ts`, then the clean end (1, 0)."""
  alpha, sigma = process.marginal(ts)
  one = jnp.ones((1,), alpha.dtype)
  return jnp.concatenate([alpha, one]), jnp.concatenate([sigma, 0.0 * one])


def run_chain(
  step_fn: Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array],
  denoise_fn: DenoiseFn,
  x_init: jax.Array,
  ts: chex.Array,
  key: jax.Array,
  project: ProjectFn | None = None,
  trajectory: bool = False,
  final_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array | None]:
  """Scans a one-step update over consecutive times, then takes the final x0 estimate.

  Args:
    step_fn: `step_fn(x, t, t_next, key) -> x_next` for one transition between model times.
    denoise_fn: the model, for the last transition ts[-1] -> clean (x0_hat).
    x_init: [B, ...] the state at ts[0].
    ts: [N] descending model times.
    key: randomness, split per transition (None for a deterministic update).
    project: optional `project(x, t_next, key)` applied after each transition (t_next = None
      after the last one, whose result is in data space).
    trajectory: stack the state after each transition ([N, B, ...]).
    final_fn: `final_fn(x, t, key) -> x0` for the last transition from ts[-1] (default: the
      model's x0 estimate; a predictor-corrector sampler corrects first).

  Returns:
    (samples, trajectory or None).
  """
  keys = jax.random.split(jax.random.key(0) if key is None else key, ts.shape[0])

  def body(x, inputs):
    t, t_next, k = inputs
    k_step, k_project = jax.random.split(k)
    x = step_fn(x, t, t_next, k_step)
    if project is not None:
      x = project(x, t_next, k_project)
    return x, x if trajectory else None

  x, path = jax.lax.scan(body, x_init, (ts[:-1], ts[1:], keys[:-1]))
  return finish(denoise_fn, x, ts, keys[-1], path, project, final_fn)


def finish(denoise_fn, x, ts, key, path, project=None, final_fn=None):
  """The last transition, ts[-1] -> clean data, after a sampler's scan: the x0 estimate (or
  `final_fn(x, t, key)`), the projection, and the completed trajectory (None stays None)."""
  k_final, k_project = jax.random.split(key)
  if final_fn is None:
    x = evaluate(denoise_fn, x, ts[-1])[0]
  else:
    x = final_fn(x, ts[-1], k_final)
  if project is not None:
    x = project(x, None, k_project)
  if path is not None:
    path = jnp.concatenate([path, x[None]], axis=0)
  return x, path


# -- schedules ------------------------------------------------------------------------------


def _strictly_decreasing(steps: np.ndarray) -> np.ndarray:
  """Moves repeated integer steps down by the least amount so the sequence strictly decreases.

  s_{i+1} < s_i <=> u_{i+1} <= u_i for u_i = s_i + i, so a running minimum of u (after making
  room, s_i >= n - 1 - i) fixes every repeat.
  """
  n = steps.shape[0]
  index = np.arange(n)
  u = np.maximum(steps, n - 1 - index) + index
  return (np.minimum.accumulate(u) - index).astype(np.int32)


def _discrete_timesteps(process, num: int, spacing: str, rho: float) -> np.ndarray:
  big_t = process.num_timesteps
  if num > big_t:
    raise ConfigError(
      f'diffusion.sample.num_steps={num} exceeds the {big_t} steps of the discrete process'
    )
  u = np.linspace(1.0, 0.0, num)
  if spacing == 'uniform':  # diffusers' "linspace": T-1 ... 0
    steps = np.round((big_t - 1) * u)
  elif spacing == 'trailing':  # Lin et al. 2024: T-1, T-1-T/N, ..., T/N - 1
    steps = np.round(big_t - np.arange(num) * big_t / num) - 1
  elif spacing == 'quadratic':  # DDIM's quadratic: dense near the data
    steps = np.round((big_t - 1) * u**2)
  else:
    abar = np.asarray(process.alphas_cumprod, np.float64)
    if spacing == 'karras':  # Karras spacing of the noise-to-signal ratio
      level = 0.5 * (np.log1p(-abar) - np.log(abar))
      sig = np.asarray(karras_sigmas(np.exp(level[0]), np.exp(level[-1]), num, rho), np.float64)
      targets = np.log(sig)
    else:  # 'logsnr': uniform in log-SNR (DPM-Solver's logSNR spacing)
      level = np.log(abar) - np.log1p(-abar)
      targets = np.linspace(level[-1], level[0], num)
    steps = np.argmin(np.abs(targets[:, None] - level[None, :]), axis=1)
    steps[0] = big_t - 1
  return _strictly_decreasing(steps.astype(np.int64))


def _invert_log_snr(process, lam: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """t with log_snr(t) = lam on [lo, hi] (log-SNR decreases in t), by 60 bisections."""
  a = np.full(lam.shape, lo, np.float64)
  b = np.full(lam.shape, hi, np.float64)
  for _ in range(60):
    mid = 0.5 * (a + b)
    above = np.asarray(process.log_snr(jnp.asarray(mid, jnp.float32)), np.float64) > lam
    a, b = np.where(above, mid, a), np.where(above, b, mid)
  return 0.5 * (a + b)


def _continuous_timesteps(process, num: int, spacing: str, rho: float) -> np.ndarray:
  t_max, t_min = float(process.t_max), float(process.t_min)
  sigma_at = lambda t: float(process.marginal(jnp.asarray([t], jnp.float32))[1][0])
  clean_end = sigma_at(t_min) == 0.0  # rectified flow: t_min = 0 is the data itself
  # The clean time that 'trailing' spaces towards: where sigma = 0 if the process reaches it.
  t_zero = t_min if clean_end else (0.0 if sigma_at(0.0) == 0.0 else t_min)
  # Grids that would end on a clean t_min drop that point: the model is never evaluated there.
  n = num + 1 if clean_end else num
  if spacing == 'uniform':
    ts = np.linspace(t_max, t_min, n)
  elif spacing == 'quadratic':
    ts = t_min + (t_max - t_min) * np.linspace(1.0, 0.0, n) ** 2
  elif spacing == 'trailing':
    ts = np.linspace(t_max, t_zero, num + 1)
  elif spacing == 'karras':
    ends = jnp.asarray([t_max, t_min], jnp.float32)
    s_max, s_min = np.asarray(process.noise_level(ends), np.float64)
    ts = np.asarray(process.t_from_noise_level(karras_sigmas(s_min, s_max, n, rho)), np.float64)
    ts[-1] = t_min  # exact ends despite round-off in the level <-> t round trip
    ts[0] = t_max
  else:  # logsnr
    lam_hi, lam_lo = np.asarray(process.log_snr(jnp.asarray([t_min, t_max], jnp.float32)))
    if not (np.isfinite(lam_hi) and np.isfinite(lam_lo)):
      raise ConfigError(
        "diffusion.sample.spacing='logsnr' needs a finite log-SNR at t_min and t_max; "
        f'{type(process).__name__} has alpha or sigma = 0 at an end: choose another spacing'
      )
    ts = _invert_log_snr(process, np.linspace(lam_lo, lam_hi, n), t_min, t_max)
    ts[-1] = t_min
    ts[0] = t_max
  return ts[:num].astype(np.float32)


def timesteps(process, num: int, spacing: str = 'uniform', rho: float = 7.0) -> jax.Array:
  """The N model-evaluation times of a sampler, descending from t_max (see the module doc).

  Spacings (the last transition from the smallest time to clean data is always the x0 estimate):
    'uniform'    evenly from t_max to t_min (discrete: diffusers' "linspace", T-1 ... 0). Where
                 t_min itself is noise-free (rectified flow) the grid stops one step before it,
                 so N Euler steps are the usual N-step flow sampler.
    'quadratic'  t_min + (t_max - t_min) u^2 for u evenly from 1 to 0: dense near the data
                 (DDIM, Song et al. 2021, its CIFAR-10 schedule).
    'trailing'   N evenly spaced times starting at t_max and stopping one step short of the
                 clean end (T-1, T-1-T/N, ...; Lin et al. 2024, "Common diffusion noise schedules
                 and sample steps are flawed", Table 2).
    'karras'     the process's noise level spaced by Karras et al. (2022), eq. 5, exponent rho.
    'logsnr'     evenly in log-SNR lambda = log(alpha^2 / sigma^2) (Lu et al. 2022, DPM-Solver).
  Discrete steps are rounded to distinct integers.

  Schedules are built from the process's constants in NumPy (under `jit` too, through
  `jax.ensure_compile_time_eval`): the process must be closed over, not a traced argument.

  Args:
    process: a gen.processes process.
    num: N >= 1 (and <= T for a discrete process).
    spacing: one of SPACINGS.
    rho: Karras' exponent.

  Returns:
    [N] descending times: int32 steps for a discrete process, float32 otherwise.
  """
  if spacing not in SPACINGS:
    raise ConfigError(f'diffusion.sample.spacing={spacing!r} is unknown; choose one of {SPACINGS}')
  if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
    raise ConfigError(f'diffusion.sample.num_steps must be an integer >= 1, got {num!r}')
  with jax.ensure_compile_time_eval():
    if process.is_discrete:
      return jnp.asarray(_discrete_timesteps(process, int(num), spacing, rho))
    return jnp.asarray(_continuous_timesteps(process, int(num), spacing, rho))
