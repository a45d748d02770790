"""Diffusion, score and flow objectives: one denoising loss, many weightings (one module).

Every forward process writes x_t = alpha_t x_0 + sigma_t eps. Whatever the network predicts
(eps, x0, v, score or velocity; see gen.processes.parameterization), it is converted to an
estimate x0_hat, and the loss is a weighted denoising error

  L(theta) = E_{x_0, t, eps} [ w(t) || x0_hat(x_t, t) - x_0 ||^2 ]            (mean over dims)

The named weightings w(t) reproduce the classic objectives exactly (SNR = alpha^2 / sigma^2):

  'eps'        SNR                        ||eps_hat - eps||^2: DDPM "simple" (Ho et al. 2020),
                                          score_sde's sigma^2-weighted DSM (Song et al. 2021)
  'x0'         1                          ||x0_hat - x0||^2
  'v'          (alpha^2 + sigma^2)^2/sigma^2   ||v_hat - v||^2 (Salimans & Ho 2022)
  'min_snr'    min(SNR, gamma)            min-SNR-gamma (Hang et al. 2023)
  'likelihood' g_t^2 alpha^2 / sigma^4    g^2 ||score_hat - score||^2: maximum-likelihood
                                          DSM (Song, Durkan et al. 2021)
  'edm'        (sigma^2 + sd^2)/(sigma sd)^2   Karras et al. 2022, eq. 8 (alpha = 1)
  'velocity'   (alpha' - sigma' alpha/sigma)^2  ||u_hat - u||^2 with u = alpha' x0 + sigma' eps:
                                          rectified flow / flow matching (Liu et al. 2022;
                                          Lipman et al. 2022), u = z - x0

With `config.pretrained.autoencoder` set to a trained autoencoder, VAE or VQ-VAE run, the same
objective runs in that run's latent space: latent diffusion (gen.objectives.diffusion.latent).
"""

import dataclasses
import math

import ml_collections

from gen import models, processes, samplers
from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives.diffusion.latent import LatentDiffusion
from gen.objectives.diffusion.loss import (
  TIME_SAMPLINGS,
  WEIGHTINGS,
  denoising_loss,
  guided,
  loss_weight,
  micro_batches,
  sample_times,
)
from gen.objectives.diffusion.objective import NET, TRAJECTORY_FRAMES, Diffusion
from gen.processes import parameterization as param_lib

__all__ = [
  'NET',
  'TIME_SAMPLINGS',
  'TRAJECTORY_FRAMES',
  'WEIGHTINGS',
  'Diffusion',
  'LatentDiffusion',
  'default_config',
  'denoising_loss',
  'from_config',
  'guided',
  'loss_weight',
  'micro_batches',
  'sample_times',
]

# -- config.diffusion -----------------------------------------------------------------------

# The config.diffusion fields each process takes (gen.processes.make validates their values).
PROCESS_FIELDS = {
  'discrete_linear': ('num_timesteps', 'beta_start', 'beta_end'),
  'discrete_cosine': ('num_timesteps',),
  'discrete_scaled_linear': ('num_timesteps', 'beta_start', 'beta_end'),
  'vp': ('beta_min', 'beta_max'),
  'subvp': ('beta_min', 'beta_max'),
  've': ('sigma_min', 'sigma_max'),
  'edm': ('sigma_min', 'sigma_max', 'sigma_data'),
  'rectified_flow': (),
}
# Every option of config.diffusion.sample (gen.samplers.SAMPLERS: which sampler takes which).
SAMPLER_OPTIONS = sorted({f for entry in samplers.SAMPLERS.values() for f in entry.options})
MODEL_KINDS = ('denoiser',)
# Latent diffusion: the frozen autoencoder whose latents are the data (gen.pretrained); unset
# ('') for diffusion in data space.
PRETRAINED = {'autoencoder': ('autoencoder', 'vae', 'vqvae')}
OPTIONAL_PRETRAINED = ('autoencoder',)


