"""The group loader (WAREHOUSE_LOAD_MODE=grouped): every load interval, one
COPY of every queued raw-zone object (consumer/sinks/load_queue.py) and one
transaction, so the warehouse's commits per minute follow the consumer tasks
(one loader each), not the shards.

One load, in one transaction:

    list the queue (up to WAREHOUSE_LOAD_MAX_OBJECTS markers)
    LOCK the ledger; drop the objects it already holds
    stage; COPY them all (Redshift: one COPY of a manifest; PostgreSQL: each object)
    merge on (invoice_date, event_id) within the stage's dates; one ledger row per object
    COMMIT; then delete the markers (and the manifest)

A crash anywhere before the commit rolls the load back and leaves the markers
for the next load; a crash after it leaves markers whose objects the ledger
holds, which the next load skips and deletes. Loaders of several tasks may
take the same markers: the ledger lock orders them and the second finds the
objects loaded. Nothing is lost, nothing doubles.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import psycopg2
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg2 import sql

from consumer.sinks import SinkError
from consumer.sinks.load_queue import Queued
from consumer.sinks.warehouse import STAGE, LocalCopy, Target, WarehouseConnection, merge_statements
from retail_stream.retries import Backoff

log = structlog.get_logger(__name__)

DELETE_BATCH = 1000  # DeleteObjects' limit
# A load that fails (the warehouse down, a throttled list) is tried again after these waits.
LOAD_BACKOFF = Backoff(base=1.0, cap=60.0)


def manifest(bucket: str, keys: Sequence[str]) -> bytes:
    """A COPY manifest naming every object, each mandatory (a missing one fails the load). Pure."""
    return json.dumps({"entries": [{"url": f"s3://{bucket}/{key}", "mandatory": True} for key in keys]}).encode()


def manifest_copy_statement(target: Target, manifest_uri: str, iam_role: str, jsonpaths_uri: str) -> sql.Composable:
    """Redshift's COPY of every object a manifest names, in parallel over the slices. Pure."""
    return sql.SQL(
        "COPY {stage} ({cols}) FROM {source} IAM_ROLE {role} "
        "FORMAT AS JSON {paths} GZIP TIMEFORMAT 'auto' MANIFEST"
    ).format(stage=STAGE, cols=target.column_list, source=sql.Literal(manifest_uri), role=sql.Literal(iam_role),
             paths=sql.Literal(jsonpaths_uri))


class ManifestCopy:
    """Redshift: the manifest written to S3, then one COPY; returns the manifest's key (removed after the commit)."""

    def __init__(self, target: Target, s3: Any, bucket: str, prefix: str, iam_role: str, jsonpaths_uri: str) -> None:
        self._target, self._s3, self._bucket, self._prefix = target, s3, bucket, prefix
        self._iam_role, self._jsonpaths_uri = iam_role, jsonpaths_uri

    def copy_all(self, cursor, keys: Sequence[str]) -> list[str]:
        body = manifest(self._bucket, keys)
        key = f"{self._prefix}/{hashlib.sha256(body).hexdigest()}.json"
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise SinkError.caused_by("warehouse", f"s3://{self._bucket}/{key}", exc, "writing the manifest") from exc
        cursor.execute(manifest_copy_statement(self._target, f"s3://{self._bucket}/{key}", self._iam_role,
                                               self._jsonpaths_uri))
        return [key]


class EachObjectCopy:
    """PostgreSQL: the per-batch load's LocalCopy, object after object, into one stage."""

    def __init__(self, local: LocalCopy, bucket: str) -> None:
        self._local, self._bucket = local, bucket

    def copy_all(self, cursor, keys: Sequence[str]) -> list[str]:
        for key in keys:
            self._local.copy(cursor, self._bucket, key)
        return []


@dataclass(frozen=True)
class Load:
    """What one load did: objects loaded, objects the ledger had already, rows new to the table."""

    loaded: int
    skipped: int
    inserted: int
    seconds: float
    oldest_queued: dt.datetime | None


class LoaderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = "retail_consumer_warehouse"
        # How many commits does the warehouse take from this task? (per-batch mode: one per batch per shard)
        self.loads = Counter(f"{prefix}_group_loads", "Group loads committed", registry=self.registry)
        self.objects = Counter(f"{prefix}_group_objects", "Raw-zone objects loaded by group loads",
                               registry=self.registry)
        self.rows = Counter(f"{prefix}_group_rows", "Rows new to the table from group loads", registry=self.registry)
        # How far behind the stream is the warehouse? (the oldest queued object's wait at the last load)
        self.lag = Gauge(f"{prefix}_load_lag_seconds", "Age of the oldest queued object when the last load began",
                         registry=self.registry)
        self.failures = Counter(f"{prefix}_group_load_failures", "Group loads that failed (tried again)",
                                registry=self.registry)


