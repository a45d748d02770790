"""The same run on 1 device and on 8 CPU devices of this process (tests/conftest.py gives every
test process 8), and the README's 8-device command as typed (a subprocess, as a user runs it)."""

import jax
import numpy as np
import pytest

from experiments import ddpm_ring8, gan_ring8
from gen import setup as setup_lib
from gen import train
from gen.utils.writers import read_metrics

pytestmark = pytest.mark.slow  # seconds to minutes each: the full suite only


def _losses(workdir):
  return [r['loss'] for r in read_metrics(workdir) if 'loss' in r]


def test_one_and_eight_devices_agree(tmp_path, eight_devices):
  config = ddpm_ring8.get_config('smoke')
  config.train.num_steps = 30
  config.train.log_every = 1
  config.train.ckpt_every = 30
  config.train.sample_every = 30
  config.eval.metrics = ()
  states = {}
  for n in (1, 8):
    mesh = setup_lib.make_mesh(eight_devices[:n])
    states[n] = train.train_and_evaluate(config, str(tmp_path / f'dev{n}'), mesh=mesh)
  losses_1, losses_8 = _losses(str(tmp_path / 'dev1')), _losses(str(tmp_path / 'dev8'))
  assert len(losses_1) == len(losses_8) == 30
  # Same noise on any device count (stateless keys); only the order of float reductions
  # differs, so losses agree to float32 round-off and parameters to ~1e-6 after 30 steps.
  np.testing.assert_allclose(losses_1, losses_8, rtol=1e-5, atol=1e-6)
  p1, p8 = (jax.device_get(states[n].params) for n in (1, 8))
  diffs = [
    float(np.max(np.abs(a - b))) for a, b in zip(*map(jax.tree.leaves, (p1, p8)), strict=True)
  ]
  assert max(diffs) < 1e-5, max(diffs)
  for x in jax.tree.leaves(states[8].params):
    assert len(x.sharding.device_set) == 8 and x.sharding.is_fully_replicated


def test_samples_do_not_depend_on_the_device_count(eight_devices):
  """Sample i is a function of (seed, i) only: 1, 2, 4 and 8 devices draw the same samples (a
  diffusion sampler's 50-step scan and a GAN generator; float round-off at most)."""
  for module in (ddpm_ring8, gan_ring8):
    config = module.get_config('smoke')
    draws = {}
    for n in (1, 2, 4, 8):
      setup = setup_lib.build(config, setup_lib.make_mesh(eight_devices[:n]))
      state = setup_lib.init_state(setup)
      draws[n] = np.asarray(setup_lib.make_sample_fn(setup, 64)(state, jax.random.key(7)).x)
    diff = max(float(np.max(np.abs(draws[n] - draws[1]))) for n in (2, 4, 8))
    assert diff <= 1e-5, (module.__name__, diff)


@pytest.mark.timeout(420)
def test_readme_eight_device_command_with_the_default_config(tmp_path):
  """The README's 8-device command as typed (the default ddpm_ring8 config, its batch and
  network), shortened to 300 steps with no log before the end (log_every 1000, so nothing
  syncs the 300 steps) and a small final eval. Before the loop bounded
  its steps in flight (train.STEPS_IN_FLIGHT) this aborted in XLA:CPU's all-reduce rendezvous
  after ~70 s, every time; the :smoke variant never did, as it syncs every few steps."""
  from tests.conftest import run_cli

  proc = run_cli(
    [
      '--config=experiments/ddpm_ring8.py',
      f'--workdir={tmp_path}/ring8_8dev',
      '--config.train.num_steps=300',
      '--config.train.log_every=1000',
      '--config.eval.num_samples=64',
    ],
    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'},
    timeout=400,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'rendezvous' not in proc.stderr
  assert (tmp_path / 'ring8_8dev' / 'checkpoints' / '300').is_dir()
  assert (tmp_path / 'ring8_8dev' / 'eval' / 'step_300.json').exists()
