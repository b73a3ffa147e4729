"""Accumulates a shard's records until a flush is due.

`FlushPolicy` says when; `ShardBuffer` holds what arrived and hands it over
as one frozen `Batch`. The clock is passed in, so tests need no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.batch import Batch, DeadLetter, StreamRecord
from retail_stream.schema import Transaction


@dataclass(frozen=True)
class FlushPolicy:
    """Flush at the first of: this many records, this many bytes, this age."""

    max_records: int
    max_bytes: int
    max_age_seconds: float


class ShardBuffer:
    """Records of one shard since the last flush, as parsed (consumer.parse)."""

    def __init__(self, shard_id: str, policy: FlushPolicy) -> None:
        self.shard_id = shard_id
        self.policy = policy
        self._clear()

    def _clear(self) -> None:
        self._records: list[Transaction] = []
        self._dead: list[DeadLetter] = []
        self._first: StreamRecord | None = None
        self._last: StreamRecord | None = None
        self._bytes = 0
        self._started_at = 0.0

    def __len__(self) -> int:
        return len(self._records) + len(self._dead)

    def add(self, record: StreamRecord, parsed: Transaction | DeadLetter, now: float) -> bool:
        """Keep one record, as `parsed` from it, received at `now`; True when a
        flush is due now, as `flush_due(now)` would say (called per record,
        so the caller needs no second call)."""
        if isinstance(parsed, DeadLetter):
            self._dead.append(parsed)
        else:
            self._records.append(parsed)
        if self._first is None:
            self._first = record
            self._started_at = now
        self._last = record
        self._bytes += len(record.data)
        return self._limit_hit(now)

    def flush_due(self, now: float) -> bool:
        """True when the buffer holds records and one of the policy's limits is hit."""
        return self._first is not None and self._limit_hit(now)

    def _limit_hit(self, now: float) -> bool:
        policy = self.policy
        return (
            len(self._records) + len(self._dead) >= policy.max_records
            or self._bytes >= policy.max_bytes
            or now - self._started_at >= policy.max_age_seconds
        )

    def take(self) -> Batch | None:
        """Hand over everything buffered as one batch and start empty; None if empty."""
        if self._first is None or self._last is None:
            return None
        batch = Batch(
            shard_id=self.shard_id,
            records=tuple(self._records),
            dead_letters=tuple(self._dead),
            first=self._first.position,
            last=self._last.position,
            first_arrival_ms=self._first.arrival_ms,
        )
        self._clear()
        return batch

    def drop(self) -> int:
        """Forget everything buffered (lease lost); returns how many records."""
        dropped = len(self)
        self._clear()
        return dropped
