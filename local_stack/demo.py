"""`make demo`: the whole pipeline on the local stack, start to finish.

Starts a fresh stack, replays a CSV with the producer, runs the consumer until
the warehouse has loaded every row sent (progress from the consumer's counter
in Prometheus and the load ledger: nothing that grows with the data), then
counts every store once, exactly, prints a summary and, as the very last
line, one JSON object of those counts and the warehouse's quantity and amount
totals next to the file's own; then stops the stack. Exit status 0 only when
every valid row is once in DynamoDB, S3 and the warehouse, the totals match
and every invalid row is in the rejects file. SIGINT, SIGTERM or SIGHUP stop
everything it started and exit 128 + the signal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from local_stack import census
from local_stack.services import (
    consumer_running,
    processed_after_scrape,
    run_producer,
    say,
    scraped_environments,
    wait_for_drain,
)
from local_stack.stack import project_dir, throwaway_stack
from local_stack.stopping import stops_clean
from producer.csv_source import read_rows
from retail_stream import logs
from retail_stream.schema import InvalidRecord, parse_row
from retail_stream.settings import Settings

DEFAULT_CSV = project_dir() / "data" / "TestSample.csv"
AMOUNT_STEP = Decimal("0.0001")  # the warehouse's unit_price scale


@dataclass(frozen=True)
class SourceFigures:
    """What the file itself holds, for checking the stores against."""

    rows: int
    valid: int
    quantity_sum: int
    amount_sum: Decimal  # quantity x unit price over the valid rows
    keys: frozenset[tuple[str, str]]  # (invoice_no, event_id) of the valid rows: DynamoDB is asked for them


def source_figures(path: Path) -> SourceFigures:
    rows = valid = quantity = 0
    amount = Decimal(0)
    keys = set()
    for line, fields in read_rows(path):
        rows += 1
        try:
            record = parse_row(fields, path.name, line)
        except InvalidRecord:
            continue
        valid += 1
        quantity += record.quantity
        amount += record.quantity * record.unit_price
        keys.add((record.invoice_no, record.event_id))
    return SourceFigures(rows, valid, quantity, amount, frozenset(keys))


def count_source_rows(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def exact(amount: Decimal | str) -> str:
    """An amount at the warehouse's scale, as exact digits."""
    return str(Decimal(amount).quantize(AMOUNT_STEP))


def reconcile(env: dict[str, str]) -> dict:
    """`python -m reconcile` as an operator would run it, over the last two
    arrival days (the run may cross midnight UTC): its verdict, figures and report."""
    done = subprocess.run(  # nosec B603: our argv, no shell
        [sys.executable, "-m", "reconcile", "--days", "2", "--settle-seconds", "0"], env=env,
        stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode not in (0, 1):
        return {"drift": None, "error": f"python -m reconcile exited {done.returncode}", "report": ""}
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"drift": report["drift"], "drift_by_store": report["drift_by_store"],
            "rows": {store: figures["rows"] for store, figures in report["stores"].items()},
            "report": report.get("report", "")}


