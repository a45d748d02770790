"""Objectives, selected by `config.objective.name` from one explicit dict.

An objective exposes pure functions (see DESIGN.md, "The objective contract"):
  init(rng, example_batch) -> TrainState
  step(state, batch, key) -> (state, metrics)   # metrics: flat dict of scalars
  sample(state, rng, num) -> {'samples': [num, ...], 'labels': [num] (conditional only)}
"""

import ml_collections

from gen import models, processes, samplers
from gen import state as state_lib
from gen.data import DatasetSpec
from gen.errors import ConfigError
from gen.objectives import diffusion, ebm, gan
from gen.processes import parameterization

# The objective fields each process takes (gen.processes.make validates their values).
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

# Every sampler option of config.sample (gen.samplers.SAMPLERS says which sampler takes which).
SAMPLER_OPTIONS = sorted({f for entry in samplers.SAMPLERS.values() for f in entry.options})


def _choice(field: str, value: str, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f'{field}={value!r} is unknown; choose one of {list(allowed)}')


def _check_diffusion(config: ml_collections.ConfigDict, spec: DatasetSpec, process) -> None:
  """Cross-field checks: every combination that cannot work fails here, before compiling."""
  obj, smp = config.objective, config.sample
  parameterization.check_kind(obj.parameterization, process)
  _choice('objective.weighting', obj.weighting, diffusion.WEIGHTINGS)
  _choice('objective.time_sampling', obj.time_sampling, diffusion.TIME_SAMPLINGS)
  _choice('sample.spacing', smp.spacing, samplers.SPACINGS)
  samplers.check(smp.sampler, process, obj.process, {k: smp[k] for k in SAMPLER_OPTIONS})
  continuous_only = {'likelihood', 'velocity'}
  if process.is_discrete and obj.weighting in continuous_only:
    raise ConfigError(
      f'objective.weighting={obj.weighting!r} needs a continuous-time process, '
      f'not objective.process={obj.process!r}'
    )
  sigma_processes = ('ve', 'edm')
  if (obj.weighting == 'edm' or obj.edm_preconditioning) and obj.process not in sigma_processes:
    raise ConfigError(
      "objective.weighting='edm' and objective.edm_preconditioning need x_t = x_0 + sigma eps: "
      f'objective.process in {sigma_processes}, not {obj.process!r}'
    )
  if obj.time_sampling == 'lognormal' and obj.process != 'edm':
    raise ConfigError("objective.time_sampling='lognormal' draws sigma: needs process 'edm'")
  if obj.time_sampling == 'logit_normal' and (process.is_discrete or obj.process == 'edm'):
    raise ConfigError(
      "objective.time_sampling='logit_normal' needs a continuous process with t in [0, 1]"
    )
  if smp.num_steps < 0 or (process.is_discrete and smp.num_steps > process.num_timesteps):
    raise ConfigError(f'sample.num_steps={smp.num_steps} must be in [0 (default), T]')
  if smp.spacing == 'logsnr' and obj.process == 'rectified_flow':
    raise ConfigError(
      "sample.spacing='logsnr' needs a finite log-SNR at both ends; rectified_flow has alpha = 0 "
      f'at t = 1 and sigma = 0 at t = 0: choose one of {[s for s in samplers.SPACINGS[:4]]}'
    )
  if 'bpd' in config.eval.metrics or 'auto' in config.eval.metrics:
    ev = config.eval
    _choice('eval.bpd_trace', ev.bpd_trace, ('auto', 'exact', 'hutchinson'))
    if isinstance(ev.num_bins, bool) or not isinstance(ev.num_bins, int) or ev.num_bins in (1,):
      raise ConfigError(f'eval.num_bins must be 0 (continuous data) or >= 2, got {ev.num_bins!r}')
    if ev.num_bins < 0 or ev.bpd_num < 1 or ev.bpd_rtol <= 0 or ev.bpd_atol <= 0:
      raise ConfigError(
        'eval.num_bins >= 0, eval.bpd_num >= 1, eval.bpd_rtol > 0 and eval.bpd_atol > 0 are '
        f'required; got {ev.num_bins}, {ev.bpd_num}, {ev.bpd_rtol}, {ev.bpd_atol}'
      )
  if obj.conditional and not spec.num_classes:
    raise ConfigError(f'objective.conditional=True but data.name={spec.name!r} has no labels')
  if not 0 <= obj.label_dropout < 1:
    raise ConfigError(f'objective.label_dropout must be in [0, 1), got {obj.label_dropout}')


