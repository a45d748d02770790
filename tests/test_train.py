"""The loop end to end on the ddpm_ring8 smoke config: run directory, resume, guards, modes."""

import copy
import importlib
import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import modes, train
from gen import setup as setup_lib
from gen.errors import ConfigError
from gen.utils.writers import read_metrics
from tests.conftest import ONE_DEVICE, load_state, read_tensorboard


def _train(config, workdir, **kwargs):
  return train.train_and_evaluate(
    config, str(workdir), mesh=setup_lib.make_mesh(jax.devices()[:1]), **kwargs
  )


def test_smoke_run_writes_the_run_directory(smoke_config, tmp_path):
  wd = tmp_path / 'run'
  state = _train(smoke_config, wd)
  assert int(state.step) == 20
  saved = json.loads((wd / 'config.json').read_text())
  assert saved['objective']['name'] == 'diffusion' and saved['train']['num_steps'] == 20
  records = read_metrics(str(wd))
  assert records[0]['step'] == 0 and records[0]['compile_seconds'] > 0
  logged = [r for r in records if 'loss' in r]
  assert [r['step'] for r in logged] == [5, 10, 15, 20]
  for r in logged:
    for key in ('loss', 'grad_norm/denoiser', 'lr', 'steps_per_sec', 'examples_per_sec'):
      assert np.isfinite(r[key]), key
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(wd / 'tb'))
  assert (wd / 'samples' / 'step_10.png').exists() and (wd / 'samples' / 'step_20.png').exists()
  assert sorted(os.listdir(wd / 'checkpoints')) == ['10', '20']
  ev = json.loads((wd / 'eval' / 'step_20.json').read_text())
  assert set(ev) == {
    'step',
    'modes_covered',
    'high_quality_fraction',
    'sliced_w2',
    'sample_nfe',
    'protocol',
  }
  assert ev['protocol']['num_samples'] == smoke_config.eval.num_samples
  n = smoke_config.eval.num_samples
  assert ev['protocol']['reference'] == {'dataset': 'ring8', 'split': 'test', 'n': n}
  assert 0 <= ev['high_quality_fraction'] <= 1 and 0 <= ev['modes_covered'] <= 8


def test_step_compiles_once(smoke_config):
  setup = setup_lib.build(smoke_config, setup_lib.make_mesh(jax.devices()[:1]))
  counted = chex.assert_max_traces(setup.objective.step, n=1)
  object.__setattr__(setup.objective, 'step', counted)  # frozen dataclass: patch for the test
  step_fn = train.make_train_step(setup)
  state = setup_lib.init_state(setup)
  it = setup_lib.make_loader_iter(setup)
  key = jax.random.key(0)
  for _ in range(12):
    state, metrics = step_fn(state, setup_lib.to_global(next(it), setup.batch_sharding), key)
  assert int(state.step) == 12 and np.isfinite(float(metrics['loss']))


def _assert_same_state(a, b):
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(a.ema_params, b.ema_params)
  chex.assert_trees_all_equal(a.opt_state, b.opt_state)
  assert int(a.step) == int(b.step)


def test_resume_is_exact(smoke_config, tmp_path):
  smoke_config.train.log_every = 1
  straight, split = tmp_path / 'straight', tmp_path / 'split'
  _train(smoke_config, straight)
  smoke_config.train.num_steps = 10
  _train(smoke_config, split)
  smoke_config.train.num_steps = 20  # run length may change between restarts
  _train(smoke_config, split)
  a, data_a = load_state(smoke_config, str(straight))
  b, data_b = load_state(smoke_config, str(split))
  _assert_same_state(a, b)
  assert data_a == data_b  # the data iterator stands at the same position
  losses = lambda wd: {r['step']: r['loss'] for r in read_metrics(str(wd)) if 'loss' in r}
  la, lb = losses(straight), losses(split)
  assert [la[s] for s in range(1, 21)] == [lb[s] for s in range(1, 21)]


