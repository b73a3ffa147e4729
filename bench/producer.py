"""The producer against the emulator: the real replay (PutRecords, 500 a
call) against the naive way, one PutRecord per row."""

from __future__ import annotations

import json
import subprocess
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

    @property
    def per_second(self) -> float:
        return self.records / self.seconds


def replay(csv: Path, env: dict, rejects: Path) -> Throughput:
    """`python -m producer` over the file; its own summary says how long the
    replay took (interpreter start-up left out)."""
    done = subprocess.run(
        [sys.executable, "-m", "producer", str(csv), "--rejects", str(rejects), "--no-metrics"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the producer failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return Throughput(summary["sent"], summary["seconds"])


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
    return Throughput(sent, time.perf_counter() - started)
