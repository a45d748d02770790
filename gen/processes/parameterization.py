"""What a network predicts, and exact conversions between the choices.

With x_t = alpha_t x_0 + sigma_t eps (any process in gen.processes) a network may output:
  'eps'       the noise eps (Ho et al. 2020);
  'x0'        the clean data x_0;
  'v'         v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022, progressive distillation);
  'score'     grad log q(x_t | x_0) = -eps / sigma_t (Song et al. 2021), whose expectation given
              x_t is the marginal score;
  'velocity'  dx_t/dt = alpha'_t x_0 + sigma'_t eps (flow matching, Lipman et al. 2022; rectified
              flow, Liu et al. 2022); continuous processes only.
Every kind is linear in (x_0, eps) given x_t, so each converts to every other exactly:
`to_x0_eps` solves for (x_0, eps), `from_x0_eps` forms the target, `convert` chains them.
"""

import chex
import jax
import jax.numpy as jnp

from gen.errors import ConfigError
from gen.processes.base import expand_to

KINDS = ('eps', 'x0', 'v', 'score', 'velocity')


def check_kind(kind: str, process, field: str = 'diffusion.parameterization') -> None:
  """Raises ConfigError for an unknown kind, or 'velocity' with a discrete-time process."""
  if kind not in KINDS:
    raise ConfigError(f'{field}={kind!r} is unknown; choose one of {KINDS}')
  if kind == 'velocity' and process.is_discrete:
    raise ConfigError(
      f"{field}='velocity' needs a continuous-time process (d x_t / dt); "
      f'with a discrete process choose one of {KINDS[:-1]}'
    )


def _coefs(process, t, x, derivatives=False):
  alpha, sigma = process.marginal(t)
  coefs = [expand_to(alpha, x), expand_to(sigma, x)]
  if derivatives:
    dalpha, dsigma = process.marginal_derivatives(t)
    coefs += [expand_to(dalpha, x), expand_to(dsigma, x)]
  return coefs


def to_x0_eps(
  kind: str, pred: chex.Array, x_t: chex.Array, t: chex.Array, process
) -> tuple[jax.Array, jax.Array]:
  """Recovers (x_0, eps) from a prediction of `kind` at x_t.

  eps:      x_0 = (x_t - sigma eps) / alpha.
  x0:       eps = (x_t - alpha x_0) / sigma.
  v:        x_0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2),
            eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)   (any alpha, sigma; Salimans & Ho).
  score:    eps = -sigma score, then as for eps.
  velocity: solve [alpha sigma; alpha' sigma'] (x_0, eps) = (x_t, u):
            x_0 = (sigma' x_t - sigma u) / D, eps = (alpha u - alpha' x_t) / D,
            D = alpha sigma' - sigma alpha'.

  Args:
    kind: one of KINDS.
    pred: [B, ...] the prediction.
    x_t: [B, ...] the noisy input.
    t: [B] times.
    process: the forward process.

  Returns:
    (x_0, eps), each shaped like x_t.
  """
  check_kind(kind, process)
  chex.assert_equal_shape((pred, x_t))
  if kind == 'velocity':
    alpha, sigma, dalpha, dsigma = _coefs(process, t, x_t, derivatives=True)
    det = alpha * dsigma - sigma * dalpha
    return (dsigma * x_t - sigma * pred) / det, (alpha * pred - dalpha * x_t) / det
  alpha, sigma = _coefs(process, t, x_t)
  if kind == 'x0':
    return pred, (x_t - alpha * pred) / sigma
  if kind == 'v':
    norm = jnp.square(alpha) + jnp.square(sigma)
    return (alpha * x_t - sigma * pred) / norm, (sigma * x_t + alpha * pred) / norm
  eps = pred if kind == 'eps' else -sigma * pred
  return (x_t - sigma * eps) / alpha, eps


def from_x0_eps(kind: str, x0: chex.Array, eps: chex.Array, t: chex.Array, process) -> jax.Array:
  """The `kind` target for a pair (x_0, eps): x_0, eps, alpha eps - sigma x_0, -eps / sigma or
  alpha' x_0 + sigma' eps.

  Args:
    kind: one of KINDS.
    x0: [B, ...] clean data.
    eps: [B, ...] noise.
    t: [B] times.
    process: the forward process.

  Returns:
    [B, ...] the target.
  """
  check_kind(kind, process)
  chex.assert_equal_shape((x0, eps))
  if kind == 'x0':
    return x0
  if kind == 'eps':
    return eps
  if kind == 'velocity':
    _, _, dalpha, dsigma = _coefs(process, t, x0, derivatives=True)
    return dalpha * x0 + dsigma * eps
  alpha, sigma = _coefs(process, t, x0)
  if kind == 'v':
    return alpha * eps - sigma * x0
  return -eps / sigma


def convert(
  pred: chex.Array, from_kind: str, to_kind: str, x_t: chex.Array, t: chex.Array, process
) -> jax.Array:
  """Re-expresses a prediction of `from_kind` at (x_t, t) as `to_kind`; exact for every pair."""
  if from_kind == to_kind:
    check_kind(from_kind, process)
    return pred
  x0, eps = to_x0_eps(from_kind, pred, x_t, t, process)
  return from_x0_eps(to_kind, x0, eps, t, process)


def edm_preconditioning(
  sigma: chex.Array, sigma_data: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """EDM's input/output scalings (Karras et al. 2022, Table 1 and Appendix B.6).

  The denoiser is D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
    c_out  = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2),
  chosen so the network's input and its training target (x_0 - c_skip x) / c_out both have unit
  variance when the data has std sigma_data. It assumes alpha = 1 (x = x_0 + sigma eps), i.e.
  VESDE or EDMProcess; for a scaled process apply it to x_t / alpha_t with sigma_t / alpha_t.
  EDM's c_noise = ln(sigma) / 4; gen feeds `EDMProcess.model_time` instead, an affine map of it.

  Args:
    sigma: [B] noise levels.
    sigma_data: the data's std.

  Returns:
    (c_skip, c_out, c_in), each [B].
  """
  sigma = jnp.asarray(sigma)
  total = jnp.square(sigma) + sigma_data**2
  return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1.0 / jnp.sqrt(total)
