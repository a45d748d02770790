"""The objective contract (DESIGN.md, "The objective contract"): what the loop, `--mode=eval` and
`--mode=sample` may ask of an objective, and nothing else.

The loop never asks which objective it runs. It jits `init`, `step`, `sample` and `pictures`
with shardings, and reads the declared `capabilities` before compiling anything to refuse a
config the objective cannot serve (gradient accumulation, bfloat16, bits/dim).
"""

import dataclasses
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax

from gen.state import TrainState


class Samples(NamedTuple):
  """What `sample` returns (a pytree, so it leaves a jitted function as it is).

  Attributes:
    x: [num, *shape] samples in data space.
    labels: [num] int32 class labels of conditional samples; None for unconditional ones.
    stats: per-objective scalars about how the samples were drawn, recorded in the eval JSON as
      `sample_<name>` and in `--mode=sample`'s .npz as `<name>`: 'nfe' (network evaluations
      per sample, every objective), a rejection sampler's 'drs_acceptance', ...
  """

  x: jax.Array
  labels: jax.Array | None = None
  stats: dict[str, jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class Capabilities:
  """What an objective can do beyond the contract's required methods.

  Attributes:
    likelihood: `bits_per_dim(state, x, key, num_bins) -> {'bpd', 'bpd_nfe', ...}` (data x
      [B, ...], `num_bins` levels of discrete data, 0: continuous; further 'bpd_<name>' keys,
      a VAE's 'bpd_elbo' say, go to the eval JSON too) and `likelihood_protocol() -> dict`
      (how, for the eval JSON) exist: eval metric 'bpd'.
    reconstruction: `reconstruction_metrics(state, x, key) -> {name: scalar}` exists (an
      autoencoder's error on held-out data x, its codebook's perplexity, ...): eval metric
      'reconstruction', whose names go to the eval JSON as they are.
    grad_accum: `step` honours train.grad_accum > 1 (micro-batches, one update).
    bfloat16: the networks compute in train.compute_dtype='bfloat16'.
  """

  likelihood: bool = False
  reconstruction: bool = False
  grad_accum: bool = False
  bfloat16: bool = False


@runtime_checkable
class Objective(Protocol):
  """An objective: networks, their training step and how to sample them.

  Every method is pure and jittable (the loop jits it); configuration lives in the objective's
  own fields, set by its module's `from_config`.
  """

  capabilities: Capabilities

  def init(self, rng: jax.Array, example_batch: dict[str, Any]) -> TrainState:
    """The step-0 state: parameters, optimizer states, EMA and objective-owned arrays. An
    objective whose module declares pretrained roles (gen.pretrained) takes a third argument,
    role -> frozen parameters of another run, and keeps them in the state (never updated)."""
    ...

  def step(self, state: TrainState, batch: dict[str, Any], key: jax.Array):
    """One training step -> (state, metrics): a flat dict of scalar arrays (losses, gradient
    norms, learning rates). `key` is fold_in(base key, step): the loop's, never stored."""
    ...

  def sample(
    self, state: TrainState, key: jax.Array, num: int, labels: jax.Array | None = None
  ) -> Samples:
    """`num` data-space samples; `labels` [num] conditions a conditional objective (None: the
    labels cycle through the classes, so a grid shows one class per column)."""
    ...

  def sample_protocol(self) -> dict[str, Any]:
    """How `sample` draws (sampler, steps, settings): recorded in the eval JSON's protocol."""
    ...

  def pictures(self, state: TrainState, key: jax.Array) -> dict[str, jax.Array]:
    """What to show besides samples: name -> [frames, rows, *shape] (a denoising trajectory, a
    latent interpolation, reconstructions next to their inputs); {} for none. The loop draws
    each as a grid with one column per frame, captioned by `picture_captions()[name]`."""
    ...

  def picture_captions(self) -> dict[str, str]:
    """name -> what the rows and columns of that picture show."""
    ...


REQUIRED = ('init', 'step', 'sample', 'sample_protocol', 'pictures', 'picture_captions')


def check(objective: Any, name: str) -> None:
  """TypeError naming what `objective` (built for objective.name=`name`) lacks."""
  missing = [m for m in REQUIRED if not callable(getattr(objective, m, None))]
  caps = getattr(objective, 'capabilities', None)
  if not isinstance(caps, Capabilities):
    missing.append('capabilities (a gen.objectives.contract.Capabilities)')
  if missing:
    raise TypeError(
      f'objective.name={name!r} built a {type(objective).__name__} without '
      f'{", ".join(missing)}: see gen/objectives/contract.py'
    )
  for method in ('bits_per_dim', 'likelihood_protocol') if caps.likelihood else ():
    if not callable(getattr(objective, method, None)):
      raise TypeError(f'{type(objective).__name__} declares a likelihood but has no {method}')
  if caps.reconstruction and not callable(getattr(objective, 'reconstruction_metrics', None)):
    raise TypeError(
      f'{type(objective).__name__} declares a reconstruction but has no reconstruction_metrics'
    )
