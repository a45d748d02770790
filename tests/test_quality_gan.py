"""The toy GAN experiments train, as configured, to the quality their docstrings promise (seeded).

Each trains its experiment file's own config (seed 0) on one CPU device and reads the final
W/eval/step_N.json (2,500 EMA samples; gan_grid25 also rejection-samples them). The bars are
those of the PacGAN/VEEGAN 2-D benchmark: a mode is covered with >= 20% of its fair share of
samples within 3 std of its centre. gan_minimax_ring8 and wgan_clip_grid25 have no bar: their
docstrings report what they do.
"""

import importlib
import json

import jax
import pytest

from gen import train

# experiment -> (modes it must cover at least, minimum high_quality_fraction)
BARS = {
  'gan_ring8': (8, 0.9),
  'gan_grid25': (24, 0.9),
  'wgan_gp_grid25': (24, 0.0),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize('name', sorted(BARS))
def test_gan_experiment_reaches_its_bar(name, tmp_path):
  config = importlib.import_module(f'experiments.{name}').get_config()
  assert config.seed == 0 and config.sample.use_ema  # the claims are about seed 0's EMA samples
  train.train_and_evaluate(config, str(tmp_path), mesh=train.make_mesh(jax.devices()[:1]))
  values = json.loads((tmp_path / 'eval' / f'step_{config.train.num_steps}.json').read_text())
  print(name, values)
  modes, hq = BARS[name]
  assert values['modes_covered'] >= modes
  assert values['high_quality_fraction'] >= hq
