"""End-to-end latency: from a record's PutRecords call returning to the
record being readable in DynamoDB, at a steady rate, through the running
consumer."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

import msgspec

from producer.aggregation import ShardMap, aggregate_batches
from producer.batching import Entry
from producer.kinesis_writer import request_entry
from retail_stream import aws
from retail_stream.schema import Transaction, encode, event_id
from retail_stream.settings import Settings

PUT_EVERY_SECONDS = 0.1
POLL_EVERY_SECONDS = 0.05


@dataclass(frozen=True)
class Latency:
    records: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def measure(settings: Settings, template: Transaction, rate: int, seconds: float, timeout: float = 120,
            aggregate: bool = False) -> Latency:
    """Put `rate` records a second for `seconds` (batches every 0.1 s, as
    plain records or, with `aggregate`, as the producer's KPL aggregates: one
    per shard a batch); a second thread reads them back with BatchGetItem
    until each is there."""
    kinesis, dynamodb = aws.client("kinesis", settings), aws.client("dynamodb", settings)
    shard_map = ShardMap.load(kinesis, settings.stream_name) if aggregate else None
    per_put = max(1, round(rate * PUT_EVERY_SECONDS))
    put_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    lock = threading.Lock()
    writing = threading.Event()
    writing.set()

    def poll() -> None:
        deadline = None
        while True:
            with lock:
                waiting = [k for k in put_at if k not in seen_at]
            if not writing.is_set():
                deadline = deadline or time.monotonic() + timeout
                if not waiting or time.monotonic() > deadline:
                    return
            for start in range(0, len(waiting), 100):
                keys = [{"invoice_no": {"S": template.invoice_no}, "event_id": {"S": k}}
                        for k in waiting[start:start + 100]]
                found = dynamodb.batch_get_item(RequestItems={settings.dynamodb_table: {
                    "Keys": keys, "ProjectionExpression": "event_id"}})["Responses"][settings.dynamodb_table]
                now = time.perf_counter()
                with lock:
                    for item in found:
                        seen_at.setdefault(item["event_id"]["S"], now)
            time.sleep(POLL_EVERY_SECONDS)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    line = 0
    next_put = time.perf_counter()
    stop_at = next_put + seconds
    while next_put < stop_at:
        records = []
        for _ in range(per_put):
            line += 1
            records.append(_copy(template, line))
        entries = [Entry(encode(r), f"i{r.line % 16}") for r in records]
        if shard_map is not None:
            entries = [e for batch in aggregate_batches(entries, shard_map) for e in batch]
        kinesis.put_records(StreamName=settings.stream_name, Records=[request_entry(e) for e in entries])
        now = time.perf_counter()
        with lock:
            put_at.update((r.event_id, now) for r in records)
        next_put += PUT_EVERY_SECONDS
        time.sleep(max(0.0, next_put - time.perf_counter()))
    writing.clear()
    poller.join()
    latencies = sorted((seen_at[k] - put_at[k]) * 1000 for k in seen_at)
    if len(latencies) < len(put_at):
        raise SystemExit(f"{len(put_at) - len(latencies)} records never showed up in DynamoDB")
    cuts = statistics.quantiles(latencies, n=100)
    return Latency(len(latencies), len(latencies) / seconds, cuts[49], cuts[98], latencies[-1])


def _copy(template: Transaction, line: int) -> Transaction:
    return msgspec.structs.replace(template, line=line, event_id=event_id(template.source, line))
