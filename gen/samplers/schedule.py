"""Time schedules fitted to a model and its data: a sampler's error minimised on calibration noise.

Sabour, Fidler & Kreis (2024, "Align Your Steps: Optimizing sampling schedules in diffusion
models") choose the N model times of a few-step sampler for the model and data at hand instead of
by a fixed rule. Their objective is an upper bound on the KL divergence between the discretised
and the exact reverse SDE; here it is the quantity the sampler is judged by directly:

  ts* = argmin_ts  (1 / (B D)) sum_b || S(x_b; ts) - Phi(x_b) ||^2,

where x_1 .. x_B is calibration noise at t_max, S(x; ts) the deterministic sampler's output with
the model times ts, and Phi(x) the probability-flow ODE's solution from x (by default a fine
solve: a solver of order 3 on 500 log-SNR-spaced times, or adaptive Dormand-Prince at
rtol = atol = 1e-5 for a continuous process), both ending with the x0 estimate at t_min. The
times live on a grid of candidates (every step of a discrete process; `num_candidates` times
evenly spaced in log-SNR for a continuous one) and are fitted by coordinate search: each time
after the first in turn moves by +-delta grid points while the error decreases, for delta
halving from 1/8 of the grid to one point, from each of the starting spacings, keeping the best.
The sampler, N and the first time (t_max) are fixed. The last time is free: the sampler returns
the x0 estimate at it, so a last time above t_min spends no evaluation on almost clean data (as
the 'trailing' spacing does). With `stats` (the data's mean and covariance) the first time is
free too and the noise is first carried from t_max to it by the Gaussian flow
(gen.samplers.gaussian), at no network evaluation.

A schedule fitted on some noise must be judged on other noise: the error on the calibration batch
is optimistic (benchmarks/sampler_accuracy.py evaluates on a separate draw).
"""

import jax
import jax.numpy as jnp
import numpy as np

from gen.errors import ConfigError
from gen.samplers import base
from gen.samplers.base import DenoiseFn
from gen.samplers.gaussian import GaussianStats, gaussian_flow

REFERENCE_STEPS = 500


def candidate_times(process, num_candidates: int = 1000) -> np.ndarray:
  """[M] descending times a fitted schedule chooses from: every step of a discrete process, else
  `num_candidates` times evenly spaced in log-SNR (time-uniform where log-SNR is infinite)."""
  if process.is_discrete:
    return np.arange(process.num_timesteps - 1, -1, -1, dtype=np.int32)
  try:
    return np.asarray(base.timesteps(process, num_candidates, 'logsnr'))
  except ConfigError:
    return np.asarray(base.timesteps(process, num_candidates, 'uniform'))


def reference_samples(denoise_fn: DenoiseFn, process, x: jax.Array) -> jax.Array:
  """A fine probability-flow solve from x at t_max, ending with the x0 estimate at t_min: UniPC of
  order 3 on min(T, 500) log-SNR-spaced steps for a discrete process, adaptive Dormand-Prince at
  rtol = atol = 1e-5 otherwise."""
  from gen import samplers  # the sampler table imports this module

  if process.is_discrete:
    ts = base.timesteps(process, min(process.num_timesteps, REFERENCE_STEPS), 'logsnr')
    return samplers.run('unipc3', denoise_fn, process, x, None, ts).samples
  finite = np.isfinite(_log_snr_range(process)).all()
  ts = base.timesteps(process, 2, 'logsnr' if finite else 'uniform')
  return samplers.run('dopri5', denoise_fn, process, x, None, ts, rtol=1e-5, atol=1e-5).samples


def _log_snr_range(process) -> np.ndarray:
  ends = jnp.asarray([process.t_min, process.t_max], jnp.float32)
  return np.asarray(process.log_snr(ends))


def _nearest_indices(grid: np.ndarray, ts: np.ndarray) -> np.ndarray:
  """Strictly increasing indices into the descending grid nearest to the descending times ts."""
  idx = np.argmin(np.abs(grid[None, :].astype(np.float64) - ts[:, None]), axis=1)
  n, size = idx.shape[0], grid.shape[0]
  idx = np.clip(idx, np.arange(n), size - n + np.arange(n))
  for i in range(1, n):  # push repeats up, then down from the end, keeping the ends in range
    idx[i] = max(idx[i], idx[i - 1] + 1)
  for i in range(n - 2, -1, -1):
    idx[i] = min(idx[i], idx[i + 1] - 1)
  return idx


