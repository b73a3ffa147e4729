"""The reporting views' figures computed in Python, independently of the
SQL in retail_stream/sql/views.sql: the tests compare the two.

Input: records with the Transaction fields (retail_stream.schema). Output,
per view, {key: {column: value}} with the values psycopg2 returns (date,
int, Decimal, bool, str, None). Exact Decimal arithmetic throughout.
"""

from __future__ import annotations

from collections import Counter

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable

# Stock codes that are money but not goods (see views.sql, report_lines.is_merchandise).
NOT_MERCHANDISE = {"POST", "DOT", "C2", "BANK CHARGES", "AMAZONFEE", "CRUK", "M", "m", "D", "S", "B"}
ZERO = Decimal(0)

KEYS = {
    "report_revenue_by_day_country": ("day", "country"),
    "report_products": ("stock_code",),
    "report_customers": ("customer_id",),
    "report_cancellations_by_country": ("country",),
    "report_adjustments": ("day", "invoice_no", "line_kind", "country"),
}


def kind(record) -> str:
    if record.invoice_no.startswith("A"):
        return "adjustment"
    if record.invoice_no.startswith("C"):
        return "cancellation"
    return "sale" if record.quantity > 0 else "stock_correction"


def amount(record) -> Decimal:
    return record.quantity * record.unit_price


def country(record) -> str:
    return "Unspecified" if record.country is None else record.country


def rate(part: Decimal, whole: Decimal) -> Decimal | None:
    return None if whole == 0 else (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def rank(values: dict, key: object) -> int:
    """RANK() over descending values: 1 + how many are strictly greater."""
    return 1 + sum(1 for other in values.values() if other > values[key])


def group(records: Iterable, by: Callable, where: Callable) -> dict:
    groups = defaultdict(list)
    for record in records:
        if where(record):
            groups[by(record)].append(record)
    return groups


def money_columns(lines: list) -> dict:
    """orders, cancellations, gross/cancelled/net revenue of sale and cancellation lines."""
    sales = [r for r in lines if kind(r) == "sale"]
    cancellations = [r for r in lines if kind(r) == "cancellation"]
    gross = sum(map(amount, sales), ZERO)
    cancelled = -sum(map(amount, cancellations), ZERO)
    return {
        "orders": len({r.invoice_no for r in sales}),
        "cancellations": len({r.invoice_no for r in cancellations}),
        "gross_revenue": gross,
        "cancelled_revenue": cancelled,
        "net_revenue": gross - cancelled,
    }


def expected_views(records: Iterable) -> dict[str, dict]:
    records = list(records)
    trading = lambda r: kind(r) in ("sale", "cancellation")  # noqa: E731
    views: dict[str, dict] = {}

    by_day_country = group(records, lambda r: (r.invoice_date.date(), country(r)), trading)
    views["report_revenue_by_day_country"] = {
        (day, place): {
            "day": day,
            "country": place,
            **money_columns(lines),
            "customers": len({r.customer_id for r in lines if r.customer_id is not None}),
            "net_revenue_without_customer": sum((amount(r) for r in lines if r.customer_id is None), ZERO),
        }
        for (day, place), lines in by_day_country.items()
    }

    by_product = group(
        records, lambda r: r.stock_code, lambda r: trading(r) and r.stock_code not in NOT_MERCHANDISE
    )
    products = {}
    for code, lines in by_product.items():
        money = money_columns(lines)
        descriptions = [r.description for r in lines if r.description is not None]
        # The description most sale lines carry (ties: the greatest), else the greatest of any line.
        on_sales = Counter(r.description for r in lines if kind(r) == "sale" and r.description is not None)
        sold = sum(r.quantity for r in lines if kind(r) == "sale")
        cancelled = -sum(r.quantity for r in lines if kind(r) == "cancellation")
        products[(code,)] = {
            "stock_code": code,
            "description": max(on_sales, key=lambda d: (on_sales[d], d)) if on_sales
            else max(descriptions) if descriptions else None,
            "orders": money["orders"],
            "quantity_sold": sold,
            "quantity_cancelled": cancelled,
            "net_quantity": sold - cancelled,
            "gross_revenue": money["gross_revenue"],
            "cancelled_revenue": money["cancelled_revenue"],
            "net_revenue": money["net_revenue"],
        }
    revenue = {key: row["net_revenue"] for key, row in products.items()}
    quantity = {key: row["net_quantity"] for key, row in products.items()}
    for key, row in products.items():
        row["revenue_rank"] = rank(revenue, key)
        row["quantity_rank"] = rank(quantity, key)
    views["report_products"] = products

    by_customer = group(records, lambda r: r.customer_id, lambda r: trading(r) and r.customer_id is not None)
    customers = {}
    for customer, lines in by_customer.items():
        money = money_columns(lines)
        order_days = [r.invoice_date.date() for r in lines if kind(r) == "sale"]
        customers[(customer,)] = {
            "customer_id": customer,
            "orders": money["orders"],
            "cancellations": money["cancellations"],
            "first_order_day": min(order_days, default=None),
            "last_order_day": max(order_days, default=None),
            "gross_revenue": money["gross_revenue"],
            "cancelled_revenue": money["cancelled_revenue"],
            "lifetime_value": money["net_revenue"],
        }
    views["report_customers"] = customers

    by_country = group(records, country, trading)
    cancellations = {}
    for place, lines in by_country.items():
        money = money_columns(lines)
        cancellations[(place,)] = {
            "country": place,
            "orders": money["orders"],
            "cancellations": money["cancellations"],
            "gross_revenue": money["gross_revenue"],
            "cancelled_revenue": money["cancelled_revenue"],
            "revenue_cancellation_rate": rate(money["cancelled_revenue"], money["gross_revenue"]),
            "invoice_cancellation_rate": rate(
                Decimal(money["cancellations"]), Decimal(money["orders"] + money["cancellations"])
            ),
        }
    views["report_cancellations_by_country"] = cancellations

    by_invoice = group(
        records, lambda r: (r.invoice_date.date(), r.invoice_no, kind(r), country(r)),
        lambda r: kind(r) in ("adjustment", "stock_correction"),
    )
    views["report_adjustments"] = {
        key: {
            "day": key[0],
            "invoice_no": key[1],
            "line_kind": key[2],
            "country": key[3],
            "description": max((r.description for r in lines if r.description is not None), default=None),
            "lines": len(lines),
            "quantity": sum(r.quantity for r in lines),
            "amount": sum(map(amount, lines), ZERO),
        }
        for key, lines in by_invoice.items()
    }
    return views


def read_views(cur, schema: str) -> dict[str, dict]:
    """The same shape read from the warehouse: SELECT * of every view, keyed likewise."""
    from psycopg2 import sql

    found = {}
    for view, key in KEYS.items():
        cur.execute(sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(view)))
        columns = [column.name for column in cur.description]
        rows = [dict(zip(columns, row)) for row in cur.fetchall()]
        found[view] = {tuple(row[k] for k in key): row for row in rows}
        assert len(found[view]) == len(rows), f"{view}: duplicate keys {key}"
    return found
