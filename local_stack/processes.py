"""A detached background process known by its pid file: started by one
command (`up`), found and stopped by another (`down`), even from another
Python process.

The pid file holds the pid and the command line it was started with; a pid is
only trusted while /proc shows that same command line, so a stale pid file
after a reboot never makes us signal an unrelated process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import structlog

from local_stack.errors import StackError
from local_stack.stopping import deferred

log = structlog.get_logger(__name__)

# Children started by this Python process, by pid: they must be reaped with
# wait(), or they linger as zombies that still answer kill(pid, 0).
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class BackgroundProcess:
    """One named background process whose pid file and log live in `state_dir`."""

    name: str
    argv: tuple[str, ...]
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process this pid file names, or None when
        there is no pid file or the process it names is gone. Never blocks."""
        try:
            recorded = json.loads(self.pid_file.read_text())
            pid, argv = int(recorded["pid"]), list(recorded["argv"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if _alive(pid, argv) else None

    def recorded_argv(self) -> list[str] | None:
        """The command line the pid file was written for, if it is readable."""
        try:
            return list(json.loads(self.pid_file.read_text())["argv"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def start(self, env: Mapping[str, str] | None = None) -> int:
        """Launch the process detached (own session, stdin closed, output to the
        log file) and record its pid; returns at once, before it is ready.
        Idempotent: when the recorded process still runs, returns its pid."""
        running = self.pid()
        if running is not None:
            return running
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out, deferred():  # started and recorded, or neither
            # A new session: Ctrl-C in the terminal that ran `up` must not reach it.
            child = subprocess.Popen(  # nosec B603: our argv, no shell
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=None if env is None else dict(env), start_new_session=True, close_fds=True,
            )
            _CHILDREN[child.pid] = child
            self.pid_file.write_text(json.dumps({"pid": child.pid, "argv": list(self.argv)}))
        log.info("process_started", process=self.name, pid=child.pid, log=str(self.log_file))
        return child.pid

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Block until `ready()` is true. Raises StackError, quoting the end of
        the log, when the process exits first or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                raise StackError(f"{self.name} exited during start-up; its log ends with:\n{self.log_tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.name} did not become ready within {timeout:.0f} s; its log ends with:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL once `timeout` seconds pass; blocks until the
        process is gone and removes the pid file. Idempotent: returns False
        when nothing was running, True when a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            log.warning("process_killed", process=self.name, pid=pid, after_seconds=timeout)
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)
        log.info("process_stopped", process=self.name, pid=pid)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    """Block up to `timeout` seconds for `pid` to exit; True once it has."""
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[pid]
        return True
    deadline = time.monotonic() + timeout
    while _alive(pid, None):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int, argv: Sequence[str] | None) -> bool:
    """Whether `pid` runs (zombies count as gone) and, when `argv` is given
    and /proc is there to tell, runs that command line."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: poll() is the truth. Its /proc cmdline is not: the kernel
        # lets Popen return (close-on-exec) before it installs the new argv, so
        # for a moment the cmdline of a healthy child reads empty.
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no procfs (macOS): existence is all we can check
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
    except (OSError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return argv is None or [part.decode(errors="replace") for part in cmdline] == list(argv)
