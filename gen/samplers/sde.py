"""Reverse-SDE samplers: Euler-Maruyama, the reverse-diffusion predictor, predictor-corrector.

The forward SDE dx = f_t x dt + g_t dW has the reverse dx = [f_t x - g_t^2 score(x, t)] dt +
g_t dW_bar (Anderson 1982), with score = -eps_hat / sigma_t. Song et al. (2021, section 4.2)
sample it with a numerical predictor and an optional score-based MCMC corrector (Langevin at a
target signal-to-noise ratio). Every sampler ends with the x0 estimate at the last grid time
(score_sde's "noise removal" step).
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
from gen.samplers.langevin import langevin_step

PREDICTORS = ('reverse_diffusion', 'euler_maruyama')


def _score(denoise_fn: DenoiseFn, process, x, t):
  _, sigma = alpha_sigma(process, t)
  return -evaluate(denoise_fn, x, t)[1] / sigma


def euler_maruyama_step(denoise_fn: DenoiseFn, process):
  """x_s = x + [f_t x - g_t^2 score] (s - t) + g_t sqrt(t - s) z (continuous processes)."""

  def step(x, t, s, k):
    tb = jnp.reshape(t, (1,))
    f, g2 = (c[0] for c in process.sde(tb))
    dt = s - t  # negative: time runs backwards
    drift = f * x - g2 * _score(denoise_fn, process, x, t)
    return x + drift * dt + jnp.sqrt(g2 * -dt) * jax.random.normal(k, x.shape, x.dtype)

  return step


def reverse_diffusion_step(denoise_fn: DenoiseFn, process):
  """Song et al.'s reverse-diffusion predictor (their eq. 46) for the discretised forward step.

  The forward step t_next -> t is x_t = a x_s + G z with a = alpha_t / alpha_s and
  G^2 = sigma_t^2 - a^2 sigma_s^2 (for VE: G^2 = sigma_t^2 - sigma_s^2, score_sde's choice;
  for VP: 1 - a^2 = beta). Reversed: x_s = x - (a - 1) x + G^2 score(x, t) + G z. Needs only the
  marginals, so discrete processes work too.
  """

  def step(x, t, s, k):
    alpha_t, sigma_t = alpha_sigma(process, t)
    alpha_s, sigma_s = alpha_sigma(process, s)
    a = alpha_t / alpha_s
    g2 = jnp.maximum(jnp.square(sigma_t) - jnp.square(a * sigma_s), 0.0)
    mean = (2.0 - a) * x + g2 * _score(denoise_fn, process, x, t)
    return mean + jnp.sqrt(g2) * jax.random.normal(k, x.shape, x.dtype)

  return step


def _one_step_sampler(make_step, doc: str):
  """A sampler that scans the one-step update `make_step(denoise_fn, process)` (NFE = N)."""

  def sample(
    denoise_fn: DenoiseFn,
    process,
    x_init: chex.Array,
    key: jax.Array,
    ts: chex.Array,
    *,
    project: ProjectFn | None = None,
    trajectory: bool = False,
  ) -> SampleResult:
    step = make_step(denoise_fn, process)
    x, path = run_chain(step, denoise_fn, x_init, ts, key, project, trajectory)
    return SampleResult(x, ts.shape[0], path)

  sample.__doc__ = doc
  return sample


euler_maruyama_sample = _one_step_sampler(
  euler_maruyama_step, 'Euler-Maruyama on the reverse SDE along `ts` (NFE = N); continuous only.'
)
reverse_diffusion_sample = _one_step_sampler(
  reverse_diffusion_step, 'The reverse-diffusion predictor alone along `ts` (NFE = N).'
)


def langevin_corrector(
  denoise_fn: DenoiseFn, process, x, t, alpha_ratio, key, snr: float, num_steps: int
):
  """Song et al.'s Langevin corrector (Algorithm 5) at time t with target signal-to-noise `snr`.

  Each of `num_steps` updates is `langevin_step` with a = 2 eps_step and
  eps_step = 2 alpha_ratio (snr ||z|| / ||score||)^2, z the update's own noise, so that the
  ratio of the gradient step to the noise is `snr`. alpha_ratio = alpha_t^2 / alpha_next^2 is
  score_sde's alpha_i (1 - beta_i for VP, 1 for VE). As in score_sde, ||z|| and ||score|| are
  per-example norms averaged over the batch: a per-example ratio explodes in low dimension
  wherever the score nearly vanishes (at a mode).
  """

  def body(x, k):
    score = _score(denoise_fn, process, x, t)
    z = jax.random.normal(k, x.shape, x.dtype)
    norm = lambda v: jnp.mean(jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1)), axis=1)))
    step = 2.0 * alpha_ratio * jnp.square(snr * norm(z) / jnp.maximum(norm(score), 1e-12))
    return langevin_step(x, score, k, 2.0 * step), None  # same key: the noise z itself

  x, _ = jax.lax.scan(body, x, jax.random.split(key, num_steps))
  return x


def pc_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  predictor: str = 'reverse_diffusion',
  snr: float = 0.16,
  corrector_steps: int = 1,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """Predictor-corrector sampling (Song et al. 2021, Algorithm 1; score_sde's `pc_sampler`).

  At every time t_i of `ts` the corrector runs first (`corrector_steps` Langevin updates at
  t_i), then the predictor moves t_i -> t_{i+1}, as in the paper and score_sde; at the last time
  the corrector is followed by the x0 estimate. NFE = N (corrector_steps + 1).

  Args:
    denoise_fn, process, x_init, key, ts: as every sampler.
    predictor: 'reverse_diffusion' (any process) or 'euler_maruyama' (continuous).
    snr: the corrector's target signal-to-noise ratio r (0.16 for VE CIFAR-10 in the paper).
    corrector_steps: Langevin updates per time (M).
    project, trajectory: as every sampler.

  Returns:
    SampleResult(samples, nfe, trajectory).
  """
  if predictor not in PREDICTORS:
    raise ConfigError(
      f'diffusion.sample.predictor={predictor!r} is unknown; choose one of {PREDICTORS}'
    )
  make = reverse_diffusion_step if predictor == 'reverse_diffusion' else euler_maruyama_step
  predict = make(denoise_fn, process)

  def correct(x, t, ratio, k):
    return langevin_corrector(denoise_fn, process, x, t, ratio, k, snr, corrector_steps)

  def step(x, t, s, k):
    k_correct, k_predict = jax.random.split(k)
    ratio = jnp.square(alpha_sigma(process, t)[0] / alpha_sigma(process, s)[0])
    return predict(correct(x, t, ratio, k_correct), t, s, k_predict)

  def final(x, t, k):
    return evaluate(denoise_fn, correct(x, t, 1.0, k), t)[0]

  x, path = run_chain(step, denoise_fn, x_init, ts, key, project, trajectory, final)
  return SampleResult(x, ts.shape[0] * (corrector_steps + 1), path)
