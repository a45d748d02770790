"""gen's U-Net against diffusers' UNet2DModel (PyTorch, CPU): train, forward and DDIM throughput.

    pip install -e ".[bench]"     # torch==2.13.0 (CPU build) and diffusers, the `bench` extra
    python benchmarks/vs_diffusers.py                               # both sizes, 2 rounds
    python benchmarks/vs_diffusers.py --sizes=small --quick         # smoke check (a few min)
    python benchmarks/vs_diffusers.py --sizes=small,cifar --rounds=2 --steps=10 --threads=2

Two sizes, the same network on both sides (parameter counts printed and checked within 10%):
  small  16x16x1, channels (32, 64, 64), 1 residual block per level, attention at 8x8, batch 64;
  cifar  32x32x3, channels (64, 128, 128, 128), 2 blocks per level, attention at 16x16, batch 32.
Both: mid-block attention, one attention head per block, GroupNorm with 32 groups, SiLU, ADM
scale-shift time conditioning (diffusers: resnet_time_scale_shift='scale_shift', and
attn_norm_num_groups=32 so the middle attention keeps its GroupNorm), sinusoidal time features
of width ch with a 4 ch MLP, stride-2 conv downsampling, nearest + conv upsampling, dropout 0.
Each library uses its native layout (gen NHWC, torch NCHW).

What is timed (median step time after --warmup untimed steps; img/s = batch / median):
  train    gen: the step `gen.train.make_train_step` compiles for experiments/ddpm_digits.py with
           the size's network, batch and shape (discrete linear betas, 1,000 steps, eps
           prediction, eps-MSE, uniform integer times; Adam lr 1e-4, global-norm clip 1, EMA
           0.9999 and the loop's non-finite guard), on random data. torch: the same DDPM step as
           diffusers' train_unconditional example (DDPMScheduler(beta_schedule='linear').add_noise
           at random integer times in [0, 1000), MSE to eps, AdamW lr 1e-4 without weight decay,
           clip_grad_norm_ 1, an EMA of the parameters with torch._foreach_lerp_), model.train().
  forward  one network call at the training batch: gen `jax.jit(model.apply)` in eval mode;
           torch model.eval() under torch.inference_mode().
  ddim     100-step DDIM (eta 0) from N(0, I): gen `objective.sample(state, key, num)` with
           diffusion.sample.sampler='ddim', num_steps=100 (uniform spacing; jitted, one lax.scan);
           diffusers DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear'),
           set_timesteps(100), the usual Python loop of UNet then scheduler.step. 32 (small)
           or 16 (cifar) images per call; --sample_runs timed calls, after --sample_warmup
           untimed ones (default 0: the forward timing just before has warmed the network, and
           one call is 100 network calls). gen's 'uniform' steps are 999 ... 0, diffusers'
           default 'leading' ones 990 ... 0: the same work.
gen's compile times (lower + compile seconds of the train step, the forward and the sampler)
are reported separately and never enter the throughputs.

For each size the phases alternate gen, torch, gen, torch, ... (--rounds each) in this one
process (torch's intra-op threads: --threads; XLA's CPU thread pool uses every core it sees;
neither pool spins when idle, which the JSON's threads.idle_cpu_s_in_1s shows). Every
measurement records its contention: wall and this process's CPU seconds (cores used; also split
by thread name, so XLA's pool 'tf_XLAEigen' shows apart from 'python': torch's OpenMP workers
and the main thread), the busy cores of the whole machine from /proc/stat (psutil.cpu_times),
the cores others used (machine minus this process) and the load averages before and after, so
a reader can see if something else ran. Prints one JSON document on stdout (progress lines on
stderr): per size the parameter counts, img/s per round for each library and measure, the
gen/diffusers ratios (median of rounds and min-max), the compile times, the contention of every
phase, versions and thread settings.

Measured numbers go to experiments/RESULTS.md, not here.
"""

import argparse
import collections
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import ddpm_digits  # noqa: E402
from gen import models, objectives, train  # noqa: E402
from gen import setup as setup_lib  # noqa: E402
from gen.data import DatasetSpec  # noqa: E402
from gen.objectives.diffusion.objective import NET  # noqa: E402

