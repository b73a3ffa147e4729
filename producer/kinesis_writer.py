"""Sending batches with PutRecords until Kinesis holds every entry.

A PutRecords call can partly fail: `FailedRecordCount` > 0 and an `ErrorCode`
on each refused entry (`ProvisionedThroughputExceededException` when a shard
is over its write limit, `InternalFailure`). Only those entries are sent
again, in their original order, after a backoff (retail_stream.retries), for
a bounded number of attempts. The writer knows nothing about
CSV files or transactions, so any sender (the replay, an HTTP API) can use it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from producer.batching import Entry
from producer.metrics import NoProducerMetrics, ProducerMetrics
from retail_stream import retries
from retail_stream.retries import Backoff
from retail_stream.settings import Settings

log = structlog.get_logger(__name__)

THROTTLED = "ProvisionedThroughputExceededException"

# Refused entries: PUT_RECORDS_ATTEMPTS calls in all (8), waits from up to 0.1 s doubling to 5 s.
PUT_RECORDS_BACKOFF = Backoff(base=0.1, cap=5.0, attempts=Settings.put_records_attempts)


@dataclass(frozen=True)
class FailedEntry:
    """An entry Kinesis did not accept on the last attempt, and why."""

    entry: Entry
    error_code: str
    error_message: str


class DeliveryError(Exception):
    """Some entries were still refused after the last attempt, or the call
    failed in a way no retry can fix. `failed` lists the entries not written
    (in their original order); the others of the batch were written."""

    def __init__(self, message: str, failed: Sequence[FailedEntry], attempts: int) -> None:
        super().__init__(message)
        self.failed = tuple(failed)
        self.attempts = attempts

    def __str__(self) -> str:
        codes: dict[str, int] = {}
        for failure in self.failed:
            codes[failure.error_code] = codes.get(failure.error_code, 0) + 1
        if not self.failed:
            return self.args[0]
        summary = ", ".join(f"{code} x{count}" for code, count in sorted(codes.items()))
        return f"{self.args[0]} ({len(self.failed)} entries not written: {summary})"


@dataclass
class WriterStats:
    """What the writer has done, for the operator's questions: how much got
    through, and how hard the stream pushed back."""

    calls: int = 0  # PutRecords calls made, including retries
    records_sent: int = 0  # rows in the entries Kinesis accepted (an aggregate holds many)
    bytes_sent: int = 0  # data + partition key bytes of the accepted entries
    retried: int = 0  # entries sent again after being refused (once per re-send)
    throttled: int = 0  # refusals for ProvisionedThroughputExceededException (shard over its limit)
    failed: int = 0  # entries given up on (reported in a DeliveryError)
    rerouted: int = 0  # rows sent again: their aggregate landed on a shard that drops them (a reshard)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class BatchResult:
    """One delivered batch: every entry written, after `attempts` calls."""

    records: int
    bytes: int
    attempts: int
    sequence_numbers: tuple[str, ...]
    shard_ids: tuple[str, ...]  # where each entry landed


class KinesisWriter:
    """Writes batches to one stream with PutRecords.

    `client` is a boto3 Kinesis client (or anything with its `put_records`).
    Safe to share between threads (boto3 clients are; the stats are locked),
    but each `put_batch` blocks its caller until the batch is written.
    """

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        backoff: Backoff = PUT_RECORDS_BACKOFF,
        sleep: Callable[[float], object] = time.sleep,
        metrics: ProducerMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._client = client
        self.stream_name = stream_name
        self._backoff = backoff
        self._sleep = sleep
        self._lock = threading.Lock()
        self._metrics = metrics or NoProducerMetrics()
        self._clock = clock
        self.stats = WriterStats()

    def put_batch(self, entries: Sequence[Entry]) -> BatchResult:
        """Write `entries` (at most one PutRecords call's worth) and block until
        Kinesis has accepted every one.

        Refused entries are re-sent, keeping their original relative order, as
        long as the backoff allows. Raises DeliveryError when entries are
        still refused after the last attempt, or at once for a call error no
        retry can fix (missing stream, access denied, invalid request). Not
        idempotent: calling it again re-sends the batch, which readers absorb
        only if records carry their own ids (ours carry event_id).
        """
        pending = list(range(len(entries)))  # indexes into entries, in order
        sequence_numbers: list[str | None] = [None] * len(entries)
        shard_ids: list[str | None] = [None] * len(entries)
        failures: list[FailedEntry] = []
        attempt = 0
        while pending:
            attempt += 1
            if attempt > 1:
                self._count(retried=len(pending))
                self._sleep(self._backoff.delay(attempt - 1))
            batch = [entries[i] for i in pending]
            results = self._call(batch, attempt)
            failures, still_pending = [], []
            for index, result in zip(pending, results):
                code = result.get("ErrorCode")
                if code:
                    failures.append(FailedEntry(entries[index], code, result.get("ErrorMessage", "")))
                    still_pending.append(index)
                else:
                    sequence_numbers[index] = result.get("SequenceNumber", "")
                    shard_ids[index] = result.get("ShardId", "")
            for failure in failures:
                self._metrics.entries_failed(failure.error_code)
            refused = set(still_pending)
            accepted = [entries[i] for i in pending if i not in refused]
            self._count(
                records_sent=sum(e.rows for e in accepted),
                bytes_sent=sum(e.size for e in accepted),
                throttled=sum(1 for f in failures if f.error_code == THROTTLED),
            )
            pending = still_pending
            if pending:
                log.warning(
                    "put_records.partial_failure",
                    stream=self.stream_name,
                    attempt=attempt,
                    failed=len(pending),
                    of=len(batch),
                    codes=sorted({f.error_code for f in failures}),
                )
                if not self._backoff.allows(attempt):
                    self._count(failed=len(pending))
                    raise DeliveryError(
                        f"PutRecords to {self.stream_name}: entries still refused after {attempt} attempts",
                        failures,
                        attempt,
                    )
        return BatchResult(
            records=len(entries),
            bytes=sum(e.size for e in entries),
            attempts=attempt,
            sequence_numbers=tuple(s or "" for s in sequence_numbers),
            shard_ids=tuple(s or "" for s in shard_ids),
        )

    def note_rerouted(self, rows: int) -> None:
        """Count rows a sender sends again because the shard they landed on drops them."""
        self._count(rerouted=rows)

    def _call(self, batch: list[Entry], attempt: int) -> list[dict]:
        """One PutRecords call; returns one result per entry, in order. A
        retryable whole-call error counts as every entry refused with that code."""
        self._count(calls=1)
        started = self._clock()
        try:
            response = self._client.put_records(
                StreamName=self.stream_name,
                Records=[request_entry(e) for e in batch],
            )
            self._metrics.put_records_call(self._clock() - started, len(batch))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "ClientError"), error.get("Message", str(exc))
            if retries.permanent(exc):
                self._count(failed=len(batch))
                raise DeliveryError(
                    f"PutRecords to {self.stream_name} failed: {code}: {message}",
                    [FailedEntry(e, code, message) for e in batch],
                    attempt,
                ) from exc
            return [{"ErrorCode": code, "ErrorMessage": message}] * len(batch)
        except BotoCoreError as exc:  # connection refused, timeouts: botocore gave up already
            return [{"ErrorCode": type(exc).__name__, "ErrorMessage": str(exc)}] * len(batch)
        results = response.get("Records", [])
        if len(results) != len(batch):
            self._count(failed=len(batch))
            raise DeliveryError(
                f"PutRecords to {self.stream_name}: {len(results)} results for {len(batch)} records",
                [FailedEntry(e, "MalformedResponse", "result count mismatch") for e in batch],
                attempt,
            )
        return results

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)
        self._metrics.count(**increments)


def request_entry(entry: Entry) -> dict:
    """One entry of a PutRecords request. Pure."""
    if entry.explicit_hash_key is None:
        return {"Data": entry.data, "PartitionKey": entry.partition_key}
    return {"Data": entry.data, "PartitionKey": entry.partition_key, "ExplicitHashKey": entry.explicit_hash_key}
