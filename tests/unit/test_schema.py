"""retail_stream.schema: parse_row's quirks of the Online Retail data, and the wire form."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from retail_stream.schema import InvalidRecord, decode, encode, event_id, parse_row

BASE = ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "12/1/2010 8:26", "2.55", "17850.0", "United Kingdom"]
COLUMN = {"invoice": 0, "stock": 1, "description": 2, "quantity": 3, "date": 4, "price": 5, "customer": 6, "country": 7}


def row(**changes: str) -> list[str]:
    fields = list(BASE)
    for name, value in changes.items():
        fields[COLUMN[name]] = value
    return fields


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12/1/2010 8:26", dt.datetime(2010, 12, 1, 8, 26)),
        ("1/10/2011 17:05", dt.datetime(2011, 1, 10, 17, 5)),
        ("12/9/2011 12:50:07", dt.datetime(2011, 12, 9, 12, 50, 7)),
        ("12/1/2010", dt.datetime(2010, 12, 1)),
        ("2010-12-01T08:26:00", dt.datetime(2010, 12, 1, 8, 26)),
        ("2010-12-01 08:26", dt.datetime(2010, 12, 1, 8, 26)),
        ("2010-12-01T09:26:00+01:00", dt.datetime(2010, 12, 1, 8, 26)),  # to UTC, naive
    ],
)
def test_invoice_dates(text, expected):
    assert parse_row(row(date=text), "s.csv", 2).invoice_date == expected


@pytest.mark.parametrize(
    "text, expected", [("17850", 17850), ("17850.0", 17850), (" 17850 ", 17850), ("", None), ("   ", None)]
)
def test_customer_ids(text, expected):
    assert parse_row(row(customer=text), "s.csv", 2).customer_id == expected


def test_partition_key_is_the_customer_or_else_the_invoice():
    assert parse_row(row(), "s.csv", 2).partition_key == "c17850"
    assert parse_row(row(customer=""), "s.csv", 2).partition_key == "i536365"


@pytest.mark.parametrize(
    "changes, check",
    [
        ({"invoice": "C536379", "stock": "D", "description": "Discount", "quantity": "-1", "price": "27.5"},
         lambda r: r.invoice_no == "C536379" and r.quantity == -1),
        ({"invoice": "A563185", "stock": "B", "description": "Adjust bad debt", "quantity": "1",
          "price": "-11062.06", "customer": ""},
         lambda r: r.unit_price == Decimal("-11062.06") and r.customer_id is None),
        ({"description": "", "price": "0.0"}, lambda r: r.description is None and r.unit_price == 0),
        ({"description": "  CERAMIC PLATE Ø 20CM "}, lambda r: r.description == "CERAMIC PLATE Ø 20CM"),
        ({"country": "RÉUNION"}, lambda r: r.country == "RÉUNION"),
    ],
    ids=["cancellation", "adjustment", "empty-description", "non-ascii-stripped", "non-ascii-country"],
)
def test_valid_quirks(changes, check):
    assert check(parse_row(row(**changes), "s.csv", 2))


@pytest.mark.parametrize(
    "fields, reason",
    [
        (row(invoice=""), "InvoiceNo is empty"),
        (row(invoice="  "), "InvoiceNo is empty"),
        (row(stock=""), "StockCode is empty"),
        (row(quantity="3.5"), "Quantity is not an integer"),
        (row(quantity=""), "Quantity is not an integer"),
        (row(price="abc"), "UnitPrice is not a number"),
        (row(price="NaN"), "UnitPrice is not a number: 'NaN'"),
        (row(price="0.00001"), "more than 4 decimal places"),
        (row(date="2010-13-45 99:99"), "InvoiceDate is not a date"),
        (row(date="13/1/2010 8:26"), "InvoiceDate is not a date"),
        (row(date=""), "InvoiceDate is not a date"),
        (row(customer="12A45"), "CustomerID is not a positive integer"),
        (row(customer="17850.5"), "CustomerID is not a positive integer"),
        (row(customer="0"), "CustomerID is not a positive integer"),
        (row(quantity=str(2**31)), "quantity out of range"),
        (row(invoice="X" * 33), "InvoiceNo longer than 32"),
        (BASE + ["extra"], "expected 8 fields, found 9"),
        (BASE[:7], "expected 8 fields, found 7"),
    ],
)
def test_invalid_rows_are_rejected_with_a_reason(fields, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_row(fields, "s.csv", 2)


def test_event_id_is_stable_per_source_and_line():
    a = parse_row(row(), "s.csv", 2)
    assert a.event_id == parse_row(row(quantity="7"), "s.csv", 2).event_id == event_id("s.csv", 2)
    assert a.event_id != parse_row(row(), "s.csv", 3).event_id != parse_row(row(), "s.csv~1", 2).event_id


@pytest.mark.parametrize("price", ["2.55", "0.001", "-11062.06", "1234567890.1234", "0.10", "18"])
def test_unit_price_round_trips_exactly(price):
    record = parse_row(row(price=price), "s.csv", 2)
    data = encode(record)
    assert f'"unit_price":{price},'.encode() in data  # the exact digits, never through a float
    assert decode(data) == record
    assert str(decode(data).unit_price) == price


def wire(**changes) -> bytes:
    body = json.loads(encode(parse_row(row(), "s.csv", 2)))
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"\x00\xff\xfe", id="binary"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(wire(quantity=...), id="missing-field"),
        pytest.param(wire(extra=1), id="extra-field"),
        pytest.param(wire(quantity="6"), id="quantity-as-string"),
        pytest.param(wire(customer_id=17850.5), id="customer-float"),
        pytest.param(wire(event_id="x"), id="bad-event-id"),
        pytest.param(wire(invoice_no=""), id="empty-invoice"),
        pytest.param(wire(line=0), id="line-zero"),
        pytest.param(wire(unit_price="2.55x"), id="price-text"),
    ],
)
def test_decode_rejects_what_is_not_a_transaction(data):
    with pytest.raises(InvalidRecord):
        decode(data)


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("price", "2.55001", "more than 4 decimal places"),
        ("quantity", "1_000", "Quantity is not an integer"),
        ("quantity", "\u0663", "Quantity is not an integer"),
        ("customer", "1_7850", "CustomerID is not a positive integer"),
        ("description", "a\x00b", "control character"),
        ("invoice", "\u00c9" * 17, "longer than 32 bytes"),
    ],
)
def test_values_the_warehouse_would_refuse_are_rejected_at_the_source(field, value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        parse_row(row(**{field: value}), "t.csv", 2)


def test_trailing_zeros_in_a_price_are_accepted_exactly():
    record = parse_row(row(price="2.55000"), "t.csv", 2)
    assert decode(encode(record)).unit_price == Decimal("2.55")
