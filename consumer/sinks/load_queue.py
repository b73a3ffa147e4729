"""The warehouse's load queue (WAREHOUSE_LOAD_MODE=grouped): instead of a COPY
per batch, a small marker object per batch, next to the raw zone's object it
names. The batch is durable for the warehouse once its marker is: the group
loader (consumer/loader.py) COPYs every queued object in one transaction and
records them in the ledger, so the shard may be checkpointed before the
warehouse has the rows (the warehouse lags by up to the load interval).

    <queue prefix>/<raw-zone key>   {"object_key", "shard_id", "first", "last", "rows", "queued_at"}

Created only if absent, like the raw-zone object: a replayed batch queues
nothing new, and a marker whose object the ledger already holds is skipped
and removed by the loader.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Callable

from consumer.batch import Batch, Position
from consumer.sinks.raw_zone import put_once


@dataclass(frozen=True)
class Queued:
    """One queued object, as its marker says. `marker_key` is where the marker is."""

    marker_key: str
    object_key: str
    shard_id: str
    first: Position
    last: Position
    rows: int
    queued_at: dt.datetime

    @classmethod
    def of(cls, marker_key: str, body: bytes) -> Queued:
        """Parse a marker; raises ValueError (or KeyError/TypeError) on one that is not ours. Pure."""
        entry = json.loads(body)
        return cls(marker_key, entry["object_key"], entry["shard_id"], Position(*entry["first"]),
                   Position(*entry["last"]), int(entry["rows"]), dt.datetime.fromisoformat(entry["queued_at"]))


def marker_body(batch: Batch, object_key: str, queued_at: dt.datetime) -> bytes:
    """The marker of `batch`'s raw-zone object. Pure."""
    return json.dumps({"object_key": object_key, "shard_id": batch.shard_id, "first": list(batch.first),
                       "last": list(batch.last), "rows": len(batch.records),
                       "queued_at": queued_at.isoformat()}).encode()


class LoadQueueSink:
    """Queues the batch's raw-zone object (which the sinks in `after` wrote) for the group loader."""

    name = "warehouse"  # it stands where the per-batch load stands: same metrics, same order

    def __init__(self, client, bucket: str, prefix: str, object_key: Callable[[Batch], str], *,
                 after: tuple[str, ...],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.after = after
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._object_key = object_key
        self._clock = clock

    def marker_key(self, object_key: str) -> str:
        return f"{self._prefix}/{object_key}"

    def write(self, batch: Batch) -> int:
        if not batch.records:
            return 0
        key = self._object_key(batch)
        put_once(self._client, self._bucket, self.marker_key(key), marker_body(batch, key, self._clock()),
                 "application/json", self.name)
        return len(batch.records)
