"""Checks gen's Flax FID Inception against an independent PyTorch one (one-off, not a test).

The PyTorch network below is written from pytorch-fid's `fid_inception_v3` (torchvision's
Inception3 blocks with pytorch-fid's FIDInceptionA/C/E_1/E_2 patches: average pooling that
ignores padding, max pooling in Mixed_7c's pool branch, 1008 logits); torchvision is not used.
The script

1. builds it with random weights: He-normal convolutions and *non-trivial* batch norm (scale
   U(0.5, 1.5), bias N(0, 0.2), running mean N(0, 0.2), running var U(0.5, 2)), so that a
   mix-up of BN leaves, a wrong epsilon or a missing transpose would show;
2. saves its state dict with `torch.save` under a torch.hub-style name (hash prefix) and
   converts it as `gen prepare --inception --source=FILE` does (`inception_weights.prepare`:
   copy, hash check, gen's torch-free .pth reader),
   then loads the `.npz` with `gen.metrics.inception_weights.load_params`;
3. compares pool3 and logits of both networks on the same random 299x299 inputs in [-1, 1]
   (Flax float32 vs torch float32, and both vs torch float64 as the reference);
4. compares the full pipelines on 32x32 RGB and grey images (upsampling) and 400x400 RGB ones
   (downsampling without antialias), values in [-1.05, 1.05] (clipping): gen's
   `make_feature_fn` (quantise, resize, scale, network) against pytorch-fid's own recipe
   (uint8 -> / 255 -> F.interpolate(bilinear, align_corners=False) -> 2x - 1 -> network);
5. as a control, runs the torch network with torchvision's plain pooling (padding counted in
   the averages, average pooling in Mixed_7c) on the same weights, to show that the check
   detects those architectural differences.

It needs torch and gen (jax, flax) importable in one interpreter. Without touching gen's venv:

  python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
  PYTHONPATH=$PWD:$PWD/.venv/lib/python3.11/site-packages JAX_PLATFORMS=cpu \\
    /tmp/torchenv/bin/python tools/check_inception_against_torch.py

(or `pip install torch` into gen's venv and run it with that python). It exits non-zero if a
relative error exceeds 1e-4. Takes about a minute on 2 CPU cores.

Result (2 CPU cores, torch 2.13.0+cpu, jax 0.10.2, flax 0.12.8, seed 0, batch 4):

    values: torch state dict 23,885,392 = flax params 23,885,392 (472 arrays)
    reference scale (torch f64): pool3 mean |.| 0.461, max 6.45; logits mean |.| 0.652, max 3.03
    (errors: max abs | max abs / max |ref| | relative L2)
    network pool3   flax f32 vs torch f32   2.38e-06 | 3.69e-07 | 2.43e-07
    network pool3   flax f32 vs torch f64   2.49e-06 | 3.86e-07 | 3.07e-07
    network pool3   torch f32 vs torch f64  1.34e-06 | 2.07e-07 | 2.14e-07  (float32 floor)
    network logits  flax f32 vs torch f32   2.15e-06 | 7.08e-07 | 4.53e-07
    network logits  flax f32 vs torch f64   2.04e-06 | 6.72e-07 | 4.56e-07
    network logits  torch f32 vs torch f64  1.04e-06 | 3.43e-07 | 3.10e-07  (float32 floor)
    pipeline 32x32x3   features             1.55e-06 | 3.01e-07 | 2.66e-07  (vs pytorch-fid
    pipeline 32x32x3   logits               1.50e-06 | 5.68e-07 | 4.40e-07   recipe, f64)
    pipeline 32x32x1   features             1.46e-06 | 3.03e-07 | 2.52e-07
    pipeline 32x32x1   logits               1.40e-06 | 5.56e-07 | 4.33e-07
    pipeline 400x400x3 features             3.09e-06 | 5.71e-07 | 5.02e-07
    pipeline 400x400x3 logits               2.22e-06 | 8.22e-07 | 6.07e-07
    control (torchvision pooling) pool3     1.30e+00 | 2.08e-01 | 1.38e-01
    control (torchvision pooling) logits    3.43e-01 | 1.19e-01 | 1.37e-01
    46 s; OK

  So the Flax network equals the pytorch-fid architecture to float32 rounding (its error
  against float64 is that of torch's own float32 run), the converter's mapping and transposes
  are right, and the preprocessing equals pytorch-fid's uint8 -> F.interpolate recipe, while
  the pooling variants alone would move the features by ~14%.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402

from gen.metrics import inception, inception_weights  # noqa: E402
from gen.utils import pth as gen_pth  # noqa: E402

TOLERANCE = 1e-4

# ---------------------------------------------------------------------------------------------
# pytorch-fid's FID Inception in plain torch (names as in its state dict)


class BasicConv2d(nn.Module):
  def __init__(self, cin, cout, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _pool(x, kind, fid):
  """The 3x3/1 pool branch: FID variant (TF) or torchvision's plain one (the control)."""
  if kind == 'max':
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
  return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=not fid)


