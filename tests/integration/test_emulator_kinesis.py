"""The emulator's Kinesis behaves like Kinesis where the KCL depends on it
(local_stack/kinesis_fidelity.py): resharding."""

from __future__ import annotations


import pytest

from tests.conftest import throwaway_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(settings):
    with throwaway_stream(settings, "reshard", shards=1) as made:
        yield made


def put(kinesis, name, keys):
    return {kinesis.put_record(StreamName=name, Data=key.encode(), PartitionKey=key)["ShardId"] for key in keys}


def read_to_end(kinesis, name, shard_id):
    """(every record's data, the final GetRecords answer)."""
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    data = []
    for _ in range(100):
        answer = kinesis.get_records(ShardIterator=iterator)
        data += [r["Data"] for r in answer["Records"]]
        if "NextShardIterator" not in answer or (not answer["Records"] and answer["MillisBehindLatest"] == 0):
            return data, answer
        iterator = answer["NextShardIterator"]
    raise AssertionError("the shard never ended")


def test_a_split_parent_keeps_its_records_ends_and_names_its_children(stream):
    kinesis, name = stream
    parent = kinesis.list_shards(StreamName=name)["Shards"][0]
    before = [f"before-{i}" for i in range(20)]
    put(kinesis, name, before)
    middle = (int(parent["HashKeyRange"]["StartingHashKey"]) + int(parent["HashKeyRange"]["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=name, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle))
    after = [f"after-{i}" for i in range(20)]
    written_to = put(kinesis, name, after)

    data, end = read_to_end(kinesis, name, parent["ShardId"])
    assert data == [k.encode() for k in before]
    assert "NextShardIterator" not in end
    children = {c["ShardId"] for c in end["ChildShards"]}
    assert len(children) == 2 and all(c["ParentShards"] == [parent["ShardId"]] for c in end["ChildShards"])
    assert written_to <= children  # new writes go to the open children only
    in_children = [d for child in children for d in read_to_end(kinesis, name, child)[0]]
    assert sorted(in_children) == sorted(k.encode() for k in after)


def test_a_merge_child_names_both_parents(stream):
    kinesis, name = stream
    parent = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    kinesis.update_shard_count(StreamName=name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    a, b = [s["ShardId"] for s in kinesis.list_shards(StreamName=name)["Shards"] if s["ShardId"] != parent][:2]
    put(kinesis, name, [f"k{i}" for i in range(10)])
    kinesis.merge_shards(StreamName=name, ShardToMerge=a, AdjacentShardToMerge=b)
    _, end_a = read_to_end(kinesis, name, a)
    _, end_b = read_to_end(kinesis, name, b)
    assert end_a["ChildShards"] == end_b["ChildShards"]
    assert sorted(end_a["ChildShards"][0]["ParentShards"]) == sorted([a, b])


def test_reads_page_through_a_long_shard_in_order_from_any_position(stream):
    """GetRecords by position (the scale fix) returns what moto's scan would:
    every record once, in order, from TRIM_HORIZON, AFTER and AT a sequence number."""
    kinesis, name = stream
    sent = [f"r{i}".encode() for i in range(1200)]
    for start in range(0, len(sent), 500):
        kinesis.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": "k"} for d in sent[start:start + 500]])
    shard_id = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    pages = []
    while True:
        answer = kinesis.get_records(ShardIterator=iterator, Limit=333)
        if not answer["Records"]:
            break
        pages.append(answer["Records"])
        iterator = answer["NextShardIterator"]
    assert [len(p) for p in pages] == [333, 333, 333, 201]
    records = [r for page in pages for r in page]
    assert [r["Data"] for r in records] == sent
    assert pages[0][0]["SequenceNumber"] != pages[1][0]["SequenceNumber"]
    assert answer["MillisBehindLatest"] == 0

    middle = records[700]["SequenceNumber"]
    for kind, first in (("AFTER_SEQUENCE_NUMBER", 701), ("AT_SEQUENCE_NUMBER", 700)):
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=kind,
                                              StartingSequenceNumber=middle)["ShardIterator"]
        assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=5)["Records"]] == sent[first:first + 5]
