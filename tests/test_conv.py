"""gen.models.conv: the CPU kernel gradient equals XLA's and a brute-force sum; nn.Conv keeps its
parameters; anything but a plain NHWC convolution is passed to lax unchanged. gen's XLA:CPU
convolution flag (gen/__init__.py) is in effect and changes no value."""

import os
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import gen
from gen.models import conv

NHWC = ('NHWC', 'HWIO', 'NHWC')

# (x shape, kernel size, stride, padding): SAME 3x3, stride 2 (Downsample), odd sizes, 1x1,
# 4x4 stride 2 (the DCGAN discriminator), explicit asymmetric padding, and two U-Net shapes.
# Each case compiles for a few seconds; the fast tier keeps the U-Net 1x1 one, where
# matmul_pays chooses the products, and the 3x3 one.
slow = pytest.mark.slow
CASES = [
  pytest.param((2, 8, 8, 3), 3, 1, 'SAME', marks=slow),
  pytest.param((2, 8, 8, 3), 3, 2, 'SAME', marks=slow),
  pytest.param((3, 9, 7, 4), 3, 2, 'SAME', marks=slow),
  pytest.param((2, 6, 6, 5), 1, 1, 'SAME', marks=slow),
  pytest.param((2, 8, 8, 3), 4, 2, 'SAME', marks=slow),
  pytest.param((2, 7, 6, 3), 3, 1, ((2, 0), (1, 1)), marks=slow),
  ((2, 16, 16, 64), 3, 1, 'SAME'),
  ((2, 16, 16, 64), 1, 1, 'SAME'),
]