def _make_diffusion(config: ml_collections.ConfigDict, spec: DatasetSpec) -> diffusion.Diffusion:
  obj, smp = config.objective, config.sample
  fields = PROCESS_FIELDS.get(obj.process, ())
  process = processes.make(obj.process, **{k: obj[k] for k in fields})
  _check_diffusion(config, spec, process)
  num_classes = spec.num_classes if obj.conditional else 0
  model = models.from_config(config.model, spec.shape, num_classes=num_classes)
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  num_steps = smp.num_steps or samplers.default_steps(smp.sampler, process)
  return diffusion.Diffusion(
    model=model,
    process=process,
    parameterization=obj.parameterization,
    weighting=obj.weighting,
    time_sampling=obj.time_sampling,
    time_kw=dict(
      lognormal_mean=obj.lognormal_mean,
      lognormal_std=obj.lognormal_std,
      logit_normal_mean=obj.logit_normal_mean,
      logit_normal_std=obj.logit_normal_std,
    ),
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    num_classes=num_classes,
    label_dropout=obj.label_dropout,
    edm_preconditioning=obj.edm_preconditioning,
    sigma_data=obj.sigma_data,
    min_snr_gamma=obj.min_snr_gamma,
    sampler=smp.sampler,
    num_steps=num_steps,
    spacing=smp.spacing,
    rho=smp.rho,
    sampler_options={k: smp[k] for k in samplers.SAMPLERS[smp.sampler].options},
    guidance_scale=smp.guidance_scale,
    use_ema=smp.use_ema,
    grad_accum=config.train.grad_accum,
    compute_dtype=config.train.compute_dtype,
  )


def _check_gan(config: ml_collections.ConfigDict, spec: DatasetSpec, augment) -> None:
  """Every GAN combination that cannot work fails here, before compiling."""
  obj, batch = config.objective, config.data.batch_size
  _choice('objective.loss', obj.loss, gan.LOSSES)
  if config.model.name not in models.gan.GAN_MODELS:
    raise ConfigError(
      f"objective.name='gan' needs a generator/discriminator pair: model.name in "
      f'{list(models.gan.GAN_MODELS)}, not {config.model.name!r}'
    )
  for field in ('latent_dim', 'n_critic', 'pack', 'drs_candidates'):
    if isinstance(obj[field], bool) or not isinstance(obj[field], int) or obj[field] < 1:
      raise ConfigError(f'objective.{field} must be an integer >= 1, got {obj[field]!r}')
  for field in ('gp_weight', 'r1_weight', 'clip_value'):
    if obj[field] < 0:
      raise ConfigError(f'objective.{field} must be >= 0 (0: off), got {obj[field]}')
  if batch % (obj.n_critic * obj.pack):
    raise ConfigError(
      f'data.batch_size={batch} must be a multiple of objective.n_critic * objective.pack = '
      f'{obj.n_critic * obj.pack} (the batch is split over the critic steps, then packed)'
    )
  d_norm = config.model[config.model.name].get('d_norm', 'none')
  if obj.gp_weight and d_norm == 'batch':
    raise ConfigError(
      f'objective.gp_weight > 0 penalises per-example gradients, which batch normalisation in '
      f"the discriminator couples: set model.{config.model.name}.d_norm to 'layer' or 'none' "
      '(Gulrajani et al. 2017 use layer norm)'
    )
  bad = [a for a in augment if a not in gan.AUGMENTATIONS]
  if bad:
    raise ConfigError(f'objective.augment: {bad} unknown; choose from {list(gan.AUGMENTATIONS)}')
  if augment and spec.kind != 'images':
    raise ConfigError(f'objective.augment={obj.augment!r} needs image data; {spec.name!r} is not')
  if obj.conditional and not spec.num_classes:
    raise ConfigError(f'objective.conditional=True but data.name={spec.name!r} has no labels')
  if obj.conditional and obj.pack > 1:
    raise ConfigError('objective.pack > 1 is for unconditional GANs; set objective.pack=1')
  if obj.rejection_sampling:
    if not gan.LOSSES[obj.loss][2]:
      raise ConfigError(
        'objective.rejection_sampling reads log p_data/p_g from a real-vs-fake logit: needs '
        f"objective.loss in ('minimax', 'non_saturating'), not {obj.loss!r}"
      )
    if obj.pack > 1 or obj.conditional:
      raise ConfigError('objective.rejection_sampling needs pack=1 and an unconditional GAN')
    if not 0 <= obj.drs_percentile <= 100:
      raise ConfigError(f'objective.drs_percentile must be in [0, 100], got {obj.drs_percentile}')


