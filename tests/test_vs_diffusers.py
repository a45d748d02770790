"""benchmarks/vs_diffusers.py builds the documented networks (no timing; torch parts skip)."""

import time

import pytest

from benchmarks import vs_diffusers as bench

# gen's U-Net parameters of each size (diffusers' UNet2DModel of the same layout: the same counts).
PARAMS = {'small': 1_191_233, 'cifar': 9_593_539}


@pytest.mark.parametrize('name', sorted(bench.SIZES))
def test_gen_layouts(name):
  size = bench.SIZES[name]
  config = bench.gen_config(size)
  bench.check_gen_config(config)  # U-Net, eps, discrete linear betas over 1,000 steps
  assert config.diffusion.sample.sampler == 'ddim'
  assert config.diffusion.sample.num_steps == 100
  model = bench.gen_unet(size)
  assert model.ch * max(model.ch_mult) == max(size.channels)
  assert [model.ch * m for m in model.ch_mult] == list(size.channels)
  assert model.num_res_blocks == size.blocks
  assert tuple(model.attn_resolutions) == (size.attn,)
  assert (model.num_groups, model.num_heads, model.dropout) == (32, 1, 0.0)
  assert model.mid_attention in (None, True)
  assert bench.gen_param_count(size) == PARAMS[name]


def test_sizes():
  assert bench.SIZES['small'].shape == (16, 16, 1)
  assert (bench.SIZES['small'].batch, bench.SIZES['small'].attn_level) == (64, 1)
  assert bench.SIZES['cifar'].shape == (32, 32, 3)
  assert (bench.SIZES['cifar'].batch, bench.SIZES['cifar'].attn_level) == (32, 1)


def test_arguments(capsys):
  args = bench.parse_args(['--sizes=cifar,small', '--quick'])
  assert args.size_names == ['cifar', 'small']
  assert (args.steps, args.ddim_steps) == (2, 10)
  with pytest.raises(SystemExit):
    bench.parse_args(['--sizes=small,huge'])
  err = capsys.readouterr().err
  assert "--sizes: unknown ['huge']" in err and "['cifar', 'small']" in err
  with pytest.raises(SystemExit):
    bench.parse_args(['--rounds=0'])
  assert '--rounds must be >= 1' in capsys.readouterr().err


@pytest.mark.parametrize('name', sorted(bench.SIZES))
def test_diffusers_layouts(name):
  pytest.importorskip('torch')
  pytest.importorskip('diffusers')
  size = bench.SIZES[name]
  model = bench.diffusers_unet(size)
  assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
  attention = [m for m in model.modules() if type(m).__name__ == 'Attention']
  # down: blocks, up: blocks + 1 at the attention level, and the middle one
  assert len(attention) == 2 * size.blocks + 2
  assert all(a.heads == 1 and a.group_norm is not None for a in attention)
  assert model.mid_block.attentions[0] is not None


class _Side:
  """A stand-in library: each call sleeps a little (no network, no compiling)."""

  def __init__(self, seconds):
    self.seconds = seconds

  def train_once(self):
    time.sleep(self.seconds)

  forward_once = sample_once = train_once


def test_phase_and_ratios():
  args = bench.parse_args(['--steps=2', '--warmup=0'])
  size = bench.SIZES['cifar']
  gen, diffusers = bench.phase(_Side(0.002), args, size), bench.phase(_Side(0.004), args, size)
  rounds = [{'round': 0, 'gen': gen, 'diffusers': diffusers}]
  record = rounds[0]['gen']['ddim']
  assert set(record) == {'img_per_s', 'median_s', 'img_per_cpu_s', 'contention'}
  assert {'wall_s', 'process_cpu_s', 'other_cores', 'loadavg_before'} <= set(record['contention'])
  # The ratios from fixed throughputs (timing a sleep on a loaded machine is no test).
  for phase in ('train', 'forward', 'ddim'):
    rounds[0]['gen'][phase]['img_per_s'] = 3.0
    rounds[0]['diffusers'][phase]['img_per_s'] = 2.0
  per_round, ratios = bench.summarise(rounds)
  assert per_round['train']['gen'] == [3.0]
  assert ratios['ddim']['median'] == pytest.approx(1.5)
  # slow phases keep their precision: 16 images in 400 s is 0.04 img/s, not rounded to 0.0
  assert bench.significant(16 / 411.94) == 0.03884