def test_eval_and_sample_modes(smoke_config, tmp_path):
  wd = tmp_path / 'run'
  _train(smoke_config, wd)
  values = modes.evaluate(smoke_config, str(wd), mesh=ONE_DEVICE)
  assert set(values) == {
    'modes_covered',
    'high_quality_fraction',
    'sliced_w2',
    'sample_nfe',
    'protocol',
  }
  trained = {p.name: p.read_bytes() for p in (wd / 'samples').iterdir()}
  assert {'step_10.png', 'step_20.png'} <= set(trained)
  path = modes.sample(smoke_config, str(wd), 100, mesh=ONE_DEVICE)
  assert path.endswith(os.path.join('samples', 'step_20.npz'))
  with np.load(path) as f:
    chex.assert_shape(f['samples'], (100, 2))
    assert 'labels' not in f  # ring8 is unconditional
  assert os.path.exists(path[:-4] + '_sampled.png')  # its own picture, not training's
  # Every picture training drew (grid, strips) is byte-identical after --mode=sample.
  assert {name: (wd / 'samples' / name).read_bytes() for name in trained} == trained
  older = modes.sample(smoke_config, str(wd), 10, step=10, mesh=ONE_DEVICE)
  assert older.endswith('step_10.npz')
  # Training's pictures, losses and evaluation are in TensorBoard; --mode=eval adds its numbers.
  events = read_tensorboard(str(wd))
  assert events['samples'] == {10: 'image', 20: 'image'}
  assert set(events['train/loss']) == {5, 10, 15, 20} and events['eval/sliced_w2'] == {20: 'scalar'}
  assert 'perf/steps_per_sec' in events and 'perf/compile_seconds' in events  # grouped tags
  before = len(read_metrics(str(wd)))
  modes.evaluate(smoke_config, str(wd), step=10, mesh=ONE_DEVICE)
  assert set(read_tensorboard(str(wd))['eval/sliced_w2']) == {10, 20}
  assert len(read_metrics(str(wd))) == before  # metrics.jsonl stays training's own log


def test_nonfinite_loss_stops_without_saving(smoke_config, tmp_path):
  smoke_config.optim.lr = 1e30  # Adam moves weights by ~lr: the loss overflows within steps
  smoke_config.optim.warmup_steps = 0
  smoke_config.optim.schedule = 'constant'
  with pytest.raises(train.NonFiniteError, match=r'step \d+: non-finite .*loss'):
    _train(smoke_config, tmp_path / 'stop')
  assert not os.path.exists(tmp_path / 'stop' / 'checkpoints' / '20')


def test_nonfinite_skip_step_keeps_the_state_finite(smoke_config, tmp_path):
  smoke_config.optim.lr = 1e30
  smoke_config.optim.warmup_steps = 0
  smoke_config.optim.schedule = 'constant'
  smoke_config.train.on_nonfinite = 'skip_step'
  smoke_config.eval.metrics = ()
  state = _train(smoke_config, tmp_path / 'skip')
  assert int(state.step) == 20
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  last = [r for r in read_metrics(str(tmp_path / 'skip')) if 'skipped_steps' in r][-1]
  assert last['skipped_steps'] > 0


