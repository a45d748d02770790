"""Every experiment file: its `:smoke` variant trains end to end; cifar10 networks build, step."""

import glob
import importlib
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gen import data as data_lib
from gen import modes, objectives, train
from gen import setup as setup_lib
from gen.utils.writers import read_metrics
from tests.conftest import ONE_DEVICE, read_tensorboard

EXPERIMENTS = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob(os.path.join(os.path.dirname(__file__), '..', 'experiments', '*_*.py'))
  if not os.path.basename(p).startswith('_') and not p.endswith('_common.py')  # helpers
)
NEEDS_DOWNLOAD = [e for e in EXPERIMENTS if e.endswith('cifar10')]
# a lower bound on each published CIFAR-10 network's parameter count (all networks together)
CIFAR10_PARAMS = {
  'ddpm_cifar10': 30_000_000,  # DDPM's network has 35.7M
  'score_sde_vp_cifar10': 30_000_000,
  'dcgan_cifar10': 6_000_000,  # G 3.58M + D 2.90M
  'sngan_cifar10': 6_500_000,  # SNGAN's standard CNN: G 3.81M + D 2.94M
  'ebm_cifar10': 9_000_000,  # gen's conv energy net at 128/256/512 channels: 9.30M
}


def _config(name, arg=None):
  return importlib.import_module(f'experiments.{name}').get_config(arg)


# One experiment per family in the fast tier; every other smoke variant runs in the full suite,
# except those in TRACED: their U-Net compiles take 50-180 s each on 2 cores, and what they vary
# (the process, the preconditioning, the sampler, guidance) is tested against closed forms in
# test_diffusion/test_samplers/test_guidance, while ddpm_digits trains the same U-Net through the
# loop and cgan_digits trains in its quality test; so they are built and traced here.
FAST_SMOKE = ('ddpm_ring8', 'gan_ring8', 'ebm_cd_ring8')
TRACED = (
  'cgan_digits',
  'ddpm_cond_digits',
  'edm_digits',
  'ncsn_digits',
  'score_sde_ve_digits',
  'score_sde_vp_digits',
)
# The autoencoder and latent-diffusion experiments run in tests/test_experiments_latent.py (the
# same check): `--dist loadfile` gives each file to one worker, and this one is the longest.
LATENT = tuple(e for e in EXPERIMENTS if e.startswith(('ae_', 'vae_', 'vqvae_', 'ldm_')))
SMOKE_CASES = [
  pytest.param(e, marks=() if e in FAST_SMOKE else pytest.mark.slow)
  for e in EXPERIMENTS
  if e not in NEEDS_DOWNLOAD and e not in TRACED and e not in LATENT
]


@pytest.mark.parametrize('name', SMOKE_CASES)
def test_smoke_variant_trains_and_samples(name, tmp_path, tfds_dir, pretrained_runs):
  check_smoke_variant(name, tmp_path, tfds_dir, pretrained_runs)


def check_smoke_variant(name, tmp_path, tfds_dir, pretrained_runs):
  """Experiment `name`'s :smoke variant trains through the loop, samples through
  --mode=sample, and writes its pictures and eval JSON."""
  config = _config(name, 'smoke')
  config.data.data_dir = tfds_dir
  for role, ref in config.pretrained.items():  # latent diffusion: its autoencoder's smoke run
    if ref:
      config.pretrained[role] = pretrained_runs(os.path.basename(ref))
  wd = str(tmp_path / 'run')
  state = train.train_and_evaluate(config, wd, mesh=setup_lib.make_mesh(jax.devices()[:1]))
  assert int(state.step) == config.train.num_steps
  losses = [v for r in read_metrics(wd) for k, v in r.items() if k.startswith('loss')]
  assert losses and np.all(np.isfinite(losses))
  num = config.sample.num  # the pictures' count: the sampler compiled for them is reused
  path = modes.sample(config, wd, num, mesh=ONE_DEVICE)
  with np.load(path) as f:
    assert f['samples'].shape[0] == num and np.all(np.isfinite(f['samples']))
    section = config[objectives.section(config.objective.name)]
    assert ('labels' in f) == bool(section.get('conditional', False))
    assert int(f['nfe']) >= 1
  spec = data_lib.get_spec(config.data.name, tfds_dir)
  images = spec.kind == 'images'
  if images:  # the loop's last picture: a grid, grayscale for 1-channel data, in TensorBoard too
    with Image.open(os.path.join(wd, 'samples', f'step_{config.train.num_steps}.png')) as im:
      assert im.mode == ('L' if spec.shape[-1] == 1 else 'RGB'), im.mode
    assert config.train.num_steps in read_tensorboard(wd)['samples']
  # the objective's own pictures (a trajectory, an interpolation): every objective draws one for
  # images, none for points
  assert bool(glob.glob(path[: -len('.npz')] + '_sampled_*.png')) == images
  # The eval JSON records how this objective sampled (not the diffusion sampler's config).
  eval_path = os.path.join(wd, 'eval', f'step_{config.train.num_steps}.json')
  if config.data.name == 'digits':  # every family scores the same digits metrics
    with open(eval_path) as f:
      assert {'fd', 'kid', 'precision', 'recall', 'sliced_w2'} <= set(json.load(f)), name
  if os.path.exists(eval_path):
    with open(eval_path) as f:
      sampled = json.load(f)['protocol'].get('sample')
    if sampled is not None:
      assert sampled['sampler'] in SAMPLERS_OF[config.objective.name](config), sampled
      assert sampled['use_ema'] == config.sample.use_ema