def _make_gan(config: ml_collections.ConfigDict, spec: DatasetSpec) -> gan.GAN:
  obj = config.objective
  augment = tuple(a.strip() for a in obj.augment.split(',') if a.strip())
  _check_gan(config, spec, augment)
  num_classes = spec.num_classes if obj.conditional else 0
  section = config.model[config.model.name].to_dict()
  generator, discriminator = models.gan.make_pair(
    config.model.name, tuple(spec.shape), section, num_classes, obj.cond_discriminator
  )
  total = config.train.num_steps
  tx_g, lr_g = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=total)
  # The discriminator's optimizer counts n_critic updates per training step: its schedule (warm-up,
  # cosine) is stretched to match, and lr_d maps a training step to its rate.
  n = obj.n_critic
  d_kw = {**config.optim_d.to_dict(), 'warmup_steps': config.optim_d.warmup_steps * n}
  tx_d, d_sched = state_lib.make_optimizer(**d_kw, total_steps=total * n, field='optim_d')
  lr_d = lambda step: d_sched(step * n)
  return gan.GAN(
    generator=generator,
    discriminator=discriminator,
    loss=obj.loss,
    tx_g=tx_g,
    tx_d=tx_d,
    lr_g=lr_g,
    lr_d=lr_d,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    latent_dim=obj.latent_dim,
    n_critic=obj.n_critic,
    gp_weight=obj.gp_weight,
    r1_weight=obj.r1_weight,
    clip_value=obj.clip_value,
    augment=augment,
    pack=obj.pack,
    num_classes=num_classes,
    rejection_sampling=obj.rejection_sampling,
    drs_candidates=obj.drs_candidates,
    drs_percentile=obj.drs_percentile,
    use_ema=config.sample.use_ema,
    compute_dtype=config.train.compute_dtype,
  )


# model.name -> what the network outputs, for objective 'ebm'
EBM_MODELS = {
  'energy_mlp': 'energy',
  'energy_conv': 'energy',
  'score_mlp': 'score',
  'rbm': 'energy',
}