def test_unreadable_latest_checkpoint_is_skipped(smoke_config, tmp_path):
  wd = tmp_path / 'run'
  _train(smoke_config, wd)
  # Corrupt every file of the latest step (20); the previous one (10) must be used.
  for root, _, files in os.walk(wd / 'checkpoints' / '20' / 'state'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')
  state, _ = load_state(smoke_config, str(wd))
  assert int(state.step) == 10


def test_workdir_with_another_config_is_refused(smoke_config, tmp_path):
  wd = tmp_path / 'run'
  _train(smoke_config, wd)
  before = sorted(os.listdir(wd))
  smoke_config.optim.lr = 5e-4
  with pytest.raises(ConfigError, match=r'optim\.lr'):
    _train(smoke_config, wd)
  assert sorted(os.listdir(wd)) == before
  state = _train(smoke_config, wd, allow_config_change=True)  # explicit override
  assert int(state.step) == 20


@pytest.mark.slow
def test_checkpoint_of_8_devices_restores_on_1(tmp_path, eight_devices):
  """Saved from a run on 8 devices, restored on 1."""
  from experiments import ddpm_ring8

  config = ddpm_ring8.get_config('smoke')
  wd = str(tmp_path / 'saved_on_8')
  train.train_and_evaluate(config, wd, mesh=setup_lib.make_mesh(eight_devices))
  state, _ = load_state(config, wd)
  assert int(state.step) == 20
  assert len(state.params['denoiser']['Dense_0']['kernel'].sharding.device_set) == 1


def test_incomplete_checkpoint_is_ignored(smoke_config, tmp_path):
  wd = tmp_path / 'run'
  _train(smoke_config, wd)
  # What a save killed midway leaves behind: orbax's temporary folder, never finalised.
  partial = wd / 'checkpoints' / '30.orbax-checkpoint-tmp-1700000000'
  (partial / 'state').mkdir(parents=True)
  (partial / 'state' / 'junk').write_bytes(b'half a file')
  state, _ = load_state(smoke_config, str(wd))
  assert int(state.step) == 20


@pytest.mark.slow
def test_eval_reports_bits_per_dim_for_a_continuous_process(tmp_path):
  """`bpd` in eval.metrics: the PF-ODE likelihood of test data, with its solver's NFE."""
  from experiments import score_sde_vp_swiss_roll

  config = score_sde_vp_swiss_roll.get_config('smoke')
  config.eval.metrics = ('sliced_w2', 'bpd')
  config.eval.bpd_num = 64
  wd = tmp_path / 'run'
  _train(config, wd)
  values = modes.evaluate(config, str(wd), mesh=ONE_DEVICE)
  assert set(values) == {'sliced_w2', 'sample_nfe', 'bpd', 'bpd_nfe', 'protocol'}
  assert np.isfinite(values['bpd']) and values['bpd_nfe'] > 6


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gradient_accumulation_equals_the_whole_batch(smoke_config, tmp_path):
  """4 micro-batches of 16 make the same updates as one batch of 64 (times and noise are drawn
  for the whole batch first); only the order of float sums differs."""
  states = {}
  for k in (1, 4):
    c = copy.deepcopy(smoke_config)
    c.data.batch_size, c.train.grad_accum, c.train.num_steps = 64, k, 10
    c.train.ckpt_every = c.train.sample_every = 10
    c.eval.metrics = ()
    states[k] = _train(c, tmp_path / f'accum{k}')
  pairs = zip(jax.tree.leaves(states[1].params), jax.tree.leaves(states[4].params), strict=True)
  worst = max(float(np.max(np.abs(a - b))) for a, b in pairs)
  print('max |param diff| after 10 steps:', worst)
  assert worst < 1e-5
  chex.assert_trees_all_close(states[1].opt_state, states[4].opt_state, atol=1e-5, rtol=1e-4)


def test_gradient_accumulation_must_divide_the_batch(smoke_config):
  smoke_config.train.grad_accum = 3
  with pytest.raises(
    ConfigError, match=r'train\.grad_accum=3 must be an integer >= 1 that divides'
  ):
    setup_lib.build(smoke_config, setup_lib.make_mesh(jax.devices()[:1]))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize('name', ['ddpm_ring8', 'sngan_digits'])
def test_bfloat16_compute_keeps_float32_state(name, tmp_path):
  """train.compute_dtype='bfloat16': the networks' dots run in bf16 (in the compiled step), the
  parameters, optimizer state, EMA and collections (sngan_digits: the generator's batch
  statistics, the discriminator's spectral-norm vectors) stay float32, and the losses move by
  bf16 round-off only."""
  losses, hlo = {}, {}
  key = jax.random.key(1)
  for dtype in ('float32', 'bfloat16'):
    c = importlib.import_module(f'experiments.{name}').get_config('smoke')
    c.data.data_dir = str(tmp_path)
    c.train.compute_dtype = dtype
    setup = setup_lib.build(c, setup_lib.make_mesh(jax.devices()[:1]))
    state = setup_lib.init_state(setup)
    state = state.replace(  # away from the zero-initialised output layer
      params=jax.tree.map(lambda a: a + 0.05 * jax.random.normal(key, a.shape), state.params)
    )
    batch = setup_lib.to_global(next(setup_lib.make_loader_iter(setup)), setup.batch_sharding)
    step = train.make_train_step(setup)
    hlo[dtype] = step.lower(state, batch, key).as_text()
    new_state, metrics = step(state, batch, key)
    losses[dtype] = {k: float(v) for k, v in metrics.items() if k.startswith('loss')}
    for tree in (new_state.params, new_state.opt_state, new_state.ema_params, new_state.extra):
      dtypes = {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}
      assert dtypes <= {jnp.dtype('float32')}, dtypes
  assert 'bf16' not in hlo['float32'] and hlo['bfloat16'].count('bf16') > 50
  assert losses['float32'] and losses['bfloat16'].keys() == losses['float32'].keys()
  for k, value in losses['float32'].items():
    assert losses['bfloat16'][k] == pytest.approx(value, rel=1e-2), k
  assert losses['bfloat16'] != losses['float32']


def test_unknown_compute_dtype(smoke_config):
  smoke_config.train.compute_dtype = 'float16'
  with pytest.raises(ConfigError, match=r"train\.compute_dtype='float16': choose"):
    setup_lib.build(smoke_config, setup_lib.make_mesh(jax.devices()[:1]))


@pytest.mark.slow
def test_log_window_spans_a_checkpoint(smoke_config, tmp_path):
  """A checkpoint between two logs (ckpt_every not a multiple of log_every) keeps the window:
  the log at step 10 is the mean of steps 6..10 and its steps_per_sec counts all five."""
  per_step = copy.deepcopy(smoke_config)
  per_step.train.log_every, per_step.eval.metrics = 1, ()
  _train(per_step, tmp_path / 'every')
  losses = {r['step']: r['loss'] for r in read_metrics(str(tmp_path / 'every')) if 'loss' in r}
  c = copy.deepcopy(smoke_config)
  c.train.log_every, c.train.ckpt_every, c.eval.metrics = 5, 3, ()
  _train(c, tmp_path / 'windows')
  logged = {r['step']: r for r in read_metrics(str(tmp_path / 'windows')) if 'loss' in r}
  assert sorted(logged) == [5, 10, 15, 20]
  for end in (5, 10, 15, 20):
    want = np.mean([losses[s] for s in range(end - 4, end + 1)])
    assert logged[end]['loss'] == pytest.approx(want, rel=1e-6), end


def test_steps_per_sec_counts_every_step_of_the_window(smoke_config, tmp_path, monkeypatch):
  """With a fake clock that advances 1 s per training step, steps_per_sec is exactly 1, also in
  a window that a checkpoint (ckpt_every=3) cut in two."""
  clock = {'t': 0.0}
  real_step = train.make_train_step

  def timed_step(setup):
    step = real_step(setup)

    class Timed:
      def lower(self, *args):
        compiled = step.lower(*args).compile()

        class Lowered:
          def compile(self):
            def run(*a):
              clock['t'] += 1.0
              return compiled(*a)

            return run

        return Lowered()

    return Timed()

  monkeypatch.setattr(train, 'make_train_step', timed_step)
  monkeypatch.setattr(train.time, 'perf_counter', lambda: clock['t'])
  smoke_config.train.log_every, smoke_config.train.ckpt_every = 5, 3
  smoke_config.train.sample_every, smoke_config.eval.metrics = 100, ()
  _train(smoke_config, tmp_path / 'run')
  rates = [r['steps_per_sec'] for r in read_metrics(str(tmp_path / 'run')) if 'loss' in r]
  assert rates == [1.0, 1.0, 1.0, 1.0]


def test_micro_batches_are_strided():
  from gen.objectives.diffusion import micro_batches

  x = jnp.arange(12).reshape(12, 1)
  np.testing.assert_array_equal(
    micro_batches({'x': x}, 3)['x'][:, :, 0], [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
  )


@pytest.mark.slow
def test_gradient_accumulation_step_has_no_all_gather(eight_devices):
  """On 8 devices the micro-batches keep every device's rows: the compiled step's only
  collective is the gradient all-reduce, as without accumulation (k = 1, 2, 4)."""
  from experiments import ddpm_ring8

  for k in (1, 2, 4):
    config = ddpm_ring8.get_config('smoke')
    config.data.batch_size, config.train.grad_accum = 64, k
    setup = setup_lib.build(config, setup_lib.make_mesh(eight_devices))
    state = setup_lib.init_state(setup)
    batch = setup_lib.to_global({'x': np.zeros((64, 2), np.float32)}, setup.batch_sharding)
    text = train.make_train_step(setup).lower(state, batch, jax.random.key(0)).compile().as_text()
    ops = {
      op: text.count(f' {op}(') + text.count(f' {op}-start(')
      for op in ('all-gather', 'all-to-all', 'collective-permute', 'all-reduce')
    }
    assert ops['all-reduce'] >= 1, (k, ops)
    assert ops['all-gather'] == ops['all-to-all'] == ops['collective-permute'] == 0, (k, ops)


class _DropoutNet(nn.Module):
  """A denoiser whose output depends on its dropout mask (the U-Net's zero-initialised output
  layers would hide the mask at initialisation)."""

  @nn.compact
  def __call__(self, x, t, train, labels=None):
    h = nn.Dense(32)(jnp.concatenate([x, t[:, None]], axis=-1))
    h = nn.Dropout(0.5, deterministic=not train)(jax.nn.relu(h))
    return nn.Dense(x.shape[-1])(h)


def _dropout_objective(grad_accum):
  from gen import processes
  from gen import state as state_lib
  from gen.objectives.diffusion import Diffusion

  tx, lr_fn = state_lib.make_optimizer(lr=1e-3)
  return Diffusion(
    model=_DropoutNet(),
    process=processes.make('vp', beta_min=0.1, beta_max=20.0),
    parameterization='eps',
    weighting='eps',
    time_sampling='uniform',
    time_kw={},
    tx=tx,
    lr_fn=lr_fn,
    ema_rate=0.9,
    shape=(2,),
    grad_accum=grad_accum,
  )


def test_dropout_masks_are_drawn_per_micro_batch():
  """grad_accum=2: micro-batch i (rows i, i + 2, ...) gets dropout key fold_in(dropout key, i),
  so the halves have independent masks; the step's loss is the mean of the two losses."""
  obj = _dropout_objective(2)
  batch = {'x': jax.random.normal(jax.random.key(1), (16, 2))}
  state = obj.init(jax.random.key(0), batch)
  key = jax.random.key(3)
  _, metrics = jax.jit(obj.step)(state, batch, key)
  drawn, key_drop = obj.draw(batch, key)
  params = state.params['denoiser']
  half = lambda i, k: obj.loss_of(params, jax.tree.map(lambda a: a[i::2], drawn), k)
  independent = (
    half(0, jax.random.fold_in(key_drop, 0)) + half(1, jax.random.fold_in(key_drop, 1))
  ) / 2
  shared = (half(0, key_drop) + half(1, key_drop)) / 2
  assert abs(float(independent) - float(shared)) > 1e-3  # dropout is active: the keys matter
  np.testing.assert_allclose(metrics['loss'], independent, rtol=1e-5)


def test_draw_is_annotated_as_what_it_returns():
  import typing

  from gen.objectives.diffusion import Diffusion

  hint = typing.get_type_hints(Diffusion.draw)['return']
  assert typing.get_origin(hint) is tuple
  out = _dropout_objective(1).draw({'x': jnp.zeros((8, 2))}, jax.random.key(0))
  assert isinstance(out, tuple) and isinstance(out[0], dict) and out[0]['t'].shape == (8,)
