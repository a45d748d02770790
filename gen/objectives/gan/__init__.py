"""Generative adversarial networks: the loss family, penalties, and one jitted step.

A generator G maps z ~ N(0, I) to data; a discriminator D maps data to a logit (a critic value
for the Wasserstein losses). With r = D(x) on real and f = D(G(z)) on generated data and
softplus(a) = log(1 + e^a), so that -log sigmoid(a) = softplus(-a):

  loss              discriminator minimises                generator minimises
  minimax           softplus(-r) + softplus(f)             -softplus(f)   (= log(1 - D(G(z))))
  non_saturating    softplus(-r) + softplus(f)             softplus(-f)   (= -log D(G(z)))
  least_squares     ((r - 1)^2 + f^2) / 2                  (f - 1)^2 / 2
  hinge             relu(1 - r) + relu(1 + f)              -f
  wasserstein       f - r                                  -f

each averaged over the batch. Regularisers: weight clipping (WGAN), the gradient penalty
(WGAN-GP) and the R1 penalty, as separate pure functions below.

One training step (`GAN.step`) does `n_critic` discriminator updates in a `lax.scan`, each on its
own slice of the real batch (the batch is split into n_critic parts, so every critic step sees
fresh data as in Gulrajani et al.'s code), then one generator update on batch / n_critic latents.
The two networks have their own optimizers (TTUR: Heusel et al. 2017) and the generator keeps an
EMA (Yazici et al. 2019) that sampling uses.
"""

import ml_collections

from gen import models
from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives.gan.loss import (
  AUGMENTATIONS,
  LOSSES,
  clip_weights,
  diff_augment,
  gradient_penalty,
  hinge_d_loss,
  hinge_g_loss,
  least_squares_d_loss,
  least_squares_g_loss,
  minimax_d_loss,
  minimax_g_loss,
  non_saturating_g_loss,
  pack,
  r1_penalty,
  rejection_sample,
  wasserstein_d_loss,
  wasserstein_g_loss,
)
from gen.objectives.gan.objective import GAN, INTERPOLATION_FRAMES, D, G, num_params

__all__ = [
  'AUGMENTATIONS',
  'D',
  'G',
  'GAN',
  'INTERPOLATION_FRAMES',
  'LOSSES',
  'clip_weights',
  'default_config',
  'diff_augment',
  'from_config',
  'gradient_penalty',
  'hinge_d_loss',
  'hinge_g_loss',
  'least_squares_d_loss',
  'least_squares_g_loss',
  'minimax_d_loss',
  'minimax_g_loss',
  'non_saturating_g_loss',
  'num_params',
  'pack',
  'r1_penalty',
  'rejection_sample',
  'wasserstein_d_loss',
  'wasserstein_g_loss',
]


# -- config.gan -----------------------------------------------------------------------------

MODEL_KINDS = ('gan_pair',)


def default_config() -> ml_collections.ConfigDict:
  """config.gan: the game, its regularisers, the discriminator's optimizer, and sampling."""
  c = ml_collections.ConfigDict()
  c.loss = 'non_saturating'  # minimax | non_saturating | least_squares | hinge | wasserstein
  c.latent_dim = 100
  c.n_critic = 1  # discriminator updates per generator update
  c.gp_weight = 0.0  # WGAN-GP lambda (10); 0: off
  c.r1_weight = 0.0  # R1 gamma (penalty gamma/2 E|grad D(x)|^2); 0: off
  c.clip_value = 0.0  # WGAN weight clipping c (0.01); 0: off
  c.augment = ''  # DiffAugment policies, comma-separated: color,translation,cutout
  c.pack = 1  # PacGAN degree m
  c.conditional = False  # class-conditional on the data's labels
  c.cond_discriminator = 'projection'  # projection | concat
  # The discriminator's optimizer (config.optim is the generator's; TTUR: its own rates).
  c.optim_d = ml_collections.ConfigDict(state_lib.OPTIMIZER_DEFAULTS)
  c.sample = s = ml_collections.ConfigDict()  # free in --mode=eval|sample
  s.rejection_sampling = False  # discriminator rejection sampling (Azadi et al. 2019)
  s.drs_candidates = 4  # candidates drawn per returned sample
  s.drs_percentile = 80.0  # gamma = this percentile of F over the candidates
  return c


