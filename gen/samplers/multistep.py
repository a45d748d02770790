"""Fast multistep solvers of the probability-flow ODE in log-SNR: DPM-Solver++ and UniPC.

Both integrate the data-prediction form of the probability-flow ODE exactly in its linear part
(Lu et al. 2022, "DPM-Solver++", eq. 9): with lambda = log(alpha / sigma) and h = lambda_t -
lambda_s, the solution from s to t is

  x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^{l} x0_hat(l) dl,

and they differ in how they extrapolate x0_hat from the model's previous outputs (the history of
a multistep method costs no extra evaluation: NFE = N). Only alpha_t, sigma_t enter, so every
process works, discrete ones included. The last transition, to clean data, is the first-order
step to sigma = 0, i.e. the x0 estimate at ts[-1] (gen.samplers.base). Log-SNR is clipped to
[-LAMBDA_CLIP, LAMBDA_CLIP] so a process with alpha = 0 at t_max (rectified flow) takes a finite
first step; its coefficient e^{-h} is then ~1e-13 instead of 0.
"""

import chex
import jax
import jax.numpy as jnp

from gen.samplers.base import DenoiseFn, ProjectFn, SampleResult, alpha_sigma, evaluate, finish

LAMBDA_CLIP = 30.0
VARIANTS = ('bh1', 'bh2')


def _log_snr(process, t):
  alpha, sigma = alpha_sigma(process, t)
  lam = jnp.log(alpha) - jnp.log(sigma)
  return jnp.clip(lam, -LAMBDA_CLIP, LAMBDA_CLIP), alpha, sigma


def _scan_multistep(update, denoise_fn, process, x_init, key, ts, order, project, trajectory):
  """Runs `update` over the N - 1 transitions between model times with a history of `order`
  previous (x0_hat, lambda) pairs, then the final x0 estimate. `update(x, m, lams, t_next, i)`
  gets the current x, the history m [order, B, ...] (m[0] newest, at t) and lams [order]."""
  num = ts.shape[0]
  keys = jax.random.split(jax.random.key(0) if key is None else key, num)
  hist_m = jnp.zeros((order,) + x_init.shape, x_init.dtype)
  hist_l = jnp.zeros((order,), jnp.float32)

  def body(carry, inputs):
    x, hist_m, hist_l = carry
    i, t, t_next, k = inputs
    lam, _, _ = _log_snr(process, t)
    m = evaluate(denoise_fn, x, t)[0]
    hist_m = jnp.concatenate([m[None], hist_m[:-1]])
    hist_l = jnp.concatenate([lam[None], hist_l[:-1]])
    x = update(x, hist_m, hist_l, t_next, i)
    if project is not None:
      x = project(x, t_next, k)
    return (x, hist_m, hist_l), x if trajectory else None

  steps = (jnp.arange(num - 1), ts[:-1], ts[1:], keys[:-1])
  (x, _, _), path = jax.lax.scan(body, (x_init, hist_m, hist_l), steps)
  x, path = finish(denoise_fn, x, ts, keys[-1], path, project)
  return SampleResult(x, num, path)


def _orders(i, num, order, lower_order_final):
  """The order of transition i (0-based) of num - 1: warm-up, then lower order near the end."""
  k = jnp.minimum(order, i + 1)
  if lower_order_final and num < 15:  # diffusers' rule: few steps, last ones at lower order
    k = jnp.where(i == num - 2, jnp.minimum(k, 2), k)
  return k


