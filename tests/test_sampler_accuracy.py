"""benchmarks/sampler_accuracy.py's diffusers side: the same problem for both libraries, and gen's
multistep samplers against diffusers' schedulers of the same method and times (torch parts skip
without the [bench] extra)."""

import jax
import numpy as np
import pytest

from benchmarks import sampler_accuracy as bench
from gen import processes, samplers


def _problem(num):
  process = processes.make('discrete_linear')
  mixture, _ = bench.targets()['mix64d_iid']
  x_init = jax.random.normal(jax.random.key(3), (num, mixture.dim))
  return process, mixture, x_init


def test_diffusers_needs_the_discrete_process(monkeypatch, capsys):
  monkeypatch.setattr('sys.argv', ['sampler_accuracy.py', '--process', 'vp', '--diffusers'])
  with pytest.raises(SystemExit):
    bench.main()
  assert '--diffusers needs --process discrete_linear, got --process vp' in capsys.readouterr().err


@pytest.mark.parametrize(
  'gen_name, diffusers_name',
  [
    ('ddim', 'ddim'),
    ('dpm_solver_2m', 'dpmsolver++_2m'),
    ('dpm_solver_3m', 'dpmsolver++_3m'),
    ('unipc', 'unipc_bh2'),
    ('unipc3', 'unipc3_bh2'),
  ],
)
def test_gen_samplers_match_diffusers_schedulers_of_the_same_method(gen_name, diffusers_name):
  """The same method on the same 'trailing' times from the same noise: gen's sampler (float32,
  JAX) and diffusers' scheduler (float32, torch, the benchmark's exact eps network) give the
  same samples, so the benchmark compares schedules and methods, not two readings of one: to
  float32 rounding at 10 steps, and within 2e-3 at 5 steps, whose steps of 200 amplify it."""
  pytest.importorskip('torch')
  pytest.importorskip('diffusers')
  process, mixture, x_init = _problem(64)
  for n, atol in ((5, 2e-3), (10, 1e-5)):
    theirs, calls = bench.diffusers_sample(mixture, process, x_init, diffusers_name, 'trailing', n)
    assert calls == n
    ts = samplers.timesteps(process, n, 'trailing')
    ours = samplers.run(gen_name, mixture.denoiser(process), process, x_init, None, ts).samples
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=atol, rtol=0)


def test_diffusers_rows_fit_the_budget():
  pytest.importorskip('torch')
  pytest.importorskip('diffusers')
  process, mixture, x_init = _problem(8)
  rows = bench.diffusers_rows('t', mixture, process, x_init, np.zeros(x_init.shape), [5])
  names = {r['sampler'] for r in rows}
  assert names == set(bench.DIFFUSERS_SCHEDULERS)
  for r in rows:
    assert r['library'] == 'diffusers' and 1 <= r['nfe'] <= 5, r
    assert r['spacing'] in (*bench.DIFFUSERS_SPACINGS, 'own'), r
  heun = [r for r in rows if r['sampler'] == 'heun']  # 2 calls per step but the last
  assert all((r['num_steps'], r['nfe']) == (3, 5) for r in heun), heun
