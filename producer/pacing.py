"""Pacing a replay: a records-per-second limit and the invoices' own timeline.

Both take their clock and their sleep as arguments, so tests drive them with
a fake clock and never wait.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable

Clock = Callable[[], float]
Sleep = Callable[[float], object]


def default_burst(rate: float, max_burst: int = 500) -> int:
    """Records sent together under `rate`: a tenth of a second's worth (so
    about ten PutRecords calls a second), at least 1, at most one full call."""
    return max(1, min(max_burst, int(rate / 10)))


class RateLimiter:
    """Token bucket: on average at most `rate` records a second, in bursts of
    at most `burst` records. Not thread-safe."""

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = burst if burst is not None else default_burst(rate)
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()

    def delay(self, n: int = 1) -> float:
        """Seconds until `n` records may go; 0 if they may go now. Takes nothing."""
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)

    def acquire(self, n: int = 1) -> float:
        """Block until `n` records (1 <= n <= burst) may go, then take them;
        returns the seconds slept.

        If the sleep returns early (an interruptible sleep on shutdown), the
        records are taken anyway and the shortfall is owed: the next call
        waits that much longer, so the average rate still holds.
        """
        if not 1 <= n <= self.burst:
            raise ValueError(f"n must be 1 to {self.burst}, got {n}")
        wait = self.delay(n)
        if wait > 0:
            self._sleep(wait)
            self._refill()
        self._tokens -= n
        return wait

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now


class TimelinePacer:
    """Follows InvoiceDate, `speedup` times faster than it happened.

    The first date seen is sent at once and anchors the timeline; a record
    dated `d` is then due `(d - first) / speedup` seconds after that. Records
    dated before one already sent are due at once (the data set is only
    roughly in date order): the pacer never waits backwards. Not thread-safe.
    """

    def __init__(self, speedup: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if not speedup > 0:
            raise ValueError("speedup must be positive")
        self.speedup = float(speedup)
        self._clock = clock
        self._sleep = sleep
        self._anchor: tuple[dt.datetime, float] | None = None

    def restart(self) -> None:
        """Start a new timeline: the next date seen is sent at once (a new file
        or a new pass starts again from its own first invoice)."""
        self._anchor = None

    def delay(self, when: dt.datetime) -> float:
        """Seconds until a record dated `when` is due; 0 if it is due now.
        The first call after construction or `restart` anchors the timeline."""
        now = self._clock()
        if self._anchor is None:
            self._anchor = (when, now)
            return 0.0
        first, started = self._anchor
        due = started + (when - first).total_seconds() / self.speedup
        return max(0.0, due - now)

    def wait(self, when: dt.datetime) -> float:
        """Block until a record dated `when` is due; returns the seconds slept."""
        wait = self.delay(when)
        if wait > 0:
            self._sleep(wait)
        return wait
