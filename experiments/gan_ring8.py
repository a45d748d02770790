"""GAN with the non-saturating loss on ring8 (8 Gaussians on a circle of radius 2, std 0.02).

Recipe: the GAN game of Goodfellow et al. (2014) with the generator minimising -log D(G(z))
(their non-saturating loss, section 3) and the R1 penalty gamma/2 E|grad_x D(x)|^2 on real data,
gamma 0.1 (Mescheder et al. 2018), which keeps the game from dropping a mode; two 3 x 128 MLPs
(ReLU generator from a 4-d Gaussian latent, LeakyReLU(0.2) discriminator, no normalisation);
Adam 1e-3 with b1 0.5 (DCGAN's momentum) and cosine decay to 0 for both players; batch 256; one
discriminator step per generator step; 20,000 steps; samples from the generator's EMA (0.999),
which the decaying learning rate lets settle on the modes. Without R1 one of seeds 0-4 covered
7/8 modes (its sliced_w2 0.51); with it every seed covers 8/8, also under a one-ulp change of the
initial parameters (experiments/RESULTS.md).

Command:
  python -m gen.main --config=experiments/gan_ring8.py --workdir=runs/gan_ring8
Expected on a 2-core CPU: ~60 s wall (20,000 steps); over seeds 0-4 the EMA samples cover 8/8
modes with high_quality_fraction 0.946-0.956 and sliced_w2 0.10-0.19 (W/eval/step_20000.json; seed
0: 0.954, 0.19; two draws of the data are ~0.11 apart); 8/8 already at step 5,000 in every seed.
A seeded test in tests/test_quality_toys.py.
Smoke variant (seconds, used by the tests): --config=experiments/gan_ring8.py:smoke
"""

from experiments import base, common, gan_toy_common


def recipe(c) -> None:
  """Everything but the loss: shared with gan_minimax_ring8."""
  gan_toy_common.toy_gan(
    c, data='ring8', g_features=(128, 128, 128), d_features=(128, 128, 128), latent_dim=4
  )
  c.gan.r1_weight = 0.1  # without it 1 of 5 seeds dropped a mode: experiments/RESULTS.md
  gan_toy_common.optimizer(c.optim, lr=1e-3)
  gan_toy_common.optimizer(c.gan.optim_d, lr=1e-3)
  gan_toy_common.intervals(c, num_steps=20_000)


def get_config(arg: str | None = None):
  """Returns the gan_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='gan')
  recipe(c)
  c.gan.loss = 'non_saturating'
  return common.variant(c, arg, name='gan_ring8', smoke=gan_toy_common.smoke)
