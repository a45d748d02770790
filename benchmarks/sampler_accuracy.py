"""Sampler accuracy per network evaluation on analytic Gaussian-mixture targets (prints JSON).

The model is exact (gen.samplers.analytic: Tweedie's formula for a Gaussian mixture), so every
error is the sampler's own. Targets:
  ring2d   gen's ring8 toy data: 8 Gaussians (std 0.02) on a circle of radius 2;
  mix64d   16 Gaussians (std 0.1) in 64 dimensions, means of norm 4 drawn once (seed 0);
  mix64d_iid  16 Gaussians (std 0.1) in 64 dimensions, means drawn i.i.d. N(0, I) (seed 0, not
           normalised): the problem of issue #18.
For each sampler, spacing and NFE budget in {5, 10, 20, 50, 100}, the number of model times N is
the largest whose NFE fits the budget (Heun and EDM 2N - 1, RK4 4N - 3, PC 2N), and we report:
  sliced_w2  sliced Wasserstein-2 between the samples and as many fresh target samples;
  modes      modes covered (PacGAN's rule; high-quality radius 3 std in 2-D, (sqrt(D) + 3) std
             in 64-D, where a sample's distance to its centre concentrates at sqrt(D) std);
  rmse       deterministic samplers only: root-mean-square distance per dimension to a tight
             adaptive solve of the same ODE from the same initial noise (SciPy's RK45, i.e.
             Dormand-Prince, at rtol = atol = 1e-8 in float64, in y = x / alpha against
             log(sigma / alpha), which needs no time derivative, so discrete processes work too),
             ending like every sampler with the x0 estimate at t_min.
Fitted schedules (spacing 'fitted', 'fitted+gauss'): gen.samplers.optimize_timesteps fits the N
times of each of --fit_samplers on --calib calibration noise (a draw separate from the evaluation
noise), against the same tight reference; 'fitted+gauss' also fits the first time and starts there
from the Gaussian flow (gen.samplers.gaussian_flow) of the noise, with the data's mean and
covariance estimated from 20,000 data samples. NFE counts only model calls.

Usage:
  python benchmarks/sampler_accuracy.py [--process vp] [--num 2000] [--nfe 5,10,20,50,100]
      [--targets ring2d,mix64d,mix64d_iid] [--fit_nfe 5,10] [--fit_samplers unipc,unipc3]
The summary names the best (sampler, spacing) at each NFE by rmse (and the best with a fixed
spacing, 'best_fixed'), next to DPM-Solver++(2M) and UniPC with the time-uniform steps that
diffusers' schedulers default to.
"""

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.special

from gen import processes, samplers
from gen.metrics import toy
from gen.samplers.analytic import GaussianMixture

DETERMINISTIC = (
  'ddim',
  'euler',
  'heun',
  'rk4',
  'edm',
  'dpm_solver_2m',
  'dpm_solver_3m',
  'unipc',
  'unipc3',
)
STOCHASTIC = ('ddpm', 'euler_maruyama', 'reverse_diffusion', 'pc')
SPACINGS = ('uniform', 'logsnr', 'karras')
EVALS_PER_STEP = {'heun': 2, 'edm': 2, 'rk4': 4, 'pc': 2}


def targets() -> dict[str, tuple[GaussianMixture, float]]:
  """name -> (mixture, high-quality radius in component stds)."""
  key = jax.random.key(0)
  directions = jax.random.normal(key, (16, 64))
  means = 4.0 * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
  return {
    'ring2d': (GaussianMixture.ring(8, 2.0, 0.02), 3.0),
    'mix64d': (GaussianMixture.create(means, 0.1), math.sqrt(64) + 3.0),
    'mix64d_iid': (GaussianMixture.create(directions, 0.1), math.sqrt(64) + 3.0),
  }


def _denoise64(mixture, y, s):
  """The exact x0 estimate in float64 at y = x0 + s eps (the variance-exploding form)."""
  means = np.asarray(mixture.means, np.float64)
  var = np.square(np.asarray(mixture.stds, np.float64)) + s * s  # [K, D]
  diff = y[:, None, :] - means[None]
  logits = np.log(np.asarray(mixture.weights, np.float64)) - 0.5 * np.sum(
    diff * diff / var + np.log(var), axis=-1
  )
  resp = scipy.special.softmax(logits, axis=1)
  return np.einsum('bk,bkd->bd', resp, means[None] + (var - s * s) / var * diff)


