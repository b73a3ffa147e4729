"""`python -m reconcile` / `retail-reconcile`: do the raw zone, DynamoDB and
the warehouse agree over a window of arrival days?

Exit status 0 when every store agrees, 1 on drift, 2 when it could not run.
A summary goes to stderr; the JSON report is the last line on stdout, and is
also kept in S3 under S3_REPORTS_PREFIX (an audit trail) unless --no-s3-report.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time

import structlog

from consumer.wiring import Clients, service_clients, warehouse_target
from reconcile.compare import Report, reconcile
from reconcile.metrics import ReconcileMetrics
from reconcile.stores import dynamodb_held, warehouse_held
from reconcile.window import Window, read_window
from retail_stream import logs
from retail_stream.progress import Progress
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger("reconcile")


def run(settings: Settings, clients: Clients, window: Window, *, settle_seconds: float,
        progress: Progress | None = None) -> Report:
    """Read the window's raw zone, look its events up in DynamoDB and the
    warehouse, compare."""
    raw = read_window(clients.s3, settings.s3_bucket, settings.s3_raw_prefix, window,
                      settle_seconds=settle_seconds, progress=progress)
    rows = list(raw.rows.values())
    dynamodb = dynamodb_held(clients.dynamodb, settings.dynamodb_table, rows)
    conn = clients.connect_warehouse()
    try:
        warehouse = warehouse_held(conn, warehouse_target(settings), rows, [n.key for n in raw.objects],
                                   [f"{settings.s3_raw_prefix}/dt={day}/" for day in window.days()])
    finally:
        conn.close()
    return reconcile(window, raw, dynamodb, warehouse.held, warehouse.loaded, warehouse.ledger_keys)


def report_key(settings: Settings, window: Window, ended: dt.datetime) -> str:
    """`<prefix>/dt=<run day>/<from>_<to>-<run time>.json`. Pure."""
    return (f"{settings.s3_reports_prefix}/dt={ended.date().isoformat()}/"
            f"{window.first.isoformat()}_{window.last.isoformat()}-{ended.strftime('%Y%m%dT%H%M%SZ')}.json")


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="retail-reconcile", description=__doc__.split("\n\n")[0])
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--days", type=int, help="the last N arrival days, today (UTC) included (default 1)")
    span.add_argument("--hours", type=int, help="the raw-zone objects written in the last N whole hours (UTC) "
                                               "that ended before the settle time: for hourly runs")
    span.add_argument("--from", dest="first", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                      help="first arrival day (UTC)")
    parser.add_argument("--to", dest="last", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last arrival day (UTC), inclusive (default: --from)")
    parser.add_argument("--invoice-from", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="only rows invoiced on or after this day")
    parser.add_argument("--invoice-to", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                        help="only rows invoiced on or before this day")
    parser.add_argument("--settle-seconds", type=float, default=settings.reconcile_settle_seconds,
                        help="leave out objects written this recently: their loads may be under way "
                             f"(default RECONCILE_SETTLE_SECONDS, {settings.reconcile_settle_seconds:g})")
    parser.add_argument("--pushgateway", default=settings.reconcile_pushgateway_url,
                        help="push the gauges to this Prometheus Pushgateway (default RECONCILE_PUSHGATEWAY_URL)")
    parser.add_argument("--no-s3-report", action="store_true", help="do not keep the report in S3")
    parser.add_argument("--max-listed", type=int, default=1000, help="events named per list in the report")
    args = parser.parse_args(argv)
    if args.last and not args.first:
        parser.error("--to needs --from")
    return args


def window_of(args: argparse.Namespace, now: dt.datetime) -> Window:
    if args.first:
        return Window(args.first, args.last or args.first, args.invoice_from, args.invoice_to)
    if args.hours:
        span = Window.last_hours(args.hours, now - dt.timedelta(seconds=args.settle_seconds))
    else:
        span = Window.last_days(args.days or 1, now.date())
    return dataclasses.replace(span, invoice_from=args.invoice_from, invoice_to=args.invoice_to)


def summary(report: Report) -> str:
    span = (f"objects written {report.window.written_from:%Y-%m-%d %H:%M} to {report.window.written_to:%H:%M} UTC"
            if report.window.written_from else f"arrival days {report.window.first} to {report.window.last}")
    lines = [f"reconciliation of {span}: "
             + ("the stores agree" if report.drift == 0 else f"DRIFT in {report.drift} events")]
    for store, figures in report.figures.items():
        shown = ", ".join(f"{k} {v}" for k, v in figures.items())
        lines.append(f"  {store:<10} {shown}")
    if report.settling_objects:
        lines.append(f"  {report.settling_objects} objects written in the settle time were left out")
    return "\n".join(lines)


def main(argv: list[str] | None = None, clients: Clients | None = None) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"retail-reconcile: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, settings)
    logs.configure(settings.log_level, log_format=settings.log_format, service="reconcile")
    try:
        window = window_of(args, dt.datetime.now(dt.timezone.utc))
    except ValueError as exc:
        print(f"retail-reconcile: {exc}", file=sys.stderr)
        return 2
    metrics = ReconcileMetrics()
    started = time.monotonic()
    clients = clients or service_clients(settings)
    try:
        report = run(settings, clients, window, settle_seconds=args.settle_seconds,
                     progress=Progress(sys.stderr, "reading the raw zone", 0, "objects"))
    except Exception as exc:  # any failure to read is a run that did not happen: say so, exit 2
        log.error("reconcile.failed", error=str(exc), error_type=type(exc).__name__)
        if args.pushgateway:
            metrics.push(args.pushgateway, succeeded=False)
        return 2
    document = {**report.as_dict(args.max_listed), "seconds": round(time.monotonic() - started, 3)}
    print(summary(report), file=sys.stderr)
    if not args.no_s3_report:
        key = report_key(settings, window, dt.datetime.now(dt.timezone.utc))
        clients.s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=json.dumps(document, indent=1).encode(),
                              ContentType="application/json")
        document["report"] = f"s3://{settings.s3_bucket}/{key}"
    status = 0 if report.drift == 0 else 1
    if args.pushgateway:
        metrics.record(report)
        try:
            metrics.push(args.pushgateway, succeeded=True)
        except OSError as exc:  # the check ran, but no alert could see it: a failed run for the scheduler
            log.error("reconcile.push_failed", pushgateway=args.pushgateway, error=str(exc))
            status = 2
    print(json.dumps(document), flush=True)
    return status
