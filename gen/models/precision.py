"""Mixed precision for any flax.linen network: compute in bfloat16, keep float32 everywhere else.

`apply_in(dtype, fn, params, *args)` runs `fn(params_cast, *args)` with the parameters cast to
`dtype` and, through `flax.linen.intercept_methods`, every floating-point input of the network's
layers (Dense, Conv, normalisation, embeddings) cast to `dtype` too, so matmuls and convolutions
run in bfloat16 whatever a module does in between (a float32 time embedding, say). The float32
parameters, optimizer state, EMA, schedules and sampler arithmetic are untouched: gradients
flow back through the casts into the float32 parameters, and callers cast outputs to float32.
flax's normalisation layers still reduce their statistics in float32.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
LAYERS = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, nn.GroupNorm, nn.LayerNorm)


def _cast(tree, dtype):
  floating = lambda a: hasattr(a, 'dtype') and jnp.issubdtype(a.dtype, jnp.floating)
  return jax.tree.map(lambda a: a.astype(dtype) if floating(a) else a, tree)


def apply_in(dtype_name: str, fn: Callable[..., Any], params: Any, *args, **kwargs) -> Any:
  """fn(params, *args, **kwargs) computed in `dtype_name` ('float32': unchanged)."""
  dtype = COMPUTE_DTYPES[dtype_name]
  if dtype == jnp.float32:
    return fn(params, *args, **kwargs)

  def interceptor(next_fun, call_args, call_kwargs, context):
    if isinstance(context.module, LAYERS) and context.method_name == '__call__':
      call_args = _cast(call_args, dtype)
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(interceptor):
    return fn(_cast(params, dtype), *args, **kwargs)
