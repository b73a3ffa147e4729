"""The consumer against the emulator and PostgreSQL: the real one (the KCL
daemon, batches, every sink, checkpoints) draining the stream, against the
naive way, every record written on its own to each sink."""

from __future__ import annotations

import os
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from bench.producer import Throughput
from consumer.sinks.batch_write import BatchWriter
from consumer.sinks.dynamodb import to_item, write_calls
from local_stack import census
from retail_stream import aws
from retail_stream.schema import decode, encode
from retail_stream.settings import Settings

NAIVE_TABLE = "naive_transactions"
NAIVE_PREFIX = "naive"


@dataclass(frozen=True)
class Drain:
    throughput: Throughput
    copies: int
    s3_objects: int
    jvm_cpu_seconds: float  # the KCL daemon's, while draining
    processors_cpu_seconds: float  # the record processors' (boto3 and HTTP to the emulator included)
    emulator_cpu_seconds: float  # the emulator's, while draining (every service it plays)


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) `pid` has used so far (its threads' too); 0 without one. Reads /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of `root`'s descendants, by kind:
    "jvm" (java) and "processors" (the Python processes the JVM starts). Reads /proc."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:  # gone since the listing
                continue
            comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            stats[int(entry.name)] = (comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK"))
    found = {"jvm": 0.0, "processors": 0.0}
    for pid, (comm, parent, seconds) in stats.items():
        if parent == root and comm == "java":
            found["jvm"] += seconds
            found["processors"] += sum(s for _, (c, p, s) in stats.items() if p == pid and c.startswith("python"))
    return found


def lease_table(settings: Settings) -> dict[str, dict]:
    """The KCL's leases by shard: owner and checkpoint ({} before the table exists)."""
    client = aws.client("dynamodb", settings)
    try:
        items = client.scan(TableName=settings.kcl_application_name)["Items"]
    except client.exceptions.ResourceNotFoundException:
        return {}
    return {i["leaseKey"]["S"]: {"owner": i.get("leaseOwner", {}).get("S"),
                                 "checkpoint": i.get("checkpoint", {}).get("S")} for i in items}


def drain(settings: Settings, consumer: subprocess.Popen, emulator_pid: int | None = None,
          timeout: float = 900) -> Drain:
    """Wait for the running consumer to checkpoint every shard's last record.
    The clock starts once it holds every lease (the daemon's start-up and
    lease taking are not throughput), and stops at the last checkpoint."""
    last = {shard: records[-1]["SequenceNumber"] for shard, records in census.stream_records(settings).items()
            if records}
    records = census.kinesis_records(settings)
    deadline = time.monotonic() + timeout
    leased_at = None
    while time.monotonic() < deadline:
        if consumer.poll() is not None:
            raise SystemExit(f"the consumer exited with {consumer.returncode}")
        leases = lease_table(settings)
        if leased_at is None and last.keys() <= {s for s, lease in leases.items() if lease["owner"]}:
            leased_at, cpu_at = time.perf_counter(), tree_cpu_seconds(consumer.pid)
            emulator_at = process_cpu_seconds(emulator_pid)
        if leased_at is not None and all(leases.get(s, {}).get("checkpoint") == seq for s, seq in last.items()):
            seconds = time.perf_counter() - leased_at
            cpu = tree_cpu_seconds(consumer.pid)
            return Drain(Throughput(records, seconds), ledger_rows(settings), object_count(settings),
                         cpu["jvm"] - cpu_at["jvm"], cpu["processors"] - cpu_at["processors"],
                         process_cpu_seconds(emulator_pid) - emulator_at)
        time.sleep(0.25)
    raise SystemExit(f"the consumer did not drain the stream in {timeout:.0f} s")


def ledger_rows(settings: Settings) -> int:
    """One row per COPY that loaded an object."""
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(settings.warehouse_schema, "load_ledger")))
        (rows,) = cur.fetchone()
    conn.close()
    return rows


def object_count(settings: Settings, prefix: str | None = None) -> int:
    s3 = aws.client("s3", settings)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=(prefix or settings.s3_raw_prefix) + "/")
    return sum(page.get("KeyCount", 0) for page in pages)


def naive_consume(settings: Settings, stream: str, limit: int) -> Throughput:
    """Read the stream and write each record on its own: one PutItem, one
    PutObject and one INSERT (committed) per record, as such consumers
    usually are. Into a table and a prefix of its own."""
    kinesis, dynamodb, s3 = (aws.client(name, settings, validate=False) for name in ("kinesis", "dynamodb", "s3"))
    conn = psycopg2.connect(settings.warehouse_dsn)
    schema = sql.Identifier(settings.warehouse_schema)
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (LIKE {}.{})").format(
            schema, sql.Identifier(NAIVE_TABLE), schema, sql.Identifier(settings.warehouse_table)))
    insert = sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
        schema, sql.Identifier(NAIVE_TABLE))
    done = 0
    started = time.perf_counter()
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator and done < limit:
            response = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            if not response["Records"]:
                break
            for entry in response["Records"][: limit - done]:
                record = decode(entry["Data"])
                dynamodb.put_item(TableName=settings.dynamodb_table, Item=to_item(record))
                s3.put_object(Bucket=settings.s3_bucket, Key=f"{NAIVE_PREFIX}/{entry['SequenceNumber']}.json",
                              Body=encode(record))
                with conn.cursor() as cur:
                    cur.execute(insert, tuple(getattr(record, f) for f in record.__struct_fields__))
                conn.commit()
                done += 1
            iterator = response.get("NextShardIterator")
    seconds = time.perf_counter() - started
    conn.close()
    return Throughput(done, seconds)


@dataclass(frozen=True)
class Ceiling:
    throughput: Throughput
    emulator_cpu_seconds: float


def dynamodb_ceiling(settings: Settings, records: list, concurrency: int = 16,
                     emulator_pid: int | None = None) -> Ceiling:
    """What the DynamoDB endpoint itself takes: the consumer's own items,
    sent the consumer's way (its request bodies, through consumer.sinks.batch_write
    over the service's client), `concurrency` calls at a time, nothing else.
    The drain cannot beat this on the same endpoint; on the emulator it is
    what bounds it. With the emulator's CPU meanwhile: its cost an item."""
    writer = BatchWriter(aws.client("dynamodb", settings, validate=False), settings.dynamodb_table)
    calls = list(write_calls(settings.dynamodb_table, records))
    emulator_at = process_cpu_seconds(emulator_pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda call: writer.send(call.body), calls))
    return Ceiling(Throughput(sum(call.items for call in calls), time.perf_counter() - started),
                   process_cpu_seconds(emulator_pid) - emulator_at)
