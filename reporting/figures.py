"""The report as text and as one JSON object of figures. Pure."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from reporting.text_table import format_section, format_table
from reporting.warehouse import Snapshot

RATE_STEP = Decimal("0.0001")  # as the views round their rates


def render(snapshot: Snapshot) -> str:
    """Every report's section, a blank line apart, with a trailing newline."""
    sections = [
        format_section(
            table.report.title, table.report.view, format_table(table.report.columns, table.rows),
            len(table.rows), table.total_rows,
        )
        for table in snapshot.tables
    ]
    return "\n\n".join(sections) + "\n"


def rate(part: Decimal, whole: Decimal) -> Decimal | None:
    """part / whole rounded half away from zero to 4 places, as ROUND() does
    in both engines; None when `whole` is 0."""
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE_STEP, rounding=ROUND_HALF_UP)


def figures(snapshot: Snapshot, chart: str | None = None) -> dict:
    """The figures of the whole warehouse (not only the rows shown): rows per
    view, days with sales, gross/cancelled/net revenue and the overall
    revenue cancellation rate, adjustment totals per kind, the chart's path."""
    gross = sum((day.gross_revenue for day in snapshot.daily), Decimal(0))
    cancelled = sum((day.cancelled_revenue for day in snapshot.daily), Decimal(0))
    net = sum((day.net_revenue for day in snapshot.daily), Decimal(0))
    return {
        "views": dict(snapshot.row_counts),
        "days": len(snapshot.daily),
        "first_day": snapshot.daily[0].day if snapshot.daily else None,
        "last_day": snapshot.daily[-1].day if snapshot.daily else None,
        "gross_revenue": gross,
        "cancelled_revenue": cancelled,
        "net_revenue": net,
        "revenue_cancellation_rate": rate(cancelled, gross),
        "adjustments": dict(snapshot.adjustments),
        "chart": chart,
    }