LR = 1e-4
EMA_RATE = 0.9999
GRAD_CLIP = 1.0
NUM_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02  # DDPM's linear betas (gen's discrete_linear, diffusers')
PARAM_TOLERANCE = 0.10  # the two parameter counts must agree within this fraction


@dataclasses.dataclass(frozen=True)
class Size:
  """One benchmark network and its data.

  Attributes:
    shape: one image, (H, W, C).
    channels: channels per level (diffusers' block_out_channels); gen ch = channels[0].
    blocks: residual blocks per level on the way down (layers_per_block).
    attn: the resolution (height) of the attention level.
    batch: training and forward batch.
    sample_batch: images per DDIM call.
  """

  shape: tuple[int, int, int]
  channels: tuple[int, ...]
  blocks: int
  attn: int
  batch: int
  sample_batch: int

  @property
  def ch_mult(self) -> tuple[int, ...]:
    if any(c % self.channels[0] for c in self.channels):
      raise ValueError(f'channels {self.channels} must be multiples of {self.channels[0]}')
    return tuple(c // self.channels[0] for c in self.channels)

  @property
  def attn_level(self) -> int:
    return [self.shape[0] // 2**i for i in range(len(self.channels))].index(self.attn)


SIZES = {
  'small': Size((16, 16, 1), (32, 64, 64), 1, 8, 64, 32),
  'cifar': Size((32, 32, 3), (64, 128, 128, 128), 2, 16, 32, 16),
}


def parse_sizes(text: str) -> list[str]:
  """'small,cifar' -> ['small', 'cifar']; ValueError naming the unknown ones."""
  names = [n.strip() for n in text.split(',') if n.strip()]
  unknown = [n for n in names if n not in SIZES]
  if unknown or not names:
    raise ValueError(f'--sizes: unknown {unknown or names!r}; choose from {sorted(SIZES)}')
  return names


# -- gen ------------------------------------------------------------------------------------


def gen_config(size: Size, ddim_steps: int = 100):
  """experiments/ddpm_digits.py with the size's network, batch, optimizer and DDIM sampling."""
  c = ddpm_digits.get_config()
  u = c.model.unet
  u.ch = size.channels[0]
  u.ch_mult = size.ch_mult
  u.num_res_blocks = size.blocks
  u.attn_resolutions = (size.attn,)
  u.num_heads = 1  # one head of all the channels, as diffusers' attention_head_dim=None
  u.num_groups = 32
  u.dropout = 0.0
  u.embedding = 'sinusoidal'
  c.data.batch_size = size.batch
  c.optim.lr = LR
  c.optim.warmup_steps = 0
  c.optim.schedule = 'constant'
  c.optim.grad_clip = GRAD_CLIP
  c.optim.weight_decay = 0.0
  c.train.ema_rate = EMA_RATE
  c.diffusion.sample.sampler = 'ddim'
  c.diffusion.sample.num_steps = ddim_steps
  c.diffusion.sample.spacing = 'uniform'
  c.diffusion.sample.eta = 0.0
  return c


def gen_spec(size: Size) -> DatasetSpec:
  return DatasetSpec('bench', 'images', size.shape, 10, 50_000)


def check_gen_config(config) -> None:
  """The benchmark compares DDPM: a U-Net, eps prediction, discrete linear betas over 1,000."""
  d = config.diffusion
  got = (config.model.name, d.parameterization, d.process, d.num_timesteps, d.weighting)
  want = ('unet', 'eps', 'discrete_linear', NUM_TIMESTEPS, 'eps')
  if got != want:
    raise AssertionError(f'(model, parameterization, process, T, weighting) = {got}, not {want}')


def gen_unet(size: Size):
  """gen's U-Net of `size`, built as the objective builds it (gen.models)."""
  config = gen_config(size)
  objective = objectives.make(config, gen_spec(size))
  model = objective.model
  if not isinstance(model, models.unet.UNet):
    raise AssertionError(f'expected gen.models.unet.UNet, got {type(model).__name__}')
  if model.mid_attention is False or not model.attn_resolutions:  # None: on with attention
    raise AssertionError('gen U-Net: the middle section must have attention')
  return model


def gen_param_count(size: Size) -> int:
  """Parameters of gen's U-Net of `size` (shapes only: nothing is compiled)."""
  model = gen_unet(size)
  x = jnp.zeros((1, *size.shape), jnp.float32)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), x, jnp.zeros((1,), jnp.float32), False)
  )
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes['params']))


