"""The FID Inception network in Flax: TensorFlow's 2015-12-05 Inception-v3 graph, read locally.

The Frechet Inception Distance (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium") and the Inception Score (Salimans et al., 2016,
"Improved Techniques for Training GANs") are defined through one particular network: the
Inception-v3 graph `inception-2015-12-05` (Szegedy et al., 2016, "Rethinking the Inception
Architecture for Computer Vision") that TTUR's reference code loads, with FID computed on its
2048-d `pool_3` activations and IS on its 1008-way softmax. Numbers are only comparable with
the literature when that graph, with its weights, is used; torchvision's or Keras's Inception-v3
(retrained, 1000 classes, slightly different blocks) give different FIDs.

`InceptionV3` reproduces that graph's architecture exactly as pytorch-fid's port of it does
(`fid_inception_v3` with `FIDInceptionA/C/E_1/E_2`, Seitzer, 2020, https://github.com/mseitzer/
pytorch-fid), which differs from torchvision's `Inception3` in three ways:

- the 3x3 average pooling of the pool branch of blocks A (Mixed_5b-d), C (Mixed_6b-e) and the
  first E (Mixed_7b) averages only the in-image pixels of its window (TensorFlow's SAME
  average pooling; `count_include_pad=False` in PyTorch), so border values are not pulled
  toward zero;
- the pool branch of the last E block (Mixed_7c) uses 3x3 *max* pooling (stride 1, pad 1), a
  quirk of the 2015 graph;
- the classifier has 1008 outputs, not 1000: the graph's softmax has 1008 classes, of which
  index 0 is an unused background class and a few at the end are unused too.

Every convolution is `BasicConv`: convolution without bias, batch normalisation with the
running statistics (inference only: y = (x - mean) / sqrt(var + 1e-3) * scale + bias, eps 1e-3
as in the graph) and ReLU. The statistics are ordinary parameters here, not a `batch_stats`
collection: the network is never trained, so one `params` tree describes it completely.

Input: 299x299x3 NHWC images in [-1, 1] (`preprocess` makes them from gen's images). Output:
`pool3`, the spatial mean of Mixed_7c's 8x8x2048 map (the graph's `pool_3`, FID's features),
and `logits`, the graph's 1008-way fully connected layer applied to it. The Inception Score
takes softmax(pool3 . W) without the layer's bias, as published (see `features`).

Evaluation never downloads anything. `gen prepare --inception` (`inception_weights.prepare`)
fetches pytorch-fid's file `pt_inception-2015-12-05-6726825d.pth` once, checks its sha256 and
converts it without torch into a flat `.npz` (see `inception_weights.flatten_params` for the
naming), which `inception_weights.weights_path` finds in
`<data_dir>/gen_inception/fid_inception_v3.npz` or at $GEN_INCEPTION_WEIGHTS;
`inception_weights.load_params` reads it.

Convolutions and the classifier run at `jax.lax.Precision.HIGHEST` by default: accelerators'
default float32 matmul precision (TF32, bfloat16 passes) would shift the features of a network
that the reference ran in full float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gen.metrics.features import jit
from gen.utils import once

__all__ = [
  'FEATURE_DIM',
  'INPUT_SIZE',
  'NUM_LOGITS',
  'PREPROCESSING',
  'InceptionV3',
  'features',
  'init_params',
  'make_feature_fn',
  'preprocess',
]

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
IS_LOGITS = 'softmax(pool3 . W): the fc kernel without its bias, all 1008 classes (OpenAI, 2016)'
BN_EPSILON = 1e-3

PYTORCH_FID_FILE = 'pt_inception-2015-12-05-6726825d.pth'
PYTORCH_FID_URL = (
  'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + PYTORCH_FID_FILE
)

# How gen's images become the network's input; evaluation records it next to FID numbers.
PREPROCESSING = {
  'input': 'NHWC floats in [-1, 1] (gen data space), 1 or 3 channels; grey replicated to RGB',
  'quantise': 'uint8 as when saving a PNG: round((clip(x, -1, 1) + 1) * 127.5), NaN -> 128',
  'resize': (
    f'{INPUT_SIZE}x{INPUT_SIZE} bilinear, half-pixel centres, no antialias: '
    "jax.image.resize(method='bilinear', antialias=False) = torch F.interpolate(mode='bilinear',"
    " align_corners=False) as in pytorch-fid = tf.image.resize(method='bilinear', "
    'antialias=False); skipped when the images are already 299x299'
  ),
  'scale': 'v / 127.5 - 1: uint8 levels to [-1, 1] (pytorch-fid: 2 * (v / 255) - 1)',
  'network': 'FID Inception-v3 (TF inception-2015-12-05 graph, pytorch-fid port and weights)',
  'features': 'pool_3 (2048-d spatial mean of Mixed_7c), float32',
}


# ---------------------------------------------------------------------------------------------
# Architecture


def _he_normal() -> Callable:
  """He et al. (2015) init, so random networks (tests, checks) keep O(1) activations."""
  return nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')


class FrozenBatchNorm(nn.Module):
  """Batch normalisation at inference: (x - mean) * scale / sqrt(var + eps) + bias.

  Folded into one affine map per channel, x * a + (bias - mean * a) with a = scale /
  sqrt(var + eps). mean and var are the trained running statistics, stored as parameters.
  """

  epsilon: float = BN_EPSILON

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    mean = self.param('mean', nn.initializers.zeros, (c,), jnp.float32)
    var = self.param('var', nn.initializers.ones, (c,), jnp.float32)
    a = scale * jax.lax.rsqrt(var + self.epsilon)
    return x * a + (bias - mean * a)


class BasicConv(nn.Module):
  """Conv (no bias, explicit symmetric zero padding as in PyTorch) -> frozen BN -> ReLU."""

  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = self.padding
    x = nn.Conv(
      self.features,
      self.kernel_size,
      strides=self.strides,
      padding=((ph, ph), (pw, pw)),
      use_bias=False,
      precision=self.precision,
      kernel_init=_he_normal(),
      name='conv',
    )(x)
    return nn.relu(FrozenBatchNorm(name='bn')(x))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3/1 average pooling over in-image pixels only (TF SAME; count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: jax.Array, stride: int = 1, pad: int = 1) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  """35x35 block (Mixed_5b-d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1."""

  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """35x35 -> 17x17 reduction (Mixed_6a): 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3x3/2."""

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    bp = _max_pool_3x3(x, stride=2, pad=0)
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
  """17x17 block (Mixed_6b-e) with factorised 7x7 convolutions (1x7 then 7x1)."""

  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """17x17 -> 8x8 reduction (Mixed_7a): 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool 3x3/2."""

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    bp = _max_pool_3x3(x, stride=2, pad=0)
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
  """8x8 block (Mixed_7b, 7c) with expanded 1x3/3x1 outputs.

  `pool` is the pool branch's 3x3/1 pooling: 'avg' (in-image pixels only) in Mixed_7b, 'max'
  in Mixed_7c, as in the 2015 graph (pytorch-fid's FIDInceptionE_1 and FIDInceptionE_2).
  """

  pool: str
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
      ],
      axis=-1,
    )
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
      ],
      axis=-1,
    )
    if self.pool == 'avg':
      pooled = _avg_pool_3x3(x)
    elif self.pool == 'max':
      pooled = _max_pool_3x3(x)
    else:
      raise ValueError(f"InceptionE.pool must be 'avg' or 'max'; got {self.pool!r}")
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """The FID Inception-v3 (TF graph inception-2015-12-05 as ported by pytorch-fid).

  Shapes for a 299x299x3 input: stem 149->147->147 (maxpool) 73->73->71 (maxpool) 35, three A
  blocks (256, 288, 288 channels), B to 17x17x768, four C blocks, D to 8x8x1280, E to 2048
  (avg pool branch) and E to 2048 (max pool branch), spatial mean -> pool3 [N, 2048], fully
  connected -> logits [N, 1008]. Submodule names are those of pytorch-fid's state dict.
  """

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x: [N, 299, 299, 3] in [-1, 1] -> {'pool3': [N, 2048], 'logits': [N, 1008]}."""
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'InceptionV3 expects NHWC images with 3 channels; got {x.shape}')
    p = self.precision
    conv = functools.partial(BasicConv, precision=p)
    x = conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3(x, stride=2, pad=0)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3(x, stride=2, pad=0)
    x = InceptionA(32, precision=p, name='Mixed_5b')(x)
    x = InceptionA(64, precision=p, name='Mixed_5c')(x)
    x = InceptionA(64, precision=p, name='Mixed_5d')(x)
    x = InceptionB(precision=p, name='Mixed_6a')(x)
    x = InceptionC(128, precision=p, name='Mixed_6b')(x)
    x = InceptionC(160, precision=p, name='Mixed_6c')(x)
    x = InceptionC(160, precision=p, name='Mixed_6d')(x)
    x = InceptionC(192, precision=p, name='Mixed_6e')(x)
    x = InceptionD(precision=p, name='Mixed_7a')(x)
    x = InceptionE('avg', precision=p, name='Mixed_7b')(x)
    x = InceptionE('max', precision=p, name='Mixed_7c')(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(
      NUM_LOGITS,
      precision=p,
      kernel_init=nn.initializers.lecun_normal(),
      name='fc',
    )(pool3)
    return {'pool3': pool3, 'logits': logits}


def init_params(rng: jax.Array) -> dict:
  """Random parameters (He-normal kernels, identity batch norm): for tests, not for FID."""
  x = jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
  return once.call_once(InceptionV3().init, rng, x)['params']


# ---------------------------------------------------------------------------------------------
# Preprocessing and features


def preprocess(images: Any) -> jax.Array:
  """gen's images -> the network's input, as `PREPROCESSING` records.

  1. Quantise to the 256 uint8 levels a saved PNG would hold (as gen.utils.images does):
     v = round((clip(x, -1, 1) + 1) * 127.5), NaN -> mid grey. FID is then a function of the
     pictures, not of sub-level noise a sampler leaves.
  2. Replicate a grey channel to RGB.
  3. Resize to 299x299 with bilinear interpolation, half-pixel centres and no antialiasing:
     `jax.image.resize(..., 'bilinear', antialias=False)`, the same map as PyTorch's
     `F.interpolate(mode='bilinear', align_corners=False)` that pytorch-fid uses and as
     TF2's `tf.image.resize(method='bilinear', antialias=False)`. (The 2015 TF graph itself
     resized with TF1's legacy `ResizeBilinear`, which maps pixel corners instead of centres;
     like pytorch-fid we do not reproduce that small difference. Upsampling, gen's usual case,
     has nothing to antialias.) 299x299 inputs are not resampled.
  4. Scale the levels to [-1, 1]: v / 127.5 - 1, i.e. pytorch-fid's 2 * (v / 255) - 1 (the TF
     graph computes (v - 128) / 128, a shift of at most 1/128).

  Args:
    images: [N, H, W, C] floats in [-1, 1] with C in {1, 3}.

  Returns:
    [N, 299, 299, 3] float32 in [-1, 1].
  """
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N, H, W, C] with C in {{1, 3}}; got shape {x.shape}')
  x = jnp.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
  levels = jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5)
  if levels.shape[-1] == 1:
    levels = jnp.broadcast_to(levels, (*levels.shape[:-1], 3))
  n, h, w, c = levels.shape
  if (h, w) != (INPUT_SIZE, INPUT_SIZE):
    levels = jax.image.resize(
      levels, (n, INPUT_SIZE, INPUT_SIZE, c), method='bilinear', antialias=False
    )
  return levels / 127.5 - 1.0


