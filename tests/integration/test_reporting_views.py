"""The reporting views (retail_stream/sql/views.sql) on the real PostgreSQL,
against a small hand-made set of rows whose figures are worked out here,
line by line, with Decimal; and `python -m reporting` reading them.

The rows go to a schema of their own, provisioned like the real one, so the
other integration tests' rows in retail.transactions change nothing here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest
from psycopg2 import sql

from local_stack.provision import ensure_warehouse
from reporting import cli
from retail_stream.schema import event_id
from tests.report_oracle import expected_views, read_views

pytestmark = pytest.mark.integration

SCHEMA = "reporting_test"
D = Decimal


@pytest.fixture(autouse=True)
def logging_left_alone(monkeypatch):
    """cli.main configures structlog for the process, on the stderr it finds:
    here pytest's capture, closed after the test. Keep the tests' logging as it is."""
    monkeypatch.setattr(cli.logs, "configure", lambda *args, **kwargs: None)
DAY1, DAY2 = dt.date(2010, 12, 1), dt.date(2010, 12, 2)
UK, FRANCE = "United Kingdom", "France"
HEART, LANTERN, WARMER, CLOCK, RABBIT = (
    "WHITE HANGING HEART T-LIGHT HOLDER", "WHITE METAL LANTERN", "HAND WARMER UNION JACK", "ALARM CLOCK BAKELIKE PINK",
    "RABBIT NIGHT LIGHT",
)
GERMANY = "Germany"

# line: (invoice, stock code, description, quantity, day, hh:mm, unit price, customer, country)
ROWS = {
    1: ("536365", "85123A", HEART, 6, DAY1, "08:26", "2.55", 17850, UK),
    2: ("536365", "71053", LANTERN, 6, DAY1, "08:26", "3.39", 17850, UK),
    3: ("536366", "22633", WARMER, 6, DAY1, "08:28", "1.85", 17850, UK),
    4: ("536367", "85123A", HEART, 32, DAY1, "09:00", "2.55", None, UK),  # no customer
    5: ("C536368", "85123A", HEART, -2, DAY1, "10:00", "2.55", 17850, UK),  # cancellation
    6: ("536369", "POST", "POSTAGE", 1, DAY1, "11:00", "18.00", 12583, FRANCE),  # money, not a product
    7: ("536369", "22728", CLOCK, 24, DAY1, "11:00", "3.75", 12583, FRANCE),
    8: ("536370", "21275", None, -20, DAY1, "12:00", "0", None, UK),  # stock correction
    9: ("A563185", "B", "Adjust bad debt", 1, DAY2, "14:00", "-11062.06", None, UK),  # adjustment
    10: ("536371", "22728", CLOCK, 12, DAY2, "09:00", "3.75", 12583, FRANCE),
    11: ("C536372", "22728", CLOCK, -24, DAY2, "09:30", "3.75", 12583, FRANCE),  # cancels line 7, a day later
    12: ("C536372", "D", "Discount", -1, DAY2, "09:30", "5.00", 12583, FRANCE),  # a cancelled discount
    13: ("536373", "85123A", HEART, 3, DAY2, "10:00", "2.95", 13047, None),  # no country
    14: ("536374", "71053", LANTERN, 6, DAY2, "11:00", "3.39", None, FRANCE),  # no customer
    15: ("C536375", "22633", WARMER, -1, DAY2, "12:00", "1.85", 15000, UK),  # a customer with only a cancellation
    16: ("536376", "22633", WARMER + " ", 2, DAY2, "13:00", "1.85", 17850, UK),  # another spelling
    17: ("536377", "23084", RABBIT, 2, DAY2, "15:00", "0.50", None, GERMANY),
    18: ("536377", "23084", RABBIT, 2, DAY2, "15:00", "0.50", None, GERMANY),
    19: ("536378", "23084", "website fixed", 1, DAY2, "16:00", "0", None, GERMANY),  # a note, not its name
}
# Each line's amount, quantity * unit price: the one multiplication; the rest below is sums of these.
A = {line: row[3] * D(row[6]) for line, row in ROWS.items()}


def records():
    for line, (invoice, code, description, quantity, day, clock, price, customer, country) in ROWS.items():
        hour, minute = map(int, clock.split(":"))
        yield SimpleNamespace(
            event_id=event_id("hand-made.csv", line), invoice_no=invoice, stock_code=code, description=description,
            quantity=quantity, invoice_date=dt.datetime.combine(day, dt.time(hour, minute)), unit_price=D(price),
            customer_id=customer, country=country, source="hand-made.csv", line=line,
        )


def rate(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole).quantize(D("0.0001"), rounding="ROUND_HALF_UP")


# --- the expected figures, worked out by hand from the lines above ---------------------------------------
REVENUE_BY_DAY_COUNTRY = {
    # (day, country): orders, cancellations, customers, gross, cancelled, net, net without customer
    (DAY1, UK): (3, 1, 1, A[1] + A[2] + A[3] + A[4], -A[5], A[1] + A[2] + A[3] + A[4] + A[5], A[4]),
    (DAY1, FRANCE): (1, 0, 1, A[6] + A[7], D(0), A[6] + A[7], D(0)),
    (DAY2, FRANCE): (2, 1, 1, A[10] + A[14], -(A[11] + A[12]), A[10] + A[14] + A[11] + A[12], A[14]),
    (DAY2, "Unspecified"): (1, 0, 1, A[13], D(0), A[13], D(0)),
    (DAY2, UK): (1, 1, 2, A[16], -A[15], A[16] + A[15], D(0)),  # line 9, the adjustment, is not revenue
    (DAY2, GERMANY): (2, 0, 0, A[17] + A[18] + A[19], D(0), A[17] + A[18] + A[19], A[17] + A[18] + A[19]),
}
PRODUCTS = {
    # code: description, orders, sold, cancelled, net quantity, gross, cancelled, net, revenue rank, quantity rank
    "85123A": (HEART, 3, 41, 2, 39, A[1] + A[4] + A[13], -A[5], A[1] + A[4] + A[13] + A[5], 1, 1),
    "22728": (CLOCK, 2, 36, 24, 12, A[7] + A[10], -A[11], A[7] + A[10] + A[11], 2, 2),
    "71053": (LANTERN, 2, 12, 0, 12, A[2] + A[14], D(0), A[2] + A[14], 3, 2),  # ties 22728 on quantity
    "22633": (WARMER + " ", 2, 8, 1, 7, A[3] + A[16], -A[15], A[3] + A[16] + A[15], 4, 4),  # a tie: the greatest
    # Named as most of its sale lines name it, not by its greatest description ("website fixed").
    "23084": (RABBIT, 2, 5, 0, 5, A[17] + A[18] + A[19], D(0), A[17] + A[18] + A[19], 5, 5),
}  # POST and D are money, not products; 21275 is a stock correction
CUSTOMERS = {
    # id: orders, cancellations, first order, last order, gross, cancelled, lifetime value
    17850: (3, 1, DAY1, DAY2, A[1] + A[2] + A[3] + A[16], -A[5], A[1] + A[2] + A[3] + A[16] + A[5]),
    12583: (2, 1, DAY1, DAY2, A[6] + A[7] + A[10], -(A[11] + A[12]), A[6] + A[7] + A[10] + A[11] + A[12]),
    13047: (1, 0, DAY2, DAY2, A[13], D(0), A[13]),
    15000: (0, 1, None, None, D(0), -A[15], A[15]),
}  # lines 4 and 14 have no customer: in revenue, not here
UK_GROSS, UK_CANCELLED = A[1] + A[2] + A[3] + A[4] + A[16], -(A[5] + A[15])
FR_GROSS, FR_CANCELLED = A[6] + A[7] + A[10] + A[14], -(A[11] + A[12])
CANCELLATIONS = {
    # country: orders, cancellations, gross, cancelled, revenue rate, invoice rate
    UK: (4, 2, UK_GROSS, UK_CANCELLED, rate(UK_CANCELLED, UK_GROSS), rate(D(2), D(6))),
    FRANCE: (3, 1, FR_GROSS, FR_CANCELLED, rate(FR_CANCELLED, FR_GROSS), rate(D(1), D(4))),
    "Unspecified": (1, 0, A[13], D(0), D(0), D(0)),
    GERMANY: (2, 0, A[17] + A[18] + A[19], D(0), D(0), D(0)),
}
ADJUSTMENTS = {
    # (day, invoice, kind, country): description, lines, quantity, amount
    (DAY1, "536370", "stock_correction", UK): (None, 1, -20, D(0)),
    (DAY2, "A563185", "adjustment", UK): ("Adjust bad debt", 1, 1, D("-11062.06")),
}


@pytest.fixture(scope="module")
def schema_settings(settings):
    """The hand-made rows in a schema of their own, provisioned twice (idempotent)."""
    ours = dataclasses.replace(settings, warehouse_schema=SCHEMA)
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.close()
    ensure_warehouse(ours)
    ensure_warehouse(ours)  # CREATE OR REPLACE: a second run changes nothing and fails on nothing
    table = sql.Identifier(SCHEMA, settings.warehouse_table)
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        for r in records():
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(table),
                (r.event_id, r.invoice_no, r.stock_code, r.description, r.quantity, r.invoice_date, r.unit_price,
                 r.customer_id, r.country, r.source, r.line),
            )
    conn.close()
    return ours


def view(settings, name: str, order: str) -> list[tuple]:
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT * FROM {} ORDER BY " + order).format(sql.Identifier(settings.warehouse_schema, name))
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def test_revenue_by_day_and_country(schema_settings):
    rows = view(schema_settings, "report_revenue_by_day_country", "day, country")
    assert {(row[0], row[1]): row[2:] for row in rows} == REVENUE_BY_DAY_COUNTRY
    assert len(rows) == len(REVENUE_BY_DAY_COUNTRY)


def test_products_ranked_by_revenue_and_quantity(schema_settings):
    rows = view(schema_settings, "report_products", "stock_code")
    assert {row[0]: row[1:] for row in rows} == PRODUCTS


def test_customers_order_counts_and_lifetime_value(schema_settings):
    rows = view(schema_settings, "report_customers", "customer_id")
    assert {row[0]: row[1:] for row in rows} == CUSTOMERS


def test_cancellation_rates_by_country(schema_settings):
    rows = view(schema_settings, "report_cancellations_by_country", "country")
    assert {row[0]: row[1:] for row in rows} == CANCELLATIONS
    uk = CANCELLATIONS[UK]
    assert uk[4] == D("0.0526") and uk[5] == D("0.3333")  # 6.95 / 132.04 and 2 / 6, rounded


def test_adjustments_and_stock_corrections_apart(schema_settings):
    rows = view(schema_settings, "report_adjustments", "day, invoice_no")
    assert {row[:4]: row[4:] for row in rows} == ADJUSTMENTS


def test_the_ledger_adds_up(schema_settings):
    """Net revenue plus what report_adjustments holds is every line's amount."""
    net = sum(row[5] for row in REVENUE_BY_DAY_COUNTRY.values())
    adjusted = sum(row[3] for row in ADJUSTMENTS.values())
    assert net + adjusted == sum(A.values())
    lines = view(schema_settings, "report_lines", "event_id")
    assert len(lines) == len(ROWS)
    assert sum(row[8] for row in lines) == sum(A.values())  # report_lines.amount


