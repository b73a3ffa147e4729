"""`python -m rebuild` / `retail-rebuild`: write a window of the S3 raw zone
back into DynamoDB, the warehouse or both.

How a user recovers a dropped table or backfills a new one long after the
stream's retention. Each raw-zone object goes through the consumer's own
sinks, several side by side: DynamoDB puts overwrite an item with itself,
and the warehouse merge adds only the rows the table lacks (the ledger is
not trusted here: it says an object was loaded, not that its rows are still
there). So a run interrupted and started again finishes the job, and a
second run adds nothing. At the end, a reconciliation of the window.

Exit status 0 when the window reconciles, 1 on drift after the rebuild, 2
when it could not run. Progress on stderr; the JSON summary (with the
reconciliation) is the last line on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import structlog

from consumer.batch import Batch
from consumer.sinks import Sink
from consumer.sinks.raw_zone import ObjectName, from_ndjson_gz, parse_object_key
from consumer.wiring import REBUILD_TARGETS, Clients, build_rebuild_sinks, service_clients
from reconcile import cli as reconcile_cli
from reconcile.window import Window, listed_objects
from retail_stream import logs
from retail_stream.progress import Progress
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger("rebuild")
DEFAULT_WORKERS = 4


def batch_of(name: ObjectName, body: bytes) -> Batch:
    """The batch a raw-zone object was written from: its rows, shard and
    positions, and an arrival on its `dt=` day (so the sinks name the same
    object). Pure."""
    day = dt.datetime.fromisoformat(name.day).replace(tzinfo=dt.timezone.utc)
    return Batch(name.shard_id, tuple(from_ndjson_gz(body)), (), name.first, name.last,
                 int(day.timestamp() * 1000))


@dataclass
class Tally:
    objects: int = 0
    rows: int = 0


def rebuild(settings: Settings, clients: Clients, window: Window, make_sinks: Callable[[], Sequence[Sink]], *,
            workers: int = DEFAULT_WORKERS, progress: Progress | None = None) -> Tally:
    """Every raw-zone object of the window's days through every sink, each
    worker thread with sinks of its own (`make_sinks`: a warehouse sink holds
    one connection); raises the first error (what was written before it
    stays, and is harmless)."""
    names = [n for n in (parse_object_key(e["Key"]) for e in listed_objects(
        clients.s3, settings.s3_bucket, settings.s3_raw_prefix, window.days())) if n is not None]
    if progress:
        progress.total = len(names)
    tally = Tally()

    failed = threading.Event()  # after the first failure no object starts, as in a run that was killed
    local = threading.local()

    def restore(name: ObjectName) -> int:
        if failed.is_set():
            return 0
        try:
            if not hasattr(local, "sinks"):
                local.sinks = make_sinks()
            batch = batch_of(name, clients.s3.get_object(Bucket=settings.s3_bucket, Key=name.key)["Body"].read())
            for sink in local.sinks:
                sink.write(batch)
        except BaseException:
            failed.set()
            raise
        return len(batch.records)

    with ThreadPoolExecutor(workers, thread_name_prefix="rebuild") as pool:
        for rows in pool.map(restore, names):
            tally.objects += 1
            tally.rows += rows
            if progress:
                progress.show(tally.objects, f"{tally.rows:,} rows")
    if progress:
        progress.close(tally.objects, f"{tally.rows:,} rows")
    return tally


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="retail-rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="first", type=dt.date.fromisoformat, required=True, metavar="YYYY-MM-DD",
                        help="first arrival day (UTC) of the raw zone to rebuild from")
    parser.add_argument("--to", dest="last", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last arrival day (UTC), inclusive (default: --from)")
    parser.add_argument("--target", choices=(*REBUILD_TARGETS, "both"), required=True)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="objects rebuilt side by side")
    parser.add_argument("--settle-seconds", type=float, default=settings.reconcile_settle_seconds,
                        help="the final reconciliation leaves out objects written this recently")
    parser.add_argument("--no-reconcile", action="store_true", help="skip the final reconciliation")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be from 1 to 64")
    return args


def main(argv: list[str] | None = None, clients: Clients | None = None) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"retail-rebuild: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    logs.configure(settings.log_level, log_format=settings.log_format, service="rebuild")
    try:
        window = Window(args.first, args.last or args.first)
    except ValueError as exc:
        print(f"retail-rebuild: {exc}", file=sys.stderr)
        return 2
    targets = REBUILD_TARGETS if args.target == "both" else (args.target,)
    clients = clients or service_clients(settings)
    started = time.monotonic()
    try:
        build_rebuild_sinks(settings, clients, targets)  # refuses a wrong target before anything is read
        tally = rebuild(settings, clients, window, lambda: build_rebuild_sinks(settings, clients, targets),
                        workers=args.workers,
                        progress=Progress(sys.stderr, f"rebuild {'+'.join(targets)}", 0, "objects"))
    except Exception as exc:  # nothing is lost: a run started again picks up the same objects
        log.error("rebuild.failed", error=str(exc), error_type=type(exc).__name__)
        return 2
    summary = {"window": window.as_dict(), "targets": list(targets), "objects": tally.objects, "rows": tally.rows,
               "seconds": round(time.monotonic() - started, 3)}
    status = 0
    if not args.no_reconcile:
        try:
            report = reconcile_cli.run(settings, clients, window, settle_seconds=args.settle_seconds)
        except Exception as exc:
            log.error("rebuild.reconcile_failed", error=str(exc), error_type=type(exc).__name__)
            return 2
        print(reconcile_cli.summary(report), file=sys.stderr)
        summary["reconciliation"] = {"drift": report.drift, "drift_by_store": report.drift_by_store}
        status = 0 if report.drift == 0 else 1
    print(json.dumps(summary), flush=True)
    return status
