"""The warehouse load at a year's volume: seconds per load of one batch of
the default size (FLUSH_MAX_RECORDS rows) into a table pre-filled to 100k,
1M and 10M rows, on the local PostgreSQL, through the project's own load
(consumer/sinks/warehouse.py: stage, COPY, merge, ledger) and its own DDL.

    python -m bench.warehouse [--sizes 100000,1000000,10000000] [--loads 3]

The pre-filled rows are a year of invoices, spread evenly over the data
set's dates; the loaded batches are real-shaped rows (bench/data.py) whose
dates fall inside that year, so the merge's duplicate check meets a full
range of rows, as a replay of an old batch would. The figure per size is the
best of `--loads` loads; `warehouse_load_growth` is the largest table's
figure over the smallest's (1.0: a load costs the same whatever the table holds).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time

import msgspec
import psycopg2
from psycopg2 import sql

from bench import data
from consumer.batch import Batch, Position
from consumer.sinks.warehouse import Target
from consumer.wiring import Clients, build_group_loader, build_sinks
from local_stack.provision import ensure_warehouse
from retail_stream.settings import Settings

SIZES = (100_000, 1_000_000, 10_000_000)
LOADS = 3
SCHEMA = "bench_warehouse"
# A year of invoices (the data set's own span), rows spread evenly over it.
FIRST_DAY, DAYS = "2010-12-01", 374


class MemoryS3:
    """The raw zone held in memory: what is measured is the warehouse's load."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket, Key, Body, **_):  # noqa: N803 (boto3's names)
        self.objects[Key] = Body
        return {}

    def get_object(self, Bucket, Key):  # noqa: N803 (boto3's names)
        return {"Body": io.BytesIO(self.objects[Key])}

    def list_objects_v2(self, Bucket, Prefix, MaxKeys=1000, **_):  # noqa: N803
        keys = sorted(k for k in self.objects if k.startswith(Prefix))[:MaxKeys]
        return {"Contents": [{"Key": k} for k in keys]}

    def delete_objects(self, Bucket, Delete):  # noqa: N803
        for entry in Delete["Objects"]:
            self.objects.pop(entry["Key"], None)
        return {}


def fill(conn, target: Target, start: int, stop: int) -> None:
    """Rows start+1..stop of the pre-filled year, made by PostgreSQL itself."""
    statement = sql.SQL(
        "INSERT INTO {table} (event_id, invoice_no, stock_code, description, quantity, invoice_date, unit_price, "
        "customer_id, country, source, line) "
        "SELECT md5('prefill' || n), (500000 + n / 20)::text, 'S' || mod(n, 4000), 'ITEM ' || mod(n, 4000), "
        "1 + mod(n, 12), {first}::timestamp + mod(n, {days}) * interval '1 day' + mod(n, 600) * interval '1 minute', "
        "(1 + mod(n, 500)) / 100.0, 12000 + mod(n, 5000), 'United Kingdom', 'prefill.csv', n "
        "FROM generate_series(%s, %s) AS n"
    ).format(table=target.table_id, first=sql.Literal(FIRST_DAY), days=sql.Literal(DAYS))
    with conn, conn.cursor() as cur:
        cur.execute(statement, (start + 1, stop))
    with conn.cursor() as cur:  # outside a transaction block, as VACUUM needs
        cur.execute(sql.SQL("VACUUM ANALYZE {}").format(target.table_id))


def batches(rows: int, count: int, start: int = 0) -> list[Batch]:
    """Batches number start.. of `rows` new real-shaped records each (their
    own event ids), dated inside the pre-filled year."""
    template = data.valid_records(data.SAMPLE, "warehouse-bench")
    made = []
    for number in range(start, start + count):
        records = tuple(msgspec.structs.replace(template[i % len(template)], source=f"bench-load-{number}.csv",
                                                line=i + 1, event_id=f"{number:08x}{i:024x}")
                        for i in range(rows))
        first, last = Position(str(number * 10**6 + 1)), Position(str(number * 10**6 + rows))
        made.append(Batch("shardId-bench", records, (), first, last, 1_291_161_600_000))
    return made