def tight_reference(mixture, process, x_init, t_from, t_to, rtol=1e-8, atol=1e-8):
  """The probability-flow solution from x_init at t_from to t_to, then the x0 estimate there.

  With y = x / alpha and u = log(sigma / alpha) the ODE is dy/du = y - D(y, e^u) for every process
  (its path does not depend on how t maps to u), solved by SciPy's RK45 in float64.
  """
  ends = jnp.asarray([t_from, t_to])
  alpha, sigma = (np.asarray(a, np.float64) for a in process.marginal(ends))
  u0, u1 = np.log(sigma / alpha)
  shape = x_init.shape
  field = lambda u, y: (y.reshape(shape) - _denoise64(mixture, y.reshape(shape), np.exp(u))).ravel()
  y0 = (np.asarray(x_init, np.float64) / alpha[0]).ravel()
  sol = scipy.integrate.solve_ivp(field, (u0, u1), y0, method='RK45', rtol=rtol, atol=atol)
  return _denoise64(mixture, sol.y[:, -1].reshape(shape), np.exp(u1))


def steps_for(sampler: str, nfe: int) -> int:
  """The most model times N whose NFE fits `nfe` (0 if none)."""
  per = EVALS_PER_STEP.get(sampler, 1)
  if sampler == 'pc':
    return nfe // 2
  return (nfe - 1) // per + 1 if nfe >= 1 else 0


def evaluate_target(
  target, mixture, radius, process, process_name, nfes, num, seed, fit_nfes, fit_samplers, calib
):
  """The result rows of every applicable sampler, spacing and NFE budget on one target."""
  allowed = samplers.allowed_for(process, process_name)
  denoise = mixture.denoiser(process)
  key_noise, key_ref, key_run = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), 3)
  x_init = process.prior_std * jax.random.normal(key_noise, (num, mixture.dim))
  data = np.asarray(mixture.sample(key_ref, num), np.float64)
  centers = np.asarray(mixture.means)
  std = float(mixture.stds[0, 0])
  reference = {}

  def tight(x, ts):
    alpha, sigma = process.marginal(jnp.asarray([ts[0], ts[-1]]))
    if float(alpha[0]) > 0 and float(sigma[1]) > 0:
      return tight_reference(mixture, process, x, ts[0], ts[-1])
    # alpha = 0 at t_max (rectified flow): diffrax's Dormand-Prince in t instead
    return np.asarray(
      samplers.run('dopri5', denoise, process, x, None, ts, rtol=1e-6, atol=1e-6).samples
    )

  def ode_reference(spacing):
    if spacing not in reference:
      reference[spacing] = tight(x_init, samplers.timesteps(process, 2, spacing))
    return reference[spacing]

  def measure(name, spacing, nfe):
    n = steps_for(name, nfe)
    if n < 1 or (name in ('heun', 'edm', 'rk4') and n < 2):
      return None
    ts = samplers.timesteps(process, n, spacing)
    run = jax.jit(lambda x, k: samplers.run(name, denoise, process, x, k, ts))
    result = run(x_init, key_run)
    out = np.asarray(result.samples, np.float64)
    row = {
      'target': target,
      'sampler': name,
      'spacing': spacing,
      'budget': nfe,
      'num_steps': n,
      'nfe': int(result.nfe),
      'sliced_w2': round(toy.sliced_wasserstein(out, data, jax.random.key(0)), 5),
      'modes': toy.modes_covered(out, centers, std, radius),
      'rmse': None,
    }
    if name in DETERMINISTIC and np.all(np.isfinite(out)):
      ref = ode_reference(spacing)
      row['rmse'] = float(f'{np.sqrt(np.mean(np.square(out - ref))):.3g}')
    return row

  rows = []
  for name in DETERMINISTIC + STOCHASTIC:
    if name not in allowed:
      continue
    for spacing in SPACINGS if name in DETERMINISTIC else ('uniform',):
      if spacing == 'logsnr' and process_name == 'rectified_flow':
        continue
      for nfe in nfes:
        row = measure(name, spacing, nfe)
        if row is not None:
          rows.append(row)
  fit_samplers = [s for s in fit_samplers if s in allowed and s in DETERMINISTIC]
  if not fit_nfes or not fit_samplers or calib < 1:
    return rows
  # Calibration noise: a draw of its own, never the evaluation noise x_init.
  key_calib, key_stats = jax.random.split(jax.random.fold_in(jax.random.key(seed), 2))
  x_calib = process.prior_std * jax.random.normal(key_calib, (calib, mixture.dim))
  ts_ref = samplers.timesteps(process, 2, 'logsnr' if 'logsnr' in SPACINGS else 'uniform')
  ref_calib = jnp.asarray(tight(x_calib, ts_ref), jnp.float32)
  stats = samplers.GaussianStats.from_data(mixture.sample(key_stats, 20000))
  for name in fit_samplers:
    for nfe in fit_nfes:
      n = steps_for(name, nfe)
      if n < 2:
        continue
      for gauss in (False, True):
        ts = samplers.optimize_timesteps(
          denoise, process, x_calib, n, name, reference=ref_calib, stats=stats if gauss else None
        )

        def run(x, k, ts=ts, gauss=gauss, name=name):
          if gauss:
            x = samplers.gaussian_flow(stats, process, x, process.t_max, ts[0])
          return samplers.run(name, denoise, process, x, k, ts)

        result = jax.jit(run)(x_init, key_run)
        out = np.asarray(result.samples, np.float64)
        rmse = np.sqrt(np.mean(np.square(out - ode_reference('logsnr'))))
        rows.append(
          {
            'target': target,
            'sampler': name,
            'spacing': 'fitted+gauss' if gauss else 'fitted',
            'budget': nfe,
            'num_steps': n,
            'nfe': int(result.nfe),
            'times': [round(float(t), 4) for t in np.asarray(ts)],
            'sliced_w2': round(toy.sliced_wasserstein(out, data, jax.random.key(0)), 5),
            'modes': toy.modes_covered(out, centers, std, radius),
            'rmse': float(f'{rmse:.3g}'),
          }
        )
  return rows


