"""Evaluation metrics, selected by name in `config.eval.metrics`; the names are the keys of
`W/eval/step_N.json`."""

import numpy as np

from gen.errors import ConfigError
from gen.metrics import toy

# name -> what the metric needs of the data ('mixture': known mode centres; 'any': any data)
METRICS = {
  'modes_covered': 'mixture',
  'high_quality_fraction': 'mixture',
  'sliced_w2': 'any',
}


def validate(names: tuple[str, ...], spec) -> None:
  """Fails before compiling on an unknown metric or one the dataset cannot support."""
  for name in names:
    if name not in METRICS:
      raise ConfigError(f'eval.metrics: {name!r} is unknown; choose from {sorted(METRICS)}')
    if METRICS[name] == 'mixture' and spec.mode_centers is None:
      raise ConfigError(
        f'eval.metrics: {name!r} needs a Gaussian-mixture dataset (ring8, grid25); '
        f'data.name={spec.name!r} has no modes'
      )


def compute(names, samples: np.ndarray, reference: np.ndarray, spec, seed: int) -> dict:
  """The metrics `names` of `samples` against `reference` data of the dataset `spec`."""
  flat = lambda a: np.asarray(a, np.float64).reshape(len(a), -1)
  mixture = any(METRICS[n] == 'mixture' for n in names)
  values = toy.toy_metrics(
    flat(samples),
    flat(reference) if 'sliced_w2' in names else None,
    spec.mode_centers if mixture else None,
    spec.mode_std if mixture else None,
    seed,
  )
  return {name: float(values[name]) for name in names}
