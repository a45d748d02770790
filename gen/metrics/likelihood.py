"""Exact log-likelihood through the probability-flow ODE, and bits per dimension.

The probability-flow ODE dx/dt = v(x, t) = alpha'_t x0_hat + sigma'_t eps_hat (Song et al. 2021,
gen.samplers.ode) transports the noisy marginal p_t into p_s exactly, so the instantaneous
change-of-variables formula (Chen et al. 2018, "Neural ODEs", Theorem 1)

  d/dt log p_t(x(t)) = -div v(x(t), t)

integrated along a solution from t_start to T = process.t_max gives

  log p_{t_start}(x) = log p_T(x(T)) + int_{t_start}^{T} div v(x(t), t) dt.

`log_likelihood` solves the augmented ODE d/dt [x, delta] = [v(x, t), div v(x, t)] from
(x, 0) at t_start to T with diffrax's Dopri5 and a PID step controller (score_sde's
`likelihood.py` uses RK45 with rtol = atol = 1e-5), then adds the prior log-density of x(T).

The divergence is either exact (the trace of the Jacobian from its D forward-mode columns,
for small data) or Hutchinson's unbiased estimate eps^T (dv/dx) eps with Rademacher eps drawn
once per solve and held fixed along the trajectory (Grathwohl et al. 2019, FFJORD; one JVP per
evaluation). Both treat the examples of a batch as independent (true of every gen model): the
divergence of example b is taken with respect to x_b alone.

Bits per dimension of discrete data (8-bit images scaled to [-1, 1]) follow from a uniform
dequantisation; see `bits_per_dim` for the convention.
"""

import math
from collections.abc import Callable

import chex
import diffrax
import jax
import jax.numpy as jnp

from gen.errors import ConfigError
from gen.samplers.base import DenoiseFn
from gen.samplers.ode import velocity

__all__ = [
  'EXACT_TRACE_MAX_DIM',
  'TRACES',
  'bits_per_dim',
  'bits_per_dim_of',
  'dequantize',
  'gaussian_prior_log_prob',
  'log_likelihood',
]

TRACES = ('auto', 'exact', 'hutchinson')
# trace='auto' takes the exact trace up to this many dimensions per example, Hutchinson beyond.
EXACT_TRACE_MAX_DIM = 32

PriorLogProb = Callable[[jax.Array], jax.Array]


def gaussian_prior_log_prob(x: chex.Array, std: chex.Array) -> jax.Array:
  """[B] log N(x; 0, std^2 I) of x [B, ...], summed over each example's dimensions."""
  flat = x.reshape(x.shape[0], -1)
  var = jnp.square(jnp.asarray(std, flat.dtype))
  dim = flat.shape[1]
  return -0.5 * (jnp.sum(jnp.square(flat), axis=1) / var + dim * jnp.log(2.0 * jnp.pi * var))


def _prior_std(process) -> jax.Array:
  """sigma_T: the std of the default prior N(0, sigma_T^2 I) at T = process.t_max."""
  return process.marginal(jnp.full((1,), process.t_max, jnp.float32))[1][0]


def _per_example_rms_norm(tree) -> jax.Array:
  """max over examples of the RMS of that example's scaled errors (its x and log-density).

  diffrax's default RMS over the whole state would let one hard example's error hide among the
  batch's easy ones (so accuracy would depend on the batch size); this holds every example to
  the tolerance it would get if solved alone.
  """
  x, delta = tree
  sq = jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1) + jnp.square(delta)
  return jnp.sqrt(jnp.max(sq) / (math.prod(x.shape[1:]) + 1))


def _divergence_fn(field: Callable[[jax.Array], jax.Array], x: jax.Array, trace: str, noise):
  """(v(x), [B] divergence of v at x): exact (D JVPs) or Hutchinson's estimate (one JVP)."""
  batch = x.shape[0]
  if trace == 'hutchinson':
    v, jv = jax.jvp(field, (x,), (noise,))
    return v, jnp.sum((noise * jv).reshape(batch, -1), axis=1)
  # Exact: column d of every example's Jacobian from one JVP with tangent e_d in each example.
  v, jvp_fn = jax.linearize(field, x)
  dim = math.prod(x.shape[1:])
  basis = jnp.broadcast_to(jnp.eye(dim, dtype=x.dtype)[:, None, :], (dim, batch, dim))
  columns = jax.vmap(jvp_fn)(basis.reshape((dim,) + x.shape))  # [D, B, ...]: J_b e_d
  diag = jnp.einsum('dbd->b', columns.reshape(dim, batch, dim))
  return v, diag


