"""SIGTERM, SIGINT and SIGHUP stop a command the way Ctrl-C would, so its
`finally` blocks stop everything it started (the consumer and its JVM, the
emulator, PostgreSQL, Prometheus) before it exits.

Python's default for SIGTERM ends the process at once, cleanup skipped; the
stack's servers run in sessions of their own and would be left behind.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
from typing import Callable, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, like KeyboardInterrupt, so no
    `except Exception` on the way out swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_state = {"deferring": 0, "pending": None, "stopping": False}


def _on_signal(signum: int, _frame: object) -> None:
    if _state["stopping"]:
        # Later signals are noted and ignored: the clean-up they would cut short
        # runs to its end (each step of it has its own timeout).
        print(f"{signal.Signals(signum).name}: already stopping", file=sys.stderr, flush=True)
    elif _state["deferring"]:
        _state["pending"] = _state["pending"] or signum
    else:
        _state["stopping"] = True
        raise Stopped(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal that arrives inside the block takes effect as it ends:
    for starting a process and recording it (pid file, variable) as one step,
    so no child is ever started that the clean-up does not know to stop."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        signum = _state["pending"]
        if signum and not _state["deferring"] and not _state["stopping"]:
            _state.update(pending=None, stopping=True)
            raise Stopped(signum)


def stops_clean(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's main: the first stop signal raises Stopped where the
    command is (or where its `deferred` block ends), so its `finally` blocks
    run. Returns 128 + the signal's number, as a shell reports it."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        _state.update(pending=None, stopping=False)
        previous = {sig: signal.signal(sig, _on_signal) for sig in SIGNALS}
        try:
            return main(*args, **kwargs)
        except Stopped as stop:
            print(f"stopped by {stop}: everything this command started is stopped", file=sys.stderr, flush=True)
            return stop.exit_status
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper
