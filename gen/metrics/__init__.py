"""Evaluation metrics, selected by name in `config.eval.metrics`; the names are the keys of
`W/eval/step_N.json`."""

import numpy as np

from gen.errors import ConfigError
from gen.metrics import toy

# name -> what the metric needs ('mixture': known mode centres; 'any': any data; 'model': the
# model itself, not its samples: the objective computes it, e.g. Diffusion.bits_per_dim)
METRICS = {
  'modes_covered': 'mixture',
  'high_quality_fraction': 'mixture',
  'sliced_w2': 'any',
  'bpd': 'model',
}
MODEL_METRICS = tuple(name for name, need in METRICS.items() if need == 'model')


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
  """The sample metrics among `names` of `samples` against `reference` data of `spec`."""
  names = [n for n in names if METRICS[n] != 'model']
  if not names:
    return {}
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
