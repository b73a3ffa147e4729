"""Dead letters: records that cannot be loaded, kept in S3 with their reason.

One small NDJSON object per dead letter, beside the raw zone under its own
prefix, named by the record alone (shard, sequence number, arrival date):
however a re-read shard cuts its batches, a replayed dead letter finds its
key taken and adds nothing, so each bad record is there exactly once. The
line holds the raw bytes (base64), the reason, the shard and the sequence
number, so a record can be inspected, fixed and replayed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

from consumer.batch import Batch, DeadLetter
from consumer.sinks.raw_zone import put_once


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


def dead_letter_key(prefix: str, shard_id: str, dead: DeadLetter) -> str:
    """`<prefix>/dt=<arrival date>/shard=<shard>/<sequence>-<sub>.ndjson`. Pure."""
    record = dead.record
    day = dt.datetime.fromtimestamp(record.arrival_ms / 1000, dt.timezone.utc).date().isoformat()
    return f"{prefix}/dt={day}/shard={shard_id}/{record.sequence_number}-{record.sub_sequence_number}.ndjson"


class DeadLetterSink:
    name = "dead_letter"
    after: tuple[str, ...] = ()

    def __init__(self, client, bucket: str, prefix: str, concurrency: int = 8) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        # Bad records are rare, but a bad writer can send thousands: put them side by side.
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="dead-letter")

    def write(self, batch: Batch) -> int:
        def put(dead: DeadLetter) -> None:
            put_once(self._client, self.bucket, dead_letter_key(self.prefix, batch.shard_id, dead),
                     to_line(dead, batch.shard_id), "application/x-ndjson", self.name)

        for _ in self._pool.map(put, batch.dead_letters):  # raises the first SinkError
            pass
        return len(batch.dead_letters)