def _check_ebm(config: ml_collections.ConfigDict, spec: DatasetSpec) -> None:
  """Every EBM combination that cannot work fails here, before compiling."""
  obj, name = config.objective, config.model.name
  _choice('objective.loss', obj.loss, ebm.LOSSES)
  if name not in EBM_MODELS:
    raise ConfigError(
      f"objective.name='ebm' needs an energy or score network: model.name in "
      f'{sorted(EBM_MODELS)}, not {name!r}'
    )
  vector = name in ('energy_mlp', 'score_mlp')
  if vector and len(spec.shape) != 1:
    raise ConfigError(f'model.name={name!r} takes vectors; {spec.name!r} has shape {spec.shape}')
  if name == 'energy_conv' and spec.kind != 'images':
    raise ConfigError(f"model.name='energy_conv' takes images; {spec.name!r} is not images")
  if name == 'rbm' and (spec.kind != 'images' or obj.loss != 'cd'):
    raise ConfigError("model.name='rbm' trains on (binarised) images with objective.loss='cd'")
  if EBM_MODELS[name] == 'score' and obj.loss == 'cd':
    raise ConfigError(
      "objective.loss='cd' needs energies: a score network has none; use model.name "
      "'energy_mlp' or 'energy_conv', or a score-matching loss"
    )
  if obj.loss == 'exact_sm' and (len(spec.shape) != 1 or spec.shape[0] > 64):
    raise ConfigError(
      "objective.loss='exact_sm' computes the Jacobian trace exactly (one pass per dimension): "
      f"for vectors of <= 64 dims, not {spec.name!r} {spec.shape}; use 'sliced_sm' or 'dsm'"
    )
  _choice('objective.chain_init', obj.chain_init, ebm.CHAIN_INITS)
  _choice('objective.sm_projection', obj.sm_projection, ebm.PROJECTIONS)
  for field in ('chain_steps', 'sample_chain_steps', 'buffer_size', 'sm_projections'):
    if isinstance(obj[field], bool) or not isinstance(obj[field], int) or obj[field] < 1:
      raise ConfigError(f'objective.{field} must be an integer >= 1, got {obj[field]!r}')
  for field in ('step_size', 'init_range', 'dsm_sigma'):
    if not obj[field] > 0:
      raise ConfigError(f'objective.{field} must be > 0, got {obj[field]}')
  if obj.noise_scale < 0 or obj.chain_grad_clip < 0 or obj.energy_alpha < 0:
    raise ConfigError('objective.noise_scale, chain_grad_clip and energy_alpha must be >= 0')
  if not 0 <= obj.reinit_prob <= 1:
    raise ConfigError(f'objective.reinit_prob must be in [0, 1], got {obj.reinit_prob}')
  if obj.mala and (obj.noise_scale != 1.0 or obj.chain_grad_clip):
    raise ConfigError(
      'objective.mala=True corrects the Langevin proposal N(x - a/2 grad E, a I): it needs '
      f'objective.noise_scale=1 and chain_grad_clip=0, got {obj.noise_scale}, {obj.chain_grad_clip}'
    )
  if obj.chain_init == 'buffer' and obj.buffer_size < config.data.batch_size:
    raise ConfigError(
      f'objective.buffer_size={obj.buffer_size} must hold at least one batch '
      f'(data.batch_size={config.data.batch_size})'
    )
  if obj.conditional:
    raise ConfigError('objective.conditional: the EBM objective is unconditional')


def _make_ebm(config: ml_collections.ConfigDict, spec: DatasetSpec) -> ebm.EBM:
  obj = config.objective
  _check_ebm(config, spec)
  section = config.model[config.model.name].to_dict()
  model = models.energy.make(config.model.name, section)
  tx, lr_fn = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=config.train.num_steps)
  bounds = (-1.0, 1.0) if spec.kind == 'images' else None
  return ebm.EBM(
    model=model,
    output=EBM_MODELS[config.model.name],
    loss=obj.loss,
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    alpha=obj.energy_alpha,
    chain_steps=obj.chain_steps,
    step_size=obj.step_size,
    noise_scale=obj.noise_scale,
    chain_grad_clip=obj.chain_grad_clip,
    mala=obj.mala,
    chain_init=obj.chain_init,
    buffer_size=obj.buffer_size,
    reinit_prob=obj.reinit_prob,
    init_range=obj.init_range,
    bounds=bounds,
    sample_steps=obj.sample_chain_steps,
    num_projections=obj.sm_projections,
    projection=obj.sm_projection,
    variance_reduced=obj.sm_variance_reduced,
    dsm_sigma=obj.dsm_sigma,
    gibbs=config.model.name == 'rbm',
    use_ema=config.sample.use_ema,
  )


# name -> factory(config, dataset spec) -> objective
OBJECTIVES = {'diffusion': _make_diffusion, 'gan': _make_gan, 'ebm': _make_ebm}


def make(config: ml_collections.ConfigDict, spec: DatasetSpec):
  """Builds the objective that `config.objective.name` names, validating its fields."""
  name = config.objective.name
  if name not in OBJECTIVES:
    raise ConfigError(f'objective.name={name!r} is unknown; choose one of {sorted(OBJECTIVES)}')
  return OBJECTIVES[name](config, spec)
