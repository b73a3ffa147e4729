"""Checkpointing, in one place: typed outcomes, bounded retry of throttling.

The KCL answers a checkpoint with nothing (done) or an error name. Here those
become: done, `LeaseLost` (ShutdownException: another worker owns the shard
now; stop writing) or `CheckpointFailed` (the process must end).
"""

from __future__ import annotations

import random
import time
from typing import Callable, Protocol


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
    attempts: int = 6,
    base_delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    on_throttle: Callable[[], None] = lambda: None,
) -> None:
    """Checkpoint, retrying throttling with jittered exponential backoff.

    Raises LeaseLost or CheckpointFailed; returns only when the KCL accepted it.
    """
    for attempt in range(attempts):
        try:
            checkpointer.checkpoint(sequence_number, sub_sequence_number)
            return
        except CheckpointThrottled:
            on_throttle()
            sleep(random.uniform(base_delay, base_delay * 2 ** (attempt + 1)))
    raise CheckpointFailed(f"checkpoint throttled {attempts} times")