def test_the_python_oracle_agrees_with_the_hand_figures(schema_settings):
    """tests/report_oracle.py, which the end-to-end test trusts on the sample
    file, gives these same figures and the same as the views."""
    expected = expected_views(records())
    with psycopg2.connect(schema_settings.warehouse_dsn) as conn, conn.cursor() as cur:
        assert read_views(cur, SCHEMA) == expected
    conn.close()
    net = expected["report_revenue_by_day_country"]
    assert {key: row["net_revenue"] for key, row in net.items()} == {
        key: row[5] for key, row in REVENUE_BY_DAY_COUNTRY.items()
    }


def test_python_m_reporting_prints_every_view_and_the_figures(schema_settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WAREHOUSE_SCHEMA", SCHEMA)
    assert cli.main(["--limit", "2", "--chart", str(tmp_path / "revenue.png")]) == 0
    out = capsys.readouterr().out
    *text, last = out.rstrip("\n").splitlines()
    figures = json.loads(last, parse_float=Decimal)
    gross = sum(row[3] for row in REVENUE_BY_DAY_COUNTRY.values())
    cancelled = sum(row[4] for row in REVENUE_BY_DAY_COUNTRY.values())
    assert figures == {
        "views": {"report_revenue_by_day_country": len(REVENUE_BY_DAY_COUNTRY), "report_products": len(PRODUCTS),
                  "report_customers": len(CUSTOMERS), "report_cancellations_by_country": len(CANCELLATIONS),
                  "report_adjustments": len(ADJUSTMENTS)},
        "days": 2, "first_day": "2010-12-01", "last_day": "2010-12-02",
        "gross_revenue": gross, "cancelled_revenue": cancelled, "net_revenue": gross - cancelled,
        "revenue_cancellation_rate": rate(cancelled, gross),
        "adjustments": {"adjustment": D("-11062.06"), "stock_correction": D(0)},
        "chart": str(tmp_path / "revenue.png"),
    }
    assert (tmp_path / "revenue.png").read_bytes()[:4] == b"\x89PNG"
    text = "\n".join(text)
    assert "== Revenue by day and country, latest day first (report_revenue_by_day_country: 2 of 6 rows) ==" in text
    assert "== Top products by net revenue (report_products: 2 of 5 rows) ==" in text
    # Top by net revenue: 85123A (100.65), then 22728 (45.00); by quantity the tie shares rank 2.
    top = text.split("== Top products by net revenue")[1].splitlines()[3:5]
    assert [line.split()[:2] for line in top] == [["1", "85123A"], ["2", "22728"]]
    by_quantity = text.split("== Top products by net quantity")[1].splitlines()[3:5]
    assert [line.split()[:2] for line in by_quantity] == [["1", "85123A"], ["2", "22728"]]
    assert "  -11,062.06" in text and "5.26%" in text


def test_python_m_reporting_keeps_stdout_for_the_report(schema_settings):
    """As a process: logs on stderr only, the last stdout line is the JSON;
    --view picks one report."""
    env = {**os.environ, "WAREHOUSE_SCHEMA": SCHEMA}
    result = subprocess.run(
        [sys.executable, "-m", "reporting", "--view", "customers"], env=env, capture_output=True, text=True,
        cwd=Path(__file__).resolve().parents[2], timeout=60, check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "== Customers by lifetime value (report_customers: 4 of 4 rows) =="
    assert [line.split()[0] for line in lines[3:7]] == ["12583", "17850", "13047", "15000"]  # by lifetime value
    assert json.loads(lines[-1])["views"]["report_customers"] == 4
    assert "{" not in "\n".join(lines[:-1])  # no log line on stdout
    assert '"event": "views_read"' in result.stderr
