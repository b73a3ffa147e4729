"""Dead letters: records that cannot be loaded, kept in S3 with their reason.

One NDJSON object per batch that had any, beside the raw zone under its own
prefix; each line holds the raw bytes (base64), the reason, the shard and the
sequence number, so a record can be inspected, fixed and replayed.
"""

from __future__ import annotations

import base64
import json

from consumer.batch import Batch, DeadLetter
from consumer.sinks.raw_zone import object_key, put_once


def to_line(dead: DeadLetter, shard_id: str) -> bytes:
    """One dead letter as a JSON line. Pure."""
    record = dead.record
    return json.dumps(
        {
            "shard_id": shard_id,
            "sequence_number": record.sequence_number,
            "sub_sequence_number": record.sub_sequence_number,
            "partition_key": record.partition_key,
            "arrival_ms": record.arrival_ms,
            "reason": dead.reason,
            "data_base64": base64.b64encode(record.data).decode("ascii"),
        },
        ensure_ascii=False,
    ).encode() + b"\n"


class DeadLetterSink:
    name = "dead_letter"

    def __init__(self, client, bucket: str, prefix: str) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix

    def write(self, batch: Batch) -> int:
        if not batch.dead_letters:
            return 0
        body = b"".join(to_line(d, batch.shard_id) for d in batch.dead_letters)
        key = object_key(self.prefix, batch, suffix=".ndjson")
        put_once(self._client, self.bucket, key, body, "application/x-ndjson", self.name)
        return len(batch.dead_letters)
