"""api/ingest.py: bodies into candidates and checked items, hostile ones included."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from api.ingest import (
    MalformedBody,
    TooLarge,
    UnsupportedMediaType,
    check,
    media_type,
    read_body,
    source_problem,
)
from producer.csv_source import read_stream
from retail_stream.schema import CSV_COLUMNS, event_id, parse_row

HEADER = ",".join(CSV_COLUMNS)
GOOD_ROW = ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "12/1/2010 8:26", "2.55", "17850.0",
            "United Kingdom"]
GOOD = dict(zip(CSV_COLUMNS, GOOD_ROW))
JSON = "application/json"
CSV = "text/csv"


def body(value) -> bytes:
    return json.dumps(value).encode()


def checked(data: bytes, content_type: str = JSON, source: str = "s", max_items: int = 500):
    return check(read_body(data, content_type, max_items), source)


# --- media types -------------------------------------------------------------


@pytest.mark.parametrize("header, kind", [
    ("application/json", JSON),
    ("Application/JSON; charset=UTF-8", JSON),
    ("text/csv", CSV),
    ('text/csv; charset="utf-8"; header=present', CSV),
])
def test_media_types_taken(header, kind):
    assert media_type(header) == kind


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/x-www-form-urlencoded",
                                    "text/csv; charset=latin-1", "multipart/form-data; boundary=x"])
def test_other_media_types_are_415(header):
    with pytest.raises(UnsupportedMediaType):
        media_type(header)


# --- JSON --------------------------------------------------------------------


def test_a_json_object_is_one_item_with_line_1():
    [item] = checked(body(GOOD), source="feed")
    assert (item.index, item.line, item.reason) == (0, 1, None)
    assert item.record == parse_row(GOOD_ROW, "feed", 1)


def test_an_array_numbers_items_by_position_unless_they_carry_a_line():
    items = checked(body([GOOD, {**GOOD, "line": 40}, GOOD]), source="feed")
    assert [i.line for i in items] == [1, 40, 3]
    assert [i.record.event_id for i in items] == [event_id("feed", line) for line in (1, 40, 3)]


def test_numbers_are_taken_as_the_csv_would_hold_them_exactly():
    data = b'{"InvoiceNo": 536365, "StockCode": "85123A", "Quantity": 6, "InvoiceDate": "12/1/2010 8:26",' \
           b' "UnitPrice": 2.5500, "CustomerID": 17850.0, "Country": null}'
    [item] = checked(data)
    assert item.record.unit_price == Decimal("2.55") and str(item.record.unit_price) == "2.5500"
    assert item.record.invoice_no == "536365" and item.record.customer_id == 17850
    assert item.record.description is None and item.record.country is None


def test_a_price_is_never_rounded_through_a_float():
    [item] = checked(body({**GOOD, "UnitPrice": "0.1"}).replace(b'"0.1"', b"0.1000000000000000055511151231257827"))
    assert item.record is None and "more than 4 decimal places" in item.reason


@pytest.mark.parametrize("change, reason", [
    ({"Quantity": "3.5"}, "Quantity is not an integer: '3.5'"),
    ({"Quantity": 3.5}, "Quantity is not an integer: '3.5'"),
    ({"UnitPrice": "abc"}, "UnitPrice is not a number: 'abc'"),
    ({"InvoiceNo": ""}, "InvoiceNo is empty"),
    ({"InvoiceNo": None}, "InvoiceNo is empty"),
    ({"Quantity": True}, "Quantity must be a string or a number, not a boolean"),
    ({"Quantity": [6]}, "Quantity must be a string or a number, not an array"),
    ({"Country": {"name": "UK"}}, "Country must be a string or a number, not an object"),
    ({"Quantity": 10**80}, "Quantity is out of range"),
    ({"Quantity": 2**40}, "quantity out of range"),
    ({"UnitPrice": "1e999999999"}, "UnitPrice is not a number: '1e999999999'"),
    ({"line": 0}, "line must be an integer from 1 to 2147483647"),
    ({"line": "2"}, "line must be an integer from 1 to 2147483647"),
    ({"line": 2.0}, "line must be an integer from 1 to 2147483647"),
    ({"line": True}, "line must be an integer from 1 to 2147483647"),
    ({"invoice_no": "1"}, "unknown field 'invoice_no'"),
    ({"Description": "x\x00y"}, "description contains a control character"),
])
def test_a_bad_item_is_rejected_alone_with_the_producers_reason(change, reason):
    items = checked(body([GOOD, {**GOOD, **change, **({} if "line" in change else {"line": 2})}]))
    assert items[0].record is not None
    assert items[1].record is None and items[1].reason.startswith(reason)


def test_a_huge_exponent_is_out_of_range_without_expanding_it():
    started = time.perf_counter()
    [item] = checked(body(GOOD).replace(b'"2.55"', b"1e999999999"))
    assert item.reason == "UnitPrice is out of range"
    assert time.perf_counter() - started < 0.5


def test_a_line_used_twice_rejects_the_later_item():
    items = checked(body([GOOD, {**GOOD, "line": 1}, {**GOOD, "line": 7}, {**GOOD, "line": 7}]))
    assert [i.reason is None for i in items] == [True, False, True, False]
    assert "line 1 is also item 0's" in items[1].reason


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"  \r\n", "empty"),
    (b"[]", "no transactions"),
    (b"{", "not JSON"),
    (b"nul", "not JSON"),
    (b"NaN", "not JSON"),
    (b'"text"', "JSON object or an array"),
    (b"42", "JSON object or an array"),
    (b"[1, 2]", "item 0 is not a JSON object"),
    (b"[{}, [{}]]", "item 1 is not a JSON object"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"a":' * 50_000, "nested too deeply"),
    (b'[{"Description": ' + b"[" * 5_000 + b"]" * 5_000 + b"}]", "nested too deeply"),
    (b'{"InvoiceNo": "\xff"}', "UTF-8"),
    (b"\xff\xfe{\x00}\x00", "not"),
    (b'{"a": 1} trailing', "not JSON"),
])
def test_a_malformed_json_body_is_400(data, message):
    with pytest.raises(MalformedBody, match=message):
        read_body(data, JSON, 500)


def test_a_json_body_with_a_byte_order_mark_is_read():
    [item] = checked(b"\xef\xbb\xbf" + body(GOOD))
    assert item.record is not None


def test_deeply_nested_values_inside_an_item_do_not_break_the_request():
    data = b'[{"Description": ' + b"[" * 50 + b"]" * 50 + b"}]"
    [item] = checked(data)
    assert item.reason == "Description must be a string or a number, not an array"


def test_more_items_than_allowed_is_413():
    with pytest.raises(TooLarge, match="3 items"):
        read_body(body([GOOD] * 3), JSON, 2)
    assert len(read_body(body([GOOD] * 2), JSON, 2)) == 2


# --- CSV ---------------------------------------------------------------------


def test_csv_rows_keep_the_line_numbers_read_rows_gives():
    text = f"\ufeff{HEADER}\r\n{','.join(GOOD_ROW)}\r\n\r\n" \
           f'536367,23403,"12"" PINK HEART,\r\nSCALLOPED EDGE",2,12/1/2010 8:34,1.25,,RÉUNION\r\n' \
           f"{','.join(GOOD_ROW)},extra\r\n"
    items = checked(text.encode(), CSV, source="file.csv")
    assert [i.line for i in items] == [2, 4, 6]
    assert [i.index for i in items] == [0, 1, 2]
    assert items[1].record.description == '12" PINK HEART,\r\nSCALLOPED EDGE'
    assert items[2].record is None and items[2].reason == "expected 8 fields, found 9"
    # The very rows and numbers the producer reads from a file.
    import io
    assert [line for line, _ in read_stream(io.BytesIO(text.encode()), "x")] == [2, 4, 6]


@pytest.mark.parametrize("data, message", [
    (b"a,b\n1,2\n", "line 1: header"),
    (HEADER.encode() + b"\n", "no transactions"),
    (HEADER.encode() + b"\n536365,\xff\n", "line 2: not UTF-8"),
    (HEADER.encode() + b"\n" + b"x" * 200_000 + b"\n", "malformed CSV"),
])
def test_a_malformed_csv_body_is_400(data, message):
    with pytest.raises(MalformedBody, match=message):
        read_body(data, CSV, 500)


def test_an_online_retail_ii_csv_body_is_taken_as_the_first_release():
    header_ii = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
    items = checked(f"{header_ii}\n{','.join(GOOD_ROW)}\n".encode(), CSV, source="ii.csv")
    assert [(i.line, i.record.event_id) for i in items] == [(2, event_id("ii.csv", 2))]


def test_an_unterminated_quote_is_one_short_row_as_in_a_file():
    [item] = checked(HEADER.encode() + b'\n1,"unterminated\n', CSV)
    assert item.reason == "expected 8 fields, found 2"


def test_a_csv_with_more_rows_than_allowed_is_413():
    rows = "\n".join([",".join(GOOD_ROW)] * 3)
    with pytest.raises(TooLarge):
        read_body(f"{HEADER}\n{rows}\n".encode(), CSV, 2)


# --- source ------------------------------------------------------------------


@pytest.mark.parametrize("source, ok", [
    ("TestSample.csv", True), ("api-0f", True), ("café ☕", True), ("", False), ("x" * 256, False),
    ("a\nb", False), ("a\x00", False), ("\ud800", False),
])
def test_source_problem(source, ok):
    assert (source_problem(source) is None) == ok
