"""gen: deep generative models in JAX/Flax (see the README)."""

import importlib.metadata as _metadata
import logging as _logging
import os as _os

# XLA's flag that lists the operations XLA:CPU hands to YNNPACK; `-individual_convolution`
# takes convolutions out of its default set, so XLA:CPU lowers them through Eigen instead.
CPU_CONVOLUTIONS_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
# jaxlib 0.10's default of that flag, as per-compile options (the compiled programs are the
# same): on the Eigen path a convolution's rounding can depend on the process's CPU device count
# (its thread pool), on YNNPACK's it does not, so the evaluation's feature networks compile
# with these (gen.metrics.features.jit) and give the same bits in any process.
REFERENCE_CPU_COMPILER_OPTIONS = {
  'xla_cpu_experimental_ynn_fusion_type': ','.join(
    f'LIBRARY_FUSION_TYPE_{kind}' for kind in ('REDUCE', 'INDIVIDUAL_DOT', 'INDIVIDUAL_CONVOLUTION')
  )
}


def _quiet_backend_probe() -> None:
  """Hides JAX's "Unable to initialize backend 'tpu'" INFO line (JAX probes every platform it
  was built for) unless $JAX_PLATFORMS asks for a TPU, where the line says why there is none."""
  if 'tpu' not in _os.environ.get('JAX_PLATFORMS', '').lower():
    _logging.getLogger('jax._src.xla_bridge').setLevel(_logging.WARNING)


def _eigen_convolutions_on_cpu() -> None:
  """Appends CPU_CONVOLUTIONS_FLAG to $XLA_FLAGS, unless $XLA_FLAGS already sets that XLA flag.

  In jaxlib 0.10, XLA:CPU runs convolutions through YNNPACK. On x86 its kernel (filter)
  gradient ran at a quarter to a twelfth of Eigen's rate, and its forward pass and input
  gradient at about half of torch's; through Eigen all three run at about torch's rate
  (benchmarks/conv_kernels.py, experiments/RESULTS.md). The flag changes the CPU only; GPU
  and TPU compiles ignore it. Dots and other fusions keep YNNPACK. XLA reads $XLA_FLAGS once,
  when the first JAX backend starts, so the flag takes effect where gen is imported before any
  JAX computation (as in `python -m gen.main`, the tests and the benchmarks). To keep
  YNNPACK's convolutions, set the flag yourself:
  `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution` keeps XLA's
  default set.
  """
  try:
    major, minor = (int(v) for v in _metadata.version('jaxlib').split('.')[:2])
  except (_metadata.PackageNotFoundError, ValueError):
    return
  if (major, minor) < (0, 10):  # older XLA has no such flag and aborts on unknown ones
    return
  flags = _os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_experimental_ynn_fusion_type' not in flags:
    _os.environ['XLA_FLAGS'] = f'{flags} {CPU_CONVOLUTIONS_FLAG}'.strip()


_quiet_backend_probe()
_eigen_convolutions_on_cpu()
