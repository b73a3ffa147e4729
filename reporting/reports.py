"""What the report prints: one section per view (two for products), each a
view, the columns shown and the order its top rows are taken in. Pure data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """One section: the top rows of `view`, ordered by `order_by` (column,
    descending) pairs, showing `columns`."""

    name: str
    title: str
    view: str
    columns: tuple[str, ...]
    order_by: tuple[tuple[str, bool], ...]


REVENUE_VIEW = "report_revenue_by_day_country"
ADJUSTMENTS_VIEW = "report_adjustments"

REPORTS: tuple[Report, ...] = (
    Report(
        "revenue_by_day_country", "Revenue by day and country, latest day first", REVENUE_VIEW,
        ("day", "country", "orders", "cancellations", "customers", "gross_revenue", "cancelled_revenue",
         "net_revenue", "net_revenue_without_customer"),
        (("day", True), ("net_revenue", True), ("country", False)),
    ),
    Report(
        "top_products_by_revenue", "Top products by net revenue", "report_products",
        ("revenue_rank", "stock_code", "description", "orders", "net_quantity", "gross_revenue",
         "cancelled_revenue", "net_revenue"),
        (("revenue_rank", False), ("stock_code", False)),
    ),
    Report(
        "top_products_by_quantity", "Top products by net quantity", "report_products",
        ("quantity_rank", "stock_code", "description", "orders", "quantity_sold", "quantity_cancelled",
         "net_quantity", "net_revenue"),
        (("quantity_rank", False), ("stock_code", False)),
    ),
    Report(
        "customers", "Customers by lifetime value", "report_customers",
        ("customer_id", "orders", "cancellations", "first_order_day", "last_order_day", "gross_revenue",
         "cancelled_revenue", "lifetime_value"),
        (("lifetime_value", True), ("customer_id", False)),
    ),
    Report(
        "cancellations_by_country", "Cancellations by country, most cancelled revenue first",
        "report_cancellations_by_country",
        ("country", "orders", "cancellations", "gross_revenue", "cancelled_revenue",
         "revenue_cancellation_rate", "invoice_cancellation_rate"),
        (("cancelled_revenue", True), ("country", False)),
    ),
    Report(
        "adjustments", "Adjustments and stock corrections (not in revenue), latest first", ADJUSTMENTS_VIEW,
        ("day", "invoice_no", "line_kind", "country", "description", "lines", "quantity", "amount"),
        (("day", True), ("invoice_no", False)),
    ),
)

BY_NAME = {report.name: report for report in REPORTS}
