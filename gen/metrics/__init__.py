"""Evaluation metrics, selected by name in `config.eval.metrics`; the names are the keys of
`W/eval/step_N.json`.

`eval.metrics = ('auto',)` picks the dataset's usual metrics (`default_metrics`): the mode
metrics and sliced W2 on 2-D mixtures; FD-digits, the digits Inception Score, KID,
precision/recall, density/coverage, memorisation and sliced W2 on digits; FID and the Inception
Score on other image datasets; plus `bpd` where the objective has a likelihood and
`reconstruction` where it reconstructs (an autoencoder).
`gen.metrics.evaluation.Evaluator` computes them.
"""

from gen.errors import ConfigError

# name -> what the metric needs: 'mixture' (known mode centres), 'data' (data-space reference
# examples), 'features' (a feature network and reference features), 'logits' (a feature
# network with class logits), 'model' (the model itself: the objective computes it, e.g.
# Diffusion.bits_per_dim, an autoencoder's reconstruction_metrics).
METRICS = {
  'modes_covered': 'mixture',
  'high_quality_fraction': 'mixture',
  'sliced_w2': 'data',
  'fd': 'features',
  'kid': 'features',
  'precision': 'features',
  'recall': 'features',
  'density': 'features',
  'coverage': 'features',
  'memorisation': 'features',
  'inception_score': 'logits',
  'class_agreement': 'logits',  # conditional samples: the classifier's label = the requested one
  'bpd': 'model',
  'reconstruction': 'model',
}
MODEL_METRICS = tuple(name for name, need in METRICS.items() if need == 'model')
FEATURE_METRICS = tuple(name for name, need in METRICS.items() if need in ('features', 'logits'))
DIGITS_METRICS = (
  'fd',
  'inception_score',
  'kid',
  'precision',
  'recall',
  'density',
  'coverage',
  'memorisation',
  'sliced_w2',
)


def has_likelihood(objective) -> bool:
  """Whether `objective` declares a likelihood (`bits_per_dim`; gen.objectives.contract)."""
  return objective.capabilities.likelihood


def default_metrics(spec, objective=None) -> tuple[str, ...]:
  """What `'auto'` means for dataset `spec` (and `objective`: bpd where it has a likelihood)."""
  if spec.kind == 'points':
    names = ('sliced_w2',)
    if spec.mode_centers is not None:
      names = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  elif spec.name == 'digits':
    names = DIGITS_METRICS
  else:
    names = ('fd', 'inception_score')
  if objective is not None and has_likelihood(objective):
    names += ('bpd',)
  if objective is not None and objective.capabilities.reconstruction:
    names += ('reconstruction',)
  return names


def resolve(names, spec, objective=None) -> tuple[str, ...]:
  """`eval.metrics` with empty names dropped and 'auto' expanded, duplicates removed."""
  out: list[str] = []
  for name in names:
    expanded = default_metrics(spec, objective) if name == 'auto' else (name,) if name else ()
    out += [n for n in expanded if n not in out]
  return tuple(out)


def validate(names: tuple[str, ...], spec, field: str = 'eval.metrics') -> None:
  """Fails before compiling on an unknown metric or one the dataset cannot support."""
  for name in names:
    if name not in METRICS:
      raise ConfigError(f"{field}: {name!r} is unknown; choose 'auto' or from {sorted(METRICS)}")
    if METRICS[name] == 'mixture' and spec.mode_centers is None:
      raise ConfigError(
        f'{field}: {name!r} needs a Gaussian-mixture dataset (ring8, grid25); '
        f'data.name={spec.name!r} has no modes'
      )
