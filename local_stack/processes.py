"""Detached background processes tracked by pid files, so `up` can return
while a service keeps running and `down`, from another process, stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence


class StackError(RuntimeError):
    """The local stack cannot start or stop; the message says why."""


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(command: Sequence[str], pid_file: Path, log_file: Path, env: dict | None = None) -> int:
    """Start `command` in its own session, output to `log_file`. Idempotent:
    a process already running under `pid_file` is kept. Returns the pid."""
    pid = running_pid(pid_file)
    if pid:
        return pid
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def stop(pid_file: Path, timeout: float = 15) -> bool:
    """SIGTERM the process, SIGKILL it after `timeout`. Returns whether one was running."""
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just probe.
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def wait_until(ready: Callable[[], bool], timeout: float, what: str, log_file: Path | None = None) -> None:
    """Poll `ready` until it is true; raises StackError (with the log's tail) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
    raise StackError(f"{what} not ready after {timeout:.0f} s{tail}")