def default_config() -> ml_collections.ConfigDict:
  """config.diffusion: the process, the loss, and (sub-sections) sampling and bits/dim."""
  c = ml_collections.ConfigDict()
  # Forward process (gen.processes.PROCESSES): discrete_linear | discrete_cosine |
  # discrete_scaled_linear | vp | subvp | ve | edm | rectified_flow.
  c.process = 'discrete_linear'
  c.num_timesteps = 1000  # discrete_*
  c.beta_start = 1e-4  # discrete_linear / discrete_scaled_linear
  c.beta_end = 0.02
  c.beta_min = 0.1  # vp, subvp (Song et al. 2021)
  c.beta_max = 20.0
  c.sigma_min = 0.01  # ve; edm uses 0.002 in its experiment files
  c.sigma_max = 50.0
  c.sigma_data = 0.5  # edm
  # What the network predicts: eps | x0 | v | score | velocity (gen.processes.parameterization).
  c.parameterization = 'eps'
  # Loss weighting w(t) on ||x0_hat - x0||^2 (WEIGHTINGS, module docstring).
  c.weighting = 'eps'
  c.min_snr_gamma = 5.0
  c.time_sampling = 'uniform'  # uniform | low_discrepancy | lognormal | logit_normal
  c.lognormal_mean = -1.2  # EDM's P_mean, P_std
  c.lognormal_std = 1.2
  c.logit_normal_mean = 0.0
  c.logit_normal_std = 1.0
  c.edm_preconditioning = False
  c.conditional = False  # class-conditional on the data's labels
  c.label_dropout = 0.1  # null-label rate, for classifier-free guidance
  # Latent diffusion (pretrained.autoencoder set): the latents' scale factor c; 0: 1 / std of
  # the first training batch's latents (gen.objectives.diffusion.latent).
  c.latent_scale = 0.0
  c.sample = s = ml_collections.ConfigDict()  # how `sample` integrates (free in --mode=eval)
  # gen.samplers.SAMPLERS: ddpm | ddim | dpm_solver_2m | dpm_solver_3m | unipc | unipc3 | pc |
  # reverse_diffusion | annealed_langevin (any process); euler | heun | rk4 | dopri5 |
  # euler_maruyama (continuous); edm (ve, edm).
  s.sampler = 'ddpm'
  s.num_steps = 0  # N model times; 0: the sampler's default (all T for ddpm)
  s.spacing = 'uniform'  # uniform | quadratic | trailing | karras | logsnr (gen.samplers.timesteps)
  s.rho = 7.0  # Karras et al.'s exponent for spacing='karras'
  # Explicit model times, comma-separated and descending from t_max (discrete: integer steps),
  # e.g. a schedule fitted by gen.samplers.optimize_timesteps; '' = num_steps and spacing.
  s.timesteps = ''
  s.variance = 'beta'  # ddpm: beta (Ho et al.'s CIFAR-10 choice) | beta_tilde
  s.eta = 0.0  # ddim: 0 deterministic ... 1 = ddpm with beta_tilde
  s.rtol = 1e-5  # dopri5 tolerances (score_sde's RK45 uses 1e-5)
  s.atol = 1e-5
  s.max_steps = 4096  # dopri5
  s.s_churn = 0.0  # edm (Karras et al. 2022, Algorithm 2); 0: deterministic Heun
  s.s_tmin = 0.0
  s.s_tmax = 1e9
  s.s_noise = 1.0
  s.predictor = 'reverse_diffusion'  # pc: reverse_diffusion | euler_maruyama
  s.snr = 0.16  # pc: the Langevin corrector's target signal-to-noise ratio
  s.corrector_steps = 1  # pc
  s.langevin_steps = 5  # annealed_langevin: updates per noise level
  s.step_ratio = 0.2  # annealed_langevin: step / sigma^2 (NCSN's 2e-5 at sigma 0.01)
  s.noise_scale = 1.0  # annealed_langevin: multiplier of the injected noise
  s.guidance_scale = 1.0  # classifier-free guidance w (1: plain conditional)
  # eval metric 'bpd' (continuous processes): the probability-flow ODE's divergence estimator
  # (auto: exact for <= 32 dims | exact | hutchinson) and tolerances (free in --mode=eval).
  c.likelihood = ml_collections.ConfigDict(dict(trace='auto', rtol=1e-5, atol=1e-5))
  return c


