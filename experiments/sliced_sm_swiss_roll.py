"""Sliced score matching (Song et al. 2019) of an energy MLP on swiss_roll, sampled by Langevin.

Command:
  python -m gen.main --config=experiments/sliced_sm_swiss_roll.py \
    --workdir=runs/sliced_sm_swiss_roll
Expected on a 2-core CPU: 72-115 s wall (5,000 steps of batch 512, 4,000 Langevin steps per sample);
EMA samples reach sliced_w2 0.056-0.101 against the test split over seeds 0-4
(W/eval/step_5000.json; seed 0: 0.056, other draws of 2,500 samples from the same run 0.06-0.07;
two draws of the data itself are 0.052 apart).
Smoke variant (seconds, used by the tests): --config=experiments/sliced_sm_swiss_roll.py:smoke

Loss: SSM-VR, one Rademacher projection per example (v^T grad_x s v + 0.5 |s|^2 with
s = -grad_x E). Sampling: unadjusted Langevin (noise_scale 1) from uniform noise on [-3, 3]^2
with step a = 5e-3: the roll has noise std 0.2 across its arms (variance 0.04), so
a / 0.04 = 0.125 and ULA inflates that variance by only ~3% (1 / (1 - a / (4 * 0.04))). The
number of steps is what matters here: the arms are 1.26 apart with little density between
them, and chains must travel along the roll to spread the mass over it. With 1,000 steps
(total time 5) the inner turn is over-weighted (sliced_w2 0.15); 4,000 steps (time 20) give
0.06-0.07; 16,000 steps 0.058 (the energy's chains are stable: E is a real density).
Alternatives we measured (a score network instead of the energy): experiments/RESULTS.md.
"""

from experiments import base, common, ebm_common


def get_config(arg: str | None = None):
  """Returns the sliced_sm_swiss_roll config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='ebm')
  ebm_common.toy_network(c, data='swiss_roll', batch_size=512, model='energy_mlp', loss='sliced_sm')
  c.ebm.sm_projections = 1
  c.ebm.sm_projection = 'rademacher'
  c.ebm.sm_variance_reduced = True
  c.ebm.init_range = 3.0
  c.ebm.sample.chain_steps = 4000
  c.ebm.step_size = 5e-3
  c.ebm.noise_scale = 1.0
  ebm_common.adam(c, lr=1e-3, b1=0.9, warmup_steps=100, schedule='cosine')
  ebm_common.toy_run(
    c, num_steps=5000, log_every=250, sample_every=2500, ema_rate=0.999, metrics=('sliced_w2',)
  )
  return common.variant(c, arg, name='sliced_sm_swiss_roll', smoke=ebm_common.smoke)