def log_likelihood(
  denoise_fn: DenoiseFn,
  process,
  x: chex.Array,
  key: jax.Array | None,
  *,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  trace: str = 'auto',
  max_steps: int = 4096,
  t_start: float | chex.Array | None = None,
  prior_log_prob: PriorLogProb | None = None,
) -> tuple[jax.Array, jax.Array]:
  """log p_{t_start}(x) in nats by the probability-flow ODE (module doc), and its NFE.

  Pure and jittable (close over `denoise_fn` and `process`). The prior at T = process.t_max is
  N(0, sigma_T^2 I): sigma_T = process.prior_std for VP and sub-VP (1 up to alpha_T^2 ~ 4e-5
  with the default betas), VE and EDM (sigma_max; score_sde's prior for VP and VE), and for
  rectified flow with t_max = 1 (sigma = 1, N(0, I), exact there since alpha_1 = 0). The prior
  ignores the data's remaining signal alpha_T x_0 (VP: alpha_1 ~ 6.6e-3) and, for VE/EDM, its
  spread next to sigma_max: an error of about alpha_T x_0 . z per example (VE/EDM: x_0 . z /
  sigma_max). Pass `prior_log_prob` to use a better prior (e.g. the exact marginal in tests).

  Args:
    denoise_fn: the model as (x0_hat, eps_hat) (gen.samplers.base); its examples must be
      independent of each other (no batch statistics).
    process: a continuous gen.processes process.
    x: [B, ...] the points, distributed like the marginal at t_start (data when t_start is the
      clean end; dequantised data for discrete data, see `dequantize`).
    key: the Hutchinson noise (Rademacher, drawn once per solve); unused (may be None) for the
      exact trace.
    rtol, atol: the PID step controller's tolerances, on x and on the log-density alike, held
      per example: the error norm is the RMS over one example's entries, maximised over the
      batch (not diffrax's RMS over the whole batch, where one hard example's error is diluted).
    trace: 'exact' (D JVPs per evaluation), 'hutchinson' (one JVP) or 'auto' (exact when an
      example has D <= EXACT_TRACE_MAX_DIM = 32 dimensions).
    max_steps: the most solver steps; a solve that needs more gives NaN log-densities.
    t_start: where the ODE starts (default process.t_min). Rectified flow's t_min = 0 is
      noise-free: models that divide by sigma_t (eps from x0) need t_start > 0 there.
    prior_log_prob: `fn(x_T [B, ...]) -> [B]` log-density at t_max, replacing N(0, sigma_T^2 I).

  Returns:
    (logp [B] float32 in nats, nfe int32 scalar): nfe counts evaluations of the augmented vector
    field (each is one network evaluation, differentiated forward: one JVP for Hutchinson, D for
    the exact trace): Dopri5's 6 per attempted step (accepted or rejected) and 1 for the first
    stage of the first step (which diffrax re-evaluates, uncounted here, each time that very
    first step is rejected; the default dt0 = min(0.01, (T - t_start) / 16) rarely is).
  """
  if process.is_discrete:
    raise ConfigError('log_likelihood needs a continuous process (vp, subvp, ve, edm, flow)')
  if trace not in TRACES:
    raise ConfigError(f'likelihood trace={trace!r} is unknown; choose one of {TRACES}')
  x = jnp.asarray(x, jnp.float32)
  dim = math.prod(x.shape[1:])
  if trace == 'auto':
    trace = 'exact' if dim <= EXACT_TRACE_MAX_DIM else 'hutchinson'
  noise = None
  if trace == 'hutchinson':
    if key is None:
      raise ConfigError("likelihood trace='hutchinson' needs a random key")
    noise = jax.random.rademacher(key, x.shape, jnp.float32)

  def vector_field(t, state, args):
    y, _ = state
    field = lambda z: velocity(denoise_fn, process, z, t)
    v, div = _divergence_fn(field, y, trace, noise)
    return v, div

  t0 = jnp.asarray(process.t_min if t_start is None else t_start, jnp.float32)
  t1 = jnp.asarray(process.t_max, jnp.float32)
  sol = diffrax.diffeqsolve(
    diffrax.ODETerm(vector_field),
    diffrax.Dopri5(),
    t0=t0,
    t1=t1,
    # diffrax's own initial-step choice (dt0=None) is skipped for wrapped terms, which gives 0.01
    # silently; state it, shorter for short solves. The controller adapts it from there.
    dt0=jnp.minimum(0.01, (t1 - t0) / 16.0),
    y0=(x, jnp.zeros((x.shape[0],), jnp.float32)),
    saveat=diffrax.SaveAt(t1=True),
    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=_per_example_rms_norm),
    max_steps=max_steps,
    throw=False,
  )
  x_end, delta = sol.ys[0][-1], sol.ys[1][-1]
  if prior_log_prob is None:
    prior = gaussian_prior_log_prob(x_end, _prior_std(process))
  else:
    prior = prior_log_prob(x_end)
  ok = sol.result == diffrax.RESULTS.successful
  logp = jnp.where(ok, prior + delta, jnp.nan)
  nfe = 6 * sol.stats['num_steps'] + 1
  return logp, jnp.asarray(nfe, jnp.int32)


