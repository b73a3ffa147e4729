"""The values that flow through a shard: stream records in, batches out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from retail_stream.schema import Transaction


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as the KCL delivered it, transport details decoded."""

    data: bytes
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrival_ms: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be loaded, kept with its raw bytes and the reason."""

    record: StreamRecord
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one flush writes: a shard's contiguous run of records.

    `last_sequence` (with `last_sub_sequence`) is where the shard may be
    checkpointed once every sink holds the batch.
    """

    shard_id: str
    records: tuple[Transaction, ...]
    dead_letters: tuple[DeadLetter, ...]
    first_sequence: str
    last_sequence: str
    last_sub_sequence: int
    first_arrival_ms: int

    @property
    def partition_date(self) -> str:
        """The date of the batch's first arrival (UTC), for date-partitioned keys.

        Taken from the record, not the clock, so a re-read batch gets the same key.
        """
        return dt.datetime.fromtimestamp(self.first_arrival_ms / 1000, dt.timezone.utc).date().isoformat()