def _check(config: ml_collections.ConfigDict, spec, augment) -> None:
  """Every combination of config.gan that cannot work fails here, before compiling."""
  g, batch, smp = config.gan, config.data.batch_size, config.gan.sample
  if g.loss not in LOSSES:
    raise ConfigError(f'gan.loss={g.loss!r} is unknown; choose one of {list(LOSSES)}')
  for field in ('latent_dim', 'n_critic', 'pack'):
    if isinstance(g[field], bool) or not isinstance(g[field], int) or g[field] < 1:
      raise ConfigError(f'gan.{field} must be an integer >= 1, got {g[field]!r}')
  if isinstance(smp.drs_candidates, bool) or not isinstance(smp.drs_candidates, int):
    raise ConfigError(
      f'gan.sample.drs_candidates must be an integer >= 1, got {smp.drs_candidates!r}'
    )
  if smp.drs_candidates < 1:
    raise ConfigError(
      f'gan.sample.drs_candidates must be an integer >= 1, got {smp.drs_candidates}'
    )
  for field in ('gp_weight', 'r1_weight', 'clip_value'):
    if g[field] < 0:
      raise ConfigError(f'gan.{field} must be >= 0 (0: off), got {g[field]}')
  if batch % (g.n_critic * g.pack):
    raise ConfigError(
      f'data.batch_size={batch} must be a multiple of gan.n_critic * gan.pack = '
      f'{g.n_critic * g.pack} (the batch is split over the critic steps, then packed)'
    )
  section = config.model.get(config.model.name)
  d_norm = section.get('d_norm', 'none') if section is not None else 'none'
  if g.gp_weight and d_norm == 'batch':
    raise ConfigError(
      'gan.gp_weight > 0 penalises per-example gradients, which batch normalisation in the '
      f"discriminator couples: set model.{config.model.name}.d_norm to 'layer' or 'none' "
      '(Gulrajani et al. 2017 use layer norm)'
    )
  bad = [a for a in augment if a not in AUGMENTATIONS]
  if bad:
    raise ConfigError(f'gan.augment: {bad} unknown; choose from {list(AUGMENTATIONS)}')
  if augment and spec.kind != 'images':
    raise ConfigError(f'gan.augment={g.augment!r} needs image data; {spec.name!r} is not')
  if g.conditional and not spec.num_classes:
    raise ConfigError(f'gan.conditional=True but data.name={spec.name!r} has no labels')
  if g.conditional and g.pack > 1:
    raise ConfigError('gan.pack > 1 is for unconditional GANs; set gan.pack=1')
  if smp.rejection_sampling:
    if not LOSSES[g.loss][2]:
      raise ConfigError(
        'gan.sample.rejection_sampling reads log p_data/p_g from a real-vs-fake logit: needs '
        f"gan.loss in ('minimax', 'non_saturating'), not {g.loss!r}"
      )
    if g.pack > 1 or g.conditional:
      raise ConfigError('gan.sample.rejection_sampling needs pack=1 and an unconditional GAN')
    if not 0 <= smp.drs_percentile <= 100:
      raise ConfigError(f'gan.sample.drs_percentile must be in [0, 100], got {smp.drs_percentile}')


def from_config(config: ml_collections.ConfigDict, spec) -> GAN:
  """The GAN of `config.gan` (and the shared model, optim, train and sample sections) for data
  `spec`, every field checked before compiling."""
  g = config.gan
  augment = tuple(a.strip() for a in g.augment.split(',') if a.strip())
  _check(config, spec, augment)
  num_classes = spec.num_classes if g.conditional else 0
  generator, discriminator = models.from_config(
    config, spec.shape, MODEL_KINDS, num_classes=num_classes, conditioning=g.cond_discriminator
  )
  total = config.train.num_steps
  tx_g, lr_g = state_lib.make_optimizer(**config.optim.to_dict(), total_steps=total)
  # The discriminator's optimizer counts n_critic updates per training step: its schedule (warm-up,
  # cosine) is stretched to match, and lr_d maps a training step to its rate.
  n = g.n_critic
  d_kw = {**g.optim_d.to_dict(), 'warmup_steps': g.optim_d.warmup_steps * n}
  tx_d, d_sched = state_lib.make_optimizer(**d_kw, total_steps=total * n, field='gan.optim_d')
  lr_d = lambda step: d_sched(step * n)
  return GAN(
    generator=generator,
    discriminator=discriminator,
    loss=g.loss,
    tx_g=tx_g,
    tx_d=tx_d,
    lr_g=lr_g,
    lr_d=lr_d,
    ema_rate=config.train.ema_rate,
    ema_warmup=config.train.ema_warmup,
    shape=tuple(spec.shape),
    latent_dim=g.latent_dim,
    n_critic=g.n_critic,
    gp_weight=g.gp_weight,
    r1_weight=g.r1_weight,
    clip_value=g.clip_value,
    augment=augment,
    pack=g.pack,
    num_classes=num_classes,
    rejection_sampling=g.sample.rejection_sampling,
    drs_candidates=g.sample.drs_candidates,
    drs_percentile=g.sample.drs_percentile,
    use_ema=config.sample.use_ema,
    compute_dtype=config.train.compute_dtype,
  )
