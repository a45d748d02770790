"""train.on_nonfinite='rollback': a diverging run goes back to its last good checkpoint with a new
key, and gives up after train.max_rollbacks without losing that checkpoint."""

import dataclasses
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import objectives, train
from gen import setup as setup_lib
from gen.utils.writers import read_metrics
from tests.conftest import load_state


def _ebm_config():
  from experiments import base

  c = base.get_config(objective='ebm')
  c.data.name, c.data.batch_size = 'ring8', 64
  c.model.name = 'energy_mlp'
  c.model.energy_mlp.features = (16, 16)
  c.ebm.loss = 'cd'
  c.ebm.chain_init, c.ebm.buffer_size = 'buffer', 256
  c.ebm.chain_steps, c.ebm.sample.chain_steps = 3, 3
  c.train.num_steps, c.train.log_every, c.train.ckpt_every = 20, 5, 10
  c.train.sample_every, c.train.on_nonfinite = 100, 'rollback'
  c.sample.num, c.eval.metrics = 16, ()
  return c


def _train(config, workdir, **kwargs):
  return train.train_and_evaluate(
    config, str(workdir), mesh=setup_lib.make_mesh(jax.devices()[:1]), **kwargs
  )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_forced_divergence_gives_up_and_keeps_the_last_good_checkpoint(tmp_path):
  config = _ebm_config()
  wd = tmp_path / 'run'
  config.train.num_steps = 10
  _train(config, wd)  # a healthy run saves step 10
  good, _ = load_state(config, str(wd), step=10)
  config.train.num_steps = 20
  config.ebm.step_size = 1e30  # Langevin chains explode: energies overflow at once
  with pytest.raises(train.NonFiniteError, match=r'gave up after 3 rollbacks.*step 10\) is kept'):
    _train(config, wd, allow_config_change=True)
  assert sorted(os.listdir(wd / 'checkpoints')) == ['10']
  kept, _ = load_state(config, str(wd), step=10)
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(kept), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rollbacks = [r['rollbacks'] for r in read_metrics(str(wd)) if 'rollbacks' in r]
  assert rollbacks == [1.0, 2.0, 3.0]


@dataclasses.dataclass(frozen=True)
class _FailsOnce:
  """An objective whose step 15 is non-finite under the run's first key only."""

  inner: object
  bad_key: jax.Array

  def __getattr__(self, name):
    return getattr(self.inner, name)

  def step(self, state, batch, key):
    state, metrics = self.inner.step(state, batch, key)
    hit = jnp.all(jax.random.key_data(key) == jax.random.key_data(self.bad_key))
    return state, {**metrics, 'loss': jnp.where(hit, jnp.nan, metrics['loss'])}


@pytest.mark.timeout(300)
def test_transient_divergence_is_rolled_back_and_the_run_finishes(tmp_path, monkeypatch):
  config = _ebm_config()
  bad_key = jax.random.fold_in(train.base_key(config.seed, 0), 15)
  ebm = objectives.OBJECTIVES['ebm']
  failing = types.SimpleNamespace(
    default_config=ebm.default_config,
    from_config=lambda c, spec: _FailsOnce(ebm.from_config(c, spec), bad_key),
  )
  monkeypatch.setitem(objectives.OBJECTIVES, 'ebm', failing)
  wd = tmp_path / 'run'
  state = _train(config, wd)
  assert int(state.step) == 20
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
  records = read_metrics(str(wd))
  assert [r['rollbacks'] for r in records if 'rollbacks' in r] == [1.0]
  rolled = next(r for r in records if 'rollbacks' in r)
  assert rolled['step'] == 10  # back to the checkpoint of step 10, then on to 20
  # the rollback count is saved with the data position: a resumed run keeps the new key
  _, data_state = load_state(config, str(wd), step=20)
  assert data_state[train.ROLLBACKS_KEY] == 1
