"""Waiting on what a test needs to have happened, never on the clock."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
    """Call `predicate` every `every` seconds until it returns something truthy,
    and return that; an AssertionError naming `what` once `timeout` seconds
    have passed (the predicate is always tried once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
