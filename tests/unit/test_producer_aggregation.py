"""`--aggregate`: rows packed into KPL aggregates, grouped by destination
shard, against a fake Kinesis that routes by hash key as Kinesis does and
reads aggregates back with aws-kinesis-agg's own protobuf, dropping what the
KCL would drop (a user record whose key hashes outside the shard)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from producer.aggregation import (
    DEFAULT_AGGREGATE_BYTES,
    AggregatedEntry,
    AggregatingBatchBuilder,
    AggregatingDestination,
    Shard,
    ShardMap,
    hash_key,
)
from producer.batching import MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Entry
from producer.kinesis_writer import KinesisWriter
from producer.replay import RejectsFile, Replay, Source

# After producer.aggregation: aws_kinesis_agg.aggregator puts the package's folder on sys.path, which
# its messages_pb2 needs to import config_pb2.
from aws_kinesis_agg import messages_pb2  # noqa: E402

TOP = 2**128 - 1


def ranges(*bounds: int) -> list[tuple[int, int]]:
    edges = [0, *bounds, TOP + 1]
    return [(edges[i], edges[i + 1] - 1) for i in range(len(edges) - 1)]


class RoutingKinesis:
    """PutRecords routed by explicit hash key (else the key's MD5) to the open
    shard holding it; ListShards from the current shards. `reshard` replaces
    the open shards, as a split or merge does."""

    def __init__(self, *bounds: int) -> None:
        self.generation = 0
        self.shards: list[dict] = []
        self.reshard(*bounds)
        self.stored: dict[str, list[bytes]] = {}
        self.calls = 0
        self.list_calls = 0

    def reshard(self, *bounds: int) -> None:
        for shard in self.shards:
            shard["SequenceNumberRange"]["EndingSequenceNumber"] = "9"
        self.generation += 1
        self.shards += [{"ShardId": f"shardId-{self.generation}-{i}",
                         "HashKeyRange": {"StartingHashKey": str(a), "EndingHashKey": str(b)},
                         "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
                        for i, (a, b) in enumerate(ranges(*bounds))]

    def list_shards(self, StreamName=None, NextToken=None):
        self.list_calls += 1
        return {"Shards": [dict(s) for s in self.shards]}

    def open_shard(self, key: int) -> dict:
        return next(s for s in self.shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]
                    and int(s["HashKeyRange"]["StartingHashKey"]) <= key <= int(s["HashKeyRange"]["EndingHashKey"]))

    def put_records(self, StreamName, Records):
        self.calls += 1
        assert len(Records) <= MAX_BATCH_RECORDS
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in Records) <= MAX_BATCH_BYTES
        results = []
        for record in Records:
            key = int(record["ExplicitHashKey"]) if "ExplicitHashKey" in record else hash_key(record["PartitionKey"])
            shard = self.open_shard(key)
            self.stored.setdefault(shard["ShardId"], []).append(record["Data"])
            results.append({"SequenceNumber": str(self.calls), "ShardId": shard["ShardId"]})
        return {"FailedRecordCount": 0, "Records": results}

    def delivered(self) -> list[bytes]:
        """What a KCL would hand over, shard by shard: user records of every
        aggregate whose key hashes into the shard, plain records as they are."""
        out = []
        for shard in self.shards:
            low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
            for data in self.stored.get(shard["ShardId"], []):
                if not data.startswith(b"\xf3\x89\x9a\xc2"):
                    out.append(data)
                    continue
                body, digest = data[4:-16], data[-16:]
                assert hashlib.md5(body).digest() == digest
                aggregate = messages_pb2.AggregatedRecord.FromString(body)
                for user in aggregate.records:
                    if low <= hash_key(aggregate.partition_key_table[user.partition_key_index]) <= high:
                        out.append(user.data)
        return out


def rows(n: int, size: int = 300) -> list[Entry]:
    return [Entry(f"row-{i:06d}-".encode().ljust(size, b"x"), f"c{i % 97}") for i in range(n)]


def drain(builder, entries):
    batches = [b for b in map(builder.add, entries) if b]
    while (last := builder.flush()) is not None:
        batches.append(last)
    return batches


def test_the_shard_map_holds_only_open_shards_by_hash_range():
    kinesis = RoutingKinesis(2**127)
    kinesis.reshard(2**126, 2**127)
    shard_map = ShardMap.load(kinesis, "retail")
    assert [s.shard_id for s in shard_map.shards] == ["shardId-2-0", "shardId-2-1", "shardId-2-2"]
    assert shard_map.shard_for(0).shard_id == "shardId-2-0"
    assert shard_map.shard_for(2**126 - 1).shard_id == "shardId-2-0"
    assert shard_map.shard_for(2**126).shard_id == "shardId-2-1"
    assert shard_map.shard_for(TOP).shard_id == "shardId-2-2"


def test_aggregates_group_rows_by_shard_and_stay_within_their_size():
    kinesis = RoutingKinesis(2**127)
    shard_map = ShardMap.load(kinesis, "retail")
    batches = drain(AggregatingBatchBuilder(lambda: shard_map), rows(5000))
    aggregates = [e for b in batches for e in b]
    assert all(isinstance(e, AggregatedEntry) for e in aggregates)
    assert sum(e.rows for e in aggregates) == 5000
    assert all(len(e.data) <= DEFAULT_AGGREGATE_BYTES for e in aggregates)
    assert len(aggregates) < 5000 / 100  # about 160 rows of 300 bytes in 50 KB
    for entry in aggregates:
        shard = shard_map.get(entry.shard_id)
        assert shard.holds(int(entry.explicit_hash_key))
        assert all(shard.holds(hash_key(row.partition_key)) for row in entry.user_records)
    assert len(batches) == 1  # 5000 rows in aggregates: one PutRecords call


def test_every_row_reaches_the_consumer_once_and_in_order_per_key():
    kinesis = RoutingKinesis(2**126, 2**127, 3 * 2**126)
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"), lambda: ShardMap.load(kinesis, "retail"))
    sent = rows(3000)
    for batch in drain(destination.batch_builder(None), sent):
        destination.send(batch)
    delivered = kinesis.delivered()
    assert sorted(delivered) == sorted(e.data for e in sent)
    by_key = {}
    for entry in sent:
        by_key.setdefault(entry.partition_key, []).append(entry.data)
    delivered_set = {d: i for i, d in enumerate(delivered)}
    for datas in by_key.values():
        assert [delivered_set[d] for d in datas] == sorted(delivered_set[d] for d in datas)
    assert kinesis.calls == 1 and destination.stats.records_sent == 3000


def test_a_reshard_after_the_map_was_read_loses_no_row():
    """The map says two shards; the stream was split to four meanwhile.
    Aggregates land on one child, the rows of the other child are sent again."""
    kinesis = RoutingKinesis(2**127)
    stale = ShardMap.load(kinesis, "retail")
    kinesis.reshard(2**126, 2**127, 3 * 2**126)
    maps = iter([stale])
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"),
                                         lambda: next(maps, None) or ShardMap.load(kinesis, "retail"))
    sent = rows(2000)
    for batch in drain(destination.batch_builder(None), sent):
        destination.send(batch)
    assert sorted(kinesis.delivered()) == sorted(e.data for e in sent)
    rerouted = destination.stats.rerouted
    assert 0 < rerouted < 2000
    assert destination.stats.records_sent - rerouted == 2000


def test_with_a_rate_limit_no_batch_holds_more_rows_than_a_burst():
    shard_map = ShardMap([Shard("a", 0, 2**127 - 1), Shard("b", 2**127, TOP)])
    batches = drain(AggregatingBatchBuilder(lambda: shard_map, max_rows=40), rows(1000))
    assert [sum(e.rows for e in b) for b in batches] == [40] * 25
    assert all(len(b) == 2 for b in batches)  # one aggregate per shard


def test_a_row_too_big_to_share_a_record_goes_plain():
    shard_map = ShardMap([Shard("a", 0, TOP)])
    big = Entry(b"x" * (DEFAULT_AGGREGATE_BYTES + 10), "c1")
    (batch,) = drain(AggregatingBatchBuilder(lambda: shard_map), [*rows(3), big, *rows(2)])
    assert big in batch
    assert sum(e.rows for e in batch) == 6


def test_a_replay_with_aggregation_counts_rows_not_records(tmp_path: Path):
    csv = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"
    kinesis = RoutingKinesis(2**127)
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"), lambda: ShardMap.load(kinesis, "retail"))
    with RejectsFile(tmp_path / "rejects.jsonl") as rejects:
        summary = Replay([Source(csv, csv.name, rejects)], destination).run()
    assert summary.sent == summary.rows - summary.rejected == len(kinesis.delivered())
    assert summary.calls == 1 and summary.rerouted == 0


@pytest.mark.parametrize("size", [1024, 4096, 1024 * 1024])
def test_aggregates_of_any_allowed_size_are_valid_kpl_records(size):
    shard_map = ShardMap([Shard("a", 0, TOP)])
    for batch in drain(AggregatingBatchBuilder(lambda: shard_map, aggregate_bytes=size), rows(500, 200)):
        for entry in batch:
            assert len(entry.data) <= size
            aggregate = messages_pb2.AggregatedRecord.FromString(entry.data[4:-16])
            assert len(aggregate.records) == entry.rows


def test_a_stream_whose_shard_map_cannot_be_read_is_a_delivery_error():
    from botocore.exceptions import ClientError

    from producer.kinesis_writer import DeliveryError

    class Missing(RoutingKinesis):
        def list_shards(self, **kwargs):
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no stream"}}, "ListShards")

    kinesis = Missing(2**127)
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"), lambda: ShardMap.load(kinesis, "retail"))
    with pytest.raises(DeliveryError, match="cannot read the shard map of retail.*ResourceNotFoundException"):
        destination.batch_builder(None).add(rows(1)[0])


def test_a_plain_big_row_leaves_after_the_rows_of_its_key_before_it():
    shard_map = ShardMap([Shard("a", 0, TOP)])
    small = [Entry(f"small-{i}".encode(), "c1") for i in range(3)]
    big = Entry(b"x" * (DEFAULT_AGGREGATE_BYTES + 10), "c1")
    (batch,) = drain(AggregatingBatchBuilder(lambda: shard_map), [*small, big, Entry(b"after", "c1")])
    assert [type(e).__name__ for e in batch] == ["AggregatedEntry", "Entry", "AggregatedEntry"]
    assert batch[0].user_records == tuple(small) and batch[1] == big


def test_an_answer_without_shard_ids_is_not_taken_for_a_reshard():
    class Anonymous(RoutingKinesis):
        def put_records(self, StreamName, Records):
            answer = super().put_records(StreamName, Records)
            return {**answer, "Records": [{"SequenceNumber": r["SequenceNumber"]} for r in answer["Records"]]}

    kinesis = Anonymous(2**127)
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"), lambda: ShardMap.load(kinesis, "retail"))
    for batch in drain(destination.batch_builder(None), rows(500)):
        destination.send(batch)
    assert kinesis.calls == 1 and kinesis.list_calls == 1 and destination.stats.rerouted == 0


def test_a_stream_without_open_shards_is_a_delivery_error_not_a_traceback():
    from producer.kinesis_writer import DeliveryError

    kinesis = RoutingKinesis(2**127)
    for shard in kinesis.shards:
        shard["SequenceNumberRange"]["EndingSequenceNumber"] = "9"
    destination = AggregatingDestination(KinesisWriter(kinesis, "retail"), lambda: ShardMap.load(kinesis, "retail"))
    with pytest.raises(DeliveryError, match="no open shard") as caught:
        destination.batch_builder(None).add(rows(1)[0])
    assert str(caught.value) == "cannot read the shard map of retail: the stream has no open shard"
