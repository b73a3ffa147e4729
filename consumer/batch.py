"""The values that flow through a shard: stream records in, batches out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

from retail_stream.schema import Transaction


class Position(NamedTuple):
    """A place in a shard: a Kinesis record's sequence number and, for a user
    record the KCL took out of a KPL aggregate, its sub-sequence number (0 for
    a plain record and for an aggregate's first user record).

    Every key that names a place in a shard names both: an aggregate's user
    records share one sequence number, so a sequence number alone cannot
    tell two batches cut inside one aggregate apart.
    """

    sequence: str
    sub: int = 0

    @property
    def label(self) -> str:
        """How a batch key (raw-zone object) spells the position: `<sequence>`,
        or `<sequence>.<sub>` when sub > 0, so a plain record's key keeps its
        shape. Pure."""
        return self.sequence if self.sub == 0 else f"{self.sequence}.{self.sub}"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as the KCL delivered it, transport details decoded."""

    data: bytes
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrival_ms: int

    @property
    def position(self) -> Position:
        return Position(self.sequence_number, self.sub_sequence_number)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be loaded, kept with its raw bytes and the reason."""

    record: StreamRecord
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one flush writes: a shard's contiguous run of records, from
    `first` to `last` inclusive.

    The two positions name the batch (raw-zone key, ledger), and `last` is
    where the shard may be checkpointed once every sink holds the batch.
    """

    shard_id: str
    records: tuple[Transaction, ...]
    dead_letters: tuple[DeadLetter, ...]
    first: Position
    last: Position
    first_arrival_ms: int

    @property
    def partition_date(self) -> str:
        """The date of the batch's first arrival (UTC), for date-partitioned keys.

        Taken from the record, not the clock, so a re-read batch gets the same key.
        """
        return dt.datetime.fromtimestamp(self.first_arrival_ms / 1000, dt.timezone.utc).date().isoformat()
