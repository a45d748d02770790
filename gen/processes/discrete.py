"""Discrete-time variance-preserving forward process (DDPM, Ho et al. 2020) and its schedules."""

import math
from typing import ClassVar

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gen.errors import ConfigError
from gen.processes.base import check_grid_args, expand_to, karras_sigmas


class DiscreteVP(flax.struct.PyTreeNode):
  """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s).

  The Markov chain is x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z for t = 0 .. T-1, with
  x_{-1} = x_0 the data (steps are 0-indexed, so even t = 0 adds noise beta_0).

  Attributes:
    betas: [T] per-step noise variances beta_t.
  """

  betas: jax.Array  # [T]

  is_discrete: ClassVar[bool] = True

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  @property
  def alphas_cumprod(self) -> jax.Array:  # [T]
    return jnp.cumprod(1.0 - self.betas)

  @property
  def t_min(self) -> int:
    return 0

  @property
  def t_max(self) -> int:
    return self.num_timesteps - 1

  @property
  def prior_std(self) -> float:
    """Sampling starts from N(0, I): abar_{T-1} is ~0 for the shipped schedules."""
    return 1.0

  def marginal(self, t: chex.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) for integer steps t [B]."""
    abar = self.alphas_cumprod[t]
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)

  def add_noise(self, x0: chex.Array, t: chex.Array, eps: chex.Array) -> jax.Array:
    """x_t = alpha_t x_0 + sigma_t eps, broadcasting the per-example scalars over x0's shape."""
    chex.assert_equal_shape((x0, eps))
    alpha, sigma = self.marginal(t)
    return expand_to(alpha, x0) * x0 + expand_to(sigma, x0) * eps

  def log_snr(self, t: chex.Array) -> jax.Array:
    """lambda_t = log(abar_t / (1 - abar_t)) = 2 log(alpha_t / sigma_t), for integer t [B]."""
    abar = self.alphas_cumprod[t]
    return jnp.log(abar) - jnp.log1p(-abar)

  def model_time(self, t: chex.Array) -> jax.Array:
    """The network's time input: the integer step itself, as float32 (DDPM)."""
    return jnp.asarray(t).astype(jnp.float32)

  def time_grid(self, num_steps: int, kind: str = 'uniform', rho: float = 7.0) -> jax.Array:
    """[num_steps + 1] distinct integer steps from T-1 down to 0 (timestep respacing).

    'uniform' rounds an even spacing (Nichol & Dhariwal 2021, respacing; DDIM, Song et al.
    2021). 'karras' spaces the noise-to-signal ratio sqrt((1 - abar_t) / abar_t) by Karras et al.
    (2022) eq. 5 and takes the nearest step, moving repeats down so the steps stay distinct.

    Args:
      num_steps: the number of intervals; at most T - 1.
      kind: 'uniform' or 'karras'.
      rho: Karras' exponent.

    Returns:
      [num_steps + 1] int32 steps, strictly decreasing.
    """
    check_grid_args(num_steps, kind)
    if num_steps > self.num_timesteps - 1:
      raise ConfigError(
        f'num_steps={num_steps} exceeds the {self.num_timesteps - 1} intervals of a '
        f'{self.num_timesteps}-step discrete process'
      )
    if kind == 'uniform':
      grid = np.round(np.linspace(self.num_timesteps - 1, 0, num_steps + 1)).astype(np.int32)
      return jnp.asarray(grid)
    abar = self.alphas_cumprod
    log_ratio = 0.5 * (jnp.log1p(-abar) - jnp.log(abar))  # increasing in t
    ratio = jnp.exp(log_ratio)
    levels = karras_sigmas(ratio[0], ratio[-1], num_steps + 1, rho)
    steps = jnp.argmin(jnp.abs(jnp.log(levels)[:, None] - log_ratio[None, :]), axis=1)
    steps = steps.at[0].set(self.num_timesteps - 1).at[-1].set(0)
    # Nearest steps can repeat where the ratio changes fast (the cosine schedule's end). Make them
    # strictly decreasing: s_i >= n-1-i leaves room below, and s_{i+1} < s_i <=> u_{i+1} <= u_i
    # for u_i = s_i + i, so a running minimum of u moves each repeat down by the least amount.
    index = jnp.arange(num_steps + 1)
    u = jnp.maximum(steps, num_steps - index) + index
    return (jax.lax.cummin(u) - index).astype(jnp.int32)


def linear_schedule(num_timesteps: int = 1000, beta_start=1e-4, beta_end=0.02) -> DiscreteVP:
  """The linear beta schedule of DDPM (Ho et al. 2020): beta from 1e-4 to 0.02 over 1,000 steps."""
  return DiscreteVP(jnp.linspace(beta_start, beta_end, num_timesteps, dtype=jnp.float32))


def cosine_schedule(num_timesteps: int = 1000, s: float = 0.008) -> DiscreteVP:
  """The cosine schedule of Nichol & Dhariwal (2021), eq. 17.

  abar_t = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, and
  beta_t = 1 - abar_t / abar_{t-1} clipped at 0.999 to avoid the singularity at t = T. Step i
  (0-indexed) ends at paper time i + 1, as in the authors' `betas_for_alpha_bar`.

  Args:
    num_timesteps: T.
    s: the small offset that keeps beta_0 from being vanishingly small.

  Returns:
    the DiscreteVP.
  """
  f = lambda u: math.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2
  steps = np.arange(num_timesteps, dtype=np.float64)
  f_lo = np.array([f(u) for u in steps / num_timesteps])
  f_hi = np.array([f(u) for u in (steps + 1.0) / num_timesteps])
  betas = np.minimum(1.0 - f_hi / f_lo, 0.999)
  return DiscreteVP(jnp.asarray(betas, jnp.float32))


def scaled_linear_schedule(
  num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> DiscreteVP:
  """Stable Diffusion's 'scaled_linear' schedule (Rombach et al. 2022).

  sqrt(beta_t) is linear from sqrt(beta_start) to sqrt(beta_end); beta_t is its square.

  Args:
    num_timesteps: T.
    beta_start: beta_0.
    beta_end: beta_{T-1}.

  Returns:
    the DiscreteVP.
  """
  roots = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_timesteps)
  return DiscreteVP(jnp.asarray(roots**2, jnp.float32))
