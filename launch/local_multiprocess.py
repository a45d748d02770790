"""N processes on this machine, each with M simulated CPU devices: the multi-host path, locally.

  python launch/local_multiprocess.py --num_processes=2 --devices_per_process=4 -- \
      --config=experiments/ddpm_ring8.py --workdir=runs/mp

Everything after `--` is passed to `python -m gen.main` in every process (started in the
repository root; the config file, --workdir and other folders are made absolute first, against
the current directory, so relative paths mean what they mean where this was typed), with
`--multihost --coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=i` added; each
process sees
`JAX_PLATFORMS=cpu` and M devices (XLA's host-platform device count) and the processes talk
through Gloo on 127.0.0.1 only. Process i's output goes to `<workdir>/process_i.log` when a
--workdir is among the arguments (else to this terminal); the exit status is the first non-zero
one of the processes (or 124 when --timeout runs out, after which all are killed).
"""

import argparse
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python launch/local_multiprocess.py` from any folder
  sys.path.insert(0, REPO)

from gen.utils import paths  # noqa: E402


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def process_command(args: list[str], index: int, num: int, port: int) -> list[str]:
  """The gen.main command line of process `index` of `num`."""
  return [
    sys.executable,
    '-m',
    'gen.main',
    *args,
    '--multihost',
    f'--coordinator_address=127.0.0.1:{port}',
    f'--num_processes={num}',
    f'--process_id={index}',
  ]


def process_env(devices: int) -> dict[str, str]:
  flags = os.environ.get('XLA_FLAGS', '')
  flags = ' '.join(f for f in flags.split() if 'force_host_platform_device_count' not in f)
  return {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'XLA_FLAGS': f'{flags} --xla_force_host_platform_device_count={devices}'.strip(),
  }


def _workdir(args: list[str]) -> str | None:
  for a in args:
    if a.startswith('--workdir='):
      return a.split('=', 1)[1]
  return None


def run(args: list[str], num: int, devices: int, timeout: float | None = None) -> int:
  """Starts the processes, waits for all of them; returns the exit status (see the docstring)."""
  if num < 1 or devices < 1:
    raise ValueError(f'--num_processes={num} and --devices_per_process={devices} must be >= 1')
  args = paths.absolute_args(args)
  port, workdir = free_port(), _workdir(args)
  if workdir:
    os.makedirs(workdir, exist_ok=True)
  procs, logs = [], []
  for i in range(num):
    out = open(os.path.join(workdir, f'process_{i}.log'), 'w') if workdir else None
    logs.append(out)
    procs.append(
      subprocess.Popen(
        process_command(args, i, num, port),
        cwd=REPO,
        env=process_env(devices),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
      )
    )
  deadline = None if timeout is None else time.monotonic() + timeout
  status = 0
  try:
    for p in procs:
      left = None if deadline is None else max(0.0, deadline - time.monotonic())
      code = p.wait(timeout=left)
      status = status or code
  except subprocess.TimeoutExpired:
    status = 124
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      if f:
        f.close()
  return status


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num_processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=4)
  parser.add_argument('--timeout', type=float, default=None, help='seconds; kill all after')
  parser.add_argument('gen_args', nargs=argparse.REMAINDER, help='-- then gen.main flags')
  ns = parser.parse_args(argv)
  args = ns.gen_args[1:] if ns.gen_args[:1] == ['--'] else ns.gen_args
  return run(args, ns.num_processes, ns.devices_per_process, ns.timeout)


if __name__ == '__main__':
  sys.exit(main())