def _choice(field: str, value: str, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f'{field}={value!r} is unknown; choose one of {list(allowed)}')


def _check(d: ml_collections.ConfigDict, spec, process) -> None:
  """Cross-field checks of config.diffusion: what cannot work fails here, before compiling."""
  smp = d.sample
  param_lib.check_kind(d.parameterization, process)
  _choice('diffusion.weighting', d.weighting, WEIGHTINGS)
  _choice('diffusion.time_sampling', d.time_sampling, TIME_SAMPLINGS)
  _choice('diffusion.sample.spacing', smp.spacing, samplers.SPACINGS)
  samplers.check(smp.sampler, process, d.process, {k: smp[k] for k in SAMPLER_OPTIONS})
  if process.is_discrete and d.weighting in ('likelihood', 'velocity'):
    raise ConfigError(
      f'diffusion.weighting={d.weighting!r} needs a continuous-time process, '
      f'not diffusion.process={d.process!r}'
    )
  sigma_processes = ('ve', 'edm')
  if (d.weighting == 'edm' or d.edm_preconditioning) and d.process not in sigma_processes:
    raise ConfigError(
      "diffusion.weighting='edm' and diffusion.edm_preconditioning need x_t = x_0 + sigma eps: "
      f'diffusion.process in {sigma_processes}, not {d.process!r}'
    )
  if d.time_sampling == 'lognormal' and d.process != 'edm':
    raise ConfigError("diffusion.time_sampling='lognormal' draws sigma: needs process 'edm'")
  if d.time_sampling == 'logit_normal' and (process.is_discrete or d.process == 'edm'):
    raise ConfigError(
      "diffusion.time_sampling='logit_normal' needs a continuous process with t in [0, 1]"
    )
  if smp.num_steps < 0 or (process.is_discrete and smp.num_steps > process.num_timesteps):
    raise ConfigError(f'diffusion.sample.num_steps={smp.num_steps} must be in [0 (default), T]')
  if smp.spacing == 'logsnr' and d.process == 'rectified_flow':
    raise ConfigError(
      "diffusion.sample.spacing='logsnr' needs a finite log-SNR at both ends; rectified_flow "
      'has alpha = 0 at t = 1 and sigma = 0 at t = 0: choose one of '
      f'{list(samplers.SPACINGS[:4])}'
    )
  explicit_timesteps(smp.timesteps, process)
  lik = d.likelihood
  _choice('diffusion.likelihood.trace', lik.trace, ('auto', 'exact', 'hutchinson'))
  if not (lik.rtol > 0 and lik.atol > 0):
    raise ConfigError(f'diffusion.likelihood.rtol and atol must be > 0, got {lik.rtol}, {lik.atol}')
  if d.conditional and not spec.num_classes:
    raise ConfigError(f'diffusion.conditional=True but data.name={spec.name!r} has no labels')
  if not 0 <= d.label_dropout < 1:
    raise ConfigError(f'diffusion.label_dropout must be in [0, 1), got {d.label_dropout}')


def explicit_timesteps(text: str, process) -> tuple[float, ...]:
  """The times of `diffusion.sample.timesteps` ('' -> ()), checked: numbers, strictly
  descending, the first t_max and the rest within [t_min, t_max], integers for a discrete
  process."""
  field = 'diffusion.sample.timesteps'
  if not str(text).strip():
    return ()
  try:
    ts = tuple(float(v) for v in str(text).split(','))
  except ValueError:
    raise ConfigError(f'{field}={text!r} must be comma-separated numbers') from None
  lo, hi = process.t_min, process.t_max
  if process.is_discrete and any(t != int(t) for t in ts):
    raise ConfigError(f'{field}={text!r} must be integer steps for a discrete process')
  if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
    raise ConfigError(f'{field}={text!r} must be strictly descending')
  if not math.isclose(ts[0], hi, rel_tol=1e-6) or ts[-1] < lo:
    raise ConfigError(
      f'{field}={text!r} must start at t_max={hi} (sampling starts from the prior there) and '
      f'stay >= t_min={lo}'
    )
  return ts