def optimize_timesteps(
  denoise_fn: DenoiseFn,
  process,
  x_calibration: jax.Array,
  num_steps: int,
  sampler: str = 'unipc',
  *,
  reference: jax.Array | None = None,
  stats: GaussianStats | None = None,
  init_spacings: tuple[str, ...] = ('logsnr', 'uniform', 'trailing'),
  num_candidates: int = 1000,
  **options,
) -> jax.Array:
  """Fits the N model times of a deterministic sampler to the model on calibration noise.

  See the module docstring for the objective and the search. The result is a schedule in the
  form `timesteps` returns; run it with `samplers.run(sampler, denoise_fn, process, x, key, ts)`,
  after `gaussian_flow(stats, process, x, process.t_max, ts[0])` when fitted with `stats`. A
  schedule fitted without `stats` also goes into a diffusion run's config:
  `--config.diffusion.sample.timesteps=` followed by the times joined with commas.

  Args:
    denoise_fn: the model, `(x, t) -> (x0_hat, eps_hat)`.
    process: the process it was trained with (closed over, as for `timesteps`).
    x_calibration: [B, ...] noise at t_max (prior_std * N(0, I)), distinct from the noise the
      schedule will be judged on.
    num_steps: N >= 2, the model times (= NFE for the multistep samplers and DDIM).
    sampler: a deterministic sampler name of gen.samplers.SAMPLERS (e.g. 'unipc', 'unipc3',
      'dpm_solver_2m', 'dpm_solver_3m', 'ddim').
    reference: [B, ...] the probability-flow solutions of x_calibration (default:
      `reference_samples`).
    stats: the data's Gaussian approximation; if given, the first time is fitted too and the
      sampler starts there from the Gaussian flow of the noise.
    init_spacings: the spacings the search starts from (the best result is kept).
    num_candidates: the size of a continuous process's grid of candidate times.
    **options: the sampler's own options.

  Returns:
    [N] descending times (int32 for a discrete process, float32 otherwise), starting at t_max
    without `stats`.
  """
  from gen import samplers  # the sampler table imports this module

  if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
    raise ValueError(f'num_steps must be an integer >= 2, got {num_steps!r}')
  if sampler not in samplers.SAMPLERS:
    raise ValueError(f'sampler {sampler!r} is unknown; choose one of {sorted(samplers.SAMPLERS)}')
  grid = candidate_times(process, num_candidates)
  size = grid.shape[0]
  if num_steps > size:
    raise ValueError(f'num_steps={num_steps} exceeds the {size} candidate times')
  if reference is None:
    reference = reference_samples(denoise_fn, process, x_calibration)
  reference = jnp.asarray(reference)
  grid_j = jnp.asarray(grid)
  t_max = grid[0]

  @jax.jit
  def error(idx):
    ts = grid_j[idx]
    x = x_calibration
    if stats is not None:
      x = gaussian_flow(stats, process, x, t_max, ts[0])
    out = samplers.run(sampler, denoise_fn, process, x, None, ts, **options).samples
    return jnp.mean(jnp.square(out - reference))

  first = 0 if stats is not None else 1
  best_idx, best_err = None, np.inf
  for spacing in init_spacings:
    idx = _nearest_indices(grid, np.asarray(base.timesteps(process, num_steps, spacing)))
    idx[0] = 0  # t_max; still strictly increasing: idx[i] lies in [i, size - n + i]
    err = float(error(jnp.asarray(idx)))
    delta = max(1, size // 8)
    while delta >= 1:
      improved = True
      while improved:
        improved = False
        for i in range(first, num_steps):
          for move in (delta, -delta):
            trial = idx.copy()
            trial[i] += move
            lo = trial[i - 1] if i > 0 else -1
            hi = trial[i + 1] if i < num_steps - 1 else size
            if not lo < trial[i] < hi:
              continue
            trial_err = float(error(jnp.asarray(trial)))
            if trial_err < err:
              idx, err, improved = trial, trial_err, True
      delta //= 2
    if err < best_err:
      best_idx, best_err = idx, err
  return jnp.asarray(grid[best_idx])