def _bin_width(num_bins: int, data_range: float) -> float:
  if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
    raise ConfigError(f'num_bins must be an integer >= 2, got {num_bins!r}')
  return data_range / (num_bins - 1)


def bits_per_dim(
  logp_nats: chex.Array, dim: int, *, num_bins: int | None = None, data_range: float = 2.0
) -> jax.Array:
  """Bits per dimension from a continuous log-density (nats) of D-dimensional points.

  Without `num_bins`: -logp / (D ln 2), the density's own bits/dim.

  With `num_bins`: the discrete data takes the levels x_k = -data_range/2 + k Delta, k = 0 ..
  num_bins - 1, Delta = data_range / (num_bins - 1) (gen's images: x = 2 k / 255 - 1, Delta =
  2/255), and is dequantised by uniform noise over the bin of width Delta centred on each
  level (`dequantize`; Ho et al. 2020's decoder bins). In the integer units of the levels the
  bins have width 1 and the density is p(x) Delta^D, so for dequantised u = x + Delta (U - 1/2)

    log P(k) >= E_U[log p(u)] + D ln Delta   (Jensen; Theis et al. 2016, Uria et al. 2013)

  and the bits/dim of the discrete data (an upper bound, in expectation over the noise) is

    bpd = -(logp + D ln Delta) / (D ln 2) = -logp / (D ln 2) - log2(Delta).

  For 8-bit images in [-1, 1], -log2(2/255) = log2(127.5) ~ 6.9944 bits. score_sde instead
  dequantises on [0, 1] as (k + U) / 256 before scaling to [-1, 1] (Delta = 1/128, its offset
  `7 - inverse_scaler(-1)` = 7); its bpd of the same density is larger by log2(256/255) ~
  0.0056. Check: the uniform distribution over the num_bins^D levels, dequantised, has density
  (num_bins Delta)^-D on its support and gives bpd = log2(num_bins) exactly (8 for 256 levels).

  Args:
    logp_nats: log-densities, any shape (e.g. [B]), in nats.
    dim: D, the dimensions per example (e.g. 32 * 32 * 3).
    num_bins: the number of discrete levels per dimension (256 for 8-bit), or None.
    data_range: max - min of the levels (2 for [-1, 1]).

  Returns:
    bits/dim, the shape of logp_nats.
  """
  bpd = -jnp.asarray(logp_nats) / (dim * math.log(2.0))
  if num_bins is None:
    return bpd
  return bpd - math.log2(_bin_width(num_bins, data_range))


def dequantize(
  key: jax.Array, x: chex.Array, num_bins: int, *, data_range: float = 2.0
) -> jax.Array:
  """x + Delta (U - 1/2), U ~ Uniform[0, 1) per entry: uniform noise over each level's bin.

  Delta = data_range / (num_bins - 1), the spacing of the levels (see `bits_per_dim`); every
  output lies within Delta / 2 of its level, so rounding recovers the discrete data.
  """
  x = jnp.asarray(x, jnp.float32)
  width = _bin_width(num_bins, data_range)
  return x + width * (jax.random.uniform(key, x.shape, x.dtype) - 0.5)


def bits_per_dim_of(
  denoise_fn: DenoiseFn,
  process,
  x: chex.Array,
  key: jax.Array,
  *,
  num_bins: int | None = None,
  data_range: float = 2.0,
  **kwargs,
) -> tuple[jax.Array, jax.Array]:
  """Mean bits/dim of data x [B, ...] under the model, and the solve's NFE.

  Dequantises x first when `num_bins` is given (discrete data on levels `data_range` / (num_bins
  - 1) apart, see `bits_per_dim`), then takes `log_likelihood` (its keyword arguments pass
  through `kwargs`: rtol, atol, trace, max_steps, t_start, prior_log_prob).

  Returns:
    (mean bits/dim over the batch, float32 scalar; nfe, int32 scalar).
  """
  k_dequant, k_trace = jax.random.split(key)
  if num_bins is not None:
    x = dequantize(k_dequant, x, num_bins, data_range=data_range)
  logp, nfe = log_likelihood(denoise_fn, process, x, k_trace, **kwargs)
  dim = math.prod(x.shape[1:])
  bpd = bits_per_dim(logp, dim, num_bins=num_bins, data_range=data_range)
  return jnp.mean(bpd), nfe


