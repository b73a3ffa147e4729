"""The record processor alone: its CPU cost per record and its peak memory.

The whole processor runs, as the MultiLangDaemon drives it: amazon_kclpy's
KCLProcess reads processRecords messages (JSON, base64 data) and answers
checkpoints, our RecordProcessor decodes and validates each record, buffers
it, and flushes batches through the real sinks, which serialize for
DynamoDB (request bodies), S3 (gzip NDJSON) and the warehouse. Two ways:

- own work (`processor_us_per_record`): the sinks' clients are fakes that
  record the calls, so what is measured is the processor's own work;
- all in (`processor_all_in_us_per_record`, `all_in=True`): the service's
  real botocore clients, answered without a network (bench/transport.py),
  and psycopg2 on the local PostgreSQL: what a task pays, but for the HTTP
  exchange itself.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
import json
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


import msgspec
from prometheus_client import CollectorRegistry

from bench import transport
from bench.consumer import ledger_rows

from consumer.metrics import ConsumerMetrics
from consumer.pipeline import ShardPipeline
from consumer.record_processor import RecordProcessor, kcl_process
from consumer.wiring import Clients, build_pipeline, build_sinks
from retail_stream.schema import encode, event_id
from retail_stream.settings import Settings

SHARD = "shardId-000000000000"
RECORDS_PER_MESSAGE = 1000  # what one GetRecords call hands the daemon, give or take


class RecordingDynamoDB:
    """The DynamoDB sink's writer (an ItemWriter), recording the bodies' calls and items."""

    def __init__(self) -> None:
        self.calls = 0
        self.items = 0
        self._counting = threading.Lock()  # the sink's workers send at once

    def send(self, body: bytes) -> dict:
        items = body.count(b'{"PutRequest": ')  # the key is escaped inside any value
        with self._counting:
            self.calls += 1
            self.items += items
        return {}


class RecordingS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def put_object(self, Bucket, Key, Body, **_):
        self.puts += 1
        self.objects[Key] = Body
        return {}

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Key])}


class RecordingCursor:
    rowcount = 0

    def __init__(self, connection: "RecordingConnection") -> None:
        self._connection = connection
        self._last = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, statement, params=None):
        self._connection.statements += 1
        self._last = str(statement)[:200]
        if "COPY" in self._last:
            self._connection.copies += 1

    def fetchone(self):
        if "MIN(invoice_date)" in self._last:
            return (None, None)  # the stage's range: nothing recorded here
        return None  # the ledger has never seen the object

    def copy_expert(self, statement, file):
        self._connection.copies += 1
        self.rowcount = file.read().count("\n")


class RecordingConnection:
    closed = False

    def __init__(self) -> None:
        self.statements = 0
        self.copies = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def cursor(self):
        return RecordingCursor(self)


@dataclass
class Recorders:
    dynamodb: RecordingDynamoDB
    s3: RecordingS3
    warehouse: RecordingConnection


def bench_settings(settings: Settings, dialect: str) -> Settings:
    """`dialect` "redshift": the COPY is one statement (Redshift reads the
    object); "postgres": the processor reads it back and makes COPY text."""
    return dataclasses.replace(settings, warehouse_dialect=dialect,
                               redshift_iam_role="arn:aws:iam::123456789012:role/bench")


def recording_sinks(settings: Settings, dialect: str) -> tuple[list, Recorders]:
    """The consumer's sinks, wired as the service wires them, over recording clients."""
    recorders = Recorders(RecordingDynamoDB(), RecordingS3(), RecordingConnection())
    clients = Clients(s3=recorders.s3, dynamodb=recorders.dynamodb, connect_warehouse=lambda: recorders.warehouse)
    return build_sinks(bench_settings(settings, dialect), clients).in_order(), recorders


ALL_IN_SCHEMA = "bench_all_in"


def all_in_sinks(settings: Settings, dialect: str) -> tuple[list, transport.AnsweringSession]:
    """The consumer's sinks over the service's real clients (bench/transport.py),
    the warehouse an empty schema of the local PostgreSQL at `settings.warehouse_dsn`."""
    settings = transport.fresh_warehouse(bench_settings(settings, dialect), ALL_IN_SCHEMA)
    session = transport.AnsweringSession()
    return build_sinks(settings, transport.all_in_clients(settings, session)).in_order(), session