def dpm_solver_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array | None,
  ts: chex.Array,
  *,
  order: int = 2,
  lower_order_final: bool = True,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """DPM-Solver++ multistep, orders 1-3 (Lu et al. 2022, Algorithm 2 for 2M; 3M as in their code).

  With D_j = x0_hat at the j-th previous time, h = lambda_t - lambda_s, h_k the previous step
  sizes and r_k = h_k / h:
    order 1:  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_0        (DDIM)
    order 2:  D = D_0 + (D_0 - D_1) / (2 r_0), then the order-1 formula with D
    order 3:  D1 = d_0 + r_0 / (r_0 + r_1) (d_0 - d_1), D2 = (d_0 - d_1) / (r_0 + r_1) with
              d_0 = (D_0 - D_1) / r_0, d_1 = (D_1 - D_2) / r_1;
              x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_0
                    + alpha_t ((e^{-h} - 1) / h + 1) D1 - alpha_t ((e^{-h} - 1 + h) / h^2 - 1/2) D2
  The first steps use the orders their history allows; with `lower_order_final` and fewer than
  15 times the second-to-last transition is at most second order (as diffusers does), and the
  last one (to clean data) is first order: the x0 estimate.

  Args:
    denoise_fn, process, x_init, key, ts: as every sampler (deterministic: key only for
      `project`).
    order: 1, 2 (2M) or 3 (3M).
    lower_order_final: lower the order of the last steps when there are few.
    project, trajectory: as every sampler.

  Returns:
    SampleResult(samples, nfe=N, trajectory).
  """
  if order not in (1, 2, 3):
    raise ValueError(f'order must be 1, 2 or 3, got {order}')
  num = ts.shape[0]

  def update(x, m, lams, t_next, i):
    lam_t, alpha_t, sigma_t = _log_snr(process, t_next)
    _, _, sigma_s = _log_snr(process, ts[i])
    h = lam_t - lams[0]
    phi = jnp.expm1(-h)  # e^{-h} - 1
    base = sigma_t / sigma_s * x - alpha_t * phi * m[0]
    if order == 1:
      return base
    k = _orders(i, num, order, lower_order_final)
    r0 = (lams[0] - lams[1]) / h
    d0 = (m[0] - m[1]) / r0
    second = base - 0.5 * alpha_t * phi * d0
    if order == 2:
      return jnp.where(k >= 2, second, base)
    r1 = (lams[1] - lams[2]) / h
    d1 = (m[1] - m[2]) / r1
    big_d1 = d0 + r0 / (r0 + r1) * (d0 - d1)
    big_d2 = (d0 - d1) / (r0 + r1)
    third = base + alpha_t * (phi / h + 1.0) * big_d1 - alpha_t * ((phi + h) / h**2 - 0.5) * big_d2
    return jnp.where(k >= 3, third, jnp.where(k >= 2, second, base))

  return _scan_multistep(update, denoise_fn, process, x_init, key, ts, order, project, trajectory)


