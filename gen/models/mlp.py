"""MLP denoiser for low-dimensional data (2-D toys)."""

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from gen.models.embeddings import conditioning


class MLP(nn.Module):
  """A residual MLP `f(x_t, t, labels) -> R^D` conditioned by addition of an embedding.

  Each hidden layer is `h <- h + Dense(silu(LayerNorm(h) + emb))`, the ADM conditioning idea
  reduced to vectors; the output layer starts at zero so an untrained model predicts 0. With
  `num_classes > 0` a class embedding is added to the time embedding; index `num_classes` is the
  NULL label of classifier-free guidance.

  Attributes:
    features: widths of the hidden layers (all equal when residual).
    time_dim: width of the time features.
    embedding: time features, 'sinusoidal' or 'fourier' (fixed Gaussian frequencies).
    num_classes: classes of the labels; 0 makes an unconditional model.
  """

  features: Sequence[int] = (256, 256, 256)
  time_dim: int = 64
  embedding: str = 'sinusoidal'
  num_classes: int = 0

  @nn.compact
  def __call__(
    self,
    x: chex.Array,
    t: chex.Array,
    train: bool = False,
    labels: chex.Array | None = None,
  ) -> chex.Array:
    """Maps [B, D] points, [B] times and optional [B] int labels (None = NULL) to [B, D]."""
    del train  # no dropout / batch statistics
    chex.assert_rank(x, 2)  # [B, D]
    chex.assert_shape(t, (x.shape[0],))
    emb = conditioning(
      t,
      labels,
      dim=self.time_dim,
      kind=self.embedding,
      num_classes=self.num_classes,
      field='model.mlp',
    )
    h = nn.Dense(self.features[0])(x)
    for width in self.features:
      cond = nn.Dense(h.shape[-1])(nn.silu(emb))
      update = nn.Dense(width)(nn.silu(nn.LayerNorm()(h) + cond))
      h = update if width != h.shape[-1] else h + update
    h = nn.silu(nn.LayerNorm()(h))
    return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h).astype(jnp.float32)
