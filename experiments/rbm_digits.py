"""A Bernoulli RBM on binarised digits, trained by persistent contrastive divergence.

Command:
  python -m gen.main --config=experiments/rbm_digits.py --workdir=runs/rbm_digits
Expected on a 2-core CPU: 21-34 s wall (6,000 steps of batch 100). Samples (1,000 Gibbs sweeps
from noise) are thick binarised digit shapes, about half of them recognisable (0, 2, 3, 5, 7 most
often); sliced_w2 0.124 against the test digits, FD-digits 48.3 (seed 0, W/eval/step_6000.json;
the samples are probabilities of binary pixels, the data grey levels). Alternatives we measured
(more hidden units, CD-5): experiments/RESULTS.md.
Smoke variant: --config=experiments/rbm_digits.py:smoke
"""

from experiments import base, common
from gen import metrics as metrics_lib


def get_config(arg: str | None = None):
  """RBM (gen.models.energy.RBM, free energy F(v)) with 64 visible and 128 hidden units.

  Pixels are binarised at 0 (intensity 8 of 16). Negatives: persistent chains (PCD, Tieleman
  2008: a replay buffer never re-initialised) advanced by one block-Gibbs sweep per step;
  `chain_init='data'` with `chain_steps=k` gives classic CD-k (Hinton 2002). The gradient of
  mean F(v+) - mean F(v-) is minus the positive-minus-negative correlations of CD. Samples:
  1,000 Gibbs sweeps from random binary images, shown as the last sweep's p(v = 1 | h).
  """
  c = base.get_config(objective='rbm')
  c.data.name = 'digits'
  c.data.batch_size = 100
  c.model.name = 'rbm'
  c.model.rbm.num_hidden = 128
  c.rbm.chain_init = 'buffer'
  c.rbm.buffer_size = 1000
  c.rbm.reinit_prob = 0.0  # persistent CD
  c.rbm.chain_steps = 1
  c.rbm.sample.chain_steps = 1000
  c.optim.lr = 3e-3
  c.optim.b1 = 0.5
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 100
  c.train.num_steps = 6000
  c.train.ckpt_every = 3000
  c.train.sample_every = 3000
  c.train.ema_rate = 0.99
  c.sample.num = 100
  c.eval.metrics = metrics_lib.DIGITS_METRICS  # as diffusion and GANs on digits
  c.eval.num_samples = 297
  return common.variant(c, arg, name='rbm_digits', smoke=smoke)


def smoke(c) -> None:
  """Seconds-long variant for tests: data.batch_size = 16, model.rbm.num_hidden = 16,
  rbm.buffer_size = 64, rbm.sample.chain_steps = 10, train.num_steps = 20, train.log_every = 5,
  train.ckpt_every = 10, train.sample_every = 10, sample.num = 16, eval.num_samples = 64."""
  c.data.batch_size = 16
  c.model.rbm.num_hidden = 16
  c.rbm.buffer_size = 64
  c.rbm.sample.chain_steps = 10
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.sample.num = 16
  c.eval.num_samples = 64
