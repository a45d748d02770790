"""WGAN with weight clipping (Arjovsky et al. 2017) on grid25 (25 Gaussians, std 0.05).

Recipe: algorithm 1 of the WGAN paper: the Wasserstein loss, every critic parameter clipped to
[-0.01, 0.01] after each update, 5 critic steps per generator step, RMSProp with learning rate
5e-5 for both players, constant. Batch 5 x 256 (each critic step on its own 256 real points),
networks, 2-d latent and EMA sampling as experiments/wgan_gp_grid25.py, so that the two
Lipschitz constraints compare directly; 50,000 generator steps (250,000 critic steps), more
than three times wgan_gp_grid25's, and still a reasonable CPU budget.

Command:
  python -m gen.main --config=experiments/wgan_clip_grid25.py --workdir=runs/wgan_clip_grid25
Expected on a 2-core CPU: 339 s wall (50,000 steps). It fails, as Gulrajani et al. (2017, section 3)
describe for clipping on toy data: over seeds 0-4 the EMA samples cover 0-2 of the 25 modes with
high_quality_fraction 0.018-0.076 and sliced_w2 0.32-0.75 (W/eval/step_50000.json; seed 0: 2/25,
0.076, 0.32), and at most one mode at any of the evaluations during training (eval_every 12,500).
The clipped critic can only represent very simple functions: in seed 0 its W1 estimate is ~1e-4
(2e-3 at step 2,500, 8.5e-5 at 42,500), and the samples spread along the square's edges and a few
lines through it
instead of gathering on the modes. wgan_gp_grid25 covers 25/25 in 15,000 steps with the same
networks.
Smoke variant (seconds, used by the tests): --config=experiments/wgan_clip_grid25.py:smoke
"""

from experiments import base, common, gan_toy_common


def get_config(arg: str | None = None):
  """Returns the wgan_clip_grid25 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='gan')
  gan_toy_common.toy_gan(
    c,
    data='grid25',
    g_features=(128, 128, 128),
    d_features=(128, 128, 128),
    latent_dim=2,
    batch_size=5 * 256,
  )
  c.gan.loss = 'wasserstein'
  c.gan.clip_value = 0.01
  c.gan.n_critic = 5
  gan_toy_common.optimizer(c.optim, lr=5e-5, name='rmsprop', schedule='constant')
  gan_toy_common.optimizer(c.gan.optim_d, lr=5e-5, name='rmsprop', schedule='constant')
  gan_toy_common.intervals(c, num_steps=50_000)
  return common.variant(c, arg, name='wgan_clip_grid25', smoke=gan_toy_common.smoke)
