"""`python -m producer --aggregate` against the emulator's Kinesis: every
valid row of the sample comes back, once, when the stream is read and
de-aggregated by AWS's own aws-kinesis-agg, and every user record sits in the
shard its key hashes to (the KCL would drop it otherwise); a reshard between
reading the shard map and putting the aggregates loses no row."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from producer.aggregation import AggregatingDestination, ShardMap, hash_key
from producer.csv_source import valid_records
from producer.kinesis_writer import KinesisWriter
from producer.replay import RejectsFile, Replay, Source
from retail_stream.schema import decode
from tests.conftest import throwaway_stream

pytestmark = pytest.mark.integration

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"


def valid_ids(source: str) -> set[str]:
    return {r.event_id for r in valid_records(CSV, source)}


@pytest.fixture
def stream(settings):
    with throwaway_stream(settings, "agg", shards=2) as made:
        yield made


def user_records(kinesis, name) -> dict[str, list[dict]]:
    """Every shard's user records, de-aggregated by aws-kinesis-agg, with the hash range they must fit."""
    found = {}
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = []
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += answer["Records"]
            if not answer["Records"]:
                break
            iterator = answer.get("NextShardIterator")
        low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        found[shard["ShardId"]] = {
            "range": (low, high), "kinesis_records": len(records),
            "users": [{"PartitionKey": u["kinesis"]["partitionKey"], "Data": base64.b64decode(u["kinesis"]["data"]),
                       "SubSequenceNumber": u["kinesis"].get("subSequenceNumber", 0)}
                      for u in iter_deaggregate_records(records, data_format="Boto3")],
        }
    return found


def test_the_producer_aggregates_and_every_row_comes_back_in_its_shard(stream, settings, tmp_path):
    kinesis, name = stream
    out = subprocess.run(
        [sys.executable, "-m", "producer", str(CSV), "--aggregate", "--aggregate-bytes", "20000",
         "--stream", name, "--no-metrics", "--rejects", str(tmp_path / "rejects.jsonl")],
        stdout=subprocess.PIPE, text=True, check=True, timeout=120,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    expected = valid_ids(CSV.name)
    assert summary["sent"] == len(expected) and summary["rerouted"] == 0
    assert summary["calls"] == 1  # the whole sample in one PutRecords call

    shards = user_records(kinesis, name)
    ids = []
    for shard in shards.values():
        low, high = shard["range"]
        assert shard["kinesis_records"] < len(expected) / 20  # aggregated: few Kinesis records
        for user in shard["users"]:
            assert low <= hash_key(user["PartitionKey"]) <= high
            ids.append(decode(user["Data"]).event_id)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    subs = [u["SubSequenceNumber"] for s in shards.values() for u in s["users"]]
    assert max(subs) > 0


def test_a_split_after_the_shard_map_was_read_loses_no_row(stream, settings, tmp_path):
    kinesis, name = stream
    stale = ShardMap.load(kinesis, name)
    parent = stale.shards[0]
    kinesis.split_shard(StreamName=name, ShardToSplit=parent.shard_id,
                        NewStartingHashKey=str((parent.starting_hash_key + parent.ending_hash_key) // 2))
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    maps = iter([stale])
    destination = AggregatingDestination(KinesisWriter(kinesis, name),
                                         lambda: next(maps, None) or ShardMap.load(kinesis, name))
    with RejectsFile(tmp_path / "rejects.jsonl") as rejects:
        summary = Replay([Source(CSV, "split.csv", rejects)], destination).run()
    expected = valid_ids("split.csv")
    assert summary.sent == len(expected) and summary.rerouted > 0

    # What a KCL would deliver: user records inside their shard's range only.
    delivered = [decode(u["Data"]).event_id for shard in user_records(kinesis, name).values()
                 for u in shard["users"] if shard["range"][0] <= hash_key(u["PartitionKey"]) <= shard["range"][1]]
    assert set(delivered) == expected
