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
from consumer.wiring import Clients, build_sinks
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
    return {"warehouse_load_seconds_by_rows": seconds_by_rows,
            "warehouse_load_growth": round(largest / smallest, 2),
            "warehouse_load_batch_rows": batch_rows}


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
