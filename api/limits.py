"""Per-credential rate limits: a token bucket per caller, in this process.

Each API process (task) limits on its own, so a caller may send up to
`rate` times the task count in all; API Gateway's stage throttling is the
limit for the whole service (deploy/README.md).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class RateLimiter:
    rate: float  # tokens per second
    burst: int  # the bucket's size
    clock: Callable[[], float] = time.monotonic
    max_callers: int = 100_000  # buckets kept; the oldest full ones go first
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # caller -> (tokens, at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, caller: str) -> int:
        """Take one token for `caller`: 0 if there was one, else the whole
        seconds until there will be (the Retry-After to send)."""
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = 0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = max(1, math.ceil((1 - tokens) / self.rate))
            self._buckets[caller] = (tokens, now)  # re-inserted: the dict stays in last-use order
            if len(self._buckets) > self.max_callers:
                del self._buckets[next(iter(self._buckets))]
            return wait
