"""The 2-D toy experiments train, as configured, to bars that every measured seed clears.

Each run trains the experiment file's own config (seed 0, one CPU device) through
`tools/seed_spread.run_one`, the function that measured the spreads, and reads its final
`W/eval/step_N.json` (2,500 EMA samples). Every bar sits below the worst of seeds 0-4, measured
as configured and with the initial parameters moved by one ulp (a change of rounding, not of
the maths), by a margin; experiments/RESULTS.md has the spreads and the command that measures
them. GEN_QUALITY_SEED=s and GEN_QUALITY_PERTURB=ulp run these tests on another seed or under
that perturbation: the bars must hold there too. The full-length ddpm_ring8 (about 400 s on the
CI machine), rectified_flow_grid25 (about 280 s), gan_ring8 (about 170 s), ddpm_grid25, bfloat16
ddpm_ring8, wgan_gp_grid25 and gan_grid25 are measured there but not tested here, to keep the
suite's time: ddpm_ring8 is tested at 2,000 steps below, the GAN family by cgan_digits.

A mode is covered with >= 20% of its fair share of samples within 3 std of its centre (the
PacGAN/VEEGAN 2-D benchmark); high_quality_fraction is the share within 3 std of some centre.
"""

import os

import pytest

from tests.conftest import ONE_DEVICE
from tools.seed_spread import run_one

# experiment -> (overrides, {metric: bar}); modes_covered and high_quality_fraction are minimums
BARS = {
  'ebm_cd_ring8': ((), {'modes_covered': 8, 'high_quality_fraction': 0.88}),
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize('case', sorted(BARS))
def test_toy_experiment_reaches_its_bar(case, tmp_path):
  overrides, bars = BARS[case]
  seed = int(os.environ.get('GEN_QUALITY_SEED', '0'))
  perturb = os.environ.get('GEN_QUALITY_PERTURB', 'none')
  values = run_one(case.split()[0], seed, perturb, str(tmp_path), overrides)
  print(case, f'seed {seed}', perturb, values)
  for metric, bar in bars.items():
    assert values[metric] >= bar, (metric, values[metric], bar)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_run_evaluates_its_ema_at_least_as_well_as_its_raw_weights(tmp_path):
  """ddpm_ring8 cut to 2,000 steps: the end-of-training eval (EMA weights, warmed up by
  train.ema_warmup) covers every mode, with a high-quality fraction of at least 0.7 (0.772-0.802
  over seeds 0-4) and within 0.03 of the raw
  weights of the same checkpoint (`sample.use_ema=False`, evaluated into another folder; the
  cosine schedule has annealed the raw weights by then, and the EMA trails them by 0.007-0.017
  over seeds 0-4, experiments/RESULTS.md). Without the warm-up, 13.5% of that EMA was still the
  random initialisation: 0/8 modes."""
  from gen import modes
  from gen.utils import workdir as workdir_lib

  seed = int(os.environ.get('GEN_QUALITY_SEED', '0'))
  perturb = os.environ.get('GEN_QUALITY_PERTURB', 'none')
  # sample.num=16: the end-of-run picture draws 16 points, not 2,000 (the eval draws its own)
  overrides = ('train.num_steps=2000', 'sample.num=16')
  ema = run_one('ddpm_ring8', seed, perturb, str(tmp_path / 'run'), overrides)
  config = workdir_lib.read_config(str(tmp_path / 'run'))
  config.sample.use_ema = False
  raw = modes.evaluate(
    config, str(tmp_path / 'run'), output_dir=str(tmp_path / 'raw'), mesh=ONE_DEVICE
  )
  print('seed', seed, perturb, 'ema', ema, 'raw', raw)
  assert ema['modes_covered'] == 8 and ema['high_quality_fraction'] >= 0.7, ema
  assert ema['high_quality_fraction'] >= raw['high_quality_fraction'] - 0.03, (ema, raw)