def unipc_sample(
  denoise_fn: DenoiseFn,
  process,
  x_init: chex.Array,
  key: jax.Array | None,
  ts: chex.Array,
  *,
  order: int = 2,
  variant: str = 'bh2',
  lower_order_final: bool = True,
  project: ProjectFn | None = None,
  trajectory: bool = False,
) -> SampleResult:
  """UniPC (Zhao et al. 2023): the UniP predictor with the UniC corrector, data prediction.

  Each step evaluates the model once at the predicted x_t; UniC then corrects x_t with that
  output (order + 1 accuracy at no extra cost) before UniP predicts the next point. With
  hh = -h, B(h) = hh ('bh1') or e^{hh} - 1 ('bh2'), and the phi-functions of their Algorithm:
    UniP: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) m_0
                - alpha_t B(h) sum_k a_k (m_k - m_0) / r_k,   a = R^{-1} b (a = 1/2 at order 2)
    UniC: the same with the new output m_t included (coefficient c_p on m_t - m_0).
  The model output at the predicted point stands for the corrected point in the history, as in
  the paper and diffusers; the last transition returns the x0 estimate. NFE = N.

  Args:
    denoise_fn, process, x_init, key, ts: as every sampler.
    order: 1, 2 or 3.
    variant: 'bh1' or 'bh2' (the paper recommends bh2 for guided and small-NFE sampling).
    lower_order_final: lower the order of the last steps when there are few.
    project, trajectory: as every sampler.

  Returns:
    SampleResult(samples, nfe=N, trajectory).
  """
  if order not in (1, 2, 3):
    raise ValueError(f'order must be 1, 2 or 3, got {order}')
  if variant not in VARIANTS:
    raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')
  num = ts.shape[0]

  def coefficients(h, rks, p):
    """(R [p, p], b [p]) of the UniPC linear system for order p (rks ends with 1)."""
    hh = -h
    h_phi_1 = jnp.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == 'bh1' else jnp.expm1(hh)
    factorial = 1.0
    rows, b = [], []
    for i in range(1, p + 1):
      rows.append(rks ** (i - 1))
      b.append(h_phi_k * factorial / b_h)
      factorial *= i + 1
      h_phi_k = h_phi_k / hh - 1.0 / factorial
    return jnp.stack(rows), jnp.stack(b), h_phi_1, b_h

  def step(x_s, m, lams, t_s, t, p, m_new=None):
    """UniP (m_new None) or UniC (with the output m_new at t) of order p from (x_s, t_s)."""
    lam_t, alpha_t, sigma_t = _log_snr(process, t)
    _, _, sigma_s = _log_snr(process, t_s)
    h = lam_t - lams[0]
    rks = [(lams[k] - lams[0]) / h for k in range(1, p)] + [jnp.ones(())]
    d1s = [(m[k] - m[0]) / rks[k - 1] for k in range(1, p)]
    big_r, b, h_phi_1, b_h = coefficients(h, jnp.stack(rks), p)
    x_base = sigma_t / sigma_s * x_s - alpha_t * h_phi_1 * m[0]
    if m_new is None:  # predictor
      if p == 1:
        return x_base
      rhos = jnp.asarray([0.5]) if p == 2 else jnp.linalg.solve(big_r[:-1, :-1], b[:-1])
      res = sum(rhos[k] * d1s[k] for k in range(p - 1))
      return x_base - alpha_t * b_h * res
    rhos = jnp.asarray([0.5]) if p == 1 else jnp.linalg.solve(big_r, b)
    res = sum((rhos[k] * d1s[k] for k in range(p - 1)), jnp.zeros_like(x_s))
    return x_base - alpha_t * b_h * (res + rhos[-1] * (m_new - m[0]))

  keys = jax.random.split(jax.random.key(0) if key is None else key, num)
  carry0 = (
    x_init,
    x_init,  # the previous point (x_s of the corrector)
    jnp.zeros((order,) + x_init.shape, x_init.dtype),
    jnp.zeros((order,), jnp.float32),
    jnp.asarray(0, jnp.int32),  # the order the previous prediction used
  )

  def select(p, fns):
    """fns[q - 1]() for the traced order p (each branch is cheap: no model call)."""
    return jax.lax.switch(p - 1, fns)

  def body(carry, inputs):
    x, x_prev, hist_m, hist_l, p_prev = carry
    i, t_prev, t, t_next, k = inputs
    lam, _, _ = _log_snr(process, t)
    m_t = evaluate(denoise_fn, x, t)[0]
    # UniC: correct x (predicted from x_prev at t_prev with order p_prev) using m_t
    corrected = select(
      jnp.maximum(p_prev, 1),
      [lambda q=q: step(x_prev, hist_m, hist_l, t_prev, t, q, m_t) for q in range(1, order + 1)],
    )
    x = jnp.where(i > 0, corrected, x)
    hist_m = jnp.concatenate([m_t[None], hist_m[:-1]])
    hist_l = jnp.concatenate([lam[None], hist_l[:-1]])
    p = _orders(i, num, order, lower_order_final)
    x_next = select(
      p, [lambda q=q: step(x, hist_m, hist_l, t, t_next, q) for q in range(1, order + 1)]
    )
    if project is not None:
      x_next = project(x_next, t_next, k)
    return (x_next, x, hist_m, hist_l, p), x_next if trajectory else None

  t_prev = jnp.concatenate([ts[:1], ts[:-2]])
  steps = (jnp.arange(num - 1), t_prev, ts[:-1], ts[1:], keys[:-1])
  (x, _, _, _, _), path = jax.lax.scan(body, carry0, steps)
  x, path = finish(denoise_fn, x, ts, keys[-1], path, project)
  return SampleResult(x, num, path)
