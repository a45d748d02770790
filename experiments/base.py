"""The one base config: every default lives here; experiment files override what they choose.

Every leaf can be overridden on the command line as `--config.a.b=v` (the config is locked, so
a typo fails). Sections:
  data       which dataset, where it lives, the global batch size.
  model      `name` picks the network; the sub-section of that name holds its keyword args.
  objective  `name` picks the objective (gen.objectives.OBJECTIVES); its own fields follow.
  optim      the optimizer of the objective's network (a GAN's generator).
  optim_d    a GAN's discriminator optimizer (TTUR: its own learning rate and betas).
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
  c.model.mlp = ml_collections.ConfigDict(
    dict(features=(256, 256, 256), time_dim=64, embedding='sinusoidal')
  )
  # GAN pairs (objective 'gan'): gan_mlp for vectors, dcgan for images (gen.models.gan).
  c.model.gan_mlp = ml_collections.ConfigDict(
    dict(
      g_features=(256, 256, 256),
      d_features=(256, 256, 256),
      g_norm='none',  # batch | layer | none
      d_norm='none',
      spectral_norm=False,  # on every discriminator layer
    )
  )
  c.model.dcgan = ml_collections.ConfigDict(
    dict(
      g_ch=64,
      d_ch=64,
      g_norm='batch',  # batch (DCGAN) | layer | none
      d_norm='batch',  # batch (DCGAN) | layer (WGAN-GP) | none (SNGAN)
      spectral_norm=False,
      extra_convs=False,  # True: SNGAN's "standard CNN" (a 3x3 conv at every resolution)
    )
  )
  # Energy / score networks (objective 'ebm', gen.models.energy).
  c.model.energy_mlp = ml_collections.ConfigDict(
    dict(features=(128, 128, 128), spectral_norm=False)
  )
  c.model.score_mlp = ml_collections.ConfigDict(dict(features=(128, 128, 128), spectral_norm=False))
  c.model.energy_conv = ml_collections.ConfigDict(dict(ch=32, num_levels=2, spectral_norm=False))
  c.model.rbm = ml_collections.ConfigDict(dict(num_hidden=64))
  c.model.unet = ml_collections.ConfigDict(
    dict(
      ch=64,
      ch_mult=(1, 2),
      num_res_blocks=2,
      attn_resolutions=(),  # image heights that get self-attention, e.g. (16,)
      num_heads=1,
      dropout=0.0,
      num_groups=8,
      embedding='sinusoidal',  # sinusoidal | fourier (time/noise-level features)
      remat=False,  # recompute block activations in the backward pass (memory for FLOPs)
    )
  )

  c.objective = ml_collections.ConfigDict()
  c.objective.name = 'diffusion'
  # Forward process (gen.processes.PROCESSES): discrete_linear | discrete_cosine |
  # discrete_scaled_linear | vp | subvp | ve | edm | rectified_flow.
  c.objective.process = 'discrete_linear'
  c.objective.num_timesteps = 1000  # discrete_*
  c.objective.beta_start = 1e-4  # discrete_linear / discrete_scaled_linear
  c.objective.beta_end = 0.02
  c.objective.beta_min = 0.1  # vp, subvp (Song et al. 2021)
  c.objective.beta_max = 20.0
  c.objective.sigma_min = 0.01  # ve; edm uses 0.002 in its experiment files
  c.objective.sigma_max = 50.0
  c.objective.sigma_data = 0.5  # edm
  # What the network predicts: eps | x0 | v | score | velocity (gen.processes.parameterization).
  c.objective.parameterization = 'eps'
  # Loss weighting w(t) on ||x0_hat - x0||^2 (gen.objectives.diffusion): eps (= DDPM simple) |
  # x0 | v | min_snr | likelihood | edm | velocity.
  c.objective.weighting = 'eps'
  c.objective.min_snr_gamma = 5.0
  c.objective.time_sampling = 'uniform'  # uniform | low_discrepancy | lognormal | logit_normal
  c.objective.lognormal_mean = -1.2  # EDM's P_mean, P_std
  c.objective.lognormal_std = 1.2
  c.objective.logit_normal_mean = 0.0
  c.objective.logit_normal_std = 1.0
  c.objective.edm_preconditioning = False
  c.objective.conditional = False  # class-conditional on the data's labels
  c.objective.label_dropout = 0.1  # null-label rate, for classifier-free guidance
  # GAN (objective 'gan', gen.objectives.gan): minimax | non_saturating | least_squares | hinge |
  # wasserstein.
  c.objective.loss = 'non_saturating'
  c.objective.latent_dim = 100
  c.objective.n_critic = 1  # discriminator updates per generator update
  c.objective.gp_weight = 0.0  # WGAN-GP lambda (10); 0: off
  c.objective.r1_weight = 0.0  # R1 gamma (penalty gamma/2 E|grad D(x)|^2); 0: off
  c.objective.clip_value = 0.0  # WGAN weight clipping c (0.01); 0: off
  c.objective.augment = ''  # DiffAugment policies, comma-separated: color,translation,cutout
  c.objective.pack = 1  # PacGAN degree m
  c.objective.cond_discriminator = 'projection'  # projection | concat
  c.objective.rejection_sampling = False  # discriminator rejection sampling at sampling time
  c.objective.drs_candidates = 4  # candidates drawn per returned sample
  c.objective.drs_percentile = 80.0  # gamma = this percentile of F over the candidates
  # EBM (objective 'ebm', gen.objectives.ebm): objective.loss is cd | exact_sm | sliced_sm | dsm.
  c.objective.energy_alpha = 1.0  # cd: weight of the energy-magnitude penalty
  c.objective.chain_steps = 20  # cd: Langevin steps (RBM: Gibbs sweeps, CD-k) per negative
  c.objective.step_size = 0.01  # Langevin a: x <- x - a/2 grad E + noise_scale sqrt(a) xi
  c.objective.noise_scale = 1.0
  c.objective.chain_grad_clip = 0.0  # clip grad E elementwise in the chains; 0: off
  c.objective.mala = False  # Metropolis-adjusted Langevin (needs noise_scale 1, no clipping)
  c.objective.chain_init = 'buffer'  # noise | data (CD-k) | buffer (replay; reinit_prob 0: PCD)
  c.objective.buffer_size = 10_000
  c.objective.reinit_prob = 0.05
  c.objective.init_range = 1.0  # noise starts: uniform in [-r, r] per coordinate
  c.objective.sample_chain_steps = 100  # chain steps from noise when sampling
  c.objective.sm_projections = 1  # sliced_sm: projections per example
  c.objective.sm_projection = 'rademacher'  # rademacher | gaussian
  c.objective.sm_variance_reduced = True  # sliced_sm: SSM-VR (Song et al. 2019, eq. 8)
  c.objective.dsm_sigma = 0.1  # dsm: the noise level

  # The optimizer of the objective's network (a GAN's generator); optim_d: a GAN's discriminator.
  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = 'adam'  # adam (AdamW) | rmsprop
  c.optim.lr = 1e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = 'constant'  # constant | cosine (decays to 0 at train.num_steps)
  c.optim.grad_clip = 0.0  # global-norm clipping; 0 disables
  c.optim_d = ml_collections.ConfigDict(c.optim.to_dict())

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
  # Micro-batches per step (gradient accumulation, diffusion objectives); the batch is split
  # into this many equal parts, each data.batch_size / grad_accum examples.
  c.train.grad_accum = 1
  # The network's arithmetic: float32 | bfloat16 (parameters, optimizer state, EMA, schedules
  # and samplers stay float32; diffusion and GAN objectives).
  c.train.compute_dtype = 'float32'
  # stop | skip_step | rollback (to the last good checkpoint, with a new key)
  c.train.on_nonfinite = 'stop'
  c.train.max_rollbacks = 3  # rollback: give up (NonFiniteError) after this many

  c.sample = ml_collections.ConfigDict()
  # gen.samplers.SAMPLERS: ddpm | ddim | dpm_solver_2m | dpm_solver_3m | unipc | unipc3 | pc |
  # reverse_diffusion | annealed_langevin (any process); euler | heun | rk4 | dopri5 |
  # euler_maruyama (continuous); edm (ve, edm).
  c.sample.sampler = 'ddpm'
  c.sample.num_steps = 0  # N model times; 0: the sampler's default (all T for ddpm)
  # uniform | quadratic | trailing | karras | logsnr (gen.samplers.timesteps)
  c.sample.spacing = 'uniform'
  c.sample.rho = 7.0  # Karras et al.'s exponent for spacing='karras'
  c.sample.variance = 'beta'  # ddpm: beta (Ho et al.'s CIFAR-10 choice) | beta_tilde
  c.sample.eta = 0.0  # ddim: 0 deterministic ... 1 = ddpm with beta_tilde
  c.sample.rtol = 1e-5  # dopri5 tolerances (score_sde's RK45 uses 1e-5)
  c.sample.atol = 1e-5
  c.sample.max_steps = 4096  # dopri5
  c.sample.s_churn = 0.0  # edm (Karras et al. 2022, Algorithm 2); 0: deterministic Heun
  c.sample.s_tmin = 0.0
  c.sample.s_tmax = 1e9
  c.sample.s_noise = 1.0
  c.sample.predictor = 'reverse_diffusion'  # pc: reverse_diffusion | euler_maruyama
  c.sample.snr = 0.16  # pc: the Langevin corrector's target signal-to-noise ratio
  c.sample.corrector_steps = 1  # pc
  c.sample.langevin_steps = 5  # annealed_langevin: updates per noise level
  c.sample.step_ratio = 0.2  # annealed_langevin: step / sigma^2 (NCSN's 2e-5 at sigma 0.01)
  c.sample.noise_scale = 1.0  # annealed_langevin: multiplier of the injected noise
  c.sample.guidance_scale = 1.0  # classifier-free guidance w (1: plain conditional)
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
  # 'bpd' (probability-flow ODE likelihood of test data, continuous processes) settings:
  c.eval.bpd_num = 256  # test examples
  c.eval.num_bins = 0  # levels of discrete data (digits 17, 8-bit images 256); 0: continuous data
  c.eval.bpd_trace = 'auto'  # auto (exact for <= 32 dims) | exact | hutchinson
  c.eval.bpd_rtol = 1e-5
  c.eval.bpd_atol = 1e-5
  return c
