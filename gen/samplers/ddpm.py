"""Ancestral sampling: DDPM (Ho et al. 2020, Algorithm 2) and DDIM (Song, Meng & Ermon 2021).

Both step between model times t > s of a schedule (any respaced subset of a discrete process's
steps, or any continuous grid) using only the marginals (alpha, sigma) at t and s. With
alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 (the
forward transition q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2)), the posterior is

  q(x_s | x_t, x_0) = N(mu, sigma_{t|s}^2 sigma_s^2 / sigma_t^2),
  mu = alpha_s sigma_{t|s}^2 / sigma_t^2 x_0 + alpha_{t|s} sigma_s^2 / sigma_t^2 x_t,

evaluated at the model's x0_hat (Kingma et al. 2021, VDM, eq. 27 generalises Ho et al. eq. 7).
For a discrete VP chain visiting consecutive steps, 1 - alpha_{t|s}^2 = beta_t.
"""

import chex
import jax
import jax.numpy as jnp

from gen.errors import ConfigError
from gen.samplers.base import (
  DenoiseFn,
  ProjectFn,
  SampleResult,
  alpha_sigma,
  evaluate,
  run_chain,
)

VARIANCES = ('beta_tilde', 'beta')


def _transition(process, t, s):
  """(alpha_t, sigma_t, alpha_s, sigma_s, alpha_{t|s}, sigma_{t|s}^2) for times t > s."""
  alpha_t, sigma_t = alpha_sigma(process, t)
  alpha_s, sigma_s = alpha_sigma(process, s)
  alpha_ts = alpha_t / alpha_s
  var_ts = jnp.maximum(jnp.square(sigma_t) - jnp.square(alpha_ts * sigma_s), 0.0)
  return alpha_t, sigma_t, alpha_s, sigma_s, alpha_ts, var_ts


def ddpm_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  variance: str = 'beta_tilde',
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """DDPM's reverse chain x_{ts[0]} -> ... -> x_{ts[-1]} -> x_0 (NFE = N).

  Each transition draws x_s = mu + std z with the posterior mean mu of the module docstring and
  std^2 one of Ho et al.'s two choices (section 3.2):
    'beta_tilde'  sigma_{t|s}^2 sigma_s^2 / sigma_t^2, the true posterior variance (optimal for
                  deterministic data; equals DDIM with eta = 1);
    'beta'        sigma_{t|s}^2, i.e. beta_t (optimal for N(0, I) data; with respacing
                  1 - abar_t / abar_s, as in Nichol & Dhariwal 2021).
  The last transition returns x0_hat with no noise (the posterior mean at s = clean data).

  Args:
    denoise_fn: the model as (x0_hat, eps_hat).
    process: any process (a discrete VP with int32 steps, or a continuous one).
    x_init: [B, ...] samples of the prior at ts[0] (N(0, I) for a VP process).
    key: randomness for the per-step noise.
    ts: [N] descending model times (`gen.samplers.timesteps`).
    variance: 'beta_tilde' or 'beta'.
    project: optional hook after each transition (inpainting).
    trajectory: also return the state after each transition.

  Returns:
    SampleResult(samples, nfe=N, trajectory).
  """
  if variance not in VARIANCES:
    raise ConfigError(
      f'diffusion.sample.variance={variance!r} is unknown; choose one of {VARIANCES}'
    )

  def step(x, t, s, k):
    _, sigma_t, alpha_s, sigma_s, alpha_ts, var_ts = _transition(process, t, s)
    x0, _ = evaluate(denoise_fn, x, t)
    sigma_t2 = jnp.square(sigma_t)
    mean = alpha_s * var_ts / sigma_t2 * x0 + alpha_ts * jnp.square(sigma_s) / sigma_t2 * x
    var = var_ts * jnp.square(sigma_s) / sigma_t2 if variance == 'beta_tilde' else var_ts
    return mean + jnp.sqrt(var) * jax.random.normal(k, x.shape, x.dtype)

  x, path = run_chain(step, denoise_fn, x_init, ts, key, project, trajectory)
  return SampleResult(x, ts.shape[0], path)


def ddim_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  eta: float = 0.0,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """DDIM (Song, Meng & Ermon 2021, eq. 12) between the times of `ts` (NFE = N).

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
    c^2 = eta^2 sigma_s^2 / sigma_t^2 sigma_{t|s}^2    (eq. 16 in alpha, sigma form).

  eta = 0 is deterministic (a first-order solver of the probability-flow ODE in log-SNR, the
  same update as DPM-Solver-1); eta = 1 is DDPM with the posterior variance. Any eta in [0, 1]
  interpolates; the last transition returns x0_hat. Explicit (t, s) pairs come from `ts`, so
  uniform, quadratic and trailing spacings (`gen.samplers.timesteps`) all work.

  Args:
    denoise_fn: the model as (x0_hat, eps_hat).
    process: any process.
    x_init: [B, ...] prior samples at ts[0].
    key: randomness (used when eta > 0).
    ts: [N] descending model times.
    eta: the stochasticity, in [0, 1].
    project: optional hook after each transition (inpainting).
    trajectory: also return the state after each transition.

  Returns:
    SampleResult(samples, nfe=N, trajectory).
  """
  if not 0.0 <= eta <= 1.0:
    raise ConfigError(f'diffusion.sample.eta must be in [0, 1], got {eta}')

  def step(x, t, s, k):
    _, sigma_t, alpha_s, sigma_s, _, var_ts = _transition(process, t, s)
    x0, eps = evaluate(denoise_fn, x, t)
    c2 = eta**2 * jnp.square(sigma_s / sigma_t) * var_ts
    x_next = alpha_s * x0 + jnp.sqrt(jnp.maximum(jnp.square(sigma_s) - c2, 0.0)) * eps
    if eta == 0.0:
      return x_next
    return x_next + jnp.sqrt(c2) * jax.random.normal(k, x.shape, x.dtype)

  x, path = run_chain(step, denoise_fn, x_init, ts, key, project, trajectory)
  return SampleResult(x, ts.shape[0], path)
