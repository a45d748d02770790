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

--diffusers (discrete_linear only; needs `pip install -e ".[bench]"`) also runs diffusers'
deterministic schedulers (DIFFUSERS_SCHEDULERS, with timestep_spacing linspace, leading and
trailing where the scheduler takes that option, else its own, 'own') on the same problem: the
same initial noise, read as x at step T - 1, the same reference, and the exact model as an
eps-prediction network, each with the most inference steps whose model calls fit the budget
(calls are counted).

Usage:
  python benchmarks/sampler_accuracy.py [--process vp] [--num 2000] [--nfe 5,10,20,50,100]
      [--targets ring2d,mix64d,mix64d_iid] [--fit_nfe 5,10] [--fit_samplers unipc,unipc3]
      [--diffusers]
The summary names the best (sampler, spacing) at each NFE by rmse (and the best with a fixed
spacing, 'best_fixed'), next to DPM-Solver++(2M) and UniPC with the time-uniform steps that
diffusers' schedulers default to; with --diffusers also the best diffusers scheduler and gen's
best rmse over it ('gen_over_diffusers').
"""

import argparse
import inspect
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
# diffusers' deterministic schedulers: name -> (class name, constructor options). DDIM's
# clip_sample is off (the targets are not images in [-1, 1]); PNDM skips its Runge-Kutta warm-up
# (PLMS, as diffusers' pipelines use it).
DIFFUSERS_SCHEDULERS = {
  'ddim': ('DDIMScheduler', {'clip_sample': False}),
  'pndm_plms': ('PNDMScheduler', {'skip_prk_steps': True}),
  'dpmsolver++_2m': ('DPMSolverMultistepScheduler', {}),
  'dpmsolver++_3m': ('DPMSolverMultistepScheduler', {'solver_order': 3}),
  'dpmsolver++_2m_karras': ('DPMSolverMultistepScheduler', {'use_karras_sigmas': True}),
  'dpmsolver++_2s': ('DPMSolverSinglestepScheduler', {}),
  'dpmsolver++_3s': ('DPMSolverSinglestepScheduler', {'solver_order': 3}),
  'deis_2m': ('DEISMultistepScheduler', {}),
  'deis_3m': ('DEISMultistepScheduler', {'solver_order': 3}),
  'unipc_bh2': ('UniPCMultistepScheduler', {}),
  'unipc_bh1': ('UniPCMultistepScheduler', {'solver_type': 'bh1'}),
  'unipc3_bh2': ('UniPCMultistepScheduler', {'solver_order': 3}),
  'euler': ('EulerDiscreteScheduler', {}),
  'euler_karras': ('EulerDiscreteScheduler', {'use_karras_sigmas': True}),
  'heun': ('HeunDiscreteScheduler', {}),
  'lms': ('LMSDiscreteScheduler', {}),
  'kdpm2': ('KDPM2DiscreteScheduler', {}),
}
DIFFUSERS_SPACINGS = ('linspace', 'leading', 'trailing')
SPACINGS = samplers.SPACINGS  # uniform, quadratic, trailing, karras, logsnr
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


def diffusers_scheduler(process, name, spacing, steps):
  """diffusers' scheduler `name` (of DIFFUSERS_SCHEDULERS) for `process`'s linear betas, with
  `spacing` (a timestep_spacing, or 'own') and `steps` inference steps set: it calls the model
  once per entry of its `timesteps`."""
  import diffusers

  cls, options = DIFFUSERS_SCHEDULERS[name]
  betas = np.asarray(process.betas, np.float64)
  spaced = {} if spacing == 'own' else {'timestep_spacing': spacing}
  scheduler = getattr(diffusers, cls)(
    num_train_timesteps=int(process.num_timesteps),
    beta_start=float(betas[0]),
    beta_end=float(betas[-1]),
    beta_schedule='linear',
    **spaced,
    **options,
  )
  scheduler.set_timesteps(steps)
  return scheduler


def diffusers_sample(mixture, process, x_init, name, spacing, steps):
  """diffusers' scheduler `name` (of DIFFUSERS_SCHEDULERS) with `steps` inference steps and
  `spacing` (a timestep_spacing, or 'own') from x_init: (samples [B, D] float64, model calls).

  The network is the exact mixture denoiser as an eps-prediction network: at noise-to-signal
  ratio sigma (alpha = 1 / sqrt(1 + sigma^2)), x0 = D(x / alpha, sigma) and eps = (x / alpha -
  x0) / sigma, in float64, returned as float32. Its sigma is the one the scheduler means: for
  the schedulers that integrate x / alpha (Euler, Heun, LMS, KDPM2: init_noise_sigma > 1), the
  one scale_model_input divided by (x_in = x / sqrt(1 + sigma^2)), so fractional and
  interpolated timesteps get their exact noise level; for the others, sqrt((1 - abar_t) / abar_t)
  at the integer timestep the network is given. The sample runs in float32 from x_init at step
  T - 1 (times init_noise_sigma).
  """
  import torch

  torch.set_num_threads(2)
  abar = np.cumprod(1.0 - np.asarray(process.betas, np.float64))
  sigmas = np.sqrt((1.0 - abar) / abar)
  scheduler = diffusers_scheduler(process, name, spacing, steps)
  x = torch.from_numpy(np.asarray(x_init, np.float32)) * scheduler.init_noise_sigma
  scaled = float(scheduler.init_noise_sigma) > 1.0
  calls = 0
  for t in scheduler.timesteps:
    x_in = scheduler.scale_model_input(x, t)
    if scaled:  # x_in = x / sqrt(1 + sigma^2)
      ratio = float(torch.linalg.vector_norm(x.double()) / torch.linalg.vector_norm(x_in.double()))
      s = math.sqrt(max(ratio * ratio - 1.0, 0.0))
    else:
      s = float(sigmas[int(t)])
    alpha = 1.0 / math.sqrt(1.0 + s * s)
    y = x_in.double().numpy() / alpha
    eps = torch.from_numpy(((y - _denoise64(mixture, y, s)) / s).astype(np.float32))
    calls += 1
    x = scheduler.step(eps, t, x).prev_sample
  return x.double().numpy(), calls


def diffusers_rows(target, mixture, process, x_init, reference, nfes):
  """RMSE rows of DIFFUSERS_SCHEDULERS x DIFFUSERS_SPACINGS at each budget in `nfes`: each the
  most inference steps whose model calls fit the budget (`diffusers_sample`), compared with
  `reference`, gen's tight solve from the same noise."""
  import diffusers

  rows = []
  for name, (cls, _) in DIFFUSERS_SCHEDULERS.items():
    spaced = 'timestep_spacing' in inspect.signature(getattr(diffusers, cls).__init__).parameters
    for spacing in DIFFUSERS_SPACINGS if spaced else ('own',):
      for nfe in nfes:
        out, steps, calls = None, 0, 0
        for n in range(nfe, 0, -1):  # the most inference steps whose calls fit the budget
          try:
            if len(diffusers_scheduler(process, name, spacing, n).timesteps) > nfe:
              continue
            out, calls = diffusers_sample(mixture, process, x_init, name, spacing, n)
          except (ValueError, IndexError, RuntimeError):  # a step count the scheduler refuses
            continue
          steps = n
          break
        finite = out is not None and np.all(np.isfinite(out))
        rmse = float(f'{np.sqrt(np.mean(np.square(out - reference))):.3g}') if finite else None
        rows.append(
          {
            'target': target,
            'library': 'diffusers',
            'sampler': name,
            'spacing': spacing,
            'budget': nfe,
            'num_steps': steps,
            'nfe': calls,
            'rmse': rmse,
          }
        )
  return rows


