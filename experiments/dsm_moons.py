"""Denoising score matching (Vincent 2011), one noise level, of a score MLP on moons.

Command:
  python -m gen.main --config=experiments/dsm_moons.py --workdir=runs/dsm_moons
Expected on a 2-core CPU: 16-30 s wall (5,000 steps of batch 512, 1,000 Langevin steps per sample);
EMA samples reach sliced_w2 0.059-0.088 against the test split over seeds 0-4
(W/eval/step_5000.json; seed 0: 0.059, and other draws of 2,500 samples from the same run
0.069-0.075; two draws of the data itself are 0.047 apart). Seed 0: 48.6% of the samples are on
the upper moon (50%), median distance to the moons' centre curves 0.149 (the data: ~0.135, the
data noised with sigma 0.1: ~0.151).
Smoke variant (seconds, used by the tests): --config=experiments/dsm_moons.py:smoke

Noise level: DSM learns the score of the noised data q_sigma = p * N(0, sigma^2 I), not of p, so
the samples are (at best) the data blurred by sigma. The moons already carry noise of std
0.2 (0.1 before FFJORD's factor 2), so sigma = 0.1 widens them only to sqrt(0.2^2 + 0.1^2)
= 0.224 while keeping the regression target eps / sigma moderate; sigma = 0.05 measured the
same sliced_w2 (0.058), sigma = 0.3 blurs visibly (0.085, median curve distance 0.245).
Sampling: unadjusted Langevin (noise_scale 1) from uniform noise on [-3, 3]^2, step a = 5e-3:
small against the narrowest variance of q_sigma (0.05; a / 0.05 = 0.1, ULA inflates it by
~2.5%) and 1,000 steps (total time 5) carry the noise onto the moons. a = 2e-2 measured 0.104
(the ULA bias shows); longer chains drift mass between the moons (4,000 steps: 52.6% upper,
sliced_w2 0.096; 16,000: 54.7%), the mode-weight error of Langevin on a learned score that
Song & Ermon (2019) describe: the weights are set by the (few) gradients between the moons.
"""

from experiments import base, common, ebm_common


def get_config(arg: str | None = None):
  """Returns the dsm_moons config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='ebm')
  ebm_common.toy_network(c, data='moons', batch_size=512, model='score_mlp', loss='dsm')
  c.ebm.dsm_sigma = 0.1
  c.ebm.init_range = 3.0
  c.ebm.sample.chain_steps = 1000
  c.ebm.step_size = 5e-3
  c.ebm.noise_scale = 1.0
  ebm_common.adam(c, lr=1e-3, b1=0.9, warmup_steps=100, schedule='cosine')
  ebm_common.toy_run(
    c, num_steps=5000, log_every=250, sample_every=2500, ema_rate=0.999, metrics=('sliced_w2',)
  )
  return common.variant(c, arg, name='dsm_moons', smoke=ebm_common.smoke)