class GenSide:
  """gen's compiled train step, forward and DDIM sampler for one size."""

  def __init__(self, size: Size, ddim_steps: int):
    self.size = size
    config = gen_config(size, ddim_steps)
    check_gen_config(config)
    spec = gen_spec(size)
    objective = objectives.make(config, spec)
    mesh = setup_lib.make_mesh(jax.devices()[:1])
    self.setup = setup_lib.Setup(config, spec, objective, mesh)
    self.state = setup_lib.init_state(self.setup)
    self.params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(self.state.params))
    rng = np.random.default_rng(0)
    data = {
      'x': rng.uniform(-1, 1, (size.batch, *size.shape)).astype(np.float32),
      'label': rng.integers(0, 10, (size.batch,)).astype(np.int32),
    }
    self.data = setup_lib.to_global(data, self.setup.batch_sharding)
    self.key = jax.random.key(0)
    self.compile_seconds = {}

    start = time.perf_counter()
    self.train_step = (
      train.make_train_step(self.setup).lower(self.state, self.data, self.key).compile()
    )
    self.compile_seconds['train_step'] = time.perf_counter() - start

    model = objective.model
    apply = jax.jit(lambda p, x, t: model.apply({'params': p}, x, t, False))
    self.x = jnp.asarray(data['x'])
    self.t = jnp.asarray(rng.integers(0, NUM_TIMESTEPS, (size.batch,)), jnp.float32)
    start = time.perf_counter()
    self.forward = apply.lower(self.net_params(), self.x, self.t).compile()
    self.compile_seconds['forward'] = time.perf_counter() - start

    num = size.sample_batch
    sample = jax.jit(lambda state, key: objective.sample(state, key, num).x)
    start = time.perf_counter()
    self.sampler = sample.lower(self.state, self.key).compile()
    self.compile_seconds['sampler'] = time.perf_counter() - start
    self.objective = objective

  def net_params(self):
    # The train step donates the state: always read the current one.
    return self.state.params[NET]

  def train_once(self) -> None:
    self.state, metrics = self.train_step(self.state, self.data, self.key)
    jax.block_until_ready((self.state, metrics))
    if bool(metrics['nonfinite']):
      raise FloatingPointError(f'gen: non-finite step {metrics}')

  def forward_once(self) -> None:
    jax.block_until_ready(self.forward(self.net_params(), self.x, self.t))

  def sample_once(self) -> None:
    self.key, sub = jax.random.split(self.key)
    out = jax.block_until_ready(self.sampler(self.state, sub))
    if not bool(jnp.all(jnp.isfinite(out))):
      raise FloatingPointError('gen: non-finite samples')


# -- diffusers ------------------------------------------------------------------------------


def diffusers_unet(size: Size):
  """diffusers' UNet2DModel laid out as gen's U-Net of `size` (see the module docstring)."""
  from diffusers import UNet2DModel

  n = len(size.channels)
  down = ['AttnDownBlock2D' if i == size.attn_level else 'DownBlock2D' for i in range(n)]
  up = [b.replace('Down', 'Up') for b in reversed(down)]
  return UNet2DModel(
    sample_size=size.shape[0],
    in_channels=size.shape[2],
    out_channels=size.shape[2],
    block_out_channels=size.channels,
    layers_per_block=size.blocks,
    down_block_types=tuple(down),
    up_block_types=tuple(up),
    mid_block_type='UNetMidBlock2D',
    add_attention=True,  # the mid-block's attention
    attention_head_dim=None,  # one head of all the block's channels, as gen's num_heads=1
    norm_num_groups=32,
    attn_norm_num_groups=32,  # else scale_shift drops the mid attention's GroupNorm
    act_fn='silu',
    resnet_time_scale_shift='scale_shift',  # ADM's conditioning, as gen's ResBlock
    time_embedding_type='positional',
    dropout=0.0,
  )


