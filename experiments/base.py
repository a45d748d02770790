"""The one base config: what every run shares, and the chosen objective's own section.

Every leaf can be overridden on the command line as `--config.a.b=v` (the config is locked, so
a typo fails). Sections:
  data       which dataset, where it lives, the global batch size.
  model      `name` picks the network (gen.models.MODELS); the sub-section of that name holds
             its keyword arguments (every network's section is here, with its defaults).
  objective  `name` picks the objective (gen.objectives.OBJECTIVES, or 'package.module:attr').
  <section>  the objective's own fields, e.g. `diffusion`, `gan`, `ebm`, `rbm`: defaults from
             its module's default_config(); its `sample` sub-section says how it samples.
  pretrained other runs whose EMA parameters the objective uses frozen (its declared roles).
  optim      the optimizer of the objective's network (a GAN's generator).
  train      run length, intervals, EMA, precision, gradient accumulation, non-finite steps.
  sample     how many samples a picture shows, and whether they come from the EMA.
  eval       which metrics `--mode=eval` (and training, every eval_every steps) computes.
"""

import ml_collections

from gen import models, objectives
from gen import state as state_lib


def get_config(objective: str = 'diffusion', model: str = 'mlp') -> ml_collections.ConfigDict:
  """The shared defaults, with `objective`'s section and `model` as config.model.name."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = 'ring8'
  # Folder of prepared TFDS datasets; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.data_dir = ''
  c.data.batch_size = 256  # global: split evenly over all devices of all processes

  c.model = ml_collections.ConfigDict()
  c.model.name = model
  for name, entry in models.MODELS.items():
    c.model[name] = ml_collections.ConfigDict(entry.defaults)

  c.objective = ml_collections.ConfigDict()
  c.objective.name = objective
  c[objectives.section(objective)] = objectives.default_config(objective)
  # Frozen networks of other runs: role -> 'WORKDIR' or 'WORKDIR@STEP' (gen.pretrained); the
  # objective declares its roles ('' until set).
  roles = objectives.pretrained_roles(objectives.resolve(objective))
  c.pretrained = ml_collections.ConfigDict({role: '' for role in roles})

  # The optimizer of the objective's network (a GAN's generator; gan.optim_d: its discriminator).
  c.optim = ml_collections.ConfigDict(state_lib.OPTIMIZER_DEFAULTS)

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000
  c.train.log_every = 0  # 0: num_steps // 100, about 100 points per curve
  c.train.ckpt_every = 1000
  c.train.max_to_keep = 3
  c.train.sample_every = 1000
  c.train.eval_every = 0  # 0: evaluate only at the end of the run
  c.train.ema_rate = 0.999
  # EMA warm-up: decay min(ema_rate, (1 + step) / (ema_warmup + step)) (TensorFlow's
  # ExponentialMovingAverage num_updates; gen.state.ema_decay); 0: ema_rate from the first step.
  c.train.ema_warmup = 10.0
  # Micro-batches per step (gradient accumulation: objectives that declare it); the batch is
  # split into this many equal parts, each data.batch_size / grad_accum examples.
  c.train.grad_accum = 1
  # The network's arithmetic: float32 | bfloat16 (parameters, optimizer state, EMA, schedules
  # and samplers stay float32; objectives that declare bfloat16).
  c.train.compute_dtype = 'float32'
  # stop | skip_step | rollback (to the last good checkpoint, with a new key)
  c.train.on_nonfinite = 'stop'
  c.train.max_rollbacks = 3  # rollback: give up (NonFiniteError) after this many

  c.sample = ml_collections.ConfigDict()
  c.sample.num = 2000  # samples in each training-time picture
  c.sample.use_ema = True

  c.eval = ml_collections.ConfigDict()
  # Names in gen.metrics.METRICS; 'auto': the dataset's usual set (gen.metrics.default_metrics:
  # mode metrics + sliced W2 on 2-D mixtures; FD, IS, KID, precision/recall, density/coverage,
  # memorisation, sliced W2 on digits; FID + IS on other images; bpd with a likelihood).
  c.eval.metrics = ('auto',)
  c.eval.num_samples = 2500  # samples of the final evaluation (end of training, --mode=eval)
  # Logged during training every train.eval_every steps as proxy_<name> on fewer samples.
  c.eval.proxy_metrics = ('auto',)  # 'auto': eval.metrics without bpd
  c.eval.proxy_num_samples = 500  # capped at eval.num_samples; 0: eval.num_samples
  c.eval.features = 'auto'  # auto | digits_cnn | inception_v3 | identity | a registered name
  c.eval.reference_split = 'auto'  # auto: test for embedded data, train for other TFDS data
  c.eval.bounds = True  # image data: also score real held-out data and noise (eval JSON 'bounds')
  c.eval.is_splits = 10  # Inception Score splits (Salimans et al.)
  c.eval.kid_subsets = 100  # KID (Binkowski et al.): subsets of ...
  c.eval.kid_subset_size = 1000  # ... this size (capped at the sample counts)
  c.eval.pr_k = 3  # improved precision/recall neighbours (Kynkaanniemi et al.)
  c.eval.dc_k = 5  # density/coverage neighbours (Naeem et al.)
  # A 95% basic bootstrap interval of FD (fd_low, fd_high): rounds; -1 (auto): 100 rounds where
  # the sample count is below 2048, else none; 0: none.
  c.eval.fd_bootstrap = -1
  c.eval.fd_infinity = False  # also FD extrapolated to infinite n (Chong & Forsyth 2020)
  # 'bpd' (objectives with a likelihood; the diffusion ODE's settings: diffusion.likelihood):
  c.eval.bpd_num = 256  # test examples
  c.eval.num_bins = 0  # levels of discrete data (digits 17, 8-bit images 256); 0: continuous data
  return c