class GroupLoader:
    def __init__(self, s3: Any, bucket: str, queue_prefix: str, connect: Callable[[], Any], target: Target,
                 copier: ManifestCopy | EachObjectCopy, *, max_objects: int = 1000,
                 metrics: LoaderMetrics | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self._s3, self._bucket, self._queue_prefix = s3, bucket, queue_prefix
        self._connection = WarehouseConnection(connect)
        self._statements = merge_statements(target)
        self._ledger = target.ledger_id
        self._copier = copier
        self._max_objects = max_objects
        self._clock = clock
        self.metrics = metrics or LoaderMetrics()

    def queued(self) -> list[Queued]:
        """Up to max_objects queued objects, oldest key first (S3 lists in key order)."""
        found: list[Queued] = []
        token = None
        while len(found) < self._max_objects:
            request = {"Bucket": self._bucket, "Prefix": self._queue_prefix + "/",
                       "MaxKeys": min(1000, self._max_objects - len(found))}
            if token:
                request["ContinuationToken"] = token
            page = self._s3.list_objects_v2(**request)
            for item in page.get("Contents", []):
                body = self._s3.get_object(Bucket=self._bucket, Key=item["Key"])["Body"].read()
                try:
                    found.append(Queued.of(item["Key"], body))
                except (ValueError, KeyError, TypeError) as exc:  # not ours: say so, leave it
                    log.error("load_queue.unreadable_marker", key=item["Key"], error=str(exc))
            token = page.get("NextContinuationToken")
            if not token:
                break
        return found

    def load(self) -> Load:
        """One load of what is queued now; raises SinkError (nothing committed, markers kept)."""
        started = time.perf_counter()
        try:
            queued = self.queued()
        except (ClientError, BotoCoreError) as exc:
            raise SinkError.caused_by("warehouse", f"s3://{self._bucket}/{self._queue_prefix}/", exc,
                                      "listing the load queue") from exc
        if not queued:
            return Load(0, 0, 0, 0.0, None)
        oldest = min(q.queued_at for q in queued)
        self.metrics.lag.set(max(0.0, (self._clock() - oldest).total_seconds()))
        try:
            conn = self._connection.get()
            with conn, conn.cursor() as cur:  # one transaction
                loaded, inserted, leftovers = self._load(cur, queued)
        except psycopg2.Error as exc:
            self._connection.discard()
            raise SinkError.caused_by("warehouse", "group load", exc) from exc
        self._delete([q.marker_key for q in queued] + leftovers)  # after the commit: a crash here only re-skips
        outcome = Load(len(loaded), len(queued) - len(loaded), inserted, time.perf_counter() - started, oldest)
        self.metrics.loads.inc()
        self.metrics.objects.inc(outcome.loaded)
        self.metrics.rows.inc(inserted)
        log.info("warehouse.group_load", objects=outcome.loaded, skipped=outcome.skipped, rows=inserted,
                 seconds=round(outcome.seconds, 3))
        return outcome

    def _load(self, cur, queued: list[Queued]) -> tuple[list[Queued], int, list[str]]:
        s = self._statements
        cur.execute(s["lock"])
        cur.execute(sql.SQL("SELECT object_key FROM {} WHERE object_key IN %s").format(self._ledger),
                    (tuple(q.object_key for q in queued),))
        done = {row[0] for row in cur.fetchall()}
        todo = [q for q in queued if q.object_key not in done]
        if not todo:
            return [], 0, []
        cur.execute(s["stage"])
        leftovers = self._copier.copy_all(cur, [q.object_key for q in todo])
        cur.execute(s["analyze"])
        cur.execute(s["bounds"])
        first_day, last_day = cur.fetchone()
        cur.execute(s["merge"], (first_day, last_day))
        inserted = cur.rowcount
        now = self._clock().replace(tzinfo=None)
        for entry, new_rows in zip(todo, attribute(inserted, [q.rows for q in todo])):
            cur.execute(s["record"], (entry.object_key, entry.shard_id, *entry.first, *entry.last, entry.rows,
                                      new_rows, now))
        cur.execute(s["drop"])
        return todo, inserted, leftovers

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start:start + DELETE_BATCH]
            try:
                self._s3.delete_objects(Bucket=self._bucket,
                                        Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            except (ClientError, BotoCoreError) as exc:  # the next load finds them in the ledger and tries again
                log.warning("load_queue.delete_failed", keys=len(chunk), error=str(exc))

    def run(self, stop: threading.Event, interval: float) -> None:
        """Load every `interval` seconds until `stop` is set; a failed load is
        logged, counted and tried again after a backoff (its markers wait)."""
        failures = 0
        while not stop.is_set():
            try:
                self.load()
                failures = 0
                wait = interval
            except SinkError as exc:
                failures += 1
                self.metrics.failures.inc()
                wait = min(interval, LOAD_BACKOFF.delay(failures)) if not exc.permanent else interval
                log.error("warehouse.group_load_failed", error=str(exc), code=exc.code, permanent=exc.permanent,
                          retry_in=round(wait, 1))
            stop.wait(wait)
        self._connection.discard()


def attribute(inserted: int, rows: Sequence[int]) -> list[int]:
    """A group's new rows attributed to its objects in order, each at most its
    own rows: exact in sum, and exact per object whenever the group held no
    duplicates (the usual case). Pure."""
    shares = []
    for count in rows:
        share = min(count, inserted)
        shares.append(share)
        inserted -= share
    return shares
