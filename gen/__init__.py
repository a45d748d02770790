"""gen: deep generative models in JAX/Flax (see the README)."""

import logging as _logging
import os as _os


def _quiet_backend_probe() -> None:
  """Hides JAX's "Unable to initialize backend 'tpu'" INFO line (JAX probes every platform it
  was built for) unless $JAX_PLATFORMS asks for a TPU, where the line says why there is none."""
  if 'tpu' not in _os.environ.get('JAX_PLATFORMS', '').lower():
    _logging.getLogger('jax._src.xla_bridge').setLevel(_logging.WARNING)


_quiet_backend_probe()
