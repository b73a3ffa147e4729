"""KPL aggregation (`--aggregate`): many rows in one Kinesis record.

    entry = KinesisDestination.prepare(row)                  one user record
    AggregatingBatchBuilder.add(entry)                       one open aggregate per destination shard
        -> AggregatedEntry (aws-kinesis-agg's framing)       within `aggregate_bytes`
        -> PutRecords batch of aggregates                    batching.BatchBuilder, Kinesis' call limits
    AggregatingDestination.send(batch)                       checks where each aggregate landed

The KCL takes every user record out of an aggregate, but drops the ones whose
partition key hashes outside the shard that holds the aggregate. So rows are
grouped by the shard their key hashes to (the stream's shard map, from
ListShards), and each aggregate is put with an explicit hash key inside that
shard's range. When the stream has been resharded since the map was read,
PutRecords answers with another shard id: the map is read again and the
rows of that aggregate the new shard would drop are sent again, so none is
lost (a row that arrives twice has one event_id, and the sinks keep one copy).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from aws_kinesis_agg.aggregator import RecordAggregator

from producer.batching import MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES, BatchBuilder, Entry, check_entry
from producer.destinations import KinesisDestination, Refusal
from producer.kinesis_writer import DeliveryError, FailedEntry, KinesisWriter

log = structlog.get_logger(__name__)

# The KPL's own default (AggregationMaxSize): large enough that a PutRecords
# call carries thousands of rows, small enough that one aggregate is a small
# share of a shard's 1 MiB/s and two 25 KB PUT payload units.
DEFAULT_AGGREGATE_BYTES = 51_200
# Room an aggregate needs besides a row's own bytes (magic, MD5 trailer,
# protobuf tags and lengths, its key): a row closer to the limit goes plain.
_FRAMING_BYTES = 4 + 16 + 300


def hash_key(partition_key: str) -> int:
    """Where Kinesis puts a partition key: its MD5 as a 128-bit integer. Pure."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest(), "big")


@dataclass(frozen=True)
class Shard:
    shard_id: str
    starting_hash_key: int
    ending_hash_key: int

    def holds(self, key: int) -> bool:
        return self.starting_hash_key <= key <= self.ending_hash_key


class ShardMap:
    """The open shards of a stream by hash range: which shard a key lands on."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self.shards = sorted(shards, key=lambda s: s.starting_hash_key)
        if not self.shards:
            raise ValueError("the stream has no open shard")
        self._starts = [s.starting_hash_key for s in self.shards]
        self._by_id = {s.shard_id: s for s in self.shards}

    @classmethod
    def from_list_shards(cls, shards: Sequence[dict]) -> ShardMap:
        """From ListShards' `Shards`: the ones without an ending sequence number are open. Pure."""
        return cls([
            Shard(s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        ])

    @classmethod
    def load(cls, client: Any, stream_name: str) -> ShardMap:
        """ListShards, every page. Blocks; raises botocore's errors."""
        shards, token = [], None
        while True:
            page = client.list_shards(NextToken=token) if token else client.list_shards(StreamName=stream_name)
            shards += page["Shards"]
            token = page.get("NextToken")
            if not token:
                return cls.from_list_shards(shards)

    def shard_for(self, key: int) -> Shard:
        return self.shards[bisect.bisect_right(self._starts, key) - 1]

    def get(self, shard_id: str) -> Shard | None:
        return self._by_id.get(shard_id)


@dataclass(frozen=True)
class AggregatedEntry:
    """One PutRecords entry holding many user records, meant for `shard_id`."""

    data: bytes
    partition_key: str
    explicit_hash_key: str
    shard_id: str
    user_records: tuple[Entry, ...]

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())

    @property
    def rows(self) -> int:
        return len(self.user_records)