class ScriptedDaemon:
    """Both ends of the protocol pipe: hands out the daemon's messages line by
    line and answers every checkpoint request the processor writes at once."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._pending_ack: str | None = None
        self.checkpoints = 0

    def readline(self) -> str:
        if self._pending_ack is not None:
            ack, self._pending_ack = self._pending_ack, None
            return ack
        return next(self._lines, "")

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith('{"action": "checkpoint"'):
                request = json.loads(line)
                self.checkpoints += 1
                self._pending_ack = json.dumps({"action": "checkpoint", "sequenceNumber": request["sequenceNumber"],
                                                "subSequenceNumber": request["subSequenceNumber"]}) + "\n"

    def flush(self) -> None:
        pass


def daemon_lines(payloads: Iterable[bytes], arrival_ms: int = 1_700_000_000_000) -> Iterator[str]:
    """The MultiLangDaemon's messages for one shard, made as they are read (one
    message in memory at a time, as from a pipe): initialize, the records in
    processRecords messages, then shutdownRequested."""
    yield json.dumps({"action": "initialize", "shardId": SHARD, "sequenceNumber": "TRIM_HORIZON",
                      "subSequenceNumber": 0}) + "\n"
    payloads = iter(payloads)
    start = 0
    while chunk := list(itertools.islice(payloads, RECORDS_PER_MESSAGE)):
        records = [
            {"action": "record", "data": base64.b64encode(data).decode(), "partitionKey": "c17850",
             "sequenceNumber": str(49_000_000_000 + start + i), "subSequenceNumber": 0,
             "approximateArrivalTimestamp": arrival_ms}
            for i, data in enumerate(chunk)
        ]
        start += len(chunk)
        yield json.dumps({"action": "processRecords", "millisBehindLatest": 0, "records": records}) + "\n"
    yield json.dumps({"action": "shutdownRequested"}) + "\n"


@dataclass(frozen=True)
class ProcessorRun:
    records: int
    cpu_seconds: float
    wall_seconds: float
    checkpoints: int
    dynamodb_calls: int
    s3_objects: int
    copies: int

    @property
    def us_per_record(self) -> float:
        return self.cpu_seconds / self.records * 1e6


def run_processor(
    payloads: Iterable[bytes], settings: Settings, dialect: str = "redshift", *, streamed: bool = False,
    all_in: bool = False,
) -> ProcessorRun:
    """Drive the whole processor over `payloads` (one shard); blocking. The
    daemon's messages are made before the clock starts, or with `streamed`
    as they are read (for memory: one message at a time, as from the pipe;
    the CPU time then includes making them). `all_in`: over the service's
    real clients (needs the local PostgreSQL), else over recording ones."""
    if all_in:
        transport.RedshiftOnPostgres.copies = 0
        sinks, session = all_in_sinks(settings, dialect)
    else:
        sinks, recorders = recording_sinks(settings, dialect)

    def build(shard_id: str) -> ShardPipeline:
        # The service's metrics too, on a registry of the run's own.
        return build_pipeline(settings, shard_id, sinks, ConsumerMetrics(CollectorRegistry()))

    lines = daemon_lines(payloads)
    daemon = ScriptedDaemon(lines if streamed else list(lines))
    process = kcl_process(RecordProcessor(build), input_file=daemon, output_file=daemon,
                             error_file=io.StringIO())
    cpu, wall = time.process_time(), time.perf_counter()
    process.run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if all_in:
        copies = (transport.RedshiftOnPostgres.copies if dialect == "redshift"  # else a ledger row a COPY
                  else ledger_rows(dataclasses.replace(settings, warehouse_schema=ALL_IN_SCHEMA)))
        return ProcessorRun(session.dynamodb_items, cpu, wall, daemon.checkpoints, session.dynamodb_calls,
                            session.s3_puts, copies)
    return ProcessorRun(recorders.dynamodb.items, cpu, wall, daemon.checkpoints, recorders.dynamodb.calls,
                        recorders.s3.puts, recorders.warehouse.copies)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far: VmHWM, not getrusage's
    ru_maxrss, which a child inherits from the parent it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def payloads_of(records) -> list[bytes]:
    return [encode(r) for r in records]


def main() -> None:
    """`python -m bench.processor ROWS [--all-in]`: one run in a fresh
    process, the messages streamed as from the daemon's pipe; prints one
    JSON line with the peak memory before and after the run. `--all-in`:
    over the service's real clients (needs the local stack's PostgreSQL)."""
    import sys

    from bench.data import SAMPLE, valid_records
    from retail_stream import logs

    rows = int(sys.argv[1])
    logs.configure("WARNING", io.StringIO())
    settings = Settings.from_env()
    sample = valid_records(SAMPLE, "rss")

    def payloads() -> Iterator[bytes]:
        for n in range(rows):
            template = sample[n % len(sample)]
            yield encode(msgspec.structs.replace(template, line=n + 1, event_id=event_id("rss", n + 1)))

    before = peak_rss_mb()
    all_in = "--all-in" in sys.argv[2:]
    run = run_processor(payloads(), settings, settings.warehouse_dialect, streamed=True, all_in=all_in)
    print(json.dumps({"records": run.records, "dialect": settings.warehouse_dialect, "all_in": all_in,
                      "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                      "flush_max_records": settings.flush_max_records, "flush_max_bytes": settings.flush_max_bytes}))


if __name__ == "__main__":
    main()
