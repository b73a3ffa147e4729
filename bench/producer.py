"""The producer against the emulator: the real replay (PutRecords, 500 a
call; and with --aggregate, KPL aggregates) against the naive way, one
PutRecord per row."""

from __future__ import annotations

import json
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from producer.csv_source import read_rows
from retail_stream import aws
from retail_stream.schema import InvalidRecord, encode, parse_row
from retail_stream.settings import Settings


@dataclass(frozen=True)
class Throughput:
    records: int
    seconds: float
    calls: int = 0  # PutRecords (or PutRecord) calls it took

    @property
    def per_second(self) -> float:
        return self.records / self.seconds

    @property
    def calls_per_100k(self) -> float:
        return self.calls * 100_000 / self.records


# Kinesis bills PutRecords by PUT payload units: every record, in 25 KB chunks, rounded up.
PAYLOAD_UNIT_BYTES = 25 * 1024


def payload_units(records: list[dict]) -> int:
    """PUT payload units of these records (GetRecords' shape). Pure."""
    return sum(-(-(len(r["Data"]) + len(r["PartitionKey"].encode())) // PAYLOAD_UNIT_BYTES) for r in records)


def replay(csv: Path, env: dict, rejects: Path, *args: str) -> Throughput:
    """`python -m producer` over the file; its own summary says how long the
    replay took (interpreter start-up left out)."""
    done = subprocess.run(  # nosec B603: our argv, no shell
        [sys.executable, "-m", "producer", str(csv), "--rejects", str(rejects), "--no-metrics", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the producer failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return Throughput(summary["sent"], summary["seconds"], summary["calls"])


def naive_replay(csv: Path, settings: Settings, stream: str, rows: int) -> Throughput:
    """The first `rows` rows, each parsed like the producer does and sent
    with its own PutRecord call."""
    kinesis = aws.client("kinesis", settings, validate=False)  # as the real producer
    sent = 0
    started = time.perf_counter()
    for line, fields in read_rows(csv):
        if line > rows + 1:
            break
        try:
            record = parse_row(fields, csv.name, line)
        except InvalidRecord:
            continue
        kinesis.put_record(StreamName=stream, Data=encode(record), PartitionKey=record.partition_key)
        sent += 1
    return Throughput(sent, time.perf_counter() - started, sent)