def steps_for(sampler: str, nfe: int) -> int:
  """The most model times N whose NFE fits `nfe` (0 if none)."""
  per = EVALS_PER_STEP.get(sampler, 1)
  if sampler == 'pc':
    return nfe // 2
  return (nfe - 1) // per + 1 if nfe >= 1 else 0


def evaluate_target(
  target,
  mixture,
  radius,
  process,
  process_name,
  nfes,
  num,
  seed,
  fit_nfes,
  fit_samplers,
  calib,
  with_diffusers=False,
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
    # 'trailing' stops short of t_min on purpose: its error is measured against the solve to the
    # end every other spacing reaches (that of 'uniform')
    spacing = 'uniform' if spacing == 'trailing' else spacing
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
  if with_diffusers:
    rows += diffusers_rows(target, mixture, process, x_init, ode_reference('uniform'), nfes)
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
    scored = [r for r in rows if r['target'] == target and r['rmse'] is not None]
    at = [r for r in scored if r['budget'] == nfe and 'library' not in r]
    theirs = [r for r in scored if r['budget'] == nfe and r.get('library') == 'diffusers']
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
    if theirs:
      top = min(theirs, key=lambda r: r['rmse'])
      summary[f'{target}/nfe{nfe}'].update(
        best_diffusers=f'{top["sampler"]} ({top["spacing"]}, {top["num_steps"]} steps)',
        best_diffusers_rmse=top['rmse'],
        gen_over_diffusers=round(best['rmse'] / top['rmse'], 3),
      )
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
  parser.add_argument(
    '--diffusers', action='store_true', help="also diffusers' schedulers (discrete_linear)"
  )
  args = parser.parse_args()
  if args.diffusers and args.process != 'discrete_linear':
    parser.error(f'--diffusers needs --process discrete_linear, got --process {args.process}')
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
      args.diffusers,
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
