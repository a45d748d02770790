"""Recipes several experiment files share (a network for a dataset, the diffusion smoke variant)
and `variant`, which every experiment file's `get_config(arg)` ends with.

Helpers take the config `c` positionally and every recipe value by keyword.
"""

from collections.abc import Callable

import ml_collections

from gen import metrics as metrics_lib


def toy_mlp(c: ml_collections.ConfigDict) -> None:
  """The residual MLP for 2-D toys, batch 512, cosine-decayed Adam."""
  c.data.batch_size = 512
  c.model.name = 'mlp'
  c.model.mlp.features = (256, 256, 256)
  c.model.mlp.time_dim = 64
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.schedule = 'cosine'
  c.train.ema_rate = 0.999
  c.eval.num_samples = 2500


def digits_unet(c: ml_collections.ConfigDict) -> None:
  """A small DDPM-style U-Net for 8x8x1 digits: 8x8 and 4x4 levels, attention at 4x4.

  Sized for a 2-core CPU: ch 64 with 2 blocks per level trains at ~200 examples/s there.
  """
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.name = 'unet'
  c.model.unet.ch = 32
  c.model.unet.ch_mult = (1, 2)
  c.model.unet.num_res_blocks = 1
  c.model.unet.attn_resolutions = (4,)
  c.model.unet.dropout = 0.1
  c.model.unet.num_groups = 8
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 200
  c.optim.schedule = 'cosine'
  c.optim.grad_clip = 1.0
  c.train.ema_rate = 0.999
  c.sample.num = 100
  # The digits sample metrics ('auto' without bpd, which each experiment adds if it wants it).
  c.eval.metrics = metrics_lib.DIGITS_METRICS
  c.eval.num_samples = 297  # the size of the digits test split
  c.eval.num_bins = 17  # pixel values 0..16: 'bpd' dequantises over 17 levels


def cifar10_unet(c: ml_collections.ConfigDict, *, num_res_blocks: int = 2) -> None:
  """DDPM's CIFAR-10 network and training (Ho et al. 2020, appendix B), batch 128.

  35.7M parameters: ch 128, multipliers (1, 2, 2, 2), attention at 16x16, dropout 0.1; Adam
  2e-4 with 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999, 800k steps. score_sde's
  DDPM++ uses the same family with 4 residual blocks per level.
  """
  c.data.name = 'cifar10'
  c.data.batch_size = 128
  c.model.name = 'unet'
  c.model.unet.ch = 128
  c.model.unet.ch_mult = (1, 2, 2, 2)
  c.model.unet.num_res_blocks = num_res_blocks
  c.model.unet.attn_resolutions = (16,)
  c.model.unet.dropout = 0.1
  c.model.unet.num_groups = 32
  c.optim.lr = 2e-4
  c.optim.warmup_steps = 5000
  c.optim.schedule = 'constant'
  c.optim.grad_clip = 1.0
  c.train.num_steps = 800_000
  c.train.ema_rate = 0.9999
  c.train.log_every = 100
  c.train.ckpt_every = 10_000
  c.train.sample_every = 10_000
  c.sample.num = 64
  c.eval.metrics = ('sliced_w2',)
  c.eval.num_samples = 1000


def smoke(c: ml_collections.ConfigDict) -> None:
  """The diffusion smoke variant (seconds-long, for tests): tiny networks, 20 steps, few samples.

  Sets train.num_steps = 20, train.log_every = 5, train.ckpt_every = 10,
  train.sample_every = 10, train.eval_every = 0, sample.num = 16, eval.num_samples = 64,
  eval.bpd_num = 16; then
  - model 'mlp': data.batch_size = 256, model.mlp.features = (32, 32), model.mlp.time_dim = 16;
  - otherwise (unet): data.batch_size = 16, model.unet.ch = 8, model.unet.num_groups = 4,
    model.unet.num_res_blocks = 1;
  - a 'discrete*' process: diffusion.num_timesteps = 50, diffusion.sample.num_steps = 0;
  - otherwise: diffusion.sample.num_steps = min(diffusion.sample.num_steps or 10, 10).
  """
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.ckpt_every = 10
  c.train.sample_every = 10
  c.train.eval_every = 0
  c.sample.num = 16
  c.eval.num_samples = 64
  c.eval.bpd_num = 16
  if c.model.name == 'mlp':
    c.data.batch_size = 256
    c.model.mlp.features = (32, 32)
    c.model.mlp.time_dim = 16
  else:
    c.data.batch_size = 16
    c.model.unet.ch = 8
    c.model.unet.num_groups = 4
    c.model.unet.num_res_blocks = 1
  if c.diffusion.process.startswith('discrete'):
    c.diffusion.num_timesteps = 50
    c.diffusion.sample.num_steps = 0
  else:
    c.diffusion.sample.num_steps = min(c.diffusion.sample.num_steps or 10, 10)


def variant(
  c: ml_collections.ConfigDict,
  arg: str | None,
  *,
  name: str,
  smoke: Callable[[ml_collections.ConfigDict], None] | None,
) -> ml_collections.ConfigDict:
  """Applies the `:arg` variant of experiment `name` to `c` and returns `c`.

  arg None or '': `c` as is; 'smoke': `smoke(c)` (the family's seconds-long variant for tests,
  e.g. this module's `smoke`, ebm_common.smoke, gan_common.smoke, gan_toy_common.smoke, or the
  experiment's own); anything else: a one-line ValueError naming the experiment file.
  `smoke=None`: the experiment has no variants, and any `arg` is refused.
  """
  if smoke is None:
    if arg:
      raise ValueError(f'experiments/{name}.py: unknown variant {arg!r} (no smoke variant)')
  elif arg == 'smoke':
    smoke(c)
  elif arg:
    raise ValueError(f"experiments/{name}.py: unknown variant {arg!r}; choose 'smoke'")
  return c
