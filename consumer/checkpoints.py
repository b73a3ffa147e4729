"""Checkpointing, in one place: typed outcomes, bounded retry of throttling.

The KCL answers a checkpoint with nothing (done) or an error name. Here those
become: done, `LeaseLost` (ShutdownException: another worker owns the shard
now; stop writing) or `CheckpointFailed` (the process must end).
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from retail_stream.retries import Backoff
from retail_stream.settings import Settings

# The lease table throttling a checkpoint passes in seconds: CHECKPOINT_ATTEMPTS
# tries in all (6), waits of 0.2-0.4 s doubling to 3.2-6.4 s (at most 12.4 s in all).
CHECKPOINT_BACKOFF = Backoff(base=0.4, cap=6.4, jitter=0.5, attempts=Settings.checkpoint_attempts)


class CheckpointThrottled(Exception):
    """The lease table throttled the checkpoint; retrying is safe."""


class LeaseLost(Exception):
    """The shard is no longer ours: nothing more may be written or checkpointed."""


class CheckpointFailed(Exception):
    """The checkpoint cannot be made (invalid state, or throttled for too long)."""


class Checkpointer(Protocol):
    def checkpoint(self, sequence_number: str | None, sub_sequence_number: int | None) -> None:
        """Record progress up to and including this record (None: everything
        delivered, as at shard end). Raises one of the errors above."""
        ...


def checkpoint(
    checkpointer: Checkpointer,
    sequence_number: str | None,
    sub_sequence_number: int | None = None,
    *,
    backoff: Backoff = CHECKPOINT_BACKOFF,
    sleep: Callable[[float], None] = time.sleep,
    on_throttle: Callable[[], None] = lambda: None,
) -> None:
    """Checkpoint, retrying throttling as `backoff` says.

    Raises LeaseLost or CheckpointFailed; returns only when the KCL accepted it.
    """
    tries = 0
    while True:
        try:
            checkpointer.checkpoint(sequence_number, sub_sequence_number)
            return
        except CheckpointThrottled:
            tries += 1
            on_throttle()
            if not backoff.allows(tries):
                raise CheckpointFailed(f"checkpoint throttled {tries} times") from None
            sleep(backoff.delay(tries))
