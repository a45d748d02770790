"""The contrastive-divergence EBM on ring8 trains, as configured, to its docstring's quality.

experiments/ebm_cd_ring8.py (short-run Langevin chains from noise, sampled the same way), seed
0: 8/8 modes with high_quality_fraction 0.93 in about a minute on a 2-core CPU.
"""

import json

import jax
import pytest

from experiments import ebm_cd_ring8
from gen import train


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ebm_cd_ring8_covers_every_mode(tmp_path):
  config = ebm_cd_ring8.get_config()
  assert config.seed == 0 and config.sample.use_ema  # the claims are about seeded EMA samples
  train.train_and_evaluate(config, str(tmp_path), mesh=train.make_mesh(jax.devices()[:1]))
  values = json.loads((tmp_path / 'eval' / f'step_{config.train.num_steps}.json').read_text())
  print('ebm_cd_ring8', values)
  assert values['modes_covered'] == 8
  assert values['high_quality_fraction'] >= 0.8
