"""Multi-host start-up: JAX's own multi-controller runtime (`jax.distributed`), nothing home-made.

Every process runs the same command; `initialize` connects them before any device is used.
With no explicit settings `jax.distributed.initialize()` detects the cluster itself (TPU pod
VMs, SLURM, Open MPI, ...); the coordinator address, process count and id, and the local device
ids can be given explicitly (SLURM on GPUs hands out odd ids; a test on localhost has no
cluster). On the CPU platform the processes talk through Gloo collectives. After start-up the
loop is unchanged: each process reads its rows of every global batch (`gen.data.loader`) and
builds global arrays with `jax.make_array_from_process_local_data`; process 0 alone writes logs,
pictures and evaluations; orbax writes checkpoints from all processes together.
"""

from __future__ import annotations

import os

import jax

# Environment variables that mean "this process is one of several" when --multihost is absent.
CLUSTER_ENV = ('GEN_MULTIHOST', 'JAX_COORDINATOR_ADDRESS')


def wanted(multihost: bool) -> bool:
  """Whether to initialise the distributed runtime: --multihost or GEN_MULTIHOST=1 (or a
  coordinator address in JAX_COORDINATOR_ADDRESS)."""
  return multihost or any(os.environ.get(name) for name in CLUSTER_ENV)


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  local_device_ids: list[int] | None = None,
) -> None:
  """Connects this process to the others (see the module docstring); a no-op if already done.

  Unset arguments (None) are left to JAX's cluster detection.
  """
  if jax.distributed.is_initialized():
    return
  platforms = os.environ.get('JAX_PLATFORMS', '') or str(jax.config.jax_platforms or '')
  if platforms.strip().lower() == 'cpu':
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
    coordinator_address=coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'),
    num_processes=num_processes,
    process_id=process_id,
    local_device_ids=local_device_ids,
  )


def to_host(tree):
  """A pytree of (possibly multi-process) global arrays as numpy arrays on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils

  return multihost_utils.process_allgather(tree, tiled=True)


def broadcast_text(text: str, size: int = 1024) -> str:
  """Process 0's `text` on every process (truncated to `size` bytes); `text` itself in a
  single-process job."""
  if jax.process_count() == 1:
    return text
  import numpy as np
  from jax.experimental import multihost_utils

  data = np.zeros(size, np.uint8)
  raw = text.encode()[:size]
  data[: len(raw)] = np.frombuffer(raw, np.uint8)
  out = np.asarray(multihost_utils.broadcast_one_to_all(data))
  return bytes(out[out != 0]).decode(errors='replace')
