"""A 2-D convolution whose 1x1 kernel gradient XLA:CPU computes as a matrix product.

`conv_general_dilated` is a drop-in for `jax.lax.conv_general_dilated` that `flax.linen.Conv`
takes as its `conv_general_dilated` field, so parameters, initialisers, names and checkpoints
are those of `nn.Conv`. The forward pass and the input gradient are XLA's own convolution. The
kernel gradient of an NHWC x HWIO convolution with strides (sh, sw) and explicit padding,

    dK[i, j, c, o] = sum_{b, h, w} x_pad[b, sh h + i, sw w + j, c] * dy[b, h, w, o],

is one matrix product per kernel offset (i, j): the window of the padded input at that offset,
flattened to [B Ho Wo, C], transposed times dy flattened to [B Ho Wo, O]; for a 1x1 kernel it is
the single product x^T dy. XLA:CPU lowers the same contraction as a convolution whose window is
the whole output image. For 1x1 kernels that was 1.5-2.2x slower than the product even on
XLA's Eigen path, which gen selects on the CPU (gen/__init__.py), and 20-100x slower on
YNNPACK's; for 3x3 kernels Eigen's was the faster of the two, so only 1x1 kernels take the
products (`matmul_pays`). `kernel_grad_matmul` still computes any kernel size (the benchmark
in benchmarks/conv_kernels.py times it against XLA's).

The choice is made per backend with `jax.lax.platform_dependent`: GPU and TPU keep XLA's own
kernel gradient, which their compilers are tuned for. Both formulations are the same sum; the
tests check them equal.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _pads(x_shape, k_shape, strides, padding) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x_shape[1:3], k_shape[:2], strides, padding))
  return tuple(tuple(int(v) for v in p) for p in padding)


def _conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


def _kernel_grad_xla(x, dy, kernel, strides, pads):
  """XLA's own transpose of the convolution with respect to the kernel."""
  _, vjp = jax.vjp(lambda k: _conv(x, k, strides, pads), kernel)
  return vjp(dy)[0]


def kernel_grad_matmul(x, dy, kernel_shape, strides, pads):
  """dK[i, j] = window(i, j)^T dy for every kernel offset (see the module docstring).

  Args:
    x: [B, H, W, C] convolution input.
    dy: [B, Ho, Wo, O] gradient of the convolution output.
    kernel_shape: (kh, kw, C, O).
    strides: (sh, sw).
    pads: ((top, bottom), (left, right)).

  Returns:
    [kh, kw, C, O] kernel gradient in x's dtype (products accumulate in float32).
  """
  kh, kw, c, o = kernel_shape
  b, ho, wo, _ = dy.shape
  sh, sw = strides
  dy2 = dy.reshape(b * ho * wo, o)
  product = lambda p: lax.dot_general(
    p, dy2, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
  )
  if (kh, kw, *strides) == (1, 1, 1, 1) and pads == ((0, 0), (0, 0)):
    return product(x.reshape(-1, c)).reshape(kernel_shape).astype(x.dtype)
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  window = lambda i, j: xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
  grad = jnp.stack([product(window(i, j).reshape(-1, c)) for i in range(kh) for j in range(kw)])
  return grad.reshape(kernel_shape).astype(x.dtype)


def matmul_pays(kernel_shape) -> bool:
  """Whether the CPU kernel gradient takes the matrix products: for 1x1 kernels only (module
  docstring)."""
  kh, kw, _, _ = kernel_shape
  return kh * kw == 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_nhwc(x, kernel, strides, pads):
  return _conv(x, kernel, strides, pads)


def _conv_nhwc_fwd(x, kernel, strides, pads):
  return _conv(x, kernel, strides, pads), (x, kernel)


def _conv_nhwc_bwd(strides, pads, residuals, dy):
  x, kernel = residuals
  _, vjp_x = jax.vjp(lambda x_: _conv(x_, kernel, strides, pads), x)
  (dx,) = vjp_x(dy)
  if not matmul_pays(kernel.shape):
    return dx, _kernel_grad_xla(x, dy, kernel, strides, pads)
  dk = lax.platform_dependent(
    x,
    dy,
    cpu=lambda x_, dy_: kernel_grad_matmul(x_, dy_, kernel.shape, strides, pads),
    default=lambda x_, dy_: _kernel_grad_xla(x_, dy_, kernel, strides, pads),
  )
  return dx, dk.astype(kernel.dtype)


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def _is_nhwc(dimension_numbers, x, kernel) -> bool:
  if dimension_numbers is None or x.ndim != 4 or kernel.ndim != 4:
    return False
  expected = lax.conv_dimension_numbers(x.shape, kernel.shape, _NHWC)
  return lax.conv_dimension_numbers(x.shape, kernel.shape, dimension_numbers) == expected


def conv_general_dilated(
  lhs,
  rhs,
  window_strides: Sequence[int],
  padding,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated` with the CPU kernel gradient of this module.

  Plain 2-D NHWC x HWIO convolutions (no dilation, one feature group, default precision) take
  the custom gradient; anything else is passed to `lax.conv_general_dilated` unchanged.
  """
  plain = (
    _is_nhwc(dimension_numbers, lhs, rhs)
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
    and all(d == 1 for d in (rhs_dilation or (1, 1)))
    and feature_group_count == 1
    and batch_group_count == 1
    and precision is None
    and preferred_element_type is None
    and lhs.dtype == rhs.dtype
  )
  if not plain:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      preferred_element_type=preferred_element_type,
    )
  strides = tuple(int(s) for s in window_strides)
  return _conv_nhwc(lhs, rhs, strides, _pads(lhs.shape, rhs.shape, strides, padding))
