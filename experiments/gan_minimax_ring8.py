"""gan_ring8's recipe with the saturating minimax generator loss E[log(1 - D(G(z)))].

The original minimax game (Goodfellow et al. 2014, eq. 1): the generator descends
log(1 - D(G(z))), whose gradient in the logit, -sigmoid(f), vanishes when the discriminator
confidently rejects the samples; the paper's non-saturating loss (experiments/gan_ring8.py) is
the usual fix. Everything else is gan_ring8's recipe, untuned for this loss.

Command:
  python -m gen.main --config=experiments/gan_minimax_ring8.py --workdir=runs/gan_minimax_ring8
Expected on a 2-core CPU: ~60 s wall (20,000 steps). It does not fail here: over seeds 0-4 the
EMA samples cover 8/8 modes with high_quality_fraction 0.944-0.964 and sliced_w2 0.10-0.19
(W/eval/step_20000.json; seed 0: 0.964, 0.18), as the non-saturating loss does (gan_ring8:
0.946-0.956, 0.10-0.19); 8/8 already at step 5,000 in every seed. Why: the saturation never
happens; the discriminator never rejects the samples confidently (D(G(z)), averaged over
1,000-step windows, stays between 0.46 and 0.5 in every seed), so sigmoid(f) stays near 0.5 and
Adam normalises the gradient's scale anyway.
Smoke variant (seconds, used by the tests): --config=experiments/gan_minimax_ring8.py:smoke
"""

from experiments import base, common, gan_ring8, gan_toy_common


def get_config(arg: str | None = None):
  """Returns the gan_minimax_ring8 config; `arg='smoke'` gives a seconds-long variant."""
  c = base.get_config(objective='gan')
  gan_ring8.recipe(c)
  c.gan.loss = 'minimax'
  return common.variant(c, arg, name='gan_minimax_ring8', smoke=gan_toy_common.smoke)