def _normal_cdf(x: jax.Array) -> jax.Array:
  return 0.5 * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_prob(
  x: chex.Array, mean: chex.Array, std: chex.Array, num_bins: int, data_range: float = 2.0
) -> jax.Array:
  """log P(x) per entry of data on `num_bins` levels under N(mean, std^2) integrated over bins.

  Ho et al. 2020's decoder p(x_0 | x_1) (their eq. 13): the mass of the bin of width Delta =
  data_range / (num_bins - 1) around each level, with the outermost bins extended to -inf and
  +inf so the masses sum to one.
  """
  half = _bin_width(num_bins, data_range) / 2
  lo_edge, hi_edge = -data_range / 2 + half, data_range / 2 - half
  upper = jnp.where(x >= hi_edge, 1.0, _normal_cdf((x + half - mean) / std))
  lower = jnp.where(x <= lo_edge, 0.0, _normal_cdf((x - half - mean) / std))
  return jnp.log(jnp.maximum(upper - lower, 1e-12))


def ddpm_elbo_bits_per_dim(
  denoise_fn: DenoiseFn,
  process,
  x: chex.Array,
  key: jax.Array,
  *,
  num_bins: int | None = None,
  variance: str = 'beta',
  data_range: float = 2.0,
) -> tuple[jax.Array, jax.Array]:
  """Mean bits/dim of data x [B, ...] from the variational bound of a discrete DDPM.

  Ho et al. 2020, eq. 5 (Sohl-Dickstein et al. 2015): -log p(x_0) <= L_T + sum_{t=2}^T L_{t-1}
  + L_0 with

    L_T     = KL(q(x_T | x_0) || N(0, I))
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),  both Gaussians:
              q: N(mu~(x_t, x_0), beta~_t I), p: N(mu~(x_t, x0_hat(x_t, t)), sigma_t^2 I),
              mu~(x_t, x_0) = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0
                              + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    L_0     = -log p(x_0 | x_1), the discretised Gaussian N(x0_hat(x_1, 1), beta_1)
              (`discretized_gaussian_log_prob`; a Gaussian density without `num_bins`),

  sigma_t^2 = beta_t ('beta') or beta~_t ('beta_tilde'), as the DDPM sampler uses. Every term
  is computed exactly (all T of them, each with its own x_t ~ q(x_t | x_0): one network call
  per term, T in all, in a `lax.scan`), not estimated from a random subset of t. With
  `num_bins` the bound is on the discrete data's probability (no dequantisation needed).

  Returns:
    (mean bits/dim over the batch, float32 scalar; nfe = T, int32 scalar).
  """
  x = jnp.asarray(x, jnp.float32)
  b, dim = x.shape[0], math.prod(x.shape[1:])
  betas = process.betas
  abar = process.alphas_cumprod
  abar_prev = jnp.concatenate([jnp.ones((1,)), abar[:-1]])
  beta_tilde = betas * (1.0 - abar_prev) / (1.0 - abar)
  sum_dims = lambda a: jnp.sum(a.reshape(b, -1), axis=1)

  def term(_, i):
    eps = jax.random.normal(jax.random.fold_in(key, i), x.shape)
    x_t = jnp.sqrt(abar[i]) * x + jnp.sqrt(1.0 - abar[i]) * eps
    x0_hat, _ = denoise_fn(x_t, jnp.full((b,), i))
    c0 = jnp.sqrt(abar_prev[i]) * betas[i] / (1.0 - abar[i])
    ct = jnp.sqrt(1.0 - betas[i]) * (1.0 - abar_prev[i]) / (1.0 - abar[i])
    mean_q, mean_p = c0 * x + ct * x_t, c0 * x0_hat + ct * x_t
    var_p = betas[i] if variance == 'beta' else jnp.maximum(beta_tilde[i], 1e-20)
    var_q = jnp.maximum(beta_tilde[i], 1e-20)
    kl = 0.5 * (
      dim * (var_q / var_p - 1.0 + jnp.log(var_p / var_q))
      + sum_dims((mean_q - mean_p) ** 2) / var_p
    )
    std0 = jnp.sqrt(betas[0])
    if num_bins:
      log_p0 = sum_dims(discretized_gaussian_log_prob(x, x0_hat, std0, num_bins, data_range))
    else:
      log_p0 = sum_dims(
        -0.5 * ((x - x0_hat) / std0) ** 2 - jnp.log(std0) - 0.5 * math.log(2 * math.pi)
      )
    return None, jnp.where(i == 0, -log_p0, kl)

  _, terms = jax.lax.scan(term, None, jnp.arange(process.num_timesteps))  # [T, B]
  mean_t, var_t = jnp.sqrt(abar[-1]) * x, 1.0 - abar[-1]
  prior_kl = 0.5 * (dim * (var_t - 1.0 - jnp.log(var_t)) + sum_dims(mean_t**2))
  nats = jnp.sum(terms, axis=0) + prior_kl
  bpd = nats / (dim * math.log(2.0))
  return jnp.mean(bpd), jnp.asarray(process.num_timesteps, jnp.int32)
