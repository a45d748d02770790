"""Learning-rate schedules of gen.state.make_optimizer, against their closed forms."""

import math

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
