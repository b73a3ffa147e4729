"""The consumer's metrics, declared once, each named for the question it answers.

Every shard has its own record-processor process, so the metrics are kept in
prometheus_client's multiprocess mode: each process writes files under
PROMETHEUS_MULTIPROC_DIR (set by the supervisor) and the supervisor serves
them all on one endpoint. Per-shard gauges are "live" gauges: a shard's
series disappears with the process that held its lease.
"""

from __future__ import annotations

import time
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumer.kpl import BAD_AGGREGATE

PREFIX = "retail_consumer"


class PipelineMetrics(Protocol):
    """What a shard pipeline reports; `ShardMetrics` is the real one, tests record."""

    def received(self, count: int) -> None: ...
    def lag(self, millis_behind_latest: int) -> None: ...
    def buffered(self, count: int) -> None: ...
    def sink_written(self, sink: str, count: int, seconds: float) -> None: ...
    def sink_failed(self, sink: str, error: str) -> None: ...
    def sink_refused(self, sink: str, error: str) -> None: ...
    def flushed(self, records: int, dead_letters: dict[str, int]) -> None: ...
    def checkpointed(self, records: int) -> None: ...
    def checkpoint_failed(self, error: str) -> None: ...
    def lease(self, held: bool) -> None: ...


class NoMetrics:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def dead_letter_kind(reason: str) -> str:
    """A low-cardinality label for why a record was dead-lettered. Pure."""
    if reason.startswith(BAD_AGGREGATE):
        return "bad_aggregate"
    if reason.startswith("JSON is malformed") or "invalid character" in reason:
        return "not_json"
    if "missing required field" in reason:
        return "missing_field"
    if "unknown field" in reason:
        return "unknown_field"
    if reason.startswith("Expected"):
        return "wrong_type"
    return "invalid_value"


class ConsumerMetrics:
    """The metric objects, registered on `registry` (the default one in a
    record processor, whose values then go to the multiprocess files)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw = {"registry": registry} if registry is not None else {}
        # Is data arriving? Records the KCL delivered to this worker.
        self.records_received = Counter(f"{PREFIX}_records_received", "Records delivered by the KCL", **kw)
        # How much is done? Records durable in every sink and checkpointed.
        self.records_processed = Counter(
            f"{PREFIX}_records_processed", "Records written to every sink and checkpointed", **kw)
        # Is each sink keeping up? Records written, per sink.
        self.records_written = Counter(
            f"{PREFIX}_records_written", "Records made durable, per sink", ["sink"], **kw)
        # How much bad input? Records set aside in the dead-letter prefix, by kind.
        self.records_dead_lettered = Counter(
            f"{PREFIX}_records_dead_lettered", "Records dead-lettered, by reason", ["reason"], **kw)
        # How often do we write? Flushes made durable.
        self.batches_flushed = Counter(f"{PREFIX}_batches_flushed", "Batches flushed to every sink", **kw)
        # How big are the loads? Records per flush.
        self.flush_records = Histogram(
            f"{PREFIX}_flush_records", "Records per flushed batch",
            buckets=(1, 10, 100, 500, 1_000, 5_000, 10_000, 20_000, 50_000), **kw)
        # Which sink is slow? Duration of one successful write, per sink.
        self.sink_write_seconds = Histogram(
            f"{PREFIX}_sink_write_duration_seconds", "Duration of a batch write, per sink", ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), **kw)
        # Which sink is failing, and how? Failed write attempts (each is retried).
        self.sink_errors = Counter(
            f"{PREFIX}_sink_errors", "Failed sink writes, by sink and error", ["sink", "error"], **kw)
        # Did a sink refuse for good (access denied, a missing table)? The worker stopped.
        self.sink_refusals = Counter(
            f"{PREFIX}_sink_refusals", "Sink errors no retry fixes, which stop the worker, by sink and error",
            ["sink", "error"], **kw)
        # Is progress being recorded? Checkpoints accepted by the KCL.
        self.checkpoints = Counter(f"{PREFIX}_checkpoints", "Checkpoints accepted", **kw)
        self.checkpoint_failures = Counter(
            f"{PREFIX}_checkpoint_failures", "Checkpoints refused, by error", ["error"], **kw)
        # How far behind is each shard? The KCL's millisBehindLatest.
        self.millis_behind_latest = Gauge(
            f"{PREFIX}_millis_behind_latest", "Milliseconds behind the tip of the shard", ["shard_id"],
            multiprocess_mode="livemax", **kw)
        # How old is each shard's last checkpoint? (age: time() - this)
        self.last_checkpoint = Gauge(
            f"{PREFIX}_last_checkpoint_timestamp_seconds", "When the shard was last checkpointed",
            ["shard_id"], multiprocess_mode="livemax", **kw)
        # What would a crash make us re-read? Records buffered, not yet durable.
        self.records_buffered = Gauge(
            f"{PREFIX}_records_buffered", "Records buffered and not yet flushed", ["shard_id"],
            multiprocess_mode="livemax", **kw)
        # How many shards does this worker own?
        self.leases_held = Gauge(
            f"{PREFIX}_leases_held", "Shard leases held by this worker", multiprocess_mode="livesum", **kw)


class ShardMetrics:
    """ConsumerMetrics seen from one shard's pipeline."""

    def __init__(self, metrics: ConsumerMetrics, shard_id: str, clock=time.time) -> None:
        self._m = metrics
        self._shard = shard_id
        self._clock = clock

    def received(self, count: int) -> None:
        self._m.records_received.inc(count)

    def lag(self, millis_behind_latest: int) -> None:
        self._m.millis_behind_latest.labels(self._shard).set(millis_behind_latest)

    def buffered(self, count: int) -> None:
        self._m.records_buffered.labels(self._shard).set(count)

    def sink_written(self, sink: str, count: int, seconds: float) -> None:
        self._m.records_written.labels(sink).inc(count)
        self._m.sink_write_seconds.labels(sink).observe(seconds)

    def sink_failed(self, sink: str, error: str) -> None:
        self._m.sink_errors.labels(sink, error).inc()

    def sink_refused(self, sink: str, error: str) -> None:
        self._m.sink_refusals.labels(sink, error).inc()

    def flushed(self, records: int, dead_letters: dict[str, int]) -> None:
        self._m.batches_flushed.inc()
        self._m.flush_records.observe(records + sum(dead_letters.values()))
        for kind, count in dead_letters.items():
            self._m.records_dead_lettered.labels(kind).inc(count)

    def checkpointed(self, records: int) -> None:
        self._m.checkpoints.inc()
        self._m.records_processed.inc(records)
        self._m.last_checkpoint.labels(self._shard).set(self._clock())

    def checkpoint_failed(self, error: str) -> None:
        self._m.checkpoint_failures.labels(error).inc()

    def lease(self, held: bool) -> None:
        self._m.leases_held.set(1 if held else 0)
        if not held:
            self._m.records_buffered.labels(self._shard).set(0)
