"""EBM on ring8 by contrastive divergence with short-run Langevin chains (Nijkamp et al. 2019).

Command:
  python -m gen.main --config=experiments/ebm_cd_ring8.py --workdir=runs/ebm_cd_ring8
Expected on a 2-core CPU: ~60 s wall (2,000 steps of batch 256, 40 gradient evaluations per step);
over seeds 0-4 the EMA samples cover 8/8 modes with high_quality_fraction 0.922-0.948 and
sliced_w2 0.17-0.21 (W/eval/step_2000.json; seed 0: 0.930, 0.21; two draws of the data itself are
0.11 apart). In seed 0 a few samples sit at a spurious minimum at the origin and the modes hold
256-336 of the 2,500 samples each (fair share 312). A seeded test in tests/test_quality_toys.py.
Smoke variant (seconds, used by the tests): --config=experiments/ebm_cd_ring8.py:smoke

Recipe: "short-run MCMC" (Nijkamp, Hill, Zhu & Wu 2019): every negative is a fresh,
non-persistent chain of K = 40 Langevin steps from uniform noise on [-2.5, 2.5]^2, and sampling
runs exactly the same chain (sample_chain_steps = chain_steps, same step and noise). Training
then calibrates the energy so that this fixed K-step flow lands on the data; the energy is not
a density whose long-run chains would be correct, but the sampler is the one training checked.
The gradient step a/2 = 0.025 is large and the noise small (noise_scale 0.05: per-step noise
0.05 sqrt(0.05) = 0.011 < the modes' std 0.02; around a minimum of curvature h the chain's
spread is noise_scale / sqrt(h)), IGEBM's decoupling. energy_alpha 0.1 keeps energies near 0
(|E| ~ 0.13 at the end) while allowing a larger gap than alpha 1; Adam with b1 = 0.5.
We chose this over IGEBM's replay buffer because the test samples from noise: with the buffer
(10,000 chains, reinit 5%) the training chains are long-run ones, and 40 steps from noise no
longer match them. Alternatives we measured: experiments/RESULTS.md.
"""

from experiments import base, common, ebm_common


def get_config(arg: str | None = None):
  """Returns the ebm_cd_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='ebm')
  ebm_common.toy_network(c, data='ring8', batch_size=256, model='energy_mlp', loss='cd')
  c.ebm.energy_alpha = 0.1
  c.ebm.chain_init = 'noise'  # short-run: a fresh chain from noise for every negative
  c.ebm.init_range = 2.5
  c.ebm.chain_steps = 40
  c.ebm.sample.chain_steps = 40  # sample exactly as trained
  c.ebm.step_size = 0.05
  c.ebm.noise_scale = 0.05
  ebm_common.adam(c, lr=1e-3, b1=0.5, warmup_steps=0, schedule='constant')
  ebm_common.toy_run(
    c,
    num_steps=2000,
    log_every=100,
    sample_every=500,
    ema_rate=0.99,
    metrics=('modes_covered', 'high_quality_fraction', 'sliced_w2'),
  )
  return common.variant(c, arg, name='ebm_cd_ring8', smoke=ebm_common.smoke)
