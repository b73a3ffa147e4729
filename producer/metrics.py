"""The producer's metrics, declared once, each named for the question it answers.

The writer and the replay report through `ProducerMetrics`; tests pass a
fresh `CollectorRegistry`, the CLI uses the default one and serves it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from retail_stream.schema import CSV_COLUMNS

PREFIX = "retail_producer"

# WriterStats field -> the counter it feeds.
_STAT_COUNTERS = {
    "calls": "put_records_calls",
    "records_sent": "records_sent",
    "bytes_sent": "bytes_sent",
    "retried": "retries",
    "throttled": "throttles",
    "rerouted": "rows_rerouted",
}


def reject_kind(reason: str) -> str:
    """A low-cardinality label for a rejected row: the column its reason
    names, `field_count`, `too_large` or `other`; never the value. Pure."""
    for column in CSV_COLUMNS:
        if reason.startswith(column):
            return column
    if reason.startswith("expected") and "fields" in reason:
        return "field_count"
    if "too large" in reason or "MiB" in reason or "bytes" in reason:
        return "too_large"
    return "other"


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        kw = {"registry": registry} if registry is not None else {}
        # How much of the input have we read?
        self.rows_read = Counter(f"{PREFIX}_rows_read", "CSV data rows read", **kw)
        # How much got into the stream?
        self.records_sent = Counter(f"{PREFIX}_records_sent", "Rows Kinesis accepted (aggregated or not; rerouted rows count again)", **kw)
        # Did a reshard make aggregated rows land where the KCL drops them?
        self.rows_rerouted = Counter(
            f"{PREFIX}_rows_rerouted", "Aggregated rows sent again: their aggregate landed on a shard that drops them",
            **kw)
        # How much bad input, and of which kind?
        self.rows_rejected = Counter(f"{PREFIX}_rows_rejected", "Rows set aside in the rejects file", ["reason"], **kw)
        # How many calls does it take?
        self.put_records_calls = Counter(f"{PREFIX}_put_records_calls", "PutRecords calls, retries included", **kw)
        # Which errors does Kinesis answer entries with?
        self.failed_entries = Counter(
            f"{PREFIX}_failed_entries", "Entries refused in a PutRecords answer", ["error_code"], **kw)
        # How hard is the stream pushing back?
        self.retries = Counter(f"{PREFIX}_retries", "Entries sent again after a refusal", **kw)
        self.throttles = Counter(f"{PREFIX}_throttles", "Entries refused as over the shard's limit", **kw)
        self.bytes_sent = Counter(f"{PREFIX}_bytes_sent", "Data and partition-key bytes accepted", **kw)
        # Is Kinesis slow to answer?
        self.put_records_seconds = Histogram(
            f"{PREFIX}_put_records_duration_seconds", "Duration of one PutRecords call",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), **kw)
        # Are batches full?
        self.batch_records = Histogram(
            f"{PREFIX}_batch_records", "Entries per PutRecords call",
            buckets=(1, 5, 10, 25, 50, 100, 200, 300, 400, 500), **kw)
        # How far along is the replay?
        self.replay_rows_done = Gauge(f"{PREFIX}_replay_rows_done", "Rows of the replay handled so far", **kw)
        self.replay_rows_total = Gauge(
            f"{PREFIX}_replay_rows_total", "Rows the replay will handle (one pass when looping forever)", **kw)

    def count(self, **increments: int) -> None:
        """Feed the writer's stat increments (WriterStats field names) to their counters."""
        for name, value in increments.items():
            counter = _STAT_COUNTERS.get(name)
            if counter and value:
                getattr(self, counter).inc(value)

    def put_records_call(self, seconds: float, entries: int) -> None:
        self.put_records_seconds.observe(seconds)
        self.batch_records.observe(entries)

    def entries_failed(self, error_code: str, count: int = 1) -> None:
        self.failed_entries.labels(error_code).inc(count)

    def row_read(self, done: int) -> None:
        self.rows_read.inc()
        self.replay_rows_done.set(done)

    def row_rejected(self, reason: str) -> None:
        self.rows_rejected.labels(reject_kind(reason)).inc()

    def replay_total(self, rows: int) -> None:
        self.replay_rows_total.set(rows)


class NoProducerMetrics(ProducerMetrics):
    """Counts nothing: for writers and replays nobody scrapes."""

    def __init__(self) -> None:
        pass

    def count(self, **increments: int) -> None:
        pass

    def put_records_call(self, seconds: float, entries: int) -> None:
        pass

    def entries_failed(self, error_code: str, count: int = 1) -> None:
        pass

    def row_read(self, done: int) -> None:
        pass

    def row_rejected(self, reason: str) -> None:
        pass

    def replay_total(self, rows: int) -> None:
        pass
