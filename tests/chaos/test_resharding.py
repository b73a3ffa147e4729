"""Resharding mid-stream: a shard split, then two shards merged, while the
producer writes. The KCL must drain each parent to its end (our processor
checkpoints SHARD_END) before it reads the children."""

from __future__ import annotations

import pytest

from retail_stream import aws
from tests.chaos.harness import expected_ids, scaled, source_ids, summary
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# The rig (tests/chaos/conftest.py): one worker, w1, started for the module.
RIG_OPTIONS = {"folder": "chaos-reshard"}


def open_shards(kinesis, stream: str) -> list[dict]:
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def consumed(rig, *shard_ids: str) -> bool:
    """Whether the worker has checkpointed a record of each shard (not just its start, nor its end)."""
    checkpoints = rig.checkpoints()
    return all((checkpoints.get(s) or "").isdigit() for s in shard_ids)


def test_split_and_merge_mid_stream(rig):
    source, passes = "chaos-reshard", scaled(6, 30)
    kinesis = aws.client("kinesis", rig.settings)
    stream = rig.settings.stream_name
    worker = rig.worker("w1")
    # Slow enough at either length that the producer still writes after the merge, however long the
    # KCL takes to drain a parent and start its children on a busy machine (30 s and more under xdist).
    producer = rig.producer(source, passes, "--rate", str(scaled(100, 300)))
    parent = open_shards(kinesis, stream)[0]
    # Split mid-stream: once the worker has consumed (checkpointed) the parent's records of the replay.
    wait_until(lambda: consumed(rig, parent["ShardId"]), 60, "w1 to checkpoint records of the shard to split")
    low, high = (int(parent["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2))
    wait_until(lambda: parent["ShardId"] not in {s["ShardId"] for s in open_shards(kinesis, stream)}, 30,
               "the split to close the parent")
    # Merge two adjacent open shards: a child of the split and its neighbour.
    shards = sorted(open_shards(kinesis, stream), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    first, second = next((a, b) for a, b in zip(shards, shards[1:])
                         if int(a["HashKeyRange"]["EndingHashKey"]) + 1 == int(b["HashKeyRange"]["StartingHashKey"]))
    # Merged mid-stream: once the worker has consumed records of both (the parent drained to its end first).
    wait_until(lambda: consumed(rig, first["ShardId"], second["ShardId"]), 60,
               "w1 to checkpoint records of both shards to merge")
    kinesis.merge_shards(StreamName=stream, ShardToMerge=first["ShardId"], AdjacentShardToMerge=second["ShardId"])
    assert producer.poll() is None, "the producer should still be writing: make the replay longer"
    summary(producer)
    catch_up = rig.wait_drained()

    closed = {parent["ShardId"], first["ShardId"], second["ShardId"]}
    wait_until(lambda: all(rig.checkpoints().get(s) == "SHARD_END" for s in closed), 60, "every parent's SHARD_END")
    # Each parent ended before any of its children wrote a batch.
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    ended = {e["shard_id"]: e["timestamp"] for e in worker.events("shard_ended")}
    first_batch = {}
    for event in worker.events("batch_written"):
        first_batch.setdefault(event["shard_id"], event["timestamp"])
    for shard_id, shard in shards.items():
        for parent_id in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent_id in closed and shard_id in first_batch:
                assert ended[parent_id] < first_batch[shard_id], (parent_id, shard_id)
    outcome = rig.judge("resharding", "a shard split, then two shards merged, mid-replay", source_ids(source, passes),
                        expected_ids(source, passes), catch_up, shards_after=len(open_shards(kinesis, stream)))
    outcome.assert_clean()
