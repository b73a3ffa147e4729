"""Positions inside KPL aggregates: every batch key names (sequence,
sub-sequence) at both ends, so batches cut inside one aggregate never share
a key, and a shard re-read from any checkpoint with any other flush size
leaves the raw zone holding every record, each key with exactly its records.

The shard is driven through the real pipeline, buffer and raw-zone sink; only
S3 is a fake (a dict that answers If-None-Match: * as S3 does)."""

from __future__ import annotations

import dataclasses
import gzip
import itertools

import pytest
from botocore.exceptions import ClientError

from consumer import kpl
from consumer.batch import Position
from consumer.buffer import FlushPolicy, ShardBuffer
from consumer.parse import parse
from consumer.metrics import dead_letter_kind
from consumer.pipeline import ShardPipeline
from consumer.sinks.raw_zone import RawZoneSink
from retail_stream.schema import decode
from tests.support.consumer_fakes import RecordingCheckpointer, stream_record


class ConditionalS3:
    """put_object with If-None-Match: * as S3 answers it: 412 when the key exists."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put_object(self, Bucket, Key, Body, ContentType, IfNoneMatch):
        self.puts += 1
        if Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "exists"},
                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")
        self.objects[Key] = Body

    def lines(self, key: str) -> list[int]:
        return [decode(line).line for line in gzip.decompress(self.objects[key]).splitlines()]


def shard_records():
    """A shard as the KCL hands it over: two aggregates of 5 user records
    (one sequence number each, sub-sequences 0-4) around plain records."""
    layout = [("101", 5), ("102", 1), ("103", 5), ("104", 1), ("105", 1)]
    lines = itertools.count(1)
    return [dataclasses.replace(stream_record(next(lines), sub=sub), sequence_number=sequence)
            for sequence, users in layout for sub in range(users)]


def read(s3: ConditionalS3, records, flush_records: int, stop_after_batches: int | None = None):
    """One worker reading `records` with this flush size; returns its checkpoints."""
    pipeline = ShardPipeline(ShardBuffer("shardId-0", FlushPolicy(flush_records, 10**9, 60)),
                             [RawZoneSink(s3, "bucket", "raw", gzip_level=1)], clock=lambda: 0.0)
    checkpointer = RecordingCheckpointer()
    for record in records:
        pipeline.receive([record], checkpointer)
        if stop_after_batches is not None and len(checkpointer.positions) >= stop_after_batches:
            return list(zip(checkpointer.positions, checkpointer.subs))  # a crash: the buffer is gone
    pipeline.finish(checkpointer, shard_end=False)
    return list(zip(checkpointer.positions, checkpointer.subs))


def after(records, checkpoint: tuple[str, int]):
    """What the KCL re-delivers after a checkpoint at (sequence, sub): every later user record."""
    index = next(i for i, r in enumerate(records) if (r.sequence_number, r.sub_sequence_number) == checkpoint)
    return records[index + 1:]


def test_a_position_is_spelt_one_way():
    assert Position("49590").label == "49590"
    assert Position("49590", 0).label == "49590"
    assert Position("49590", 209).label == "49590.209"
    assert Position("1", 10).label != Position("11", 0).label


def test_batches_cut_inside_one_aggregate_get_keys_of_their_own():
    s3 = ConditionalS3()
    read(s3, shard_records(), flush_records=2)
    assert sorted(s3.objects) == sorted(f"raw/dt=2023-11-14/shard=shardId-0/{k}.ndjson.gz" for k in (
        "101-101.1", "101.2-101.3", "101.4-102", "103-103.1", "103.2-103.3", "103.4-104", "105-105"))
    assert sorted(line for key in s3.objects for line in s3.lines(key)) == list(range(1, 14))


@pytest.mark.parametrize("first_size", [1, 2, 3, 4, 5, 6, 13])
def test_a_shard_re_read_from_any_checkpoint_with_any_cut_loses_nothing(first_size):
    """Every crash point of a first read, then a re-read with every other
    flush size: every record is in the raw zone, every object holds exactly
    the records between its two positions, and a replay of identical batches
    adds nothing."""
    records = shard_records()
    positions = [(r.sequence_number, r.sub_sequence_number) for r in records]
    for crash_after, second_size in itertools.product(range(1, len(records) + 1), range(1, 8)):
        s3 = ConditionalS3()
        checkpoints = read(s3, records, first_size, stop_after_batches=crash_after)
        rest = after(records, checkpoints[-1]) if checkpoints else records
        read(s3, rest, second_size)
        seen = set()
        for key, body in s3.objects.items():
            first, last = (_parse(label) for label in key.rsplit("/", 1)[1].removesuffix(".ndjson.gz").split("-"))
            span = records[positions.index(first):positions.index(last) + 1]
            assert s3.lines(key) == [decode(r.data).line for r in span], key
            seen.update(s3.lines(key))
        assert seen == set(range(1, len(records) + 1)), (first_size, crash_after, second_size)
        count = len(s3.objects)
        read(s3, rest, second_size)  # the same batches once more
        assert len(s3.objects) == count


def _parse(label: str) -> tuple[str, int]:
    sequence, _, sub = label.partition(".")
    return sequence, int(sub or 0)


def test_checkpoints_name_the_sub_sequence_of_the_batch_end():
    s3 = ConditionalS3()
    assert read(s3, shard_records(), flush_records=3) == [
        ("101", 2), ("102", 0), ("103", 2), ("104", 0), ("105", 0)]


def aggregate(*payloads: bytes) -> bytes:
    """A KPL aggregated record made by AWS's own aws-kinesis-agg."""
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    for payload in payloads:
        assert aggregator.add_user_record("c17850", payload) is None
    return aggregator.clear_and_get().get_contents()[2]


def corruptions() -> dict[str, bytes]:
    """The ways an aggregate's framing breaks; the KCL delivers each one whole."""
    import hashlib

    good = aggregate(stream_record(1).data, stream_record(2).data)
    body = good[4:-16]
    truncated = body[: len(body) // 2]
    return {
        "bad MD5": good[:-1] + bytes([good[-1] ^ 0xFF]),
        "truncated protobuf": kpl.MAGIC + truncated + hashlib.md5(truncated).digest(),
        "truncated record": good[: len(good) // 2],
    }


@pytest.mark.parametrize("name", sorted(corruptions()))
def test_a_corrupt_aggregate_is_dead_lettered_whole_and_named(name):
    data = corruptions()[name]
    buffer = ShardBuffer("shardId-0", FlushPolicy(10, 10**9, 60))
    for record in (dataclasses.replace(stream_record(1), data=data), stream_record(2)):
        buffer.add(record, parse(record), 0.0)
    batch = buffer.take()
    assert [r.line for r in batch.records] == [2]
    (dead,) = batch.dead_letters
    assert dead.record.data == data
    assert dead.reason.startswith(kpl.BAD_AGGREGATE)
    assert dead_letter_kind(dead.reason) == "bad_aggregate"