def from_config(config: ml_collections.ConfigDict, spec, pretrained=None):
  """The objective of `config.diffusion` (and the shared model, optim, train and sample
  sections) for data `spec`, every field checked before compiling: a `Diffusion`, or a
  `LatentDiffusion` on the latents of `pretrained['autoencoder']` where that role is set."""
  ref = (pretrained or {}).get('autoencoder')
  if config.diffusion.latent_scale < 0:
    raise ConfigError(
      f'diffusion.latent_scale must be >= 0 (0: measured), got {config.diffusion.latent_scale}'
    )
  if ref is None:
    if config.diffusion.latent_scale:
      raise ConfigError(
        'diffusion.latent_scale is the scale of latent diffusion: set pretrained.autoencoder, '
        'or leave diffusion.latent_scale at 0'
      )
    return _diffusion(config, spec)
  ae = ref.objective
  where = f'pretrained.autoencoder={ref.workdir!r}'
  if ref.config.data.name != config.data.name or tuple(ae.shape) != tuple(spec.shape):
    raise ConfigError(
      f'{where} was trained on data.name={ref.config.data.name!r} {tuple(ae.shape)}; this run '
      f'has data.name={spec.name!r} {tuple(spec.shape)}'
    )
  latent = tuple(ae.latent_shape)
  latent_spec = dataclasses.replace(
    spec, shape=latent, kind='images' if len(latent) == 3 else 'points', mode_centers=None
  )
  try:
    inner = _diffusion(config, latent_spec)
  except ConfigError as e:
    raise ConfigError(f'on the latents {latent} of {where}: {e}') from None
  return LatentDiffusion(inner, ae, tuple(spec.shape), config.diffusion.latent_scale)


def _diffusion(config: ml_collections.ConfigDict, spec) -> Diffusion:
  """The data-space objective of `config.diffusion` for examples of `spec`."""
  d, smp = config.diffusion, config.diffusion.sample
  fields = PROCESS_FIELDS.get(d.process, ())
  process = processes.make(d.process, **{k: d[k] for k in fields})
  _check(d, spec, process)
  num_classes = spec.num_classes if d.conditional else 0
  model = models.from_config(config, spec.shape, MODEL_KINDS, num_classes=num_classes)
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  return Diffusion(
    model=model,
    process=process,
    parameterization=d.parameterization,
    weighting=d.weighting,
    time_sampling=d.time_sampling,
    time_kw=dict(
      lognormal_mean=d.lognormal_mean,
      lognormal_std=d.lognormal_std,
      logit_normal_mean=d.logit_normal_mean,
      logit_normal_std=d.logit_normal_std,
    ),
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    num_classes=num_classes,
    label_dropout=d.label_dropout,
    edm_preconditioning=d.edm_preconditioning,
    sigma_data=d.sigma_data,
    min_snr_gamma=d.min_snr_gamma,
    sampler=smp.sampler,
    num_steps=smp.num_steps or samplers.default_steps(smp.sampler, process),
    spacing=smp.spacing,
    rho=smp.rho,
    timesteps=explicit_timesteps(smp.timesteps, process),
    sampler_options={k: smp[k] for k in samplers.SAMPLERS[smp.sampler].options},
    guidance_scale=smp.guidance_scale,
    use_ema=config.sample.use_ema,
    grad_accum=config.train.grad_accum,
    compute_dtype=config.train.compute_dtype,
    bpd_trace=d.likelihood.trace,
    bpd_rtol=d.likelihood.rtol,
    bpd_atol=d.likelihood.atol,
  )
