"""What training's evaluation and `--mode=eval|sample` compute: metrics of a state's samples
(and bits/dim where the objective declares a likelihood), the eval JSON, and sample files.

Only the objective contract is used (gen.objectives.contract): `sample` -> Samples, whose
`stats` the eval JSON records as `sample_<name>`; `sample_protocol`; `bits_per_dim`.
"""

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from gen import distributed, pictures
from gen import metrics as metrics_lib
from gen.errors import ConfigError
from gen.metrics import evaluation
from gen.setup import (
  SEED_OFFSETS,
  Setup,
  make_sample_fn,
  prepare_run,
  purpose_key,
  reference_data,
  restore_or_init,
)
from gen.state import TrainState
from gen.utils import checkpoint as ckpt_lib
from gen.utils.writers import MetricWriter


def make_evaluator(setup: Setup) -> evaluation.Evaluator | None:
  """The run's Evaluator (feature network, reference statistics), None without sample metrics.

  Built before the loop compiles anything: a missing weights file or split fails early."""
  names = tuple(dict.fromkeys(setup.metrics + setup.proxy_metrics))
  if all(metrics_lib.METRICS[n] == 'model' for n in names):
    return None
  return evaluation.Evaluator(setup.config, setup.spec, names, setup.mesh)


def _eval_rng(setup: Setup, step: int) -> tuple[jax.Array, str]:
  seed = setup.config.seed + SEED_OFFSETS['eval']
  return purpose_key(setup.config.seed, 'eval', step), f'fold_in(key({seed}), {step})'


def compute_metrics(
  setup: Setup,
  state: TrainState,
  step: int,
  sample_fn=None,
  evaluator: evaluation.Evaluator | None = None,
  proxy: bool = False,
  workdir: str | None = None,
) -> dict[str, Any]:
  """Samples and computes `setup.metrics` (or, with `proxy`, `setup.proxy_metrics` on
  `eval.proxy_num_samples`, keys prefixed 'proxy_').

  Args:
    setup: the run.
    state: the state to evaluate.
    step: its step (seeds the samples: the same checkpoint always gets the same samples).
    sample_fn: `make_sample_fn(setup, n)` for the n used, made once by a caller that evaluates
      repeatedly, so that sampling compiles once.
    evaluator: `make_evaluator(setup)`, likewise.
    proxy: the cheap training-time proxy instead of the final numbers.
    workdir: where the final evaluation draws `samples/step_N_neighbours.png` (memorisation).

  Returns:
    Flat metric values; the final evaluation adds 'protocol' and 'bounds' (nested dicts).
  """
  names = setup.proxy_metrics if proxy else setup.metrics
  if not names:
    return {}
  num = proxy_num_samples(setup.config) if proxy else setup.config.eval.num_samples
  values: dict[str, Any] = {}
  sample_names = tuple(n for n in names if metrics_lib.METRICS[n] != 'model')
  rng, rng_text = _eval_rng(setup, step)
  if sample_names:
    evaluator = evaluator or make_evaluator(setup)
    sample_fn = sample_fn or make_sample_fn(setup, num)
    out = sample_fn(state, rng)
    samples = np.asarray(out.x)
    seed = setup.config.seed
    values, extras = evaluator.compute(samples, seed, sample_names, not proxy, out.labels)
    for name, value in (out.stats or {}).items():  # nfe, a rejection sampler's acceptance, ...
      values[f'sample_{name}'] = np.asarray(value).item()
    if workdir and 'nn_index' in extras:
      pictures.save_neighbours_picture(setup, workdir, step, samples, extras)
  if 'bpd' in names:
    values.update(compute_bpd(setup, state, step))
  if 'reconstruction' in names:
    recon, recon_n = compute_reconstruction(setup, state, step)
    values.update(recon)
  if proxy:
    return {f'proxy_{k}': v for k, v in values.items()}
  protocol = {'num_samples': num, 'sample_seed': rng_text}
  if sample_names:
    protocol = evaluator.protocol(num, rng_text, setup.objective.sample_protocol())
    if setup.config.eval.bounds and setup.spec.kind == 'images':
      values['bounds'] = evaluator.bounds(num, setup.config.seed)
  if 'bpd' in names:
    ev = setup.config.eval
    protocol['bpd'] = {
      'n': ev.bpd_num,
      'num_bins': ev.num_bins,
      **setup.objective.likelihood_protocol(),
    }
  if 'reconstruction' in names:
    protocol['reconstruction'] = {'n': recon_n, 'split': 'test'}
  values['protocol'] = protocol
  return values


def proxy_num_samples(config: ml_collections.ConfigDict) -> int:
  """eval.proxy_num_samples capped at eval.num_samples (0: eval.num_samples)."""
  num = config.eval.num_samples
  return min(config.eval.proxy_num_samples or num, num)


def _held_out(setup: Setup, num: int) -> jax.Array:
  """Up to `num` test examples as one global array: a multiple of the device count, sharded
  over the devices (replicated when there are fewer examples than devices)."""
  x = reference_data(setup, num)
  x = x[: len(x) - len(x) % setup.mesh.size] if len(x) >= setup.mesh.size else x
  sharding = setup.batch_sharding if len(x) % setup.mesh.size == 0 else setup.replicated
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])  # multi-host


