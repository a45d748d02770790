"""Recipes the 2-D energy-based and score-matching experiment files share: the network, Adam,
the run's length and pictures, and the seconds-long smoke variant. Each experiment file keeps
its own measured choices (loss, step sizes, chain settings) in view.

Helpers take the config `c` positionally and every recipe value by keyword; an experiment ends
with `common.variant(c, arg, name=..., smoke=ebm_common.smoke)`.
"""

import ml_collections


def toy_network(
  c: ml_collections.ConfigDict, *, data: str, batch_size: int, model: str, loss: str
) -> None:
  """`data` in batches of `batch_size`; a 3 x 128 `model` (energy_mlp | score_mlp) without
  spectral norm, trained by the EBM objective with `loss`; chains unclipped, no MALA."""
  c.data.name = data
  c.data.batch_size = batch_size
  c.model.name = model
  c.model[model].features = (128, 128, 128)
  c.model[model].spectral_norm = False
  c.ebm.loss = loss
  c.ebm.chain_grad_clip = 0.0
  c.ebm.mala = False


def adam(
  c: ml_collections.ConfigDict, *, lr: float, b1: float, warmup_steps: int, schedule: str
) -> None:
  """Adam (b2 0.999) without weight decay or gradient clipping."""
  c.optim.optimizer = 'adam'
  c.optim.lr = lr
  c.optim.b1 = b1
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = warmup_steps
  c.optim.schedule = schedule
  c.optim.grad_clip = 0.0


def toy_run(
  c: ml_collections.ConfigDict,
  *,
  num_steps: int,
  log_every: int,
  sample_every: int,
  ema_rate: float,
  metrics: tuple[str, ...],
) -> None:
  """`num_steps` steps, one checkpoint at the end, 2,000-point pictures and 2,500-sample
  evaluation from the EMA parameters."""
  c.train.num_steps = num_steps
  c.train.log_every = log_every
  c.train.ckpt_every = num_steps
  c.train.sample_every = sample_every
  c.train.ema_rate = ema_rate
  c.sample.num = 2000
  c.sample.use_ema = True
  c.eval.metrics = metrics
  c.eval.num_samples = 2500


def smoke(c: ml_collections.ConfigDict, *, batch_size: int | None = None) -> None:
  """The 2-D EBM smoke variant (seconds-long, for tests): 20 steps of a 2 x 32 network with short
  chains (5 steps for contrastive divergence, 10 for sampling a score model).

  Sets data.batch_size = `batch_size` (if given; else the experiment's batch stays),
  model.<model.name>.features = (32, 32), train.num_steps = 20, train.log_every = 5,
  train.ckpt_every = 10, train.sample_every = 10, sample.num = 64, eval.num_samples = 256; and
  - ebm.loss 'cd': ebm.chain_steps = 5, ebm.sample.chain_steps = 5;
  - otherwise: ebm.sample.chain_steps = 10.
  """
  if batch_size:
    c.data.batch_size = batch_size
  c.model[c.model.name].features = (32, 32)
  if c.ebm.loss == 'cd':
    c.ebm.chain_steps = 5
    c.ebm.sample.chain_steps = 5
  else:
    c.ebm.sample.chain_steps = 10
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.sample.num = 64
  c.eval.num_samples = 256
