"""EBM on grid25 by contrastive divergence with short-run Langevin chains (Nijkamp et al. 2019).

Command:
  python -m gen.main --config=experiments/ebm_cd_grid25.py --workdir=runs/ebm_cd_grid25
Expected on a 2-core CPU: ~195 s wall (4,000 steps of batch 512, 40 gradient evaluations per step);
EMA samples cover 25/25 modes with high_quality_fraction 0.911-0.937 and sliced_w2 0.23-0.29 over
seeds 0-4 (W/eval/step_4000.json; seed 0: 0.929, 0.26; two draws of the data itself are 0.23
apart). In seed 0 mode counts range 62-126 of 2,500 (fair share 100): the corner modes get the
fewest.
Smoke variant (seconds, used by the tests): --config=experiments/ebm_cd_grid25.py:smoke

Recipe: as experiments/ebm_cd_ring8.py (fresh K = 40 step chains from uniform noise, sampled
the same way; a/2 = 0.025, noise_scale 0.05, i.e. per-step noise 0.011 against the modes' std
0.05; energy_alpha 0.1; Adam lr 1e-3, b1 0.5), with the noise box widened to [-4.5, 4.5]^2 to
cover the grid and twice the steps and batch. Alternatives we measured: experiments/RESULTS.md.
"""

from experiments import base, common, ebm_common


def get_config(arg: str | None = None):
  """Returns the ebm_cd_grid25 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='ebm')
  ebm_common.toy_network(c, data='grid25', batch_size=512, model='energy_mlp', loss='cd')
  c.ebm.energy_alpha = 0.1
  c.ebm.chain_init = 'noise'  # short-run: a fresh chain from noise for every negative
  c.ebm.init_range = 4.5
  c.ebm.chain_steps = 40
  c.ebm.sample.chain_steps = 40  # sample exactly as trained
  c.ebm.step_size = 0.05
  c.ebm.noise_scale = 0.05
  ebm_common.adam(c, lr=1e-3, b1=0.5, warmup_steps=0, schedule='constant')
  ebm_common.toy_run(
    c,
    num_steps=4000,
    log_every=100,
    sample_every=1000,
    ema_rate=0.99,
    metrics=('modes_covered', 'high_quality_fraction', 'sliced_w2'),
  )
  return common.variant(c, arg, name='ebm_cd_grid25', smoke=smoke)


def smoke(c) -> None:
  """ebm_common.smoke with data.batch_size = 256 (the full run's 512 halved)."""
  ebm_common.smoke(c, batch_size=256)
