"""Sampler accuracy per network evaluation on analytic Gaussian-mixture targets (prints JSON).

The model is exact (gen.samplers.analytic: Tweedie's formula for a Gaussian mixture), so every
error is the sampler's own. Targets:
  ring2d   gen's ring8 toy data: 8 Gaussians (std 0.02) on a circle of radius 2;
  mix64d   16 Gaussians (std 0.1) in 64 dimensions, means of norm 4 drawn once (seed 0).
For each sampler, spacing and NFE budget in {5, 10, 20, 50, 100}, the number of model times N is
the largest whose NFE fits the budget (Heun and EDM 2N - 1, RK4 4N - 3, PC 2N), and we report:
  sliced_w2  sliced Wasserstein-2 between the samples and as many fresh target samples;
  modes      modes covered (PacGAN's rule; high-quality radius 3 std in 2-D, (sqrt(D) + 3) std
             in 64-D, where a sample's distance to its centre concentrates at sqrt(D) std);
  rmse       deterministic samplers only: root-mean-square distance per dimension to a tight
             adaptive Dormand-Prince solve (rtol = atol = 1e-6) of the same ODE from the same
             initial noise, ending like every sampler with the x0 estimate at t_min.

Usage:
  python benchmarks/sampler_accuracy.py [--process vp] [--num 2000] [--nfe 5,10,20,50,100]
The summary names the best (sampler, spacing) at each NFE by rmse, next to DPM-Solver++(2M)
and UniPC with the time-uniform steps that diffusers' schedulers default to.
"""

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

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
  }


def steps_for(sampler: str, nfe: int) -> int:
  """The most model times N whose NFE fits `nfe` (0 if none)."""
  per = EVALS_PER_STEP.get(sampler, 1)
  if sampler == 'pc':
    return nfe // 2
  return (nfe - 1) // per + 1 if nfe >= 1 else 0


def evaluate_target(target, mixture, radius, process, process_name, nfes, num, seed):
  """The result rows of every applicable sampler, spacing and NFE budget on one target."""
  allowed = samplers.allowed_for(process, process_name)
  denoise = mixture.denoiser(process)
  key_noise, key_ref, key_run = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), 3)
  x_init = process.prior_std * jax.random.normal(key_noise, (num, mixture.dim))
  data = np.asarray(mixture.sample(key_ref, num), np.float64)
  centers = np.asarray(mixture.means)
  std = float(mixture.stds[0, 0])
  reference = {}

  def ode_reference(spacing):
    if spacing not in reference:
      ts = samplers.timesteps(process, 2, spacing)
      reference[spacing] = np.asarray(
        samplers.run('dopri5', denoise, process, x_init, None, ts, rtol=1e-6, atol=1e-6).samples
      )
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
  return rows


def summarize(rows, target, nfes):
  """Best (sampler, spacing) by rmse at each budget, next to the diffusers-default baselines."""
  summary = {}
  for nfe in nfes:
    at = [r for r in rows if r['target'] == target and r['rmse'] is not None and r['budget'] == nfe]
    if not at:
      continue
    best = min(at, key=lambda r: r['rmse'])
    uniform = {r['sampler']: r['rmse'] for r in at if r['spacing'] == 'uniform'}
    summary[f'{target}/nfe{nfe}'] = {
      'best': f'{best["sampler"]} ({best["spacing"]})',
      'best_rmse': best['rmse'],
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
  args = parser.parse_args()
  process = processes.make(args.process)
  nfes = [int(n) for n in args.nfe.split(',')]
  results, summary = [], {}
  t_start = time.perf_counter()
  for target, (mixture, radius) in targets().items():
    rows = evaluate_target(
      target, mixture, radius, process, args.process, nfes, args.num, args.seed
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