def features(params: Any, images: Any, precision: Any = jax.lax.Precision.HIGHEST) -> dict:
  """Pure function: gen images [N, H, W, C] in [-1, 1] -> {'features': [N, 2048],
  'logits': [N, 1008]} (float32), through `preprocess` and `InceptionV3`.

  'features' is pool3 (FID's features). 'logits' is what the published Inception Score takes:
  pool3 . W with the classifier's kernel W and *without* its bias, over all 1008 outputs, as in
  OpenAI's original `inception_score` code (softmax(matmul(pool3, w))) and torch-fidelity's
  default `logits_unbiased`. The network's own `logits` output (with the bias, as pytorch-fid's
  fc layer) differs from these whenever the bias is not zero, and so would its IS.
  """
  out = InceptionV3(precision=precision).apply({'params': params}, preprocess(images))
  pool3 = out['pool3'].astype(jnp.float32)
  kernel = jnp.asarray(params['fc']['kernel'], jnp.float32)
  return {'features': pool3, 'logits': jnp.dot(pool3, kernel, precision=precision)}


def make_feature_fn(
  params: Any,
  mesh: Mesh | None = None,
  batch_axis: str = 'data',
  precision: Any = jax.lax.Precision.HIGHEST,
) -> Callable[[Any], dict]:
  """`features` jitted once, with `params` placed on the devices once.

  Returns images -> {'features', 'logits'}; the images may be of any size and 1 or 3 channels
  (each new shape compiles once). With a `mesh`, the parameters are replicated and the batch
  is split over `batch_axis` (gen's 'data' axis), so N must be a multiple of that axis's size;
  the outputs stay sharded the same way. The returned function calls `features(params, .)`
  and nothing else, so it is as pure as `features` itself.
  """
  fn = functools.partial(features, precision=precision)
  if mesh is None:
    jitted = jit(fn)
    params = jax.device_put(params)
  else:
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P(batch_axis))
    jitted = jit(fn, in_shardings=(replicated, batch), out_shardings=batch)
    params = jax.device_put(params, replicated)
  return lambda images: jitted(params, images)