class TorchSide:
  """diffusers' UNet2DModel, its DDPM train step, forward and DDIM loop for one size."""

  def __init__(self, size: Size, ddim_steps: int):
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    self.torch = torch
    self.size = size
    self.ddim_steps = ddim_steps
    torch.manual_seed(0)
    self.model = diffusers_unet(size)
    mid = self.model.mid_block
    if not getattr(mid, 'add_attention', True) or not mid.attentions or mid.attentions[0] is None:
      raise AssertionError('diffusers mid-block has no attention')
    self.params = sum(p.numel() for p in self.model.parameters())
    self.trainable = [p for p in self.model.parameters() if p.requires_grad]
    self.ema = [p.detach().clone() for p in self.trainable]
    self.opt = torch.optim.AdamW(self.trainable, lr=LR, weight_decay=0.0)
    self.noise = DDPMScheduler(
      num_train_timesteps=NUM_TIMESTEPS,
      beta_start=BETA_START,
      beta_end=BETA_END,
      beta_schedule='linear',
    )
    self.ddim = DDIMScheduler(
      num_train_timesteps=NUM_TIMESTEPS,
      beta_start=BETA_START,
      beta_end=BETA_END,
      beta_schedule='linear',
    )
    h, w, c = size.shape
    gen = torch.Generator().manual_seed(0)
    self.x = torch.rand((size.batch, c, h, w), generator=gen) * 2 - 1
    self.t = torch.randint(0, NUM_TIMESTEPS, (size.batch,), generator=gen)

  def train_once(self) -> None:
    torch = self.torch
    self.model.train()
    x0 = self.x
    eps = torch.randn_like(x0)
    t = torch.randint(0, NUM_TIMESTEPS, (x0.shape[0],))
    x_t = self.noise.add_noise(x0, eps, t)
    loss = torch.nn.functional.mse_loss(self.model(x_t, t).sample, eps)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.trainable, GRAD_CLIP)
    self.opt.step()
    with torch.no_grad():
      torch._foreach_lerp_(self.ema, self.trainable, 1 - EMA_RATE)
    if not torch.isfinite(loss):
      raise FloatingPointError(f'torch: non-finite loss {float(loss)}')

  def forward_once(self) -> None:
    self.model.eval()
    with self.torch.inference_mode():
      self.model(self.x, self.t)

  def sample_once(self) -> None:
    torch = self.torch
    self.model.eval()
    h, w, c = self.size.shape
    self.ddim.set_timesteps(self.ddim_steps)
    with torch.inference_mode():
      x = torch.randn((self.size.sample_batch, c, h, w))
      for t in self.ddim.timesteps:
        eps = self.model(x, t).sample
        x = self.ddim.step(eps, t, x).prev_sample
    if not bool(torch.isfinite(x).all()):
      raise FloatingPointError('torch: non-finite samples')


# -- timing and contention -----------------------------------------------------------------


def thread_cpu() -> collections.Counter:
  """This process's CPU seconds so far by thread name (/proc/self/task/*/comm): XLA's CPU pool
  is 'tf_XLAEigen'; torch's OpenMP workers and the main thread are 'python'."""
  out = collections.Counter()
  for thread in psutil.Process().threads():
    try:
      with open(f'/proc/self/task/{thread.id}/comm') as f:
        name = f.read().strip()
    except OSError:  # the thread ended, or no /proc
      name = '?'
    out[name] += thread.user_time + thread.system_time
  return out


def thread_counts() -> dict[str, int]:
  """This process's threads by name."""
  out = collections.Counter()
  for thread in psutil.Process().threads():
    try:
      with open(f'/proc/self/task/{thread.id}/comm') as f:
        out[f.read().strip()] += 1
    except OSError:
      out['?'] += 1
  return dict(out)


class Contention:
  """CPU use while a phase runs: this process (by thread name) against the whole machine."""

  def __init__(self):
    self.proc = psutil.Process()

  def __enter__(self):
    self.load_before = os.getloadavg()
    self.sys_before = psutil.cpu_times()
    self.proc_before = self.proc.cpu_times()
    self.threads_before = thread_cpu()
    self.start = time.perf_counter()
    return self

  def __exit__(self, *exc):
    wall = time.perf_counter() - self.start
    proc_after = self.proc.cpu_times()
    threads = thread_cpu()
    sys_after = psutil.cpu_times()
    busy = lambda c: sum(c) - c.idle - getattr(c, 'iowait', 0.0)
    mine = (proc_after.user - self.proc_before.user) + (proc_after.system - self.proc_before.system)
    machine = busy(sys_after) - busy(self.sys_before)
    self.record = {
      'wall_s': round(wall, 3),
      'process_cpu_s': round(mine, 3),
      'process_cores': round(mine / wall, 2),
      'machine_busy_cores': round(machine / wall, 2),
      'other_cores': round(max(machine - mine, 0.0) / wall, 2),
      'machine_cores': psutil.cpu_count(),
      'loadavg_before': [round(v, 2) for v in self.load_before],
      'loadavg_after': [round(v, 2) for v in os.getloadavg()],
      'process_cpu_s_by_thread': {
        k: round(threads[k] - self.threads_before[k], 2)
        for k in sorted(threads)
        if threads[k] - self.threads_before[k] >= 0.01
      },
    }
    return False


