"""Config layout v1 -> v2: where each field of a run written before the objective contract v2
(one flat `objective` section for every objective) lives now.

`from_v1` rewrites such a run's `W/config.json` as read, so that old runs resume, evaluate and
sample as they did; `MOVES` is the field-for-field mapping (the closing note of issue 17 states
it). A v1 field the run's objective never read (a diffusion run's `objective.loss`, say) is
dropped, as are a non-GAN run's `optim_d` and a non-diffusion run's sampler fields.
"""

import copy
from typing import Any

_PROCESS = (
  'process',
  'num_timesteps',
  'beta_start',
  'beta_end',
  'beta_min',
  'beta_max',
  'sigma_min',
  'sigma_max',
  'sigma_data',
)
_LOSS = (
  'parameterization',
  'weighting',
  'min_snr_gamma',
  'time_sampling',
  'lognormal_mean',
  'lognormal_std',
  'logit_normal_mean',
  'logit_normal_std',
  'edm_preconditioning',
  'conditional',
  'label_dropout',
)
_SAMPLER = (
  'sampler',
  'num_steps',
  'spacing',
  'rho',
  'variance',
  'eta',
  'rtol',
  'atol',
  'max_steps',
  's_churn',
  's_tmin',
  's_tmax',
  's_noise',
  'predictor',
  'snr',
  'corrector_steps',
  'langevin_steps',
  'step_ratio',
  'noise_scale',
  'guidance_scale',
)
_GAN = (
  'loss',
  'latent_dim',
  'n_critic',
  'gp_weight',
  'r1_weight',
  'clip_value',
  'augment',
  'pack',
  'cond_discriminator',
  'conditional',
)
_EBM = (
  'loss',
  'energy_alpha',
  'chain_steps',
  'step_size',
  'noise_scale',
  'chain_grad_clip',
  'mala',
  'chain_init',
  'buffer_size',
  'reinit_prob',
  'init_range',
  'sm_projections',
  'sm_projection',
  'sm_variance_reduced',
  'dsm_sigma',
)
_RBM = ('chain_steps', 'chain_init', 'buffer_size', 'reinit_prob')

# v2 objective -> {v1 dotted field: v2 dotted field}
MOVES: dict[str, dict[str, str]] = {
  'diffusion': {
    **{f'objective.{f}': f'diffusion.{f}' for f in _PROCESS + _LOSS},
    **{f'sample.{f}': f'diffusion.sample.{f}' for f in _SAMPLER},
    'eval.bpd_trace': 'diffusion.likelihood.trace',
    'eval.bpd_rtol': 'diffusion.likelihood.rtol',
    'eval.bpd_atol': 'diffusion.likelihood.atol',
  },
  'gan': {
    **{f'objective.{f}': f'gan.{f}' for f in _GAN},
    **{f'objective.{f}': f'gan.sample.{f}' for f in ('rejection_sampling', 'drs_candidates')},
    'objective.drs_percentile': 'gan.sample.drs_percentile',
    **{
      f'optim_d.{f}': f'gan.optim_d.{f}'
      for f in (
        'optimizer',
        'lr',
        'b1',
        'b2',
        'weight_decay',
        'warmup_steps',
        'schedule',
        'grad_clip',
      )
    },
  },
  'ebm': {
    **{f'objective.{f}': f'ebm.{f}' for f in _EBM},
    'objective.sample_chain_steps': 'ebm.sample.chain_steps',
  },
  'rbm': {
    **{f'objective.{f}': f'rbm.{f}' for f in _RBM},
    'objective.sample_chain_steps': 'rbm.sample.chain_steps',
  },
}
# v1 sections or fields that v2 has elsewhere or not at all (dropped unless MOVES keeps them)
_V1_ONLY = ('objective', 'optim_d', 'sample', 'eval.bpd_trace', 'eval.bpd_rtol', 'eval.bpd_atol')


_MISSING = object()  # a field the saved config lacks


def is_v1(saved: dict[str, Any]) -> bool:
  """Whether a saved config has the v1 layout (an `objective` section with more than a name)."""
  objective = saved.get('objective')
  return isinstance(objective, dict) and set(objective) != {'name'}


def _get(tree: dict, dotted: str):
  node = tree
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return _MISSING
    node = node[part]
  return node


def _set(tree: dict, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  node = tree
  for part in parents:
    node = node.setdefault(part, {})
  node[leaf] = value


def from_v1(saved: dict[str, Any]) -> dict[str, Any]:
  """A v1 config dict in the v2 layout (a v2 one is returned as it is)."""
  if not is_v1(saved):
    return saved
  name = saved['objective'].get('name', 'diffusion')
  if name == 'ebm' and _get(saved, 'model.name') == 'rbm':
    name = 'rbm'  # v1 trained the RBM with objective 'ebm'
  out = copy.deepcopy(saved)
  for dotted in _V1_ONLY:
    *parents, leaf = dotted.split('.')
    node = _get(out, '.'.join(parents)) if parents else out
    if isinstance(node, dict):
      node.pop(leaf, None)
  out['objective'] = {'name': name}
  out['sample'] = {
    k: saved.get('sample', {})[k] for k in ('num', 'use_ema') if k in saved.get('sample', {})
  }
  for old, new in MOVES.get(name, {}).items():
    value = _get(saved, old)
    if value is not _MISSING:
      _set(out, new, value)
  return out