def _brute_force_kernel_grad(x, dy, k, stride, pads):
  """dK[i, j, c, o] = sum_{b, h, w} x_pad[b, s h + i, s w + j, c] dy[b, h, w, o] in float64."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
  dy = np.asarray(dy, np.float64)
  _, ho, wo, _ = dy.shape
  grad = np.zeros((k, k, x.shape[-1], dy.shape[-1]))
  for i in range(k):
    for j in range(k):
      window = x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
      grad[i, j] = np.einsum('bhwc,bhwo->co', window, dy)
  return grad


@pytest.mark.parametrize('shape, k, stride, padding', CASES)
def test_kernel_and_input_gradients_equal_xla_and_brute_force(shape, k, stride, padding):
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (k, k, shape[-1], max(6, shape[-1]))) / k
  dn = lax.conv_dimension_numbers(x.shape, kernel.shape, NHWC)

  def loss(fn):
    return lambda x_, k_: jnp.sum(jnp.sin(fn(x_, k_, (stride,) * 2, padding, dimension_numbers=dn)))

  # Through the custom VJP (matmul_pays picks the products or XLA's), jitted and not.
  want = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, kernel)
  for grad in (jax.grad, lambda f, a: jax.jit(jax.grad(f, a))):
    got = grad(loss(conv.conv_general_dilated), (0, 1))(x, kernel)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-4)

  # The products themselves, whatever matmul_pays says, against a float64 sum.
  pads = conv._pads(x.shape, kernel.shape, (stride, stride), padding)
  y = lax.conv_general_dilated(x, kernel, (stride,) * 2, pads, dimension_numbers=dn)
  dy = jax.random.normal(jax.random.key(2), y.shape)
  got = conv.kernel_grad_matmul(x, dy, kernel.shape, (stride, stride), pads)
  chex.assert_shape(got, kernel.shape)
  np.testing.assert_allclose(
    got, _brute_force_kernel_grad(x, dy, k, stride, pads), rtol=1e-4, atol=1e-3
  )


def test_products_taken_for_1x1_kernels_and_equal_xla_for_others():
  assert conv.matmul_pays((1, 1, 8, 8))
  assert not conv.matmul_pays((3, 3, 128, 128))
  assert not conv.matmul_pays((4, 4, 3, 64))
  x = jax.random.normal(jax.random.key(3), (2, 16, 16, 64))
  dy = jax.random.normal(jax.random.key(4), (2, 8, 8, 64))
  pads = ((0, 1), (0, 1))
  kernel = jnp.zeros((3, 3, 64, 64))
  chex.assert_trees_all_close(
    jax.jit(conv.kernel_grad_matmul, static_argnums=(2, 3, 4))(x, dy, kernel.shape, (2, 2), pads),
    conv._kernel_grad_xla(x, dy, kernel, (2, 2), pads),
    rtol=1e-5,
    atol=1e-4,
  )


def test_bfloat16_gradient_keeps_dtype_and_matches_float32():
  x = jax.random.normal(jax.random.key(5), (2, 16, 16, 64))
  kernel = jax.random.normal(jax.random.key(6), (1, 1, 64, 64)) / 8
  dn = lax.conv_dimension_numbers(x.shape, kernel.shape, NHWC)
  loss = lambda k_, x_: jnp.sum(conv.conv_general_dilated(x_, k_, (1, 1), 'SAME', None, None, dn))
  k16, x16 = kernel.astype(jnp.bfloat16), x.astype(jnp.bfloat16)
  g16 = jax.grad(loss)(k16, x16)
  assert g16.dtype == jnp.bfloat16
  # Against float32 on the same (rounded) inputs: the products accumulate in float32, so only
  # the final rounding to bfloat16 (relative 2^-8) remains.
  g32 = jax.grad(loss)(k16.astype(jnp.float32), x16.astype(jnp.float32))
  np.testing.assert_allclose(g16.astype(jnp.float32), g32, rtol=1e-2)


def test_flax_conv_parameters_outputs_and_gradients_unchanged():
  plain = nn.Conv(8, (3, 3), strides=(2, 2), padding='SAME')
  fast = nn.Conv(
    8, (3, 3), strides=(2, 2), padding='SAME', conv_general_dilated=conv.conv_general_dilated
  )
  x = jax.random.normal(jax.random.key(7), (2, 8, 8, 3))
  params = plain.init(jax.random.key(8), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(fast.init(jax.random.key(8), x), params)
  chex.assert_trees_all_close(fast.apply(params, x), plain.apply(params, x), rtol=1e-6)
  loss = lambda model: lambda p: jnp.sum(model.apply(p, x) ** 2)
  chex.assert_trees_all_close(
    jax.grad(loss(fast))(params), jax.grad(loss(plain))(params), rtol=1e-5
  )


@pytest.mark.slow
def test_other_convolutions_pass_through_to_lax():
  x = jax.random.normal(jax.random.key(9), (2, 8, 8, 4))
  kernel = jax.random.normal(jax.random.key(10), (3, 3, 2, 4))
  dn = lax.conv_dimension_numbers(x.shape, kernel.shape, NHWC)
  kwargs = dict(rhs_dilation=(2, 2), dimension_numbers=dn, feature_group_count=2)
  chex.assert_trees_all_close(
    conv.conv_general_dilated(x, kernel, (1, 1), 'SAME', **kwargs),
    lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', **kwargs),
  )


YNN_CONVOLUTIONS = {
  'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
}


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU flag')
def test_cpu_convolutions_take_eigen_and_equal_ynnpack_and_float64():
  """gen/__init__.py takes convolutions out of YNNPACK on the CPU. The compiled program shows
  it; XLA's YNNPACK lowering, asked for per compile, still exists and gives the same values,
  forward and both gradients, as does a float64 brute-force sum."""
  assert gen.CPU_CONVOLUTIONS_FLAG in os.environ['XLA_FLAGS']
  x = jax.random.normal(jax.random.key(11), (2, 16, 16, 32))
  kernel = jax.random.normal(jax.random.key(12), (3, 3, 32, 32)) / 3
  dy = jax.random.normal(jax.random.key(13), (2, 16, 16, 32))

  def passes(x_, k_):
    y, vjp = jax.vjp(
      lambda a, b: lax.conv_general_dilated(a, b, (1, 1), 'SAME', None, None, NHWC), x_, k_
    )
    return (y, *vjp(dy))

  eigen = jax.jit(passes).lower(x, kernel).compile()
  ynn = jax.jit(passes).lower(x, kernel).compile(compiler_options=YNN_CONVOLUTIONS)
  assert '__ynn_fusion' not in eigen.as_text() and '__ynn_fusion' in ynn.as_text()
  got, want = eigen(x, kernel), ynn(x, kernel)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(
    got[2], _brute_force_kernel_grad(x, dy, 3, 1, ((1, 1), (1, 1))), rtol=1e-4, atol=1e-3
  )


def test_cpu_convolutions_flag_leaves_a_users_own_setting():
  flag = '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'
  for env, want in (
    (flag, flag),
    ('--xla_dump_to=/tmp/x', f'--xla_dump_to=/tmp/x {gen.CPU_CONVOLUTIONS_FLAG}'),
  ):
    out = subprocess.run(
      [sys.executable, '-c', 'import os, gen; print(os.environ["XLA_FLAGS"])'],
      env={**os.environ, 'XLA_FLAGS': env},
      capture_output=True,
      text=True,
      timeout=60,
      check=True,
    )
    assert out.stdout.strip() == want


_CLASSIFIER_STEPS = """
import sys
import jax
if sys.argv[1] == '8':
  jax.config.update('jax_num_cpu_devices', 8)
from gen.metrics import digits_classifier as dc
params, _ = dc.train_classifier(dict(dc.RECIPE, steps=20))
print(len(jax.devices()), dc.params_checksum(params))
"""


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='an XLA:CPU flag')
def test_feature_networks_give_the_same_bits_in_1_and_8_device_processes():
  """On XLA:CPU's Eigen path the digits classifier's 1-channel convolution rounds differently
  with 8 CPU devices than with 1; the feature networks compile with
  gen.REFERENCE_CPU_COMPILER_OPTIONS (jaxlib's default YNNPACK set), where it does not, and the
  result equals that of a process whose XLA_FLAGS keep jaxlib's default."""
  runs = {}
  for devices, flags in (('1', ''), ('8', ''), ('1', '+individual_convolution')):
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    env['XLA_FLAGS'] = f'--xla_cpu_experimental_ynn_fusion_type={flags}' if flags else ''
    out = subprocess.run(
      [sys.executable, '-c', _CLASSIFIER_STEPS, devices],
      env=env,
      capture_output=True,
      text=True,
      timeout=240,
      check=True,
    )
    runs[(devices, flags)] = out.stdout.split()
  assert runs[('1', '')][0] == '1' and runs[('8', '')][0] == '8'
  assert len({checksum for _, checksum in runs.values()}) == 1, runs
