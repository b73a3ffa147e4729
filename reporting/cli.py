"""`python -m reporting`: the reporting views as text tables on stdout and,
as the very last stdout line, one JSON object of figures. Logs go to stderr.

Reads WAREHOUSE_DSN and WAREHOUSE_SCHEMA (retail_stream/settings.py), so the
same command reports on Redshift or on the local stack
(`eval "$(python -m local_stack env)"` first). Exit status: 0 done, 1 the
warehouse failed or lacks the views, 2 bad arguments or settings, or --chart
without matplotlib.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec
import psycopg2
import structlog

from reporting import chart
from reporting.figures import figures, render
from reporting.reports import BY_NAME, REPORTS
from reporting.warehouse import read_snapshot
from retail_stream import logs
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 10
_json = msgspec.json.Encoder(decimal_format="number")  # exact digits, as the records carry them


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reporting",
        description="Print the warehouse's reporting views (retail_stream/sql/views.sql) as text tables, "
        "then one JSON line of figures. Warehouse: WAREHOUSE_DSN, WAREHOUSE_SCHEMA.",
    )
    parser.add_argument(
        "--view", action="append", choices=list(BY_NAME), metavar="NAME",
        help=f"print only this report (repeatable): {', '.join(BY_NAME)}",
    )
    parser.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT,
                        help=f"rows per report (default {DEFAULT_LIMIT})")
    parser.add_argument("--chart", type=Path, metavar="PATH.png",
                        help="also write a PNG chart of revenue by day (needs matplotlib)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"reporting: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, log_format=settings.log_format, service="reporting")
    if args.chart:
        try:
            chart.require_matplotlib()  # before any query: fail fast, print nothing half-done
        except chart.ChartUnavailable as error:
            print(f"reporting: {error}", file=sys.stderr)
            return 2
    reports = [BY_NAME[name] for name in dict.fromkeys(args.view)] if args.view else list(REPORTS)

    try:
        conn = psycopg2.connect(settings.warehouse_dsn, connect_timeout=10)
        try:
            snapshot = read_snapshot(conn, settings.warehouse_schema, reports, args.limit)
        finally:
            conn.close()
    except psycopg2.errors.UndefinedTable as error:
        print(
            f"reporting: a reporting view is missing in schema {settings.warehouse_schema!r} "
            f"({str(error).strip()}); create them with `python -m local_stack provision` "
            "(or run retail_stream/sql/views.sql on the warehouse)",
            file=sys.stderr,
        )
        return 1
    except psycopg2.Error as error:
        print(f"reporting: warehouse error: {type(error).__name__}: {str(error).strip()}", file=sys.stderr)
        return 1
    log.info("views_read", schema=settings.warehouse_schema, reports=len(reports), rows=snapshot.row_counts)

    sys.stdout.write(render(snapshot))
    if args.chart:
        try:
            chart.write_revenue_chart(snapshot.daily, args.chart)
        except OSError as error:
            print(f"reporting: cannot write the chart: {error}", file=sys.stderr)
            return 1
        log.info("chart_written", path=str(args.chart), days=len(snapshot.daily))
        sys.stdout.write(f"\nchart of revenue by day: {args.chart}\n")
    sys.stdout.write(_json.encode(figures(snapshot, str(args.chart) if args.chart else None)).decode() + "\n")
    sys.stdout.flush()
    return 0
