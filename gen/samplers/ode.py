"""Probability-flow ODE samplers: fixed-step Euler, Heun, RK4; adaptive Dormand-Prince; EDM.

For a process with marginals x_t = alpha_t x_0 + sigma_t eps, the probability-flow ODE (Song et
al. 2021) is dx/dt = alpha'_t x0_hat(x, t) + sigma'_t eps_hat(x, t): the velocity of the
interpolant with the model's (x0, eps) held fixed. This one formula covers VP, sub-VP, VE, EDM
(where it is Karras et al.'s dx/dsigma = (x - D(x)) / sigma) and rectified flow (z - x0).
Every sampler ends with the model's x0 estimate at the last grid time (gen.samplers.base).
"""

import chex
import diffrax
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

METHODS = ('euler', 'heun', 'rk4')
# Network evaluations of one step, and of the last step when it is the x0 estimate.
_EVALS = {'euler': 1, 'heun': 2, 'rk4': 4}


def velocity(denoise_fn: DenoiseFn, process, x: jax.Array, t: chex.Array) -> jax.Array:
  """dx/dt of the probability-flow ODE at scalar time t."""
  tb = jnp.full((x.shape[0],), t, jnp.result_type(t, jnp.float32))
  x0, eps = denoise_fn(x, tb)
  d_alpha, d_sigma = process.marginal_derivatives(tb)
  b = lambda c: c.reshape(c.shape + (1,) * (x.ndim - 1))
  return b(d_alpha) * x0 + b(d_sigma) * eps


def ode_step(denoise_fn: DenoiseFn, process, method: str):
  """One fixed step `step(x, t, t_next) -> x_next` of `method` (either direction in time).

  euler: x + h v(x, t).  heun: the trapezoidal predictor-corrector (Karras et al. 2022, Alg. 1).
  rk4: the classic fourth-order Runge-Kutta.
  """
  if method not in METHODS:
    raise ConfigError(f'ODE method {method!r} is unknown; choose one of {METHODS}')
  v = lambda x, t: velocity(denoise_fn, process, x, t)

  def step(x, t, t_next):
    h = t_next - t
    k1 = v(x, t)
    if method == 'euler':
      return x + h * k1
    if method == 'heun':
      return x + 0.5 * h * (k1 + v(x + h * k1, t_next))
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t_next)
    return x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

  return step


def integrate_ode(
  denoise_fn: DenoiseFn, process, x: chex.Array, ts: chex.Array, method: str = 'heun'
) -> jax.Array:
  """Integrates the probability-flow ODE through the times `ts` (descending or ascending).

  No final denoising: with ascending times this is ODE inversion, data -> noise.
  """
  step = ode_step(denoise_fn, process, method)
  x, _ = jax.lax.scan(lambda c, tt: (step(c, *tt), None), x, (ts[:-1], ts[1:]))
  return x


def ode_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  method: str = 'euler',
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """Fixed-step probability-flow ODE sampling along `ts`, then x0_hat at ts[-1].

  NFE: euler N, heun 2N - 1, rk4 4N - 3 (the final transition is one evaluation). `key` is
  unused (deterministic) except by `project`; the signature is every sampler's.
  """
  step = ode_step(denoise_fn, process, method)
  x, path = run_chain(
    lambda x, t, s, k: step(x, t, s), denoise_fn, x_init, ts, key, project, trajectory
  )
  return SampleResult(x, _EVALS[method] * (ts.shape[0] - 1) + 1, path)