@stops_clean
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline end to end on the local stack.")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the consumer to drain")
    args = parser.parse_args(argv)
    csv = args.csv.resolve()
    # The stack's own events: stderr, not the summary.
    logs.configure("INFO", log_format=Settings.from_env().log_format, service="local_stack")

    started = time.monotonic()
    say("starting the local stack")
    with throwaway_stack("demo") as stack:
        say(f"local stack up in {stack.state_dir}")
        env = {**os.environ, "FLUSH_MAX_AGE_SECONDS": "5", "KCL_WORKER_ID": "demo"}
        producer_env, consumer_env = scraped_environments(stack.prometheus, env)
        settings = Settings.from_env(env)
        rejects = stack.state_dir / "rejects.jsonl"

        say(f"replaying {csv}")
        produced = run_producer(csv, rejects, producer_env)
        expected = produced["sent"]

        log_path = stack.state_dir / "consumer.log"
        say(f"starting the consumer (KCL MultiLangDaemon; log: {log_path}; "
            f"Prometheus: {stack.prometheus.url})")
        with consumer_running(consumer_env, log_path) as consumer:
            drained = wait_for_drain(settings, stack.prometheus, expected, consumer, args.timeout)
            processed = processed_after_scrape(stack.prometheus, expected)
            window = f"{int(time.monotonic() - started) + 10}s"
            max_lag = stack.prometheus.value(f"max(max_over_time(retail_consumer_millis_behind_latest[{window}]))")
        say(f"consumer stopped (status {consumer.returncode})")

        say("counting every store (once, at the end)")
        source = source_figures(csv)
        found = census.take(settings, source.keys)
        quantity_sum, amount_sum = census.warehouse_totals(settings)
        say("reconciling the stores (python -m reconcile)")
        reconciliation = reconcile(env)
        result = {
            "source_rows": source.rows,
            "rejected": count_lines(rejects),
            **found.as_dict(),
            "prometheus_records_processed": processed,
            "prometheus_max_lag_ms": int(max_lag or 0),
            "warehouse_quantity_sum": int(quantity_sum),
            "warehouse_amount_sum": exact(amount_sum),
            "source_quantity_sum": source.quantity_sum,
            "source_amount_sum": exact(source.amount_sum),
            "producer_seconds": produced["seconds"],
            "producer_records_per_s": round(produced["records_per_second"]),
            "drain_seconds": round(drained.seconds, 1),
            "drain_records_per_s": round(drained.per_second),
            "seconds": round(time.monotonic() - started, 1),
            "reconciliation": reconciliation,
        }

    valid = source.valid
    ok = (
        result["rejected"] == source.rows - valid
        and result["dynamodb_items"] == result["dynamodb_table_items"] == valid
        and result["redshift_rows"] == result["redshift_distinct_events"] == valid
        and result["s3_distinct_events"] == valid
        and result["kinesis_records"] == expected
        and result["prometheus_records_processed"] == expected
        and result["warehouse_quantity_sum"] == result["source_quantity_sum"]
        and result["warehouse_amount_sum"] == result["source_amount_sum"]
        and consumer.returncode == 0
        and reconciliation["drift"] == 0
    )
    say("")
    say(f"source rows           {result['source_rows']:>12,}")
    say(f"rejected by producer  {result['rejected']:>12,}   (see {rejects})")
    say(f"records in Kinesis    {result['kinesis_records']:>12,}   "
        f"sent at {result['producer_records_per_s']:,} records/s")
    say(f"items in DynamoDB     {result['dynamodb_items']:>12,}   "
        f"of the file's rows ({result['dynamodb_table_items']:,} in the table)")
    say(f"S3 raw zone           {result['s3_records']:>12,}   records in {result['s3_objects']:,} objects")
    say(f"rows in the warehouse {result['redshift_rows']:>12,}   ({result['redshift_distinct_events']:,} distinct)")
    say(f"  quantity            {result['warehouse_quantity_sum']:>12,}   file: {result['source_quantity_sum']:,}")
    say(f"  amount              {result['warehouse_amount_sum']:>12}   file: {result['source_amount_sum']}")
    say(f"dead-lettered         {result['dead_lettered']:>12,}")
    say(f"Prometheus: processed {result['prometheus_records_processed']:>12,}   "
        f"highest lag {result['prometheus_max_lag_ms']:,} ms")
    say(f"reconciliation drift  {reconciliation['drift']:>12,}   "
        f"(raw zone, DynamoDB and warehouse compared event by event: {reconciliation['report']})")
    say(f"drained in {result['drain_seconds']} s ({result['drain_records_per_s']:,} records/s); "
        f"{result['seconds']} s in all")
    say("every valid row is once in every sink" if ok else "MISMATCH: see the counts above")
    print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
