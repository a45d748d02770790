"""Learning-rate schedules of gen.state.make_optimizer, against their closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen import state as state_lib


@pytest.mark.parametrize('warmup', [0, 10])
def test_cosine_schedule_values(warmup):
  total, lr = 100, 1e-2
  _, lr_fn = state_lib.make_optimizer(
    lr=lr, schedule='cosine', warmup_steps=warmup, total_steps=total
  )
  for step in (0, 5, 10, 40, 99, 100):
    if step < warmup:
      want = lr * step / warmup
    else:
      want = 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    assert float(lr_fn(step)) == pytest.approx(want, rel=1e-5, abs=1e-9), step


@pytest.mark.parametrize('schedule', ['constant', 'cosine'])
def test_first_update_moves_the_weights_without_warmup(schedule):
  """Without warm-up the first update uses the full learning rate (Adam: lr per weight)."""
  tx, lr_fn = state_lib.make_optimizer(lr=0.1, schedule=schedule, total_steps=50)
  assert float(lr_fn(0)) == pytest.approx(0.1)
  state = state_lib.create_state({'net': {'w': jnp.ones(3)}}, {'net': tx})
  new, _ = state_lib.apply_gradients(state, 'net', {'w': jnp.ones(3)}, tx, ema_rate=0.0)
  np.testing.assert_allclose(new.params['net']['w'], 0.9, rtol=1e-5)


def test_linear_warmup_starts_at_zero():
  _, lr_fn = state_lib.make_optimizer(lr=1.0, warmup_steps=4)
  np.testing.assert_allclose([float(lr_fn(s)) for s in range(6)], [0, 0.25, 0.5, 0.75, 1, 1])


def test_ema_decay_warm_up_closed_form():
  """min(rate, (1 + t) / (warmup + t)): TensorFlow's num_updates cap; the rate is reached at
  t = (warmup rate - 1) / (1 - rate); warmup 0 is the plain rate."""
  steps = np.array([0, 1, 10, 100, 1000, 8989, 8991, 20000])
  got = np.asarray([float(state_lib.ema_decay(jnp.int32(t), 0.999, 10.0)) for t in steps])
  np.testing.assert_allclose(got, np.minimum(0.999, (1 + steps) / (10 + steps)), rtol=1e-6)
  assert got[5] < 0.999 and got[6] == pytest.approx(0.999)
  assert float(state_lib.ema_decay(jnp.int32(0), 0.999, 0.0)) == pytest.approx(0.999)


def test_ema_forgets_the_initialisation_with_warm_up():
  """Parameters that jump from 0 to 1 at the first step and stay there (a constant optimizer
  update, lr 0 after): after t steps the EMA is 1 - prod_s d_s. With the warm-up prod_s d_s =
  9! t! / (t + 9)!, ~1e-24 after 2,000 steps; without it 0.999^2000 = 13.5% stays at 0."""
  import optax

  jump = optax.GradientTransformation(
    lambda p: optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32)),
    lambda g, s, p=None: (
      jax.tree.map(lambda x: jnp.where(s.count == 0, 1.0, 0.0) * jnp.ones_like(x), g),
      optax.ScaleByScheduleState(count=s.count + 1),
    ),
  )
  for warmup, want in ((10.0, 1.0 - math.factorial(9) * math.exp(_log_ratio(2000))), (0.0, 0.0)):
    state = state_lib.create_state({'net': {'w': jnp.zeros(2)}}, {'net': jump})

    def step(state, _, warmup=warmup):
      new, _ = state_lib.apply_gradients(state, 'net', {'w': jnp.zeros(2)}, jump, 0.999, warmup)
      return new.replace(step=new.step + 1), None

    state, _ = jax.lax.scan(step, state, None, length=2000)
    np.testing.assert_allclose(state.params['net']['w'], 1.0)
    ema = np.asarray(state.ema_params['net']['w'])
    want = want if warmup else 1.0 - 0.999**2000
    np.testing.assert_allclose(ema, want, rtol=1e-4)


def _log_ratio(t: int) -> float:
  """log(t! / (t + 9)!)."""
  return math.lgamma(t + 1) - math.lgamma(t + 10)