def compute_bpd(setup: Setup, state: TrainState, step: int) -> dict[str, float]:
  """Bits/dim of `eval.bpd_num` test examples under the model (`objective.bits_per_dim`):
  'bpd', 'bpd_nfe' and any further 'bpd_<name>' the objective reports."""
  ev = setup.config.eval
  x = _held_out(setup, ev.bpd_num)
  key = purpose_key(setup.config.seed, 'bpd', step)
  fn = jax.jit(lambda st, xx, k: setup.objective.bits_per_dim(st, xx, k, ev.num_bins))
  out = distributed.to_host(fn(state, x, key))
  return {k: int(v) if k.endswith('nfe') else float(v) for k, v in out.items()}


def compute_reconstruction(
  setup: Setup, state: TrainState, step: int
) -> tuple[dict[str, float], int]:
  """(`objective.reconstruction_metrics` on up to `eval.num_samples` test examples: an
  autoencoder's reconstruction error, its codebook's perplexity, ...; how many examples)."""
  x = _held_out(setup, setup.config.eval.num_samples)
  key = purpose_key(setup.config.seed, 'reconstruction', step)
  out = distributed.to_host(jax.jit(setup.objective.reconstruction_metrics)(state, x, key))
  return {k: float(v) for k, v in out.items()}, int(x.shape[0])


def eval_scalars(values: dict[str, Any]) -> dict[str, float]:
  """The eval JSON's numbers as log scalars `eval/<name>` (its protocol and bounds are not)."""
  return {f'eval/{k}': v for k, v in values.items() if isinstance(v, int | float)}


def write_eval(workdir: str, step: int, values: dict[str, Any]) -> str:
  """Writes `W/eval/step_N.json` (process 0 only) and returns its path."""
  path = os.path.join(workdir, 'eval', f'step_{step}.json')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
      json.dump({'step': step, **values}, f, indent=2, sort_keys=True)
    os.replace(path + '.tmp', path)
  return path


def _restore_for_reading(
  config, workdir: str, mode: str, step: int | None, output_dir=None, mesh=None
):
  setup = prepare_run(config, workdir, mode, mesh=mesh, output_dir=output_dir)
  manager = ckpt_lib.make_manager(
    os.path.join(workdir, 'checkpoints'), config.train.max_to_keep, read_only=True
  )
  try:
    state, _ = restore_or_init(setup, manager, step)
  finally:
    manager.close()
  if state is None:
    raise FileNotFoundError(f'--workdir={workdir} has no checkpoint to {mode}; train first')
  return setup, state


def evaluate(
  config, workdir: str, step: int | None = None, output_dir: str | None = None, mesh=None
) -> dict[str, float]:
  """`--mode=eval`: metrics of the latest (or `step`'s) checkpoint -> `W/eval/step_N.json`
  (with `output_dir`, `D/eval/step_N.json`; the workdir is only read), on the devices of `mesh`
  (default: all of them)."""
  setup, state = _restore_for_reading(config, workdir, 'eval', step, output_dir, mesh)
  out = output_dir or workdir
  step = int(state.step)
  values = compute_metrics(setup, state, step, workdir=out)
  path = write_eval(out, step, values)
  writer = MetricWriter(out, jsonl=False)  # TensorBoard only: metrics.jsonl is training's
  writer.write(step, eval_scalars(values))
  writer.close()
  logging.info('eval at step %d: %s (written to %s)', step, values, path)
  return values


def sample(
  config,
  workdir: str,
  num: int,
  step: int | None = None,
  output_dir: str | None = None,
  mesh=None,
) -> str:
  """`--mode=sample`: `num` samples from the EMA parameters -> `W/samples/step_N.npz` and its
  own pictures `step_N_sampled*.png` (never over training's `step_N.png`); with `output_dir`
  they go to `D/samples/` and the workdir is only read. `mesh`: as in `evaluate`.

  The samples are drawn with the final evaluation's key (`_eval_rng`): with `num` =
  eval.num_samples they are the samples `--mode=eval` scores, so `gen score` of the `.npz`
  against the reference split reproduces the eval JSON's numbers."""
  if num < 1:
    raise ConfigError(f'--num_samples must be >= 1, got {num}')
  setup, state = _restore_for_reading(config, workdir, 'sample', step, output_dir, mesh)
  step = int(state.step)
  rng, rng_text = _eval_rng(setup, step)
  out = make_sample_fn(setup, num)(state, rng)
  path = os.path.join(output_dir or workdir, 'samples', f'step_{step}.npz')
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {'samples': np.asarray(out.x)}
    if out.labels is not None:
      arrays['labels'] = np.asarray(out.labels)
    arrays.update({k: np.asarray(v) for k, v in (out.stats or {}).items()})
    with open(path + '.tmp', 'wb') as f:
      np.savez(f, **arrays)
    os.replace(path + '.tmp', path)
    picture = path[: -len('.npz')] + '_sampled.png'
    title = f'{pictures.run_title(workdir, step)} (--mode=sample, {num} samples)'
    pictures.save_picture(setup, picture, arrays['samples'], title, 'labels' in arrays)
  stem = path[: -len('.npz')] + '_sampled'
  title = f'{pictures.run_title(workdir, step)} (--mode=sample)'
  pictures.save_objective_pictures(setup, state, stem, jax.random.fold_in(rng, 1), title=title)
  logging.info('wrote %d samples of step %d (key %s) to %s', num, step, rng_text, path)
  return path
