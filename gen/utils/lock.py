"""One training job per workdir: `W/lock.json` names the job that trains W.

A training job takes the lock after validating its config and before compiling, and gives it
back after its last save. The file holds the holder's host, pid, start time and a heartbeat
that a background thread renews every `HEARTBEAT_SECONDS`. A second job finds the file and is
refused with one line naming the holder. A lock never outlives its job for long:
- on the holder's own host, a pid that no longer runs (a `kill -9`, a crash, a reboot) frees it;
- from another host (a shared filesystem), a heartbeat older than `STALE_SECONDS` frees it, with
  a warning.
A freed lock is renamed to `lock.json.stale` (the last one is kept for the curious) and the new
job creates its own with `O_EXCL`, so two jobs racing for one freed lock cannot both win.

Only process 0 of a multi-host job takes the lock (`acquire_for_job`); the others learn the
outcome from it. Sample and eval modes take no lock.
"""

import contextlib
import datetime
import json
import os
import socket
import threading
import time

from absl import logging

from gen.errors import ConfigError

LOCK_NAME = 'lock.json'
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # a heartbeat this old frees a lock held from another host


class WorkdirLocked(ConfigError):
  """Another live training job holds the workdir."""


def _now() -> float:
  return time.time()


def _iso(t: float) -> str:
  return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def read(workdir: str) -> dict | None:
  """The lock's contents, None without a lock; an unreadable file reads as {} (a holder that
  died while writing it, or a foreign file): it is then judged by its modification time."""
  path = os.path.join(workdir, LOCK_NAME)
  try:
    with open(path) as f:
      info = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    info = {}
  if not isinstance(info, dict):
    info = {}
  with contextlib.suppress(OSError):
    info.setdefault('heartbeat', os.path.getmtime(path))
  return info


def stale_reason(info: dict, now: float | None = None) -> str | None:
  """Why the lock `info` no longer holds (its holder is gone), or None if it still does."""
  now = _now() if now is None else now
  host, pid = info.get('host'), info.get('pid')
  if host == socket.gethostname() and isinstance(pid, int):
    return None if _pid_alive(pid) else f'pid {pid} on {host} no longer runs'
  age = now - float(info.get('heartbeat', 0.0))
  if age > STALE_SECONDS:
    return f'its heartbeat is {age:.0f} s old (more than {STALE_SECONDS:.0f} s)'
  return None


def describe(workdir: str, info: dict, now: float | None = None) -> str:
  """One line: who holds the workdir, since when, and what to do."""
  now = _now() if now is None else now
  since = _iso(info['started']) if 'started' in info else 'an unknown time'
  beat = now - float(info.get('heartbeat', now))
  return (
    f'--workdir={workdir} is being trained by pid {info.get("pid", "?")} on host '
    f'{info.get("host", "?")} since {since} (heartbeat {beat:.0f} s ago); wait for that job or '
    f'stop it, or train in another --workdir (sample and eval modes need no lock)'
  )


def holder(workdir: str) -> str | None:
  """The one-line description of a live holder of `workdir`, None if it is free."""
  info = read(workdir)
  if info is None or stale_reason(info) is not None:
    return None
  return describe(workdir, info)


class WorkdirLock:
  """The lock of one training job on `workdir`: `acquire()`, then `release()` (or a `with`)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_NAME)
    self.info: dict | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def acquire(self) -> None:
    """Takes the lock or raises WorkdirLocked naming the holder (frees a stale one first)."""
    os.makedirs(self.workdir, exist_ok=True)
    for _ in range(3):  # a freed lock may be taken by a racing job: look again
      if self._create():
        self._start_heartbeat()
        return
      info = read(self.workdir)
      if info is None:
        continue  # released between our try and our look
      why = stale_reason(info)
      if why is None:
        raise WorkdirLocked(describe(self.workdir, info))
      logging.warning('--workdir=%s: freeing the lock of a gone job (%s)', self.workdir, why)
      with contextlib.suppress(FileNotFoundError):
        os.replace(self.path, self.path + '.stale')
    raise WorkdirLocked(f'--workdir={self.workdir}: could not take {self.path}; try again')

  def _create(self) -> bool:
    now = _now()
    info = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': now, 'heartbeat': now}
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'w') as f:
      json.dump({**info, 'started_utc': _iso(now)}, f)
    self.info = info
    return True

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      self.info['heartbeat'] = _now()
      tmp = f'{self.path}.{os.getpid()}.tmp'
      try:
        with open(tmp, 'w') as f:
          json.dump({**self.info, 'started_utc': _iso(self.info['started'])}, f)
        os.replace(tmp, self.path)
      except OSError as e:  # a full disk: the mtime-less lock still names this live pid
        logging.warning('could not renew the workdir lock %s: %s', self.path, e.strerror)

  def _start_heartbeat(self) -> None:
    self._thread = threading.Thread(target=self._beat, name='gen-workdir-lock', daemon=True)
    self._thread.start()

  def release(self) -> None:
    """Stops the heartbeat and removes the lock, if this job still holds it."""
    if self.info is None:
      return
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    info = read(self.workdir)
    if info and info.get('pid') == self.info['pid'] and info.get('host') == self.info['host']:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)
    self.info = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


@contextlib.contextmanager
def acquire_for_job(workdir: str):
  """The job's lock: process 0 takes it; in a multi-host job every process learns the outcome,
  so that all of them stop with the same line when another job holds the workdir."""
  import jax

  from gen import distributed

  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  error = ''
  if lock is not None:
    try:
      lock.acquire()
    except WorkdirLocked as e:
      error = str(e)
  error = distributed.broadcast_text(error)
  if error:
    raise WorkdirLocked(error)
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
