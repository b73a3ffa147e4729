"""moto's Kinesis, made to behave like Kinesis where the KCL depends on it.

Applied by the emulator (local_stack/emulator.py) before it serves; written
against moto 5.2 (pyproject pins the range) and refusing to start when the
internals it replaces have moved.

1. Resharding. Kinesis keeps a closed parent's records in the parent, routes
   new writes to the open children, and answers a reader that reaches the end
   of a closed shard with no NextShardIterator and the ChildShards. moto moves
   the parents' records into the children (split re-puts them, merge copies
   them), keeps routing writes to closed parents and never ends a shard: the
   KCL never sees a reshard, and records written after it pile up in the
   closed parent.
2. Concurrency. moto keeps a shard's records in a plain dict that Hypercorn's
   worker threads read and write at once; under load GetRecords and
   MergeShards fail with "OrderedDict mutated during iteration" (HTTP 500).
   One lock serialises the Kinesis backend.
3. Scale. moto finds a shard's last sequence number by copying all of its
   keys, on every record put, and starts every GetRecords by scanning the
   shard from its first record: each call costs more the longer the shard,
   so replaying 100,000 records slows to a crawl (quadratic) where Kinesis
   would not. A shard's sequence numbers are consecutive integers, so both
   become a lookup. And moto writes a PutRecords answer entry by entry
   through its generic model-driven serializer, a third of the emulator's
   time on a 500-record call; the answer is already in its wire shape
   (strings and counts), so it goes out as JSON directly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict

from local_stack.serialising import serialised

_LOCK = threading.RLock()
# Kinesis backend calls that read or change shards.
_SERIALISED = (
    "create_stream", "delete_stream", "describe_stream", "describe_stream_summary", "list_shards",
    "get_shard_iterator", "get_records", "put_record", "put_records", "split_shard", "merge_shards",
    "update_shard_count",
)


def apply() -> None:
    """Patch moto's Kinesis model and responses in this process. Idempotent."""
    from moto.kinesis import models, responses

    if getattr(models.Stream, "_retail_stream_fidelity", False):
        return
    for name in _SERIALISED:
        setattr(models.KinesisBackend, name, serialised(getattr(models.KinesisBackend, name), _LOCK))
    models.Stream.split_shard = _keeping_records(models.Stream.split_shard)
    models.Stream.merge_shards = _keeping_records(models.Stream.merge_shards)
    models.Stream.get_shard_for_key = _to_open_shards(models.Stream.get_shard_for_key)
    models.Shard.get_min_sequence_number = lambda shard: next(iter(shard.records), 0)
    models.Shard.get_max_sequence_number = lambda shard: next(reversed(shard.records), 0)
    models.Shard.get_records = _get_records_by_position(models.Shard.get_records)
    responses.KinesisResponse.get_records = _get_records_ending_closed_shards(responses)
    responses.KinesisResponse.put_records = _put_records_answered_as_json
    models.Stream._retail_stream_fidelity = True


def _keeping_records(reshard):
    """Split or merge without moving a record: the parents keep theirs."""

    @functools.wraps(reshard)
    def keeping(stream, *shard_ids_and_key):
        parents = [stream.shards[s] for s in shard_ids_and_key if s in stream.shards]
        kept = [parent.records for parent in parents]
        for parent in parents:
            parent.records = OrderedDict()  # nothing for moto to move
        try:
            reshard(stream, *shard_ids_and_key)
        finally:
            for parent, records in zip(parents, kept):
                parent.records = records

    return keeping


def _to_open_shards(get_shard_for_key):
    """Writes go to the open shard whose hash range (inclusive) holds the key."""

    @functools.wraps(get_shard_for_key)
    def routed(stream, partition_key, explicit_hash_key):
        shard = get_shard_for_key(stream, partition_key, explicit_hash_key)  # also validates
        if shard is not None and shard.is_open:
            return shard
        key = int(explicit_hash_key) if explicit_hash_key else int(
            hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).hexdigest(), 16)
        return next((s for s in stream.shards.values()
                     if s.is_open and s.starting_hash <= key <= s.ending_hash), shard)

    return routed


def _get_records_by_position(scan):
    """Shard.get_records starting at the record after `last_sequence_id`
    directly, when the shard's sequence numbers are consecutive (as moto
    writes them); otherwise moto's own scan."""

    @functools.wraps(scan)
    def get_records(shard, last_sequence_id, limit):
        records = shard.records
        if not records:
            return scan(shard, last_sequence_id, limit)
        first, last = next(iter(records)), next(reversed(records))
        if last - first + 1 != len(records):
            return scan(shard, last_sequence_id, limit)
        start = max(int(last_sequence_id) + 1, first)
        stop = last + 1 if limit is None else min(last + 1, start + limit)
        results = [records[n] for n in range(start, stop)]
        if not results:
            return [], int(last_sequence_id), 0
        behind = records[last].created_at - results[-1].created_at
        # moto stamps records with a float before 5.2.6 and a datetime since.
        seconds = behind.total_seconds() if hasattr(behind, "total_seconds") else behind
        return results, results[-1].sequence_number, int(seconds * 1000)

    return get_records


def _put_records_answered_as_json(self) -> tuple[str, dict[str, str]]:
    """KinesisResponse.put_records, its answer dumped as the JSON it already is."""
    answer = self.kinesis_backend.put_records(
        self._get_param("StreamARN"), self._get_param("StreamName"), self._get_param("Records"))
    return json.dumps(answer, separators=(",", ":")), {"Content-Type": "application/x-amz-json-1.1"}


def _get_records_ending_closed_shards(responses):
    from moto.core.responses import ActionResult
    from moto.kinesis.utils import decompose_shard_iterator

    def get_records(self):
        iterator = self._get_param("ShardIterator")
        with _LOCK:
            next_iterator, records, millis_behind = self.kinesis_backend.get_records(
                self._get_param("StreamARN"), iterator, self._get_param("Limit"))
            stream_name, shard_id, _ = decompose_shard_iterator(iterator)
            stream = self.kinesis_backend.describe_stream(stream_arn=self._get_param("StreamARN"),
                                                          stream_name=stream_name)
            shard = stream.get_shard(shard_id)
            body = {"Records": [r.to_json() for r in records], "MillisBehindLatest": millis_behind}
            position = int(decompose_shard_iterator(next_iterator)[2])
            if shard.is_open or position < shard.get_max_sequence_number():
                body["NextShardIterator"] = next_iterator
            else:
                body["ChildShards"] = [
                    {"ShardId": child.shard_id,
                     "ParentShards": [p for p in (child.parent, child.adjacent_parent) if p],
                     "HashKeyRange": {"StartingHashKey": str(child.starting_hash),
                                      "EndingHashKey": str(child.ending_hash)}}
                    for child in stream.shards.values() if shard.shard_id in (child.parent, child.adjacent_parent)
                ]
        return ActionResult(body)

    return get_records