# objective name -> the samplers its eval protocol may name
SAMPLERS_OF = {
  'diffusion': lambda c: (c.diffusion.sample.sampler,),
  'gan': lambda c: ('generator', 'discriminator_rejection_sampling'),
  'ebm': lambda c: ('langevin', 'mala'),
  'rbm': lambda c: ('block_gibbs',),
  'autoencoder': lambda c: ('decode_prior',),
  'vae': lambda c: ('decode_prior',),
  'vqvae': lambda c: ('decode_prior',),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', TRACED)
def test_traced_smoke_variant_builds_steps_and_samples(name, tfds_dir, pretrained_runs):
  check_traced_smoke_variant(name, tfds_dir, pretrained_runs)


def check_traced_smoke_variant(name, tfds_dir, pretrained_runs):
  """The `:smoke` config validates (setup_lib.build: every field, before compiling), and its
  init, train step and sampler trace with the state's shapes and dtypes kept (jax.eval_shape)."""
  config = _config(name, 'smoke')
  config.data.data_dir = tfds_dir
  for role, ref in config.pretrained.items():
    if ref:
      config.pretrained[role] = pretrained_runs(os.path.basename(ref))
  setup = setup_lib.build(config, mesh=setup_lib.make_mesh(jax.devices()[:1]))
  batch = setup_lib.example_batch(setup)
  state = jax.eval_shape(setup.objective.init, *setup_lib.init_args(setup, jax.random.key(0)))
  new_state, metrics = jax.eval_shape(setup.objective.step, state, batch, jax.random.key(1))
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  assert any(k.startswith('loss') and v.shape == () for k, v in metrics.items()), metrics
  out = jax.eval_shape(lambda st, k: setup.objective.sample(st, k, 4), state, jax.random.key(2))
  assert out.x.shape == (4, *setup.spec.shape), out.x.shape


def test_every_experiment_documents_its_command_and_cost():
  for name in EXPERIMENTS:
    doc = importlib.import_module(f'experiments.{name}').__doc__
    assert f'experiments/{name}.py' in doc and 'Expected' in doc, name
    assert 'MEASURED' not in doc, name


# This one compiles and trains one step; the other CIFAR-10 configs share their networks' blocks
# (the same GAN and EBM layers; the U-Net the digits experiments train) and are traced
# abstractly: compiling the 35M-parameter U-Net on CPU costs two minutes.
CIFAR10_STEPPED = ('dcgan_cifar10',)


def _cifar10_objective_and_batch(name):
  config = _config(name)
  spec = data_lib.DatasetSpec(
    name='cifar10', kind='images', shape=(32, 32, 3), num_classes=10, num_train=50_000
  )
  batch = {
    'x': jax.random.uniform(jax.random.key(0), (4, 32, 32, 3), minval=-1, maxval=1),
    'label': jnp.zeros((4,), jnp.int32),
  }
  return objectives.make(config, spec), batch


@pytest.mark.slow
@pytest.mark.parametrize('name', CIFAR10_STEPPED)
def test_cifar10_network_takes_one_step_on_cpu(name):
  """The published CIFAR-10 network compiles and trains one step (batch 4: CPU time)."""
  objective, batch = _cifar10_objective_and_batch(name)
  state = jax.jit(objective.init)(jax.random.key(1), batch)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  assert n_params > CIFAR10_PARAMS[name], n_params
  state, metrics = jax.jit(objective.step)(state, batch, jax.random.key(2))
  losses = [v for k, v in metrics.items() if k.startswith('loss')]
  assert losses and np.all(np.isfinite(losses)) and int(state.step) == 0


@pytest.mark.parametrize('name', [e for e in NEEDS_DOWNLOAD if e not in CIFAR10_STEPPED])
def test_cifar10_config_builds_and_its_step_traces(name):
  """Every other CIFAR-10 config: the network's size, and a train step whose state keeps its
  shapes and dtypes (jax.eval_shape: traced, not compiled)."""
  objective, batch = _cifar10_objective_and_batch(name)
  state = jax.eval_shape(objective.init, jax.random.key(1), batch)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  assert n_params > CIFAR10_PARAMS[name], n_params
  new_state, metrics = jax.eval_shape(objective.step, state, batch, jax.random.key(2))
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  assert any(k.startswith('loss') and v.shape == () for k, v in metrics.items()), metrics
