"""The one base config: every default lives here; experiment files override what they choose.

Every leaf can be overridden on the command line as `--config.a.b=v` (the config is locked, so
a typo fails). Sections:
  data       which dataset, where it lives, the global batch size.
  model      `name` picks the network; the sub-section of that name holds its keyword args.
  objective  `name` picks the objective (gen.objectives.OBJECTIVES); its own fields follow.
  optim      the optimizer of the objective's network(s).
  train      run length, intervals, EMA, what to do on a non-finite loss.
  sample     the sampler and how many samples a picture shows.
  eval       which metrics `--mode=eval` (and training, every eval_every steps) computes.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the defaults shared by every experiment."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = 'ring8'
  # Folder of prepared TFDS datasets; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.data_dir = ''
  c.data.batch_size = 256  # global: split evenly over all devices of all processes

  c.model = ml_collections.ConfigDict()
  c.model.name = 'mlp'
  c.model.mlp = ml_collections.ConfigDict(dict(features=(256, 256, 256), time_dim=64))
  c.model.unet = ml_collections.ConfigDict(
    dict(ch=64, ch_mult=(1, 2), num_res_blocks=2, dropout=0.0, num_groups=8)
  )

  c.objective = ml_collections.ConfigDict()
  c.objective.name = 'ddpm'
  c.objective.num_timesteps = 1000
  c.objective.beta_start = 1e-4
  c.objective.beta_end = 0.02

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = 'constant'  # constant | cosine (decays to 0 at train.num_steps)
  c.optim.grad_clip = 0.0  # global-norm clipping; 0 disables

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000
  c.train.log_every = 100
  c.train.ckpt_every = 1000
  c.train.max_to_keep = 3
  c.train.sample_every = 1000
  c.train.eval_every = 0  # 0: evaluate only at the end of the run
  c.train.ema_rate = 0.999
  c.train.on_nonfinite = 'stop'  # stop | skip_step

  c.sample = ml_collections.ConfigDict()
  c.sample.sampler = 'ddpm'
  c.sample.num = 2000  # samples in each training-time picture
  c.sample.use_ema = True

  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = ('modes_covered', 'high_quality_fraction', 'sliced_w2')
  c.eval.num_samples = 2500
  return c