def adaptive_ode_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  max_steps: int = 4096,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """Adaptive Dormand-Prince 5(4) (diffrax.Dopri5 + PID step control) from ts[0] to ts[-1].

  Only the ends of `ts` are used; the solver picks its own steps to meet rtol/atol (score_sde
  uses RK45 with 1e-5). Then x0_hat at ts[-1]. NFE = 6 per attempted step (FSAL) + 1 for the
  first stage + 1 for the final x0 estimate, read from the solve's statistics.

  Args:
    denoise_fn, process, x_init, key: as every sampler (key unused).
    ts: times; the solve runs from ts[0] to ts[-1].
    rtol, atol: the step controller's tolerances.
    max_steps: the most steps before the solve fails.
    project: not supported (the adaptive steps are not known in advance).
    trajectory: the state at each time of `ts` (the solver's dense output), then the samples.

  Returns:
    SampleResult(samples, nfe array, trajectory).
  """
  del key
  if project is not None:
    raise ConfigError(
      "diffusion.sample.sampler='dopri5' takes its own steps: use a fixed-step sampler"
    )
  shape = x_init.shape
  field = lambda t, y, args: velocity(denoise_fn, process, y.reshape(shape), t).reshape(-1)
  t0, t1 = ts[0], ts[-1]
  saveat = diffrax.SaveAt(ts=ts) if trajectory else diffrax.SaveAt(t1=True)
  sol = diffrax.diffeqsolve(
    diffrax.ODETerm(field),
    diffrax.Dopri5(),
    t0=t0,
    t1=t1,
    dt0=(t1 - t0) / 64.0,
    y0=x_init.reshape(-1),
    saveat=saveat,
    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
    max_steps=max_steps,
  )
  x_end = sol.ys[-1].reshape(shape)
  x = evaluate(denoise_fn, x_end, t1)[0]
  nfe = 6 * sol.stats['num_steps'] + 2
  path = None
  if trajectory:
    path = jnp.concatenate([sol.ys.reshape((-1,) + shape)[1:], x[None]], axis=0)
  return SampleResult(x, nfe, path)


def edm_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  s_churn: float = 0.0,
  s_tmin: float = 0.0,
  s_tmax: float = float('inf'),
  s_noise: float = 1.0,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2) for x_t = x_0 + sigma eps.

  At each level sigma_i in [s_tmin, s_tmax], noise is added to raise it to
  sigma_hat = (1 + gamma) sigma_i, gamma = min(s_churn / N, sqrt(2) - 1):
  x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) s_noise z; then one Heun step of
  dx/dsigma = (x - D(x; sigma)) / sigma = eps_hat from sigma_hat to sigma_{i+1}. The last
  transition is D(x; sigma_{N-1}) (their Euler step to sigma = 0; no churn there). s_churn = 0
  is the deterministic Algorithm 1. NFE = 2N - 1. Use Karras spacing (`timesteps(...,
  'karras')`) for the paper's sampler.

  Args:
    denoise_fn, process, x_init, key, ts: as every sampler; the process must have alpha = 1
      (ve or edm), so that sigma is its noise level.
    s_churn, s_tmin, s_tmax, s_noise: Karras et al.'s S_churn, S_tmin, S_tmax, S_noise.
    project, trajectory: as every sampler.

  Returns:
    SampleResult(samples, nfe=2N-1, trajectory).
  """
  num = ts.shape[0]
  gamma_max = min(s_churn / num, 2**0.5 - 1.0)

  def step(x, t, t_next, k):
    _, sigma = alpha_sigma(process, t)
    _, sigma_next = alpha_sigma(process, t_next)
    gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.0)
    sigma_hat = sigma * (1.0 + gamma)
    noise = jax.random.normal(k, x.shape, x.dtype)
    # sqrt(sigma_hat^2 - sigma^2) without the cancellation that rounds it below zero at gamma = 0
    x_hat = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * s_noise * noise
    t_hat = process.t_from_noise_level(sigma_hat)
    d = evaluate(denoise_fn, x_hat, t_hat)[1]  # dx/dsigma = eps_hat when alpha = 1
    x_euler = x_hat + (sigma_next - sigma_hat) * d
    d_next = evaluate(denoise_fn, x_euler, t_next)[1]
    return x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d_next)

  x, path = run_chain(step, denoise_fn, x_init, ts, key, project, trajectory)
  return SampleResult(x, 2 * num - 1, path)
