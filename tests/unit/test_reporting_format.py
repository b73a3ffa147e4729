"""The reporting module's pure parts: cell and table formatting, the
sections, the JSON figures, the CLI's refusals, the optional chart."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal

import pytest

from reporting import chart, cli
from reporting.figures import figures, rate, render
from reporting.reports import BY_NAME, REPORTS
from reporting.text_table import MAX_TEXT_WIDTH, format_cell, format_section, format_table
from reporting.warehouse import DailyRevenue, ReportTable, Snapshot

D = Decimal


@pytest.fixture(autouse=True)
def logging_left_alone(monkeypatch):
    """cli.main configures structlog for the process, on the stderr it finds:
    here pytest's capture, closed after the test. Keep the tests' logging as it is."""
    monkeypatch.setattr(cli.logs, "configure", lambda *args, **kwargs: None)


@pytest.mark.parametrize(
    ("value", "column", "text"),
    [
        (None, "country", "-"),
        (D("1234567.8912"), "net_revenue", "1,234,567.89"),
        (D("-11062.0600"), "amount", "-11,062.06"),
        (D("0E-4"), "gross_revenue", "0.00"),
        (D("0.0526"), "revenue_cancellation_rate", "5.26%"),
        (D("1.0000"), "invoice_cancellation_rate", "100.00%"),
        (17850, "customer_id", "17850"),  # ids and counts: no thousands separator
        (12345678, "orders", "12345678"),
        (True, "is_merchandise", "yes"),
        (False, "is_merchandise", "no"),
        (dt.date(2010, 12, 1), "day", "2010-12-01"),
        ("RÉUNION", "country", "RÉUNION"),
        ("two\tlines\nhere", "description", "two lines here"),
        ("x" * (MAX_TEXT_WIDTH + 5), "description", "x" * (MAX_TEXT_WIDTH - 1) + "…"),
        ("x" * MAX_TEXT_WIDTH, "description", "x" * MAX_TEXT_WIDTH),
    ],
)
def test_format_cell(value, column, text):
    assert format_cell(value, column) == text


def test_format_table_aligns_numbers_right_and_text_left():
    table = format_table(
        ("country", "orders", "net_revenue", "rank"),
        [("United Kingdom", 67, D("53041.77"), None), ("EIRE", 3, D("-5.1"), 2)],
    )
    assert table.splitlines() == [
        "country         orders  net_revenue  rank",
        "--------------  ------  -----------  ----",
        "United Kingdom      67    53,041.77     -",
        "EIRE                 3        -5.10     2",
    ]


def test_format_table_left_aligns_a_column_that_mixes_text_and_numbers():
    table = format_table(("code",), [("85123A",), (22423,)])
    assert table.splitlines() == ["code", "------", "85123A", "22423"]


def test_format_table_without_rows_is_the_header_and_rule():
    assert format_table(("day", "net_revenue"), []) == "day  net_revenue\n---  -----------"


def test_format_section_says_how_many_rows_are_shown():
    assert format_section("Top", "report_products", "T", 10, 76) == "== Top (report_products: 10 of 76 rows) ==\nT"
    assert format_section("Top", "report_products", "T", 0, 0) == (
        "== Top (report_products: 0 of 0 rows) ==\n(no rows)"
    )


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [
        (D("286"), D("63603.8"), D("0.0045")),
        (D("1"), D("3"), D("0.3333")),
        (D("2"), D("3"), D("0.6667")),
        (D("0.00005"), D("1"), D("0.0001")),  # half away from zero, as ROUND() in both engines
        (D("-0.00005"), D("1"), D("-0.0001")),
        (D("5"), D("0"), None),
    ],
)
def test_rate(part, whole, expected):
    assert rate(part, whole) == expected


def snapshot(daily=(), tables=(), adjustments=None) -> Snapshot:
    return Snapshot(
        tables=tuple(tables),
        row_counts={"report_revenue_by_day_country": len(daily), "report_products": 0},
        daily=tuple(daily),
        adjustments=adjustments or {},
    )


def test_figures_add_up_the_days_and_keep_every_view_count():
    days = [
        DailyRevenue(dt.date(2010, 12, 1), D("100.10"), D("10.05"), D("90.05")),
        DailyRevenue(dt.date(2010, 12, 2), D("50.00"), D("0"), D("50.00")),
    ]
    result = figures(snapshot(days, adjustments={"adjustment": D("-11062.06")}), chart="build/r.png")
    assert result == {
        "views": {"report_revenue_by_day_country": 2, "report_products": 0},
        "days": 2,
        "first_day": dt.date(2010, 12, 1),
        "last_day": dt.date(2010, 12, 2),
        "gross_revenue": D("150.10"),
        "cancelled_revenue": D("10.05"),
        "net_revenue": D("140.05"),
        "revenue_cancellation_rate": D("0.0670"),
        "adjustments": {"adjustment": D("-11062.06")},
        "chart": "build/r.png",
    }


def test_figures_of_an_empty_warehouse():
    result = figures(snapshot())
    assert result["days"] == 0 and result["first_day"] is None and result["revenue_cancellation_rate"] is None
    assert result["net_revenue"] == 0 and result["chart"] is None


def test_figures_encode_as_one_json_line_with_exact_numbers():
    days = [DailyRevenue(dt.date(2010, 12, 1), D("0.1000"), D("0"), D("0.1000"))]
    line = cli._json.encode(figures(snapshot(days))).decode()
    assert "\n" not in line
    decoded = json.loads(line, parse_float=Decimal)
    assert decoded["gross_revenue"] == D("0.1") and decoded["first_day"] == "2010-12-01"


def test_render_prints_each_report_in_order():
    products, customers = BY_NAME["top_products_by_revenue"], BY_NAME["customers"]
    row = (1, "22423", "REGENCY CAKESTAND 3 TIER", 12, 375, D("4781.25"), D("0"), D("4781.25"))
    text = render(snapshot(tables=[ReportTable(products, (row,), 76), ReportTable(customers, (), 0)]))
    assert text.endswith("(no rows)\n")
    first, second = text.split("\n\n")
    assert first.splitlines()[0] == "== Top products by net revenue (report_products: 1 of 76 rows) =="
    assert first.splitlines()[3].split() == ["1", "22423", "REGENCY", "CAKESTAND", "3", "TIER", "12", "375",
                                              "4,781.25", "0.00", "4,781.25"]
    assert second.startswith("== Customers by lifetime value (report_customers: 0 of 0 rows) ==")


def test_every_report_orders_by_columns_it_shows_or_ranks():
    for report in REPORTS:
        assert report.view.startswith("report_")
        assert {column for column, _ in report.order_by} <= set(report.columns)


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--limit", "x"], ["--view", "nonsense"]])
def test_cli_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == 2
    assert capsys.readouterr().out == ""


def test_chart_without_matplotlib_is_a_clear_error_before_any_query(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(chart.ChartUnavailable, match=r"needs matplotlib.*retail-stream\[report\]"):
        chart.require_matplotlib()
    # A DSN nobody answers: the refusal must come before any connection attempt.
    monkeypatch.setenv("WAREHOUSE_DSN", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main(["--chart", str(tmp_path / "r.png")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--chart needs matplotlib" in err and "pip install" in err
    assert not (tmp_path / "r.png").exists()


def test_an_unreachable_warehouse_is_exit_status_1(monkeypatch, capsys):
    monkeypatch.setenv("WAREHOUSE_DSN", "postgresql://nobody@127.0.0.1:1/none")
    assert cli.main([]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "warehouse error" in err


def test_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    days = [DailyRevenue(dt.date(2010, 12, d), D(100 * d), D(d), D(99 * d)) for d in range(1, 31)]
    for count in (1, 2, 30):  # one day, a few (every day labelled), many (matplotlib's ticks)
        path = tmp_path / f"sub/{count}.png"
        chart.write_revenue_chart(days[:count], path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
