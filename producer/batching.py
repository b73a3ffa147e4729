"""Packing records into PutRecords calls, within Kinesis' limits. Pure.

A PutRecords call takes at most 500 records and 5 MiB, counting each record's
data and partition key; one record may be at most 1 MiB. An entry that could
never be sent is refused on its own (`UnsendableEntry`), so one bad record
does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256


@dataclass(frozen=True)
class Entry:
    """One PutRecords entry: the record's bytes and its partition key (one
    row; producer/aggregation.py makes entries that hold many)."""

    data: bytes
    partition_key: str
    explicit_hash_key: str | None = None

    @property
    def size(self) -> int:
        """Bytes this entry counts against the call and record limits."""
        return len(self.data) + len(self.partition_key.encode())

    @property
    def rows(self) -> int:
        return 1


class UnsendableEntry(ValueError):
    """An entry Kinesis would refuse whatever the batch; the message is the reason."""


def check_entry(entry: Entry, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
    """Raise UnsendableEntry if `entry` breaks a per-record limit.

    A bad partition key would make Kinesis refuse the whole call
    (ValidationException), so it is caught here, per record, instead.
    """
    if not 1 <= len(entry.partition_key) <= MAX_PARTITION_KEY_CHARS:
        raise UnsendableEntry(
            f"partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {len(entry.partition_key)}"
        )
    if entry.size > max_record_bytes:
        raise UnsendableEntry(
            f"record is {entry.size} bytes with its partition key, over the {max_record_bytes}-byte limit"
        )


class Builder(Protocol):
    """Packs what a destination prepared into the batches it sends
    (BatchBuilder; aggregation.AggregatingBatchBuilder)."""

    def add(self, entry: Any) -> list[Any] | None:
        """Add `entry`; return a batch that is ready, if one is. Raises UnsendableEntry."""
        ...

    def flush(self) -> list[Any] | None:
        """A batch of what is pending, None when nothing is; call until None."""
        ...


class Sized(Protocol):
    """What a batch holds: anything that knows its size in bytes (an Entry,
    or a row bound for the HTTP API)."""

    @property
    def size(self) -> int: ...

    @property
    def rows(self) -> int:
        """Source rows it carries (a rate limit counts rows)."""
        ...


class BatchBuilder:
    """Accumulates entries into batches of at most `max_records` entries and
    `max_bytes` bytes, keeping their order. Not thread-safe.

    `check(entry, max_record_bytes)` refuses an entry that could never be sent
    (UnsendableEntry); the default checks a Kinesis Entry's limits.
    """

    def __init__(
        self,
        max_records: int = MAX_BATCH_RECORDS,
        max_bytes: int = MAX_BATCH_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
        check: Callable[[Any, int], None] = check_entry,
    ) -> None:
        if not 1 <= max_records <= MAX_BATCH_RECORDS:
            raise ValueError(f"max_records must be 1 to {MAX_BATCH_RECORDS}")
        if not 1 <= max_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_bytes must be 1 to {MAX_BATCH_BYTES}")
        self.max_records = max_records
        self.max_bytes = max_bytes
        # A record larger than a whole batch could never be sent either.
        self.max_record_bytes = min(max_record_bytes, max_bytes)
        self._check = check
        self._pending: list[Any] = []
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, entry: Sized) -> list[Any] | None:
        """Add `entry`; return the batch it closed, if it did not fit into the
        pending one (it then starts the next batch), else None.

        Raises UnsendableEntry, leaving the pending batch unchanged, if the
        entry can never be sent.
        """
        self._check(entry, self.max_record_bytes)
        closed = None
        if self._pending and (
            len(self._pending) >= self.max_records or self._bytes + entry.size > self.max_bytes
        ):
            closed = self.flush()
        self._pending.append(entry)
        self._bytes += entry.size
        return closed

    def flush(self) -> list[Any] | None:
        """Return the pending batch (None when empty) and start a new one."""
        if not self._pending:
            return None
        batch, self._pending, self._bytes = self._pending, [], 0
        return batch


def pack(
    entries: Iterable[Entry],
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> tuple[list[list[Entry]], list[tuple[Entry, str]]]:
    """Split `entries` into batches in order; returns (batches, refused), where
    `refused` holds each unsendable entry with its reason."""
    builder = BatchBuilder(max_records, max_bytes)
    batches: list[list[Entry]] = []
    refused: list[tuple[Entry, str]] = []
    for entry in entries:
        try:
            closed = builder.add(entry)
        except UnsendableEntry as exc:
            refused.append((entry, str(exc)))
            continue
        if closed:
            batches.append(closed)
    last = builder.flush()
    if last:
        batches.append(last)
    return batches, refused
