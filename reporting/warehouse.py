"""Reading the reporting views: the only module here that talks to the
warehouse. Plain SQL both engines take (SELECT, ORDER BY, LIMIT, COUNT, SUM,
BEGIN … READ ONLY); identifiers are quoted through psycopg2.sql."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

from psycopg2 import sql

from reporting.reports import ADJUSTMENTS_VIEW, REPORTS, REVENUE_VIEW, Report


@dataclass(frozen=True)
class ReportTable:
    """The top rows of one report, in its columns' order, and how many rows its view holds."""

    report: Report
    rows: tuple[tuple[Any, ...], ...]
    total_rows: int


@dataclass(frozen=True)
class DailyRevenue:
    """Revenue of one day over every country."""

    day: dt.date
    gross_revenue: Decimal
    cancelled_revenue: Decimal
    net_revenue: Decimal


@dataclass(frozen=True)
class Snapshot:
    """Everything the report shows, read in one transaction, so the figures agree."""

    tables: tuple[ReportTable, ...]
    row_counts: dict[str, int]  # view -> rows, for every view of the report
    daily: tuple[DailyRevenue, ...]
    adjustments: dict[str, Decimal]  # line_kind -> total amount


def _view(schema: str, view: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(view))


def top_rows_query(schema: str, report: Report) -> sql.Composed:
    """SELECT the report's columns in its order, LIMIT as the one parameter."""
    order = sql.SQL(", ").join(
        sql.SQL("{} DESC" if descending else "{}").format(sql.Identifier(column))
        for column, descending in report.order_by
    )
    return sql.SQL("SELECT {columns} FROM {view} ORDER BY {order} LIMIT %s").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, report.columns)),
        view=_view(schema, report.view),
        order=order,
    )


def read_snapshot(conn, schema: str, reports: Sequence[Report], limit: int) -> Snapshot:
    """Read the top `limit` rows of each report, every view's row count, the
    revenue per day and the adjustment totals, in one read-only transaction
    (a snapshot on both engines). Blocks on the warehouse; raises psycopg2
    errors (UndefinedTable when the views were never created)."""
    views = dict.fromkeys(report.view for report in (*REPORTS, *reports))
    conn.autocommit = True  # the transaction below is explicit: psycopg2 would open a READ COMMITTED one
    with conn.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            counts = {}
            for view in views:
                cur.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(_view(schema, view)))
                counts[view] = cur.fetchone()[0]
            tables = []
            for report in reports:
                cur.execute(top_rows_query(schema, report), (limit,))
                tables.append(ReportTable(report, tuple(map(tuple, cur.fetchall())), counts[report.view]))
            cur.execute(
                sql.SQL(
                    "SELECT day, SUM(gross_revenue), SUM(cancelled_revenue), SUM(net_revenue) "
                    "FROM {} GROUP BY day ORDER BY day"
                ).format(_view(schema, REVENUE_VIEW))
            )
            daily = tuple(DailyRevenue(*row) for row in cur.fetchall())
            cur.execute(
                sql.SQL("SELECT line_kind, SUM(amount) FROM {} GROUP BY line_kind ORDER BY line_kind").format(
                    _view(schema, ADJUSTMENTS_VIEW)
                )
            )
            adjustments = dict(cur.fetchall())
        finally:
            if not conn.closed:
                cur.execute("ROLLBACK")
    return Snapshot(tuple(tables), counts, daily, adjustments)