def time_calls(fn, warmup: int, runs: int) -> tuple[list[float], dict]:
  """Per-call seconds of `runs` timed calls of fn after `warmup` untimed ones, and contention."""
  for _ in range(warmup):
    fn()
  times = []
  with Contention() as c:
    for _ in range(runs):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  return times, c.record


def phase(side, args, size: Size) -> dict:
  """One library's round: train, forward and DDIM img/s with the contention of each."""
  out = {}
  plan = (
    ('train', side.train_once, size.batch, args.warmup, args.steps),
    ('forward', side.forward_once, size.batch, args.warmup, args.steps),
    ('ddim', side.sample_once, size.sample_batch, args.sample_warmup, args.sample_runs),
  )
  for name, fn, batch, warm, runs in plan:
    times, contention = time_calls(fn, warm, runs)
    median = statistics.median(times)
    out[name] = {
      'img_per_s': significant(batch / median),
      'median_s': significant(median),
      # Less sensitive to other processes than img/s: images per second of this process's CPU.
      'img_per_cpu_s': significant(batch * runs / contention['process_cpu_s'])
      if contention['process_cpu_s'] > 0
      else None,
      'contention': contention,
    }
  return out


def significant(value: float, digits: int = 4) -> float:
  """`value` to `digits` significant figures (0.04173, 1234.0), not to fixed decimals."""
  return float(f'{value:.{digits}g}')


def summarise(rounds: list[dict]) -> tuple[dict, dict]:
  """(img/s per round of each library and measure, the gen / diffusers ratios: of the medians
  over rounds, and the least and greatest per-round ratio) from the rounds' records."""
  per_round, ratios = {}, {}
  for measure in ('train', 'forward', 'ddim'):
    g = [r['gen'][measure]['img_per_s'] for r in rounds]
    d = [r['diffusers'][measure]['img_per_s'] for r in rounds]
    each = [a / b for a, b in zip(g, d, strict=True)]
    per_round[measure] = {'gen': g, 'diffusers': d}
    ratios[measure] = {
      'median': round(statistics.median(g) / statistics.median(d), 3),
      'per_round_min': round(min(each), 3),
      'per_round_max': round(max(each), 3),
    }
  return per_round, ratios


def run_size(name: str, args) -> dict:
  size = SIZES[name]
  ddim_steps = args.ddim_steps
  build = {}
  start = time.perf_counter()
  gen_side = GenSide(size, ddim_steps)
  build['gen_s'] = round(time.perf_counter() - start, 2)
  start = time.perf_counter()
  torch_side = TorchSide(size, ddim_steps)
  build['torch_s'] = round(time.perf_counter() - start, 2)
  gen_check = gen_param_count(size)
  if gen_check != gen_side.params:
    raise AssertionError(f'gen params: state {gen_side.params} != model {gen_check}')
  rel = abs(gen_side.params - torch_side.params) / torch_side.params
  if rel > PARAM_TOLERANCE:
    raise AssertionError(
      f'{name}: gen {gen_side.params} vs diffusers {torch_side.params} parameters differ by '
      f'{rel:.1%} (> {PARAM_TOLERANCE:.0%})'
    )
  rounds = []
  for i in range(args.rounds):
    record = {'round': i}
    for library, side in (('gen', gen_side), ('diffusers', torch_side)):
      record[library] = phase(side, args, size)
      print(
        f'[{name} round {i}] {library}: '
        + ', '.join(f'{k} {v["img_per_s"]} img/s' for k, v in record[library].items()),
        file=sys.stderr,
        flush=True,
      )
    rounds.append(record)
  result = {
    'size': name,
    'image_shape_hwc': list(size.shape),
    'channels': list(size.channels),
    'blocks_per_level': size.blocks,
    'attention_resolution': size.attn,
    'batch': size.batch,
    'sample_batch': size.sample_batch,
    'ddim_steps': ddim_steps,
    'params': {
      'gen': gen_side.params,
      'diffusers': torch_side.params,
      'relative_difference': round(rel, 5),
    },
    'gen_compile_s': {k: round(v, 2) for k, v in gen_side.compile_seconds.items()},
    'build_s': build,
  }
  result['img_per_s'], result['ratio_gen_over_diffusers'] = summarise(rounds)
  result['rounds'] = rounds
  return result


