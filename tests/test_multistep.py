"""DPM-Solver++ and UniPC against the exact Gaussian model's closed-form ODE solution."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import processes, samplers
from gen.samplers import ddpm, multistep
from gen.samplers.analytic import GaussianMixture
from gen.samplers.base import evaluate, timesteps

GAUSS = GaussianMixture.create([1.5, -0.5], [0.5, 2.0])
SPACING = {
  'discrete_linear': 'logsnr',
  'vp': 'logsnr',
  've': 'karras',
  'edm': 'karras',
  'rectified_flow': 'uniform',
}


def _setup(name, num=1000):
  process = processes.make(name)
  x = process.prior_std * jax.random.normal(jax.random.key(0), (num, 2))
  return process, GAUSS.denoiser(process), x


def _error(sampler, name, n):
  process, denoise, x = _setup(name)
  ts = timesteps(process, n, SPACING[name])
  ref = evaluate(denoise, GAUSS.ode_map(process, x, ts[0], ts[-1]), ts[-1])[0]
  run = jax.jit(lambda x: samplers.run(sampler, denoise, process, x, None, ts))
  return float(jnp.max(jnp.abs(run(x).samples - ref)))


@pytest.mark.slow
def test_first_order_dpm_solver_is_ddim():
  for name in ('discrete_linear', 'vp', 'rectified_flow'):
    process, denoise, x = _setup(name, 64)
    ts = timesteps(process, 12, 'uniform')
    a = multistep.dpm_solver_sample(denoise, process, x, None, ts, order=1).samples
    b = ddpm.ddim_sample(denoise, process, x, None, ts).samples
    chex.assert_trees_all_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SPACING))
@pytest.mark.parametrize('sampler', ['dpm_solver_2m', 'dpm_solver_3m', 'unipc', 'unipc3'])
def test_multistep_solvers_reach_the_exact_ode_solution(sampler, name):
  """At 200 model evaluations every solver is within 2e-3 of the closed-form solution
  (measured: 1e-5 to 1.5e-3; DDIM is at 0.04-0.07 there)."""
  assert _error(sampler, name, 200) < 2e-3


@pytest.mark.slow
def test_orders_of_convergence_on_vp():
  """Doubling NFE 20 -> 40 divides the error by ~2^order: DPM-Solver++ 2M ~4x; UniPC-2 with its
  corrector one order more (~8x); the third-order 3M beats 2M at equal NFE."""
  dpm2 = [_error('dpm_solver_2m', 'vp', n) for n in (20, 40)]
  unipc = [_error('unipc', 'vp', n) for n in (20, 40)]
  dpm3 = _error('dpm_solver_3m', 'vp', 40)
  assert dpm2[0] / dpm2[1] > 3.0, dpm2
  assert unipc[0] / unipc[1] > 5.0, unipc
  assert dpm3 < 0.6 * dpm2[1], (dpm3, dpm2)


@pytest.mark.slow
@pytest.mark.parametrize('sampler', ['dpm_solver_2m', 'dpm_solver_3m', 'unipc'])
def test_mixture_samples_land_on_the_modes(sampler):
  ring = GaussianMixture.ring(8, 2.0, 0.05)
  process = processes.make('vp')
  x = jax.random.normal(jax.random.key(1), (4000, 2))
  ts = timesteps(process, 25, 'logsnr')
  out = np.asarray(samplers.run(sampler, ring.denoiser(process), process, x, None, ts).samples)
  dist = np.linalg.norm(out[:, None] - np.asarray(ring.means)[None], axis=-1).min(axis=1)
  assert np.mean(dist < 0.15) > 0.98  # 3 stds of a mode
  counts = np.bincount(np.argmin(np.linalg.norm(out[:, None] - ring.means[None], axis=-1), 1))
  assert counts.min() > 0.8 * 4000 / 8 and counts.max() < 1.2 * 4000 / 8, counts


@pytest.mark.slow
class TestInterface(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_nfe_trajectory_and_project(self):
    process, denoise, x = _setup('vp', 8)
    ts = timesteps(process, 7, 'logsnr')
    calls = []

    def project(y, t_next, key):
      calls.append(t_next is None)
      return y

    for name in ('dpm_solver_3m', 'unipc3'):
      run = self.variant(
        lambda x, name=name: samplers.run(
          name, denoise, process, x, jax.random.key(0), ts, project=project, trajectory=True
        )
      )
      result = run(x)
      assert int(result.nfe) == 7
      chex.assert_shape(result.trajectory, (7, 8, 2))
      chex.assert_trees_all_close(result.trajectory[-1], result.samples)
    assert True in calls and False in calls  # after each transition and after the last


def test_one_compile_per_step_count():
  process, denoise, x = _setup('vp', 8)
  traces = []

  @jax.jit
  def run(x, ts):
    traces.append(ts.shape[0])
    return multistep.unipc_sample(denoise, process, x, None, ts).samples

  for n in (10, 20, 10):
    run(x, timesteps(process, n, 'logsnr'))
  assert traces == [10, 20]
