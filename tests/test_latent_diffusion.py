"""Latent diffusion: the diffusion objective on the latents of a frozen autoencoder run
(config.pretrained.autoencoder): encoding, the measured scale, decoding, the frozen parameters,
VQ-VAE latents, and the one-line errors of a bad reference."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ddpm_digits, ldm_digits, vqvae_digits
from gen import setup as setup_lib
from gen import train
from gen.errors import ConfigError
from gen.objectives import diffusion
from gen.objectives.autoencoder import NET as AE_NET
from gen.utils import workdir as workdir_lib
from tests.conftest import ONE_DEVICE, run_python

# Every test here trains or loads a reference run and compiles a U-Net step and sampler (20-70 s
# each on 2 cores): the full suite runs them; the fast tier covers pretrained references through
# tests/test_contract.py's toy objectives.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def _train(module, tmp_path_factory, tfds_dir):
  config = module.get_config('smoke')
  config.data.data_dir = tfds_dir
  config.eval.metrics = ()  # a reference run needs checkpoints, not scores
  workdir = str(tmp_path_factory.mktemp(module.__name__.rsplit('.', 1)[-1]))
  train.train_and_evaluate(config, workdir, mesh=ONE_DEVICE)
  return workdir


def _gen_main(*args, cwd, tfds):
  env = {'PYTHONPATH': REPO, 'TFDS_DATA_DIR': str(tfds)}
  return run_python(['-m', 'gen.main', *args], cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope='module')
def docstring_runs(tmp_path_factory):
  """The experiments' docstring commands as written, from a fresh folder: vae_ldm_digits then
  ldm_digits (:smoke), whose default reference is the relative runs/vae_ldm_digits. Returns
  (folder, the two CompletedProcesses)."""
  folder = tmp_path_factory.mktemp('docstring')
  exp = os.path.join(REPO, 'experiments')
  run = lambda *args: _gen_main(*args, cwd=folder, tfds=folder / 'tfds')
  first = run(f'--config={exp}/vae_ldm_digits.py:smoke', '--workdir=runs/vae_ldm_digits')
  second = run(f'--config={exp}/ldm_digits.py:smoke', '--workdir=runs/ldm_digits')
  return folder, first, second


@pytest.fixture(scope='module')
def vae_run(docstring_runs):
  """The autoencoder run the docstring commands trained (vae_ldm_digits:smoke)."""
  folder, first, _ = docstring_runs
  assert first.returncode == 0, first.stderr[-2000:]
  return str(folder / 'runs' / 'vae_ldm_digits')


@pytest.fixture(scope='module')
def vq_run(tmp_path_factory, tfds_dir):
  return _train(vqvae_digits, tmp_path_factory, tfds_dir)


def _ldm_config(ref, tfds_dir, **diffusion_fields):
  config = ldm_digits.get_config('smoke')
  config.data.data_dir = tfds_dir
  config.pretrained.autoencoder = ref
  for field, value in diffusion_fields.items():
    config.diffusion[field] = value
  return config


def _first_batch(setup):
  batch = next(setup_lib.make_loader_iter(setup))
  return {k: jnp.asarray(v) for k, v in batch.items()}


def test_latent_diffusion_scales_encodes_and_decodes_with_the_frozen_autoencoder(vae_run, tfds_dir):
  setup = setup_lib.build(_ldm_config(vae_run, tfds_dir), ONE_DEVICE)
  objective = setup.objective
  assert isinstance(objective, diffusion.LatentDiffusion)
  assert objective.inner.shape == (4, 4, 4) and objective.shape == (8, 8, 1)
  ref = setup.pretrained['autoencoder']
  state = setup_lib.init_state(setup)
  batch = _first_batch(setup)
  step = jax.jit(objective.step)
  new, metrics = step(state, batch, jax.random.key(1))
  # c = 1 / std of the first batch's latents, computed here from the referenced run's objective
  z = ref.objective.encode_latent(ref.params[AE_NET], batch['x'])
  np.testing.assert_allclose(float(new.extra['latent_scale']), 1 / float(jnp.std(z)), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['latent_scale']), 1 / float(jnp.std(z)), rtol=1e-5)
  # a later step keeps c; the autoencoder stays the run's EMA parameters; the denoiser moves
  newer, _ = step(new.replace(step=new.step + 1), batch, jax.random.key(2))
  assert float(newer.extra['latent_scale']) == float(new.extra['latent_scale'])
  chex.assert_trees_all_equal(newer.extra['autoencoder'], ref.params)
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), newer.params, state.params)
  assert any(jax.tree.leaves(moved['denoiser']))  # (the zero-initialised output conv first)
  # samples: the inner sampler's latents, divided by c and decoded
  out = jax.jit(lambda st, k: objective.sample(st, k, 4))(new, jax.random.key(3))
  inner = jax.jit(lambda st, k: objective.inner.sample(st, k, 4))(new, jax.random.key(3))
  c = new.extra['latent_scale']
  decoded = ref.objective.decode_latent(ref.params[AE_NET], inner.x / c)
  chex.assert_shape(out.x, (4, 8, 8, 1))
  chex.assert_trees_all_close(out.x, decoded, atol=1e-5)
  assert int(out.stats['nfe']) == int(inner.stats['nfe'])
  assert objective.sample_protocol()['space'] == 'latent'
  pictures = jax.jit(objective.pictures)(new, jax.random.key(4))
  chex.assert_shape(pictures['trajectory'], (8, 8, 8, 8, 1))
  # a scale set in advance (diffusion.latent_scale > 0 puts it in the step-0 state) is kept
  # (placed like the state's scale, so that `step` runs its compiled program again)
  half = jax.device_put(jnp.float32(0.5), state.extra['latent_scale'].sharding)
  fixed = state.replace(extra={**state.extra, 'latent_scale': half})
  kept, metrics = step(fixed, batch, jax.random.key(5))
  assert float(kept.extra['latent_scale']) == 0.5 == float(metrics['latent_scale'])
  built = setup_lib.build(_ldm_config(vae_run, tfds_dir, latent_scale=0.5), ONE_DEVICE)
  assert built.objective.latent_scale == 0.5


def test_vq_vae_latents_are_codes_and_samples_are_quantised_before_decoding(vq_run, tfds_dir):
  setup = setup_lib.build(_ldm_config(vq_run, tfds_dir), ONE_DEVICE)
  objective, ref = setup.objective, setup.pretrained['autoencoder']
  params = ref.params[AE_NET]
  state = setup_lib.init_state(setup)
  batch = _first_batch(setup)
  z = objective.encode(state, batch['x'])
  chex.assert_trees_all_equal(ref.objective.snap(params, z), z)  # codes already
  state, _ = jax.jit(objective.step)(state, batch, jax.random.key(1))
  latents = jax.jit(lambda st, k: objective.inner.sample(st, k, 4).x)(state, jax.random.key(2))
  out = jax.jit(lambda st, k: objective.sample(st, k, 4))(state, jax.random.key(2))
  c = state.extra['latent_scale']
  snapped = ref.objective.snap(params, latents / c)
  decoded = ref.objective.to_data(ref.objective.decode(params, snapped))
  chex.assert_trees_all_close(out.x, decoded, atol=1e-5)


def test_bad_references_fail_in_one_line_before_compiling(vae_run, tfds_dir, tmp_path):
  def fails(config, message):
    with pytest.raises(ConfigError, match=message) as info:
      setup_lib.build(config, ONE_DEVICE)
    assert '\n' not in str(info.value)

  fails(_ldm_config(str(tmp_path / 'nothing'), tfds_dir), 'holds no run \\(no config.json\\)')
  fails(_ldm_config(vae_run + '@999', tfds_dir), r'no checkpoint of step 999 \(saved: \[10, 20\]\)')
  fails(_ldm_config(vae_run + '@x', tfds_dir), "expected 'WORKDIR' or 'WORKDIR@STEP'")
  diffusion_run = tmp_path / 'ddpm'  # a run of another objective
  diffusion_run.mkdir()
  with open(diffusion_run / 'config.json', 'w') as f:
    json.dump(workdir_lib.config_to_dict(ddpm_digits.get_config('smoke')), f)
  fails(
    _ldm_config(str(diffusion_run), tfds_dir),
    r"is a run of objective.name='diffusion'; the autoencoder role takes one of "
    r"\['autoencoder', 'vae', 'vqvae'\]",
  )
  ring = _ldm_config(vae_run, tfds_dir)
  ring.data.name = 'ring8'
  ring.model.name = 'mlp'
  ring.data.batch_size = 64
  fails(ring, "was trained on data.name='digits' \\(8, 8, 1\\); this run has data.name='ring8'")
  deep = _ldm_config(vae_run, tfds_dir)
  deep.model.unet.ch_mult = (1, 2, 2, 2)  # 4x4 latents cannot be halved three times
  fails(deep, r'^on the latents \(4, 4, 4\) of pretrained.autoencoder=')
  pixel = ddpm_digits.get_config('smoke')
  pixel.diffusion.latent_scale = 0.3
  fails(
    pixel, 'diffusion.latent_scale is the scale of latent diffusion: set pretrained.autoencoder'
  )
  # unset: diffusion in data space, as before
  plain = ddpm_digits.get_config('smoke')
  plain.data.data_dir = tfds_dir
  assert type(setup_lib.build(plain, ONE_DEVICE).objective) is diffusion.Diffusion


def test_the_docstring_commands_run_as_written_with_relative_paths(docstring_runs):
  """vae_ldm_digits then ldm_digits (their :smoke variants) from a fresh folder, with the
  experiments' relative default reference runs/vae_ldm_digits; then --mode=eval of the latent
  run from another folder (the reference was stored absolute)."""
  folder, first, second = docstring_runs
  assert first.returncode == 0, first.stderr[-2000:]
  assert second.returncode == 0, second.stderr[-2000:]
  with open(folder / 'runs' / 'ldm_digits' / 'config.json') as f:
    saved = json.load(f)
  assert saved['pretrained']['autoencoder'] == str(folder / 'runs' / 'vae_ldm_digits')
  other = folder / 'elsewhere'
  other.mkdir()
  evaluated = _gen_main(
    '--mode=eval', f'--workdir={folder}/runs/ldm_digits', cwd=other, tfds=folder / 'tfds'
  )
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  with open(folder / 'runs' / 'ldm_digits' / 'eval' / 'step_20.json') as f:
    result = json.load(f)
  assert {'fd', 'kid', 'precision', 'recall'} <= set(result)
  assert result['protocol']['sample']['space'] == 'latent'
