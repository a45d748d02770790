"""The objective contract (gen/objectives/contract.py) from the outside: an objective written in
this file trains, samples and is evaluated through `gen.main` with no edit under gen/, named as
'tests.test_contract:gaussian_fit'; and no objective's step or sampler recompiles per call."""

import json
import math
import re
import types

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import base
from gen import data as data_lib
from gen import objectives
from gen import setup as setup_lib
from gen import state as state_lib
from gen.errors import ConfigError
from gen.objectives.contract import Capabilities, Samples
from tests.conftest import REPO, run_python

# -- a 30-line objective: the maximum-likelihood Gaussian N(mu, diag(sigma^2)) -----------------


class GaussianFit:
  """Fits mu and log sigma by gradient descent on the mean negative log-likelihood."""

  capabilities = Capabilities(likelihood=True)

  def __init__(self, dim, lr, ema_rate):
    self.dim, self.tx, self.ema_rate = dim, optax.adam(lr), ema_rate

  def nll(self, params, x):  # per example, in nats
    z = (x - params['mu']) * jnp.exp(-params['log_sigma'])
    return jnp.sum(0.5 * z**2 + params['log_sigma'] + 0.5 * math.log(2 * math.pi), axis=-1)

  def init(self, rng, example_batch):
    params = {'mu': jnp.zeros(self.dim), 'log_sigma': jnp.zeros(self.dim)}
    return state_lib.create_state({'gauss': params}, {'gauss': self.tx})

  def step(self, state, batch, key):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(self.nll(p, batch['x'])))(
      state.params['gauss']
    )
    state, norm = state_lib.apply_gradients(state, 'gauss', grads, self.tx, self.ema_rate)
    return state, {'loss': loss, 'grad_norm': norm}

  def sample(self, state, key, num, labels=None):
    p = state.ema_params['gauss']
    x = p['mu'] + jnp.exp(p['log_sigma']) * jax.random.normal(key, (num, self.dim))
    return Samples(x, None, {'nfe': jnp.zeros((), jnp.int32)})

  def sample_protocol(self):
    return {'sampler': 'reparameterised_normal', 'use_ema': True}

  def pictures(self, state, key):
    return {}

  def picture_captions(self):
    return {}

  def bits_per_dim(self, state, x, key, num_bins=0):
    nll = self.nll(state.ema_params['gauss'], x)
    return {'bpd': jnp.mean(nll) / (self.dim * math.log(2)), 'bpd_nfe': jnp.zeros((), jnp.int32)}

  def likelihood_protocol(self):
    return {'method': 'closed_form'}


gaussian_fit = types.SimpleNamespace(
  default_config=lambda: ml_collections.ConfigDict({'lr': 0.05}),
  from_config=lambda config, spec: GaussianFit(
    spec.shape[0], config.gaussian_fit.lr, config.train.ema_rate
  ),
)

# an experiment file for it, as a researcher's own repository would hold one
EXPERIMENT = """
from experiments import base

def get_config(arg=None):
  c = base.get_config(objective='tests.test_contract:gaussian_fit')
  c.data.name, c.data.batch_size = 'moons', 256
  c.train.num_steps, c.train.ckpt_every, c.train.sample_every = 300, 300, 300
  c.train.ema_rate = 0.9
  c.sample.num = 200
  c.eval.metrics = ('sliced_w2', 'bpd')
  c.eval.num_samples, c.eval.bpd_num = 500, 500
  return c
"""