def summarize(rows, target, nfes):
  """Best (sampler, spacing) by rmse at each budget, next to the diffusers-default baselines."""
  summary = {}
  for nfe in nfes:
    at = [r for r in rows if r['target'] == target and r['rmse'] is not None and r['budget'] == nfe]
    if not at:
      continue
    best = min(at, key=lambda r: r['rmse'])
    fixed = min((r for r in at if not r['spacing'].startswith('fitted')), key=lambda r: r['rmse'])
    uniform = {r['sampler']: r['rmse'] for r in at if r['spacing'] == 'uniform'}
    summary[f'{target}/nfe{nfe}'] = {
      'best': f'{best["sampler"]} ({best["spacing"]})',
      'best_rmse': best['rmse'],
      'best_fixed': f'{fixed["sampler"]} ({fixed["spacing"]})',
      'best_fixed_rmse': fixed['rmse'],
      'dpm_solver_2m_uniform_rmse': uniform.get('dpm_solver_2m'),
      'unipc_uniform_rmse': uniform.get('unipc'),
    }
  return summary


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--process', default='vp', help='vp | subvp | ve | edm | discrete_linear')
  parser.add_argument('--num', type=int, default=2000, help='samples per run')
  parser.add_argument('--nfe', default='5,10,20,50,100')
  parser.add_argument('--seed', type=int, default=1)
  parser.add_argument('--targets', default='ring2d,mix64d', help='of ring2d, mix64d, mix64d_iid')
  parser.add_argument('--fit_nfe', default='', help='budgets to fit schedules at, e.g. 5,10')
  parser.add_argument('--fit_samplers', default='unipc,unipc3')
  parser.add_argument('--calib', type=int, default=1000, help='calibration noise samples')
  args = parser.parse_args()
  process = processes.make(args.process)
  nfes = [int(n) for n in args.nfe.split(',')]
  results, summary = [], {}
  t_start = time.perf_counter()
  fit_nfes = [int(n) for n in args.fit_nfe.split(',') if n]
  chosen = args.targets.split(',')
  for target, (mixture, radius) in targets().items():
    if target not in chosen:
      continue
    rows = evaluate_target(
      target,
      mixture,
      radius,
      process,
      args.process,
      nfes,
      args.num,
      args.seed,
      fit_nfes,
      args.fit_samplers.split(','),
      args.calib,
    )
    results += rows
    summary.update(summarize(rows, target, nfes))
  print(
    json.dumps(
      {
        'benchmark': 'sampler_accuracy',
        'process': args.process,
        'num_samples': args.num,
        'device': jax.devices()[0].device_kind,
        'seconds': round(time.perf_counter() - t_start, 1),
        'summary': summary,
        'results': results,
      },
      indent=1,
    )
  )


if __name__ == '__main__':
  main()
