"""Measures experiments' quality over seeds, and under a change of float rounding.

  python tools/seed_spread.py --experiments=gan_ring8,ddpm_ring8 --seeds=0,1,2,3,4 \
      [--perturb=none,ulp] [--out=runs/seed_spread] [--override=train.num_steps=2000 ...] \
      [--first_stage_override=train.num_steps=1000 ...]

Each (experiment, seed, perturbation) trains the experiment file's own config with `seed`
changed, on one CPU device, with one picture and one checkpoint at the end (neither touches the
training state or the evaluation's samples), and reads its final `W/eval/step_N.json`. Results
append to `OUT/results.jsonl`; a run already there is not repeated. At the end a markdown table
gives, per experiment and perturbation, every metric's minimum, median and maximum over seeds.

An experiment that names a pretrained run by its default folder (latent diffusion's
`pretrained.autoencoder = 'runs/vae_ldm_digits'`) trains that experiment first, with the same
seed and perturbation and the `--first_stage_override`s, inside its own workdir.

Perturbations change rounding, not the maths:
  none   the run as configured;
  ulp    every initial parameter moved by one unit in the last place (towards +inf).
A quality claim that flips under `ulp` depends on the CPU's rounding, not on the recipe: the
quality tests assert bars that every seed clears under both.

`cgan_digits` also reports `class_agreement`: the share of 500 samples (labels cycling 0..9)
that a logistic regression fitted on the training digits assigns to their requested class
(`class_agreement` below; tests/test_quality_gan_digits.py uses the same function).
"""

import argparse
import hashlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

PERTURBATIONS = ('none', 'ulp')
CLASS_SAMPLES = 500


def nudge(tree):
  """Every floating-point leaf moved by one ulp towards +inf."""
  import jax
  import jax.numpy as jnp

  def one(x):
    return jnp.nextafter(x, jnp.inf) if jnp.issubdtype(x.dtype, jnp.floating) else x

  return jax.tree.map(one, tree)


def class_agreement(config, state, mesh, num: int = CLASS_SAMPLES) -> tuple[float, float]:
  """(share of `num` conditional samples classified as their requested label, the classifier's
  accuracy on the test digits). The classifier: multinomial logistic regression on the 64
  pixels, fitted on the training digits."""
  import jax
  import numpy as np
  from sklearn.linear_model import LogisticRegression

  from gen import setup as setup_lib
  from gen.data import digits

  x, y = digits.digits_arrays()
  x = x.reshape(len(x), -1)
  n = digits.NUM_TRAIN
  clf = LogisticRegression(max_iter=2000).fit(x[:n], y[:n])
  setup = setup_lib.build(config, mesh)
  out = setup_lib.make_sample_fn(setup, num)(state, jax.random.key(0))
  labels = np.asarray(out.labels)
  predicted = clf.predict(np.asarray(out.x).reshape(num, -1))
  return float(np.mean(predicted == labels)), float(clf.score(x[n:], y[n:]))


def _set(config, dotted: str, text: str) -> None:
  *path, leaf = dotted.split('.')
  node = config
  for p in path:
    node = node[p]
  old = node[leaf]
  if isinstance(old, bool):
    value = text.lower() in ('1', 'true')
  elif isinstance(old, tuple):
    value = tuple(type(old[0])(v) for v in text.split(',') if v) if old else ()
  else:
    value = type(old)(text)
  node[leaf] = value


def run_one(
  name: str, seed: int, perturb: str, workdir: str, overrides=(), first_stage_overrides=()
) -> dict:
  """Trains experiment `name` with `seed` under `perturb` in `workdir`; returns its metrics.

  An experiment whose config names a pretrained run by its default folder (ldm_digits:
  pretrained.autoencoder = 'runs/vae_ldm_digits') first gets that experiment trained the same
  way (same seed and perturbation, `first_stage_overrides`) in `workdir/pretrained_<role>`."""
  import jax

  from gen import setup as setup_lib
  from gen import train

  if perturb not in PERTURBATIONS:
    raise ValueError(f'--perturb={perturb!r}; choose from {PERTURBATIONS}')
  config = importlib.import_module(f'experiments.{name}').get_config()
  config.seed = seed
  for item in overrides:
    key, text = item.split('=', 1)
    _set(config, key, text)
  config.train.sample_every = config.train.ckpt_every = config.train.num_steps
  for role, ref in config.get('pretrained', {}).items():
    if ref and not os.path.isabs(ref):  # the experiment's default: train that experiment here
      sub = os.path.join(workdir, f'pretrained_{role}')
      if not os.path.isdir(os.path.join(sub, 'checkpoints')):
        run_one(os.path.basename(ref), seed, perturb, sub, first_stage_overrides)
      config.pretrained[role] = sub
  mesh = setup_lib.make_mesh(jax.devices()[:1])
  init = setup_lib.init_state
  if perturb == 'ulp':
    setup_lib.init_state = lambda setup: (
      lambda s: s.replace(params=nudge(s.params), ema_params=nudge(s.ema_params))
    )(init(setup))
  t0 = time.perf_counter()
  try:
    state = train.train_and_evaluate(config, workdir, mesh=mesh)
  finally:
    setup_lib.init_state = init
  wall = time.perf_counter() - t0
  path = os.path.join(workdir, 'eval', f'step_{config.train.num_steps}.json')
  values = {}
  if os.path.exists(path):
    with open(path) as f:
      values = {k: v for k, v in json.load(f).items() if isinstance(v, int | float)}
  section = config.get(config.objective.name, {})
  if (
    section.get('conditional') and config.data.name == 'digits' and 'class_agreement' not in values
  ):
    values['class_agreement'], values['classifier_accuracy'] = class_agreement(config, state, mesh)
  values['wall_s'] = round(wall, 1)
  return values


