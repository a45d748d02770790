"""Runs written before the objective contract v2 (config layout v1: one flat `objective`
section) still resume, evaluate and sample: gen.utils.legacy moves each v1 field to its v2 place.

tests/v1_configs.json holds v1 configs of six experiments as the v1 code wrote them (a diffusion
sampler, a conditional GAN with its discriminator optimizer, a WGAN-GP, an EBM, the RBM).
"""

import copy
import importlib
import json
import os

import pytest

from gen import objectives
from gen.utils import legacy
from gen.utils import workdir as workdir_lib

with open(os.path.join(os.path.dirname(__file__), 'v1_configs.json')) as f:
  V1 = json.load(f)


@pytest.mark.parametrize('key', sorted(V1))
def test_a_v1_config_maps_field_for_field_onto_its_experiment(key):
  name, arg = key.split(':')
  current = importlib.import_module(f'experiments.{name}').get_config(arg or None)
  assert legacy.is_v1(V1[key]) and not legacy.is_v1(workdir_lib.config_to_dict(current))
  migrated = workdir_lib.upgrade(copy.deepcopy(V1[key]))  # as read from a v1 W/config.json
  assert workdir_lib.config_diff(migrated, workdir_lib.config_to_dict(current)) == []


def test_a_v1_run_directory_resumes_with_the_v2_config(tmp_path):
  from experiments import rbm_digits

  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(V1['rbm_digits:smoke'], f)
  config = workdir_lib.read_config(str(tmp_path))
  assert config.objective.name == 'rbm' and config.rbm.sample.chain_steps == 10
  assert 'chain_steps' not in config.objective and 'optim_d' not in config
  workdir_lib.check_workdir(str(tmp_path), rbm_digits.get_config('smoke'), 'train')


def test_every_v2_objective_field_has_a_v1_origin():
  for name, moves in legacy.MOVES.items():
    fields = workdir_lib.flatten(workdir_lib.config_to_dict(objectives.default_config(name)))
    targets = {new.split('.', 1)[1] for new in moves.values()}
    # fields added to the section since v2 (with the value old runs read them with)
    targets |= {f.split('.', 1)[1] for f in workdir_lib.ADDED_FIELDS if f.startswith(f'{name}.')}
    assert set(fields) <= targets, (name, sorted(set(fields) - targets))


def test_a_v2_config_is_left_as_it_is():
  from experiments import ddpm_ring8

  config = workdir_lib.config_to_dict(ddpm_ring8.get_config())
  assert legacy.from_v1(config) is config
