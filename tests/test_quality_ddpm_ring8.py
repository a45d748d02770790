"""experiments/ddpm_ring8.py as configured trains to its stated quality (seeded; ~1-2 min)."""

import json

import jax
import pytest

from experiments import ddpm_ring8
from gen import train


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddpm_ring8_covers_all_modes(tmp_path):
  config = ddpm_ring8.get_config()
  assert config.sample.use_ema  # the claim is about the EMA samples
  train.train_and_evaluate(config, str(tmp_path), mesh=train.make_mesh(jax.devices()[:1]))
  values = json.loads((tmp_path / 'eval' / f'step_{config.train.num_steps}.json').read_text())
  print('ddpm_ring8 eval:', values)
  assert values['modes_covered'] == 8
  # Measured 0.96 at seed 0; 0.9 is the bar the experiment promises.
  assert values['high_quality_fraction'] >= 0.9
  # Two draws of the data itself are ~0.11 apart; a collapsed or smeared model is far above.
  assert values['sliced_w2'] < 0.3