class InceptionA(nn.Module):
  def __init__(self, cin, pool_features):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)
    self.fid = True

  def forward(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(_pool(x, 'avg', self.fid))
    return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
  def __init__(self, cin, c7):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)
    self.fid = True

  def forward(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
      bd = layer(bd)
    bd = self.branch7x7dbl_5(bd)
    bp = self.branch_pool(_pool(x, 'avg', self.fid))
    return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_1(x)
    for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
      b7 = layer(b7)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
  def __init__(self, cin, pool):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)
    self.pool = pool  # 'avg' (FIDInceptionE_1) or 'max' (FIDInceptionE_2)
    self.fid = True

  def forward(self, x):
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    # torchvision's plain InceptionE (the control) averages in both E blocks.
    bp = self.branch_pool(_pool(x, self.pool if self.fid else 'avg', self.fid))
    return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionV3(nn.Module):
  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = InceptionA(192, 32)
    self.Mixed_5c = InceptionA(256, 64)
    self.Mixed_5d = InceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, 128)
    self.Mixed_6c = InceptionC(768, 160)
    self.Mixed_6d = InceptionC(768, 160)
    self.Mixed_6e = InceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280, 'avg')
    self.Mixed_7c = InceptionE(2048, 'max')
    self.fc = nn.Linear(2048, 1008)

  def set_fid(self, fid: bool):
    for m in self.modules():
      if hasattr(m, 'fid'):
        m.fid = fid

  def forward(self, x):
    """x: [N, 3, 299, 299] in [-1, 1] -> (pool3 [N, 2048], logits [N, 1008])."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b', '7c'):
      x = getattr(self, f'Mixed_{name}')(x)
    pool3 = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return pool3, self.fc(pool3)


def random_init(model: nn.Module, seed: int) -> None:
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
      elif isinstance(m, nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(0.5 + torch.rand(c, generator=g))
        m.bias.copy_(0.2 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# ---------------------------------------------------------------------------------------------


def errors(got: np.ndarray, ref: np.ndarray) -> dict:
  """max abs error, max abs error / max |ref|, and ||got - ref|| / ||ref||."""
  got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
  diff = np.abs(got - ref)
  return {
    'max_abs': float(diff.max()),
    'max_rel': float(diff.max() / np.abs(ref).max()),
    'rel_l2': float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
  }


def fmt(e: dict) -> str:
  return (
    f'max abs {e["max_abs"]:.2e}, max abs / max|ref| {e["max_rel"]:.2e}, rel L2 {e["rel_l2"]:.2e}'
  )


def torch_pipeline(model: nn.Module, images: np.ndarray, dtype) -> tuple[np.ndarray, ...]:
  """pytorch-fid's recipe on gen images: PNG uint8 levels -> [0, 1] -> bilinear 299 -> 2x-1."""
  levels = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
  x = torch.from_numpy(levels).permute(0, 3, 1, 2).to(dtype) / 255.0
  if x.shape[1] == 1:
    x = x.repeat(1, 3, 1, 1)
  x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
  with torch.no_grad():
    pool3, logits = model.to(dtype)(2 * x - 1)
  return pool3.double().numpy(), logits.double().numpy()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--batch', type=int, default=4)
  args = parser.parse_args(argv)
  torch.set_num_threads(max(1, os.cpu_count() or 1))
  start = time.time()
  rng = np.random.default_rng(args.seed)
  model = FIDInceptionV3().eval()
  random_init(model, args.seed)
  failures = []

  with tempfile.TemporaryDirectory() as tmp:
    raw = os.path.join(tmp, 'state.pth')
    torch.save(model.state_dict(), raw)
    with open(raw, 'rb') as f:
      prefix = hashlib.sha256(f.read()).hexdigest()[:8]
    pth = os.path.join(tmp, f'pt_inception-random-{prefix}.pth')
    os.rename(raw, pth)
    npz = os.path.join(tmp, 'fid_inception_v3.npz')
    inception_weights.prepare(pth, npz)
    params = inception_weights.load_params(npz)
    # gen's torch-free reader on both of torch.save's layouts: every tensor bit for bit.
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    legacy = os.path.join(tmp, 'legacy.pth')
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    for layout, path in (('zip', pth), ('legacy', legacy)):
      read = gen_pth.read_state_dict(path)
      same = sorted(read) == sorted(state) and all(
        read[k].dtype == state[k].dtype and np.array_equal(read[k], state[k]) for k in state
      )
      print(f'torch-free .pth reader, {layout} layout: {len(read)} tensors, identical: {same}')
      if not same:
        failures.append(f'pth reader ({layout})')
  n_torch = sum(v.numel() for k, v in model.state_dict().items() if 'num_batches' not in k)
  n_flax = sum(v.size for v in jax.tree.leaves(params))
  print(f'values: torch state dict {n_torch:,}, flax params {n_flax:,}')
  if n_torch != n_flax:
    failures.append('parameter count')

  # 1. The networks alone, on continuous inputs in [-1, 1].
  x = rng.uniform(-1, 1, (args.batch, 299, 299, 3)).astype(np.float32)
  net = jax.jit(lambda p, v: inception.InceptionV3().apply({'params': p}, v))
  ours = jax.tree.map(np.asarray, net(params, x))
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    t32 = [a.double().numpy() for a in model.float()(xt)]
    t64 = [a.numpy() for a in model.double()(xt.double())]
  print(f'pool3 scale: mean |ref| {np.abs(t64[0]).mean():.3f}, max {np.abs(t64[0]).max():.3f}')
  print(f'logits scale: mean |ref| {np.abs(t64[1]).mean():.3f}, max {np.abs(t64[1]).max():.3f}')
  for i, name in enumerate(('pool3', 'logits')):
    e = errors(ours[name], t32[i])
    print(f'network {name:6s} flax f32 vs torch f32: {fmt(e)}')
    print(f'network {name:6s} flax f32 vs torch f64: {fmt(errors(ours[name], t64[i]))}')
    print(f'network {name:6s} torch f32 vs torch f64: {fmt(errors(t32[i], t64[i]))}')
    if e['max_rel'] > TOLERANCE:
      failures.append(f'network {name}')

  # 2. Full pipelines on small gen images (RGB and grey), resize included.
  feature_fn = inception.make_feature_fn(params)
  for size, channels in ((32, 3), (32, 1), (400, 3)):
    images = rng.uniform(-1.05, 1.05, (args.batch, size, size, channels)).astype(np.float32)
    got = jax.tree.map(np.asarray, feature_fn(images))
    pool3, _ = torch_pipeline(model, images, torch.float64)
    # gen's 'logits' are the Inception Score's: pool3 . W without the fc bias.
    unbiased = pool3 @ model.fc.weight.detach().double().numpy().T
    for name, r in (('features', pool3), ('logits', unbiased)):
      e = errors(got[name], r)
      shape = f'{size}x{size}x{channels}'
      print(f'pipeline {shape:9s} {name:8s} vs pytorch-fid recipe (f64): {fmt(e)}')
      if e['max_rel'] > TOLERANCE:
        failures.append(f'pipeline {shape} {name}')

  # 3. Control: torchvision's plain pooling must differ clearly.
  model.set_fid(False)
  with torch.no_grad():
    plain = [a.numpy() for a in model.double()(xt.double())]
  model.set_fid(True)
  for i, name in enumerate(('pool3', 'logits')):
    e = errors(ours[name], plain[i])
    print(f'control {name:6s} flax vs torch with torchvision pooling: {fmt(e)}')
    if e['max_rel'] < 100 * TOLERANCE:
      failures.append(f'control {name} did not detect the pooling difference')

  print(f'{time.time() - start:.0f} s; ' + ('FAILED: ' + ', '.join(failures) if failures else 'OK'))
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