def summary(rows: list[dict]) -> str:
  """Markdown: per (experiment, perturbation) and metric, min / median / max over seeds."""
  lines = [
    '| experiment | perturb | seeds | metric | min | median | max |',
    '|---|---|---|---|---|---|---|',
  ]
  groups: dict[tuple[str, str], list[dict]] = {}
  for r in rows:
    groups.setdefault((r['experiment'], r['perturb']), []).append(r)
  for (name, perturb), rs in sorted(groups.items()):
    seeds = ','.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))
    keys = [k for k in rs[0]['metrics'] if k != 'step']
    for k in keys:
      vals = [r['metrics'][k] for r in rs if k in r['metrics']]
      lo, mid, hi = min(vals), statistics.median(vals), max(vals)
      lines.append(f'| {name} | {perturb} | {seeds} | {k} | {lo:.4g} | {mid:.4g} | {hi:.4g} |')
  return '\n'.join(lines)


def _commit() -> str:
  try:
    out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True)
    return out.stdout.decode().strip()
  except OSError:
    return ''


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--experiments', required=True, help='comma-separated experiment names')
  parser.add_argument('--seeds', default='0,1,2,3,4')
  parser.add_argument('--perturb', default='none', help=f'comma-separated, of {PERTURBATIONS}')
  parser.add_argument('--out', default='runs/seed_spread')
  parser.add_argument('--override', action='append', default=[], help='a.b=v, every run')
  parser.add_argument(
    '--first_stage_override',
    action='append',
    default=[],
    help='a.b=v, the pretrained run an experiment names (latent diffusion: its autoencoder)',
  )
  args = parser.parse_args(argv)
  out = os.path.abspath(os.path.expanduser(args.out))
  os.makedirs(out, exist_ok=True)
  results = os.path.join(out, 'results.jsonl')
  rows = []
  if os.path.exists(results):
    with open(results) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  every = list(args.override) + [f'first_stage:{o}' for o in args.first_stage_override]
  done = {(r['experiment'], r['seed'], r['perturb'], tuple(r['overrides'])) for r in rows}
  names = [n for n in args.experiments.split(',') if n]
  seeds = [int(s) for s in args.seeds.split(',') if s]
  perturbs = [p for p in args.perturb.split(',') if p]
  for bad in set(perturbs) - set(PERTURBATIONS):
    parser.error(f'--perturb: {bad!r} is not one of {PERTURBATIONS}')
  for name in names:
    for perturb in perturbs:
      for seed in seeds:
        if (name, seed, perturb, tuple(every)) in done:
          continue
        tag = f'seed{seed}' + ('' if perturb == 'none' else f'-{perturb}')
        if every:  # runs with other overrides get their own workdirs
          digest = hashlib.sha256('\n'.join(every).encode()).hexdigest()[:8]
          tag += f'-{digest}'
        workdir = os.path.join(out, name, tag)
        metrics = run_one(name, seed, perturb, workdir, args.override, args.first_stage_override)
        row = {
          'experiment': name,
          'seed': seed,
          'perturb': perturb,
          'overrides': every,
          'metrics': metrics,
          'commit': _commit(),
          'date': time.strftime('%Y-%m-%d'),
        }
        print(json.dumps(row), flush=True)
        with open(results, 'a') as f:
          f.write(json.dumps(row) + '\n')
        rows.append(row)
  wanted = [r for r in rows if r['experiment'] in names and tuple(r['overrides']) == tuple(every)]
  print(summary(wanted))
  return 0


if __name__ == '__main__':
  sys.exit(main())
