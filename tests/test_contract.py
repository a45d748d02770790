"""The objective contract (gen/objectives/contract.py) from the outside: objectives written in
tests/toy_objectives.py train, sample, are evaluated and use another run's frozen parameters
through gen with no edit under gen/, named as 'tests.toy_objectives:gaussian_fit'; and no
objective's step or sampler recompiles per call."""

import json
import re
import types

import chex
import jax
import ml_collections
import numpy as np
import pytest

from experiments import base
from gen import data as data_lib
from gen import objectives
from gen import setup as setup_lib
from gen.errors import ConfigError
from tests.conftest import REPO, run_python

# an experiment file for it, as a researcher's own repository would hold one
EXPERIMENT = """
from experiments import base

def get_config(arg=None):
  c = base.get_config(objective='tests.toy_objectives:gaussian_fit')
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
    ('tests.toy_objectives:nothing', 'cannot be imported'),
    ('tests.toy_objectives:math', 'has no default_config()'),
    ('ddpmm', "choose one of ['autoencoder', 'diffusion', 'ebm', 'gan', 'rbm', 'vae', 'vqvae'] or"),
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
  'vae': 'vae_ring8',
  'vqvae': 'vqvae_digits',
  'autoencoder': 'ae_digits',
}
SLOW_TRACES = ('vqvae', 'autoencoder')  # conv networks: ~10 s of compiling each


@pytest.mark.parametrize(
  'objective',
  [pytest.param(o, marks=pytest.mark.slow if o in SLOW_TRACES else ()) for o in sorted(SMOKE)],
)
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


def _gauss_config(objective, steps, **pretrained):
  c = base.get_config(objective=f'tests.toy_objectives:{objective}')
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