class _OpenAggregate:
    """The aggregate being filled for one shard, and the user records in it."""

    def __init__(self, shard: Shard, max_bytes: int) -> None:
        self.shard = shard
        self._aggregator = RecordAggregator(max_bytes)
        self.entries: list[Entry] = []

    def add(self, entry: Entry) -> AggregatedEntry | None:
        """Add `entry`; return the full aggregate it did not fit into, if any."""
        full = self._aggregator.add_user_record(entry.partition_key, entry.data)
        closed = None
        if full is not None:  # `entry` starts the next aggregate
            closed = self._entry(full, self.entries)
            self.entries = []
        self.entries.append(entry)
        return closed

    def close(self) -> AggregatedEntry | None:
        record = self._aggregator.clear_and_get()
        entries, self.entries = self.entries, []
        return None if record is None else self._entry(record, entries)

    def _entry(self, record, entries: list[Entry]) -> AggregatedEntry:
        partition_key, _, data = record.get_contents()
        # The first row's own hash key: inside this shard's range by construction.
        return AggregatedEntry(data, partition_key, str(hash_key(entries[0].partition_key)),
                               self.shard.shard_id, tuple(entries))


class AggregatingBatchBuilder:
    """BatchBuilder's contract for user records packed into aggregates: `add`
    returns a PutRecords batch when one is ready; `flush` returns one per call
    until nothing is left (None).

    Without `max_rows` aggregates are filled to `aggregate_bytes` (a file
    replay: fewest calls); with it (a rate limit), everything pending goes out
    once `max_rows` rows wait, so no row waits longer than a burst does and no
    batch holds more rows than one burst. Rows of one partition key leave in
    the order they came. `shards` gives the current shard map; it is asked
    for every row, so a map read again after a reshard applies at once.
    """

    def __init__(self, shards: Callable[[], ShardMap], *, max_rows: int | None = None,
                 aggregate_bytes: int = DEFAULT_AGGREGATE_BYTES) -> None:
        if not _FRAMING_BYTES < aggregate_bytes <= 1024 * 1024:
            raise ValueError(f"aggregate_bytes must be {_FRAMING_BYTES + 1} to {1024 * 1024}")
        self._shards = shards
        self._max_rows = max_rows
        # Kinesis counts the partition key into a record's 1 MiB: leave room for the longest.
        self._aggregate_bytes = min(aggregate_bytes, MAX_RECORD_BYTES - 4 * MAX_PARTITION_KEY_CHARS)
        self._open: dict[str, _OpenAggregate] = {}
        self._calls = BatchBuilder()
        self._ready: deque[list] = deque()
        self._pending_rows = 0  # rows added and not yet in a ready batch

    def __len__(self) -> int:
        """Rows added and not yet handed out."""
        return self._pending_rows + sum(e.rows for batch in self._ready for e in batch)

    def add(self, entry: Entry) -> list | None:
        """Raises UnsendableEntry, keeping what is pending, for a row Kinesis would refuse."""
        check_entry(entry)
        shard = self._shards().shard_for(hash_key(entry.partition_key))
        self._pending_rows += 1
        if entry.size + _FRAMING_BYTES > self._aggregate_bytes:
            # Too big to share a record: it goes plain, as the KPL sends it,
            # after the rows of its shard that came before it.
            self._close(shard.shard_id)
            self._queue(entry)
        else:
            aggregate = self._open.get(shard.shard_id)
            if aggregate is None:
                aggregate = self._open[shard.shard_id] = _OpenAggregate(shard, self._aggregate_bytes)
            full = aggregate.add(entry)
            if full is not None:
                self._queue(full)
        if self._max_rows is not None and self._pending_rows >= self._max_rows:
            self._close_all()
        return self._ready.popleft() if self._ready else None

    def flush(self) -> list | None:
        self._close_all()
        return self._ready.popleft() if self._ready else None

    def _close(self, shard_id: str) -> None:
        aggregate = self._open.pop(shard_id, None)
        closed = aggregate.close() if aggregate is not None else None
        if closed is not None:
            self._queue(closed)

    def _close_all(self) -> None:
        for shard_id in list(self._open):
            self._close(shard_id)
        self._hand_out(self._calls.flush())

    def _queue(self, entry: Entry | AggregatedEntry) -> None:
        self._hand_out(self._calls.add(entry))

    def _hand_out(self, batch: list | None) -> None:
        if batch:
            self._ready.append(batch)
            self._pending_rows -= sum(e.rows for e in batch)


