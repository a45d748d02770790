"""Langevin dynamics: the one update shared by EBM sampling, the PC corrector and NCSN.

Unadjusted Langevin dynamics for a density p with score grad log p (Roberts & Tweedie 1996;
Welling & Teh 2011 for SGLD) iterates

  x <- x + (a / 2) grad log p(x) + noise_scale sqrt(a) xi,      xi ~ N(0, I).

With noise_scale = 1 its stationary law tends to p as the step size a -> 0. EBM training commonly
decouples the two (Du & Mordatch 2019: a large gradient step with a small noise, noise_scale < 1);
noise_scale = 0 is gradient ascent on log p.
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from gen.samplers.base import DenoiseFn, ProjectFn, SampleResult, alpha_sigma, evaluate, run_chain

ScoreFn = Callable[[jax.Array], jax.Array]  # x [B, ...] -> grad log p(x) [B, ...]


def langevin_step(
  x: chex.Array,
  score: chex.Array,
  key: jax.Array,
  step_size: chex.Numeric,
  noise_scale: chex.Numeric = 1.0,
) -> jax.Array:
  """x + (a/2) score + noise_scale sqrt(a) xi, with a = step_size (scalar or per example [B])."""
  chex.assert_equal_shape((x, score))
  a = jnp.asarray(step_size)
  a = a.reshape(a.shape + (1,) * (x.ndim - a.ndim))
  xi = jax.random.normal(key, x.shape, x.dtype)
  return x + 0.5 * a * score + noise_scale * jnp.sqrt(a) * xi


def langevin(
  score_fn: ScoreFn,
  x_init: chex.Array,
  key: jax.Array,
  num_steps: int,
  step_size: chex.Numeric,
  noise_scale: chex.Numeric = 1.0,
  trajectory: bool = False,
) -> SampleResult:
  """`num_steps` Langevin updates of x_init under `score_fn`, as one lax.scan (NFE = num_steps).

  Args:
    score_fn: grad log p (for an EBM, -grad E).
    x_init: [B, ...] starting points.
    key: randomness.
    num_steps: the number of updates.
    step_size: a.
    noise_scale: the multiplier of the injected noise (1: exact Langevin).
    trajectory: also return the state after each update.

  Returns:
    SampleResult(samples, nfe=num_steps, trajectory [num_steps, B, ...]).
  """

  def body(x, k):
    x = langevin_step(x, score_fn(x), k, step_size, noise_scale)
    return x, x if trajectory else None

  x, path = jax.lax.scan(body, x_init, jax.random.split(key, num_steps))
  return SampleResult(x, num_steps, path)


def annealed_langevin_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  *,
  langevin_steps: int = 5,
  step_ratio: float = 0.2,
  noise_scale: float = 1.0,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """Annealed Langevin dynamics (Song & Ermon 2019, NCSN, Algorithm 1) over the levels of `ts`.

  At each level t_i, `langevin_steps` Langevin updates with the score -eps_hat / sigma_i and step
  a_i = step_ratio sigma_i^2: the step shrinks with the noise so that the signal-to-noise ratio of
  an update stays constant. The paper writes a_i = eps sigma_i^2 / sigma_L^2 with sigma_L the
  smallest level, so step_ratio = eps / sigma_L^2 (its eps = 2e-5 at sigma_L = 0.01 is 0.2); a
  step above 4 sigma^2 diverges even on a Gaussian. The last level ends with the
  x0 estimate (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020's "denoising" step).
  NFE = N langevin_steps + 1.

  Args:
    denoise_fn, process, x_init, key, ts: as every sampler.
    langevin_steps: updates per level (T in the paper).
    step_ratio: a_i / sigma_i^2.
    noise_scale: multiplier of the injected noise.
    project, trajectory: as every sampler (project runs after each level).

  Returns:
    SampleResult(samples, nfe, trajectory).
  """

  def at_level(x, t, k):
    _, sigma = alpha_sigma(process, t)
    a = step_ratio * jnp.square(sigma)
    score_fn = lambda y: -evaluate(denoise_fn, y, t)[1] / sigma
    return langevin(score_fn, x, k, langevin_steps, a, noise_scale).samples

  def final(x, t, k):
    return evaluate(denoise_fn, at_level(x, t, k), t)[0]

  x, path = run_chain(
    lambda x, t, s, k: at_level(x, t, k), denoise_fn, x_init, ts, key, project, trajectory, final
  )
  return SampleResult(x, ts.shape[0] * langevin_steps + 1, path)


def langevin_negatives(
  energy_fn: Callable,
  x: jax.Array,
  key: jax.Array,
  num_steps: int,
  step_size: float,
  noise_scale: float = 1.0,
  grad_clip: float = 0.0,
  mala: bool = False,
  bounds: tuple[float, float] | None = None,
  trajectory: bool = False,
):
  """K Langevin/SGLD steps on E (gen.samplers.langevin_step with score -grad E) as a lax.scan.

  Args:
    energy_fn: [B, ...] -> [B] energies.
    x: [B, ...] chain starts.
    key: randomness.
    num_steps: K.
    step_size: a; the update is x - (a/2) grad E + noise_scale sqrt(a) xi.
    noise_scale: multiplier of the noise (IGEBM uses a large gradient step and small noise).
    grad_clip: clip grad E elementwise to [-c, c] (0: off), as IGEBM/JEM do for stability.
    mala: Metropolis-adjusted Langevin (Roberts & Tweedie 1996): accept each proposal with
      probability min(1, exp(E(x) - E(x') + log q(x | x') - log q(x' | x))); needs noise_scale 1
      and no clipping (else the proposal density is not the one the ratio uses).
    bounds: keep the chain in [lo, hi] (image data range): clamped after each step, or with
      MALA proposals outside rejected (which keeps MALA exact for the truncated density).
    trajectory: also return the states after each step.

  Returns:
    (negatives [B, ...], stats {'chain_grad_norm', 'mala_acceptance'}, path or None).
  """
  grad_e = jax.grad(lambda v: jnp.sum(energy_fn(v)))

  def score(v):
    g = grad_e(v)
    return -(jnp.clip(g, -grad_clip, grad_clip) if grad_clip else g), g

  def log_q(to, frm, s_frm):  # log N(to; frm + (a/2) s(frm), a I) up to a constant
    d = to - frm - 0.5 * step_size * s_frm
    return -jnp.sum(jnp.square(d).reshape(d.shape[0], -1), axis=1) / (2 * step_size)

  def body(carry, k):
    v = carry
    s, g = score(v)
    k_step, k_acc = jax.random.split(k)
    prop = langevin_step(v, s, k_step, step_size, noise_scale)
    if bounds is not None and not mala:
      prop = jnp.clip(prop, *bounds)
    acc = jnp.ones((v.shape[0],), v.dtype)
    if mala:
      s_prop, _ = score(prop)
      log_ratio = energy_fn(v) - energy_fn(prop) + log_q(v, prop, s_prop) - log_q(prop, v, s)
      accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
      if bounds is not None:
        inside = (prop >= bounds[0]) & (prop <= bounds[1])
        accept &= jnp.all(inside.reshape(inside.shape[0], -1), axis=1)
      acc = accept.astype(v.dtype)
      prop = jnp.where(accept.reshape((-1,) + (1,) * (v.ndim - 1)), prop, v)
    gnorm = jnp.mean(jnp.sqrt(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1)))
    return prop, (
      {'chain_grad_norm': gnorm, 'mala_acceptance': jnp.mean(acc)},
      prop if trajectory else None,
    )

  x, (stats, path) = jax.lax.scan(body, x, jax.random.split(key, num_steps))
  if not mala:
    del stats['mala_acceptance']
  return jax.lax.stop_gradient(x), jax.tree.map(jnp.mean, stats), path
