"""GAN with the non-saturating loss on ring8 (8 Gaussians on a circle of radius 2, std 0.02).

Recipe: the GAN game of Goodfellow et al. (2014) with the generator minimising -log D(G(z))
(their non-saturating loss, section 3); two 3 x 128 MLPs (ReLU generator from a 4-d Gaussian
latent, LeakyReLU(0.2) discriminator, no normalisation); Adam 1e-3 with b1 0.5 (DCGAN's momentum)
and cosine decay to 0 for both players; batch 256; one discriminator step per generator step;
20,000 steps; samples from the generator's EMA (0.999), which the decaying learning rate lets
settle on the modes.

Command:
  python -m gen.main --config=experiments/gan_ring8.py --workdir=runs/gan_ring8
Expected on a 2-core CPU: 58 s wall (20,000 steps); EMA samples cover 8/8 modes with
high_quality_fraction 0.983 and sliced_w2 0.20 (W/eval/step_20000.json, seed 0; two draws of the
data are ~0.11 apart). Over training (eval_every 5,000): 6/8 modes (hq 0.30) at step 5,000, 8/8 (hq
0.972) from 10,000 on. Seeds 1-3 also cover 8/8, hq 0.977, 0.970, 0.963.
Smoke variant (seconds, used by the tests): --config=experiments/gan_ring8.py:smoke
"""

from experiments import base, gan_toy_common


def recipe(c) -> None:
  """Everything but the loss: shared with gan_minimax_ring8."""
  gan_toy_common.toy_gan(c, 'ring8', (128, 128, 128), (128, 128, 128), latent_dim=4)
  gan_toy_common.optimizer(c.optim, 1e-3)
  gan_toy_common.optimizer(c.optim_d, 1e-3)
  gan_toy_common.intervals(c, 20_000)


def get_config(arg: str | None = None):
  """Returns the gan_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config()
  recipe(c)
  c.objective.loss = 'non_saturating'
  return gan_toy_common.variant(c, arg, 'gan_ring8')