def measure(settings: Settings, sizes: tuple[int, ...], loads: int, batch_rows: int) -> dict:
    own = dataclasses.replace(settings, warehouse_schema=SCHEMA)
    conn = psycopg2.connect(own.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.autocommit = False
    ensure_warehouse(own)
    target = Target(SCHEMA, own.warehouse_table, ())
    sinks = build_sinks(own, Clients(s3=MemoryS3(), dynamodb=None,
                                     connect_warehouse=lambda: psycopg2.connect(own.warehouse_dsn)))
    seconds_by_rows: dict[str, float] = {}
    filled, made = 0, 0
    for size in sizes:
        conn.autocommit = True
        fill(conn, target, filled, size - made * batch_rows)
        conn.autocommit = False
        filled = size - made * batch_rows
        runs = []
        for batch in batches(batch_rows, loads, start=made):
            sinks.raw_zone.write(batch)  # the object the load reads, as the pipeline writes it first
            started = time.perf_counter()
            sinks.warehouse.write(batch)
            runs.append(time.perf_counter() - started)
        made += loads
        seconds_by_rows[str(size)] = round(min(runs), 3)
        print(f"warehouse: {size:>10,} rows in the table: {min(runs):.3f} s a load "
              f"(best of {loads}, {batch_rows:,} rows each)", file=sys.stderr, flush=True)
    conn.close()
    smallest, largest = seconds_by_rows[str(sizes[0])], seconds_by_rows[str(sizes[-1])]
    figures = {"warehouse_load_seconds_by_rows": seconds_by_rows,
               "warehouse_load_growth": round(largest / smallest, 2),
               "warehouse_load_batch_rows": batch_rows}
    # One grouped load of what a task of 64 shards' queues in an interval, into the largest table,
    # at the service's own flush and load settings (the bench's are shortened for its drain).
    service = Settings()
    group = SHARDS // TASKS * flushes_per_interval(service, batch_rows)
    grouped_clients = Clients(s3=MemoryS3(), dynamodb=None,
                              connect_warehouse=lambda: psycopg2.connect(own.warehouse_dsn))
    grouped = dataclasses.replace(own, warehouse_load_mode="grouped")
    queue, loader = build_sinks(grouped, grouped_clients), build_group_loader(grouped, grouped_clients)
    for batch in batches(batch_rows, group, start=made):
        queue.raw_zone.write(batch)
        queue.warehouse.write(batch)
    outcome = loader.load()
    print(f"warehouse: a grouped load of {outcome.loaded} objects ({outcome.loaded * batch_rows:,} rows): "
          f"{outcome.seconds:.2f} s", file=sys.stderr, flush=True)
    figures.update(model_64_shards(service, batch_rows, seconds_by_rows[str(sizes[-1])], outcome.seconds))
    return figures


# --- 64 shards: a model calibrated by the loads measured above ----------------------

SHARDS, RECORDS_PER_SECOND, TASKS = 64, 1_000, 8  # a shard at its write limit; 8 shards a task


def flush_every(settings: Settings, batch_rows: int) -> float:
    """Seconds between a shard's flushes at its write limit (the record limit
    fills before the age limit at 1,000 records/s). Pure."""
    return min(batch_rows / RECORDS_PER_SECOND, settings.flush_max_age_seconds)


def flushes_per_interval(settings: Settings, batch_rows: int) -> int:
    """A shard's flushes in one load interval. Pure."""
    return max(1, round(settings.warehouse_load_interval_seconds / flush_every(settings, batch_rows)))


def model_64_shards(settings: Settings, batch_rows: int, batch_seconds: float, group_seconds: float) -> dict:
    """Commits per minute into the table and how long a row waits for the
    warehouse, per-batch against grouped, for 64 shards at 1,000 records/s.

    Loads into one table run one at a time, so the table is a single server:
    its busy share is commits/minute x seconds/commit / 60, and a load waits
    behind the others as an M/D/1 queue's (busy share x service / (2 x (1 - busy))),
    without end once the share reaches 1. Per-batch, a row waits for its
    batch's load; grouped, for the next load of its task (half an interval on
    average) and that load. Pure."""
    every = flush_every(settings, batch_rows)
    interval = settings.warehouse_load_interval_seconds

    def lag(commits_per_minute: float, service: float, waits_for_turn: float) -> float | None:
        busy = commits_per_minute * service / 60
        if busy >= 1:
            return None  # the loads fall behind for good
        return round(waits_for_turn + service + busy * service / (2 * (1 - busy)), 2)

    batch_commits = SHARDS * 60 / every
    grouped_commits = TASKS * 60 / interval
    return {
        "warehouse_commits_per_minute_64_shards": {"batch": round(batch_commits, 1),
                                                    "grouped": round(grouped_commits, 1)},
        "warehouse_table_busy_share_64_shards": {"batch": round(batch_commits * batch_seconds / 60, 3),
                                                 "grouped": round(grouped_commits * group_seconds / 60, 3)},
        "warehouse_load_lag_seconds_64_shards": {"batch": lag(batch_commits, batch_seconds, 0.0),
                                                 "grouped": lag(grouped_commits, group_seconds, interval / 2)},
        "warehouse_model": f"{SHARDS} shards at {RECORDS_PER_SECOND} records/s, {TASKS} consumer tasks, "
                           f"{batch_rows}-row flushes every {every:g} s, loads every {interval:g} s",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="table sizes, comma-separated")
    parser.add_argument("--loads", type=int, default=LOADS, help="loads per size (the best counts)")
    parser.add_argument("--batch-rows", type=int, default=Settings.flush_max_records)
    args = parser.parse_args(argv)
    sizes = tuple(int(size) for size in args.sizes.split(","))
    from local_stack.stack import throwaway_stack

    with throwaway_stack("bench-warehouse") as stack:
        figures = measure(stack.settings(), sizes, args.loads, args.batch_rows)
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