def environment(args) -> dict:
  import diffusers
  import torch

  return {
    'versions': {
      'python': platform.python_version(),
      'jax': jax.__version__,
      'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
      'torch': torch.__version__,
      'diffusers': diffusers.__version__,
      'numpy': np.__version__,
    },
    'device': {
      'jax': f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind}',
      'jax_device_count': jax.device_count(),
      'torch': 'cpu',
      'cpu_count': os.cpu_count(),
      'affinity': len(os.sched_getaffinity(0)),
      'processor': platform.processor() or platform.machine(),
    },
    'threads': {
      'torch_intra_op': torch.get_num_threads(),
      'torch_inter_op': torch.get_num_interop_threads(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
      'jax': 'XLA CPU client: one intra-op pool over all visible cores',
    },
    'settings': {
      'rounds': args.rounds,
      'steps': args.steps,
      'warmup': args.warmup,
      'sample_runs': args.sample_runs,
      'sample_warmup': args.sample_warmup,
      'quick': args.quick,
      'gen_train_step': 'gen.train.make_train_step: loss, grads, Adam, global-norm clip 1, EMA, '
      'non-finite guard',
      'torch_train_step': 'add_noise, MSE to eps, backward, clip_grad_norm_ 1, AdamW(wd 0), '
      'EMA lerp',
    },
  }


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='small,cifar', help=f'comma list of {sorted(SIZES)}')
  parser.add_argument('--rounds', type=int, default=2, help='gen, torch alternations per size')
  parser.add_argument('--steps', type=int, default=5, help='timed train/forward steps per phase')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps before each timing')
  parser.add_argument('--sample_runs', type=int, default=1, help='timed DDIM calls per phase')
  parser.add_argument(
    '--sample_warmup',
    type=int,
    default=0,
    help='untimed DDIM calls first (0: the forward timing just before has warmed the network)',
  )
  parser.add_argument('--ddim_steps', type=int, default=100, help='DDIM steps of each sample')
  parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads')
  parser.add_argument(
    '--quick', action='store_true', help='smoke check: 2 steps, 1 warm-up, 10 DDIM steps'
  )
  args = parser.parse_args(argv)
  try:
    args.size_names = parse_sizes(args.sizes)
  except ValueError as e:
    parser.error(str(e))
  if args.quick:
    args.steps, args.warmup, args.ddim_steps = 2, 1, 10
    args.sample_runs, args.sample_warmup = 1, 0
  for field in ('rounds', 'steps', 'sample_runs', 'ddim_steps', 'threads'):
    if getattr(args, field) < 1:
      parser.error(f'--{field} must be >= 1, got {getattr(args, field)}')
  if args.warmup < 0 or args.sample_warmup < 0:
    parser.error('--warmup and --sample_warmup must be >= 0')
  return args


def main(argv=None):
  args = parse_args(argv)
  import torch

  torch.set_num_threads(args.threads)
  try:
    torch.set_num_interop_threads(args.threads)
  except RuntimeError:  # only settable before torch's first parallel work
    pass
  # CPU cannot reuse donated buffers; the warning is noise here.
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  doc = {'benchmark': 'vs_diffusers', **environment(args), 'sizes': {}}
  for name in args.size_names:
    doc['sizes'][name] = run_size(name, args)
  doc['threads']['process_threads_by_name'] = thread_counts()
  # Whether either library's idle threads spin: this process's CPU over one idle second.
  before = thread_cpu()
  time.sleep(1.0)
  after = thread_cpu()
  doc['threads']['idle_cpu_s_in_1s'] = round(sum(after.values()) - sum(before.values()), 3)
  print(json.dumps(doc, indent=1), flush=True)


if __name__ == '__main__':
  main()