class AggregatingDestination(KinesisDestination):
    """Rows parsed as for KinesisDestination, sent as KPL aggregates."""

    def __init__(self, writer: KinesisWriter, shards: Callable[[], ShardMap], *,
                 aggregate_bytes: int = DEFAULT_AGGREGATE_BYTES, max_map_reads: int = 5) -> None:
        super().__init__(writer)
        self._load_shards = shards
        self._shard_map: ShardMap | None = None
        self._aggregate_bytes = aggregate_bytes
        self._max_map_reads = max_map_reads

    def batch_builder(self, max_records: int | None) -> AggregatingBatchBuilder:
        return AggregatingBatchBuilder(self.shard_map, max_rows=max_records, aggregate_bytes=self._aggregate_bytes)

    def shard_map(self) -> ShardMap:
        """The map rows are grouped by: read at first use, read again when an answer shows it is stale."""
        if self._shard_map is None:
            self._shard_map = self._read_shard_map()
        return self._shard_map

    def _read_shard_map(self) -> ShardMap:
        try:
            return self._load_shards()
        except (ClientError, BotoCoreError, ValueError) as exc:  # ValueError: no open shard
            raise DeliveryError(f"cannot read the shard map of {self._writer.stream_name}: {exc}", [], 1) from exc

    def send(self, batch: Sequence[Entry | AggregatedEntry]) -> list[Refusal]:
        """Put the batch, blocking; rows whose aggregate landed on a shard
        that would drop them (a reshard since the map was read) are sent
        again, aggregated for the shards they now belong to. Raises
        DeliveryError as KinesisWriter.put_batch does, or when rows keep
        landing on the wrong shard."""
        batches, map_reads = deque([batch]), 0
        while batches:
            batch = batches.popleft()
            result = self._writer.put_batch(batch)
            # An answer without a shard id ("") says nothing either way.
            misrouted = [(entry, shard_id) for entry, shard_id in zip(batch, result.shard_ids)
                         if isinstance(entry, AggregatedEntry) and shard_id not in ("", entry.shard_id)]
            if not misrouted:
                continue
            if map_reads == self._max_map_reads:
                raise DeliveryError(f"rows still landing on the wrong shard after {map_reads} reads of the "
                                    "shard map", [FailedEntry(e, "Misrouted", s) for e, s in misrouted], map_reads)
            map_reads += 1
            # Rows still open in the builder were grouped by the old map: they are checked when sent.
            shard_map = self._shard_map = self._read_shard_map()
            dropped = [row for entry, shard_id in misrouted for row in entry.user_records
                       if not _holds(shard_map.get(shard_id), row)]
            self._writer.note_rerouted(len(dropped))
            log.warning("put_records.misrouted_aggregates", aggregates=len(misrouted), rows_sent_again=len(dropped))
            batches.extend(aggregate_batches(dropped, shard_map, self._aggregate_bytes))
        return []


def _holds(shard: Shard | None, row: Entry) -> bool:
    # A shard id not in the fresh map closed again already: send the row anew.
    return shard is not None and shard.holds(hash_key(row.partition_key))


def aggregate_batches(rows: Sequence[Entry], shard_map: ShardMap,
                      aggregate_bytes: int = DEFAULT_AGGREGATE_BYTES) -> list[list]:
    """`rows` aggregated for the shards of `shard_map`, as PutRecords batches. Pure."""
    builder = AggregatingBatchBuilder(lambda: shard_map, aggregate_bytes=aggregate_bytes)
    batches = [b for b in map(builder.add, rows) if b]
    batches += iter(builder.flush, None)
    return batches