@pytest.mark.timeout(240)
def test_an_objective_outside_gen_trains_samples_and_evaluates_through_gen_main(tmp_path):
  (tmp_path / 'gauss_exp.py').write_text(EXPERIMENT)
  wd = tmp_path / 'run'
  config = [f'--config={tmp_path}/gauss_exp.py', f'--workdir={wd}']
  proc = run_python(['-m', 'gen.main', *config], cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(wd / 'eval' / 'step_300.json') as f:
    values = json.load(f)
  # the fitted Gaussian's bits/dim on test data is the closed form of its moments
  test = data_lib.make_source('moons', 'test').get_batch(np.arange(500))['x']
  best = 0.5 * np.log2(2 * np.pi * np.e * test.var(axis=0)).mean()
  assert abs(values['bpd'] - best) < 0.1, (values['bpd'], best)
  assert values['protocol']['sample']['sampler'] == 'reparameterised_normal'
  assert values['protocol']['bpd']['method'] == 'closed_form'
  assert values['sample_nfe'] == 0 and 'sliced_w2' in values
  proc = run_python(['-m', 'gen.main', f'--workdir={wd}', '--mode=sample', '--num_samples=500'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(wd / 'samples' / 'step_300.npz') as f:
    assert f['samples'].shape == (500, 2) and int(f['nfe']) == 0


def test_module_attr_names_fail_in_one_line():
  for name, message in (
    ('tests.no_such_module:x', 'cannot be imported'),
    ('tests.test_contract:nothing', 'cannot be imported'),
    ('tests.test_contract:EXPERIMENT', 'has no default_config()'),
    ('ddpmm', "choose one of ['diffusion', 'ebm', 'gan', 'rbm'] or 'package.module:attr'"),
  ):
    with pytest.raises(ConfigError, match=re.escape(message)):
      base.get_config(objective=name)


def test_an_object_that_breaks_the_contract_is_named():
  broken = types.SimpleNamespace(
    default_config=lambda: ml_collections.ConfigDict({'lr': 0.1}),
    from_config=lambda config, spec: types.SimpleNamespace(init=lambda *a: None),
  )
  objectives.OBJECTIVES['broken'] = broken
  try:
    config = base.get_config(objective='broken')
    with pytest.raises(TypeError, match='without step, sample, sample_protocol, pictures'):
      objectives.make(config, data_lib.get_spec('ring8'))
  finally:
    del objectives.OBJECTIVES['broken']


# -- no recompiles: every objective's step and sampler trace once --------------------------------

SMOKE = {  # objective -> an experiment whose :smoke variant exercises it
  'diffusion': 'ddpm_ring8',
  'gan': 'gan_ring8',
  'ebm': 'ebm_cd_ring8',
  'rbm': 'rbm_digits',
}


@pytest.mark.parametrize('objective', sorted(SMOKE))
def test_step_and_sample_trace_once_over_calls(objective, tmp_path):
  from importlib import import_module

  config = import_module(f'experiments.{SMOKE[objective]}').get_config('smoke')
  config.data.data_dir = str(tmp_path)
  assert config.objective.name == objective
  setup = setup_lib.build(config, setup_lib.make_mesh(jax.devices()[:1]))
  obj = setup.objective
  batch = setup_lib.example_batch(setup)
  step = jax.jit(chex.assert_max_traces(obj.step, n=1))
  sample = jax.jit(chex.assert_max_traces(lambda st, k: obj.sample(st, k, 8), n=1))
  state = obj.init(jax.random.key(0), batch)
  for i in range(3):  # new keys and states each call: any retrace would raise
    state, metrics = step(state, batch, jax.random.key(i))
    out = sample(state, jax.random.key(10 + i))
  chex.assert_shape(out.x, (8, *setup.spec.shape))
  assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
  chex.clear_trace_counter()


# -- pretrained networks: a student that distils a frozen teacher run ---------------------------


class GaussianStudent(GaussianFit):
  """Fits its Gaussian to a frozen teacher's: the loss is KL(teacher || student), closed form."""

  def init(self, rng, example_batch, pretrained):
    state = super().init(rng, example_batch)
    return state.replace(extra={'teacher': pretrained['teacher']['gauss']})

  def step(self, state, batch, key):
    t = state.extra['teacher']

    def kl(p):  # KL(N(mu_t, s_t^2) || N(mu, s^2)), summed over dimensions
      var_t, var = jnp.exp(2 * t['log_sigma']), jnp.exp(2 * p['log_sigma'])
      return jnp.sum(
        p['log_sigma'] - t['log_sigma'] + (var_t + (t['mu'] - p['mu']) ** 2) / (2 * var) - 0.5
      )

    loss, grads = jax.value_and_grad(kl)(state.params['gauss'])
    state, norm = state_lib.apply_gradients(state, 'gauss', grads, self.tx, self.ema_rate)
    return state, {'loss': loss, 'grad_norm': norm}


gaussian_student = types.SimpleNamespace(
  PRETRAINED={'teacher': ('tests.test_contract:gaussian_fit',)},
  default_config=lambda: ml_collections.ConfigDict({'lr': 0.05}),
  from_config=lambda config, spec, pretrained: GaussianStudent(
    spec.shape[0], config.gaussian_student.lr, config.train.ema_rate
  ),
)


def _gauss_config(objective, steps, **pretrained):
  c = base.get_config(objective=f'tests.test_contract:{objective}')
  c.data.name, c.data.batch_size = 'moons', 128
  c.train.num_steps, c.train.ckpt_every, c.train.sample_every = steps, 100, steps
  c.train.ema_rate, c.sample.num = 0.0, 64
  c.eval.metrics = ()
  for role, value in pretrained.items():
    c.pretrained[role] = value
  return c


def _run(config, wd):
  from gen import train

  return train.train_and_evaluate(config, str(wd), mesh=setup_lib.make_mesh(jax.devices()[:1]))


@pytest.mark.timeout(300)
def test_a_run_uses_another_runs_parameters_frozen_and_records_them(tmp_path):
  from gen import pretrained as pretrained_lib
  from tests.conftest import load_state

  teacher_wd, student_wd = tmp_path / 'teacher', tmp_path / 'student'
  teacher = _run(_gauss_config('gaussian_fit', 200), teacher_wd)
  config = _gauss_config('gaussian_student', 300, teacher=f'{teacher_wd}@200')
  student = _run(config, student_wd)
  # the teacher's EMA parameters sit in the state unchanged; the student has matched them
  chex.assert_trees_all_equal(student.extra['teacher'], teacher.ema_params['gauss'])
  chex.assert_trees_all_close(student.params['gauss'], teacher.ema_params['gauss'], atol=2e-2)
  _, data_state = load_state(config, str(student_wd), step=300)
  record = data_state[pretrained_lib.SAVED_KEY]['teacher']
  assert record == {
    'workdir': str(teacher_wd),
    'step': 200,
    'sha256': pretrained_lib.digest(teacher.ema_params),
  }
  # a resume whose reference now resolves to other parameters is refused, in one line
  _run(_gauss_config('gaussian_fit', 300), teacher_wd)  # the teacher trains on to step 300
  latest = _gauss_config('gaussian_student', 400, teacher=str(teacher_wd))
  with pytest.raises(ConfigError, match=r'different config \(pretrained\.teacher\)'):
    _run(latest, student_wd)
  with pytest.raises(ConfigError, match=r'pretrained\.teacher changed since the last checkpoint'):
    from gen.utils import workdir as workdir_lib

    workdir_lib.write_config(str(student_wd), latest)  # even with the config rewritten
    _run(latest, student_wd)


@pytest.mark.timeout(300)
def test_pretrained_references_that_cannot_work_fail_in_one_line(tmp_path):
  teacher_wd = tmp_path / 'teacher'
  _run(_gauss_config('gaussian_fit', 100), teacher_wd)
  ddpm = tmp_path / 'ddpm'
  from experiments import ddpm_ring8

  ddpm.mkdir()
  from gen.utils import workdir as workdir_lib

  workdir_lib.write_config(str(ddpm), ddpm_ring8.get_config('smoke'))
  mesh = setup_lib.make_mesh(jax.devices()[:1])
  for value, message in (
    ('', r'pretrained\.teacher is required by'),
    (str(tmp_path / 'nothing'), r'holds no run \(no config\.json\)'),
    (f'{teacher_wd}@150', r'no checkpoint of step 150 \(saved: \[100\]\)'),
    (f'{teacher_wd}@x', r"expected 'WORKDIR' or 'WORKDIR@STEP'"),
    (str(ddpm), r"is a run of objective\.name='diffusion'; the teacher role takes one of"),
  ):
    with pytest.raises(ConfigError, match=message):
      setup_lib.build(_gauss_config('gaussian_student', 10, teacher=value), mesh)
  config = _gauss_config('gaussian_fit', 10)
  with pytest.raises(ConfigError, match=r'pretrained\.teacher: .* has no such role'):
    config.pretrained = ml_collections.ConfigDict({'teacher': str(teacher_wd)})
    setup_lib.build(config, mesh)
