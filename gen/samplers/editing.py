"""Editing with a trained model: inpainting, colorization, ODE inversion and interpolation.

Inpainting (Song et al. 2021, score_sde, appendix I.2, "imputation"): any one-step sampler runs
as usual, and after every transition to time s the known pixels are overwritten by a fresh
sample of q(x_s | x_known) = N(alpha_s x_known, sigma_s^2 I); after the final transition (to
clean data) by x_known itself, so the result equals the input on the known pixels exactly. The
unknown pixels follow the model's reverse process conditioned, through the joint denoiser, on
the re-noised known ones. The replacement only approximates the conditional sampler: the
fresh noise on the known pixels is independent of the path the unknown ones took, so with a
plain ancestral or ODE sampler a few samples commit to a mode that the known pixels rule out
before those become informative (tests/test_editing: two modes, x_1 known, DDPM 0.1-0.5 % and
DDIM ~5 % wrong); the Langevin corrector of `pc_sample` repairs this (conditional matched).

Colorization is the same imputation in a rotated colour basis whose first axis is the grey
direction (1, ..., 1) / sqrt(C) (score_sde's decoupled colorization).

ODE inversion (DDIM inversion, Song, Meng & Ermon 2021, section 4.3; Dhariwal & Nichol 2021,
appendix) runs the deterministic sampler backwards, data -> noise, along the ascending times
reversed(ts); decoding the latent with the same sampler and schedule maps it back. The round
trip is exact only in the limit of small steps (each direction is a discretisation of the
same probability-flow ODE, and the inversion starts by treating the clean data as the state at
the smallest model time ts[-1]); its error shrinks with the step count at the method's order.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gen.errors import ConfigError
from gen.samplers.base import DenoiseFn, ProjectFn, SampleResult, alpha_sigma, evaluate
from gen.samplers.ddpm import ddim_sample
from gen.samplers.ode import METHODS, integrate_ode, ode_sample

INVERSION_METHODS = ('ddim', *METHODS)


# -- inpainting -------------------------------------------------------------------------------


def inpaint_projector(process, x_known: chex.Array, mask: chex.Array) -> ProjectFn:
  """The `project=` hook of score_sde's imputation for any one-step sampler of gen.samplers.

  After a transition to time s the pixels where `mask` is nonzero (1 / True: known) become
  alpha_s x_known + sigma_s z with fresh z ~ N(0, I); after the final transition (t_next None)
  they become x_known exactly (bit for bit). The other pixels are left as the sampler made them.

  Args:
    process: the process the sampler integrates.
    x_known: [B, ...] the data (its values where mask is 0 are ignored).
    mask: broadcastable to x_known; nonzero where the pixel is known.

  Returns:
    project(x, t_next, key) -> x, for a sampler's `project=` argument.
  """
  x_known = jnp.asarray(x_known)
  mask = jnp.asarray(mask)
  chex.assert_is_broadcastable(mask.shape, x_known.shape)
  known = jnp.broadcast_to(mask != 0, x_known.shape)

  def project(x, t_next, key):
    chex.assert_equal_shape((x, x_known))
    if t_next is None:
      return jnp.where(known, x_known, x)
    alpha, sigma = alpha_sigma(process, t_next)
    noise = jax.random.normal(key, x.shape, x.dtype)
    return jnp.where(known, alpha * x_known + sigma * noise, x)

  return project


def inpaint(
  sampler_fn,
  denoise_fn: DenoiseFn,
  process,
  x_known: chex.Array,
  mask: chex.Array,
  key: jax.Array,
  ts: chex.Array,
  **sampler_kwargs,
) -> SampleResult:
  """Fills in the unknown pixels of x_known with `sampler_fn` and `inpaint_projector`.

  The start is the prior, process.prior_std N(0, I), with the known pixels replaced by their
  re-noising at ts[0], alpha x_known + sigma z.

  Args:
    sampler_fn: a sampler of gen.samplers (ddpm_sample, ddim_sample, ode_sample, pc_sample, ...)
      with the common signature `fn(denoise_fn, process, x_init, key, ts, *, project, ...)`.
    denoise_fn: the model as (x0_hat, eps_hat).
    process: its process.
    x_known: [B, ...] the images to complete.
    mask: broadcastable to x_known; nonzero where the pixel is known.
    key: randomness (prior, re-noising and the sampler's own).
    ts: [N] descending model times (`gen.samplers.timesteps`).
    **sampler_kwargs: the sampler's options (eta, method, snr, trajectory, ...).

  Returns:
    the sampler's SampleResult; samples equal x_known wherever mask is nonzero.
  """
  x_known = jnp.asarray(x_known)
  project = inpaint_projector(process, x_known, mask)
  known = jnp.broadcast_to(jnp.asarray(mask) != 0, x_known.shape)
  k_prior, k_known, k_run = jax.random.split(key, 3)
  x_init = process.prior_std * jax.random.normal(k_prior, x_known.shape, x_known.dtype)
  alpha, sigma = alpha_sigma(process, ts[0])
  noise = jax.random.normal(k_known, x_known.shape, x_known.dtype)
  x_init = jnp.where(known, alpha * x_known + sigma * noise, x_init)
  return sampler_fn(denoise_fn, process, x_init, k_run, ts, project=project, **sampler_kwargs)


def _grey_basis(num_channels: int) -> np.ndarray:
  """[C, C] orthogonal matrix whose first row is (1, ..., 1) / sqrt(C)."""
  a = np.eye(num_channels)
  a[:, 0] = 1.0
  q, _ = np.linalg.qr(a)
  q = q * np.sign(q[0, 0])
  return q.T.astype(np.float32)


def colorization_projector(process, grey: chex.Array) -> ProjectFn:
  """Colorization as imputation of the grey axis of a rotated colour basis (score_sde).

  With Q orthogonal and its first row (1, ..., 1) / sqrt(C), y = Q x per pixel has
  y_0 = sqrt(C) mean_c(x) known and y_1.. free; `inpaint_projector` runs on y (an orthogonal
  map keeps N(0, I) noise N(0, I)). The final result's channel mean equals `grey` up to
  float round-off (not bit for bit: the rotation back rounds).

  Args:
    process: the sampler's process.
    grey: [B, ..., 1] the per-pixel mean over the C channels of the image to colour.

  Returns:
    project(x, t_next, key) -> x for x [B, ..., C].
  """
  grey = jnp.asarray(grey)
  chex.assert_axis_dimension(grey, -1, 1)

  def project(x, t_next, key):
    c = x.shape[-1]
    chex.assert_shape(x, grey.shape[:-1] + (c,))
    q = jnp.asarray(_grey_basis(c), x.dtype)
    known = jnp.zeros(x.shape, x.dtype).at[..., 0].set(np.sqrt(c) * grey[..., 0])
    mask = jnp.zeros((c,), jnp.int32).at[0].set(1)
    inner = inpaint_projector(process, known, mask)
    return inner(x @ q.T, t_next, key) @ q

  return project


# -- inversion and interpolation --------------------------------------------------------------


def _check_method(method: str, process) -> None:
  if method not in INVERSION_METHODS:
    raise ConfigError(f'inversion method {method!r} is unknown; choose one of {INVERSION_METHODS}')
  if method != 'ddim' and process.is_discrete:
    raise ConfigError(f"inversion method {method!r} needs a continuous-time process; use 'ddim'")


def ode_invert(
  denoise_fn: DenoiseFn,
  process,
  x0: chex.Array,
  ts: chex.Array,
  method: str = 'ddim',
  start_iters: int = 0,
) -> jax.Array:
  """Deterministic inversion data -> noise along the ascending times reversed(ts).

  The clean data is taken as the state at ts[-1] (the smallest model time), then each step goes
  up one time of the schedule:
    'ddim'                 x_{t'} = alpha_{t'} x0_hat(x, t) + sigma_{t'} eps_hat(x, t) (N - 1
                           evaluations; any process, discrete too);
    'euler', 'heun', 'rk4' `integrate_ode` on the probability-flow ODE (continuous processes).
  `ode_decode` with the same ts and method maps the latent back; the round trip is exact only
  in the limit of small steps (see the module docstring).

  Taking the data as the state at ts[-1] leaves an error floor where sigma at ts[-1] is not
  negligible (rectified flow's grid stops at t = 1/N): `start_iters` > 0 instead inverts the
  decoder's last step x0 = x0_hat(x, ts[-1]) by the fixed-point iteration
  x <- alpha x0 + sigma eps_hat(x, ts[-1]) from x = x0 (one evaluation each; it contracts when
  sigma at ts[-1] is small). One iteration is the usual "evaluate at the upper time" first step
  of DDIM inversion, and removes the floor of the higher-order methods (tests/test_editing).

  Args:
    denoise_fn: the model as (x0_hat, eps_hat).
    process: its process.
    x0: [B, ...] data.
    ts: [N] the descending schedule of the decoder (`gen.samplers.timesteps`).
    method: one of INVERSION_METHODS.
    start_iters: fixed-point iterations for the state at ts[-1] (0: the data itself).

  Returns:
    [B, ...] the latents at ts[0].
  """
  _check_method(method, process)
  chex.assert_rank(ts, 1)
  up = ts[::-1]
  x0 = jnp.asarray(x0)
  alpha, sigma = alpha_sigma(process, ts[-1])
  x = x0
  for _ in range(start_iters):
    x = alpha * x0 + sigma * evaluate(denoise_fn, x, ts[-1])[1]
  if method != 'ddim':
    return integrate_ode(denoise_fn, process, x, up, method)

  def step(x, times):
    t, t_next = times
    x0_hat, eps_hat = evaluate(denoise_fn, x, t)
    alpha, sigma = alpha_sigma(process, t_next)
    return alpha * x0_hat + sigma * eps_hat, None

  x, _ = jax.lax.scan(step, x, (up[:-1], up[1:]))
  return x


def ode_decode(
  denoise_fn: DenoiseFn, process, x_t: chex.Array, ts: chex.Array, method: str = 'ddim'
) -> jax.Array:
  """The deterministic sampler from latents at ts[0] to data: DDIM (eta = 0) or `ode_sample`.

  The inverse of `ode_invert` with the same ts and method (up to discretisation error).
  """
  _check_method(method, process)
  if method == 'ddim':
    return ddim_sample(denoise_fn, process, x_t, None, ts).samples
  return ode_sample(denoise_fn, process, x_t, None, ts, method=method).samples


def slerp(z0: chex.Array, z1: chex.Array, w: chex.Array, eps: float = 1e-6) -> jax.Array:
  """Spherical linear interpolation per example (Shoemake 1985; White 2016 for latents).

  With cos(omega) = <z0, z1> / (|z0| |z1|) over each example's flattened entries:
    slerp = sin((1 - w) omega) / sin(omega) z0 + sin(w omega) / sin(omega) z1,
  falling back to (1 - w) z0 + w z1 where sin(omega) < eps (parallel or antiparallel inputs).
  w = 0 and w = 1 give z0 and z1 exactly; equal-norm inputs keep their norm.

  Args:
    z0, z1: [B, ...] latents.
    w: a scalar or [B] weights (0 -> z0, 1 -> z1).
    eps: the threshold on sin(omega) for the linear fallback.

  Returns:
    [B, ...] the interpolated latents.
  """
  chex.assert_equal_shape((z0, z1))
  a = z0.reshape(z0.shape[0], -1)
  b = z1.reshape(z1.shape[0], -1)
  w = jnp.broadcast_to(jnp.asarray(w, a.dtype), (a.shape[0],))[:, None]
  norms = jnp.linalg.norm(a, axis=1) * jnp.linalg.norm(b, axis=1)
  cos = jnp.sum(a * b, axis=1) / jnp.maximum(norms, jnp.finfo(a.dtype).tiny)
  omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None]
  sin = jnp.sin(omega)
  linear = sin < eps
  safe_sin = jnp.where(linear, 1.0, sin)
  c0 = jnp.where(linear, 1.0 - w, jnp.sin((1.0 - w) * omega) / safe_sin)
  c1 = jnp.where(linear, w, jnp.sin(w * omega) / safe_sin)
  return (c0 * a + c1 * b).reshape(z0.shape)


def interpolate(
  denoise_fn: DenoiseFn,
  process,
  x_a: chex.Array,
  x_b: chex.Array,
  ts: chex.Array,
  num: int,
  method: str = 'ddim',
  start_iters: int = 0,
) -> jax.Array:
  """Interpolates two examples through their latents (DDIM, section 5.3).

  Inverts x_a and x_b with `ode_invert`, slerps the latents at `num` evenly spaced weights from
  0 to 1 and decodes them with `ode_decode` (same ts and method).

  Args:
    denoise_fn, process: the model and its process.
    x_a, x_b: two examples of one shape [...] (no batch axis).
    ts: [N] descending schedule.
    num: how many points, endpoints included (>= 2).
    method: one of INVERSION_METHODS.
    start_iters: as `ode_invert`.

  Returns:
    [num, ...]: the first ~ x_a, the last ~ x_b (up to the round-trip error).
  """
  chex.assert_equal_shape((x_a, x_b))
  latents = ode_invert(denoise_fn, process, jnp.stack([x_a, x_b]), ts, method, start_iters)
  z0 = jnp.broadcast_to(latents[0], (num,) + latents.shape[1:])
  z1 = jnp.broadcast_to(latents[1], (num,) + latents.shape[1:])
  z = slerp(z0, z1, jnp.linspace(0.0, 1.0, num, dtype=latents.dtype))
  return ode_decode(denoise_fn, process, z, ts, method)
