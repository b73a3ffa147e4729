"""Cursors, DynamoDB items back into records, and the two lookups against a
Query fake with DynamoDB's paging rules."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from decimal import Decimal

import pytest

from api.cursor import CursorCodec, InvalidCursor
from api.lookups import LookupUnavailable, TransactionLookups
from consumer.sinks.dynamodb import from_item, to_item
from retail_stream.schema import InvalidRecord, Transaction, event_id
from tests.support.api_fakes import FakeDynamoDB, customer_records
from tests.support.consumer_fakes import transaction

KEY = {"customer_id": {"N": "17850"}, "customer_sort": {"S": "2010-12-01T08:26:00#536365#ab"},
       "invoice_no": {"S": "536365"}, "event_id": {"S": "ab"}}


# --- cursors -----------------------------------------------------------------


def test_a_cursor_round_trips_and_is_url_safe():
    codec = CursorCodec("secret")
    token = codec.encode(KEY)
    assert codec.decode(token) == KEY
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def flip(token: str, position: int) -> str:
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    return "".join(chars)


def test_every_tampering_is_refused():
    codec = CursorCodec("secret")
    token = codec.encode(KEY)
    kid, body, tag = token.split(".")
    edited = {"k": dict(KEY, customer_id={"N": "12346"}), "iat": int(time.time())}
    forged = base64.urlsafe_b64encode(json.dumps(edited).encode()).rstrip(b"=").decode()
    for bad in [flip(token, 3), flip(token, 12), flip(token, len(token) - 2), f"{kid}.{forged}.{tag}",
                f"{kid}.{body}", f"{kid}.{body}.", f"{kid}..{tag}", token + "A", "", "not a cursor", "é.é.é",
                token * 40]:
        with pytest.raises(InvalidCursor):
            codec.decode(bad)


def test_a_cursor_from_another_secret_is_refused():
    with pytest.raises(InvalidCursor, match="no longer holds"):
        CursorCodec("other").decode(CursorCodec("secret").encode(KEY))
    # The same key id with another secret (a forged kid) fails on the signature.
    token = CursorCodec("secret").encode(KEY)
    other = CursorCodec("other")
    kid = other.encode(KEY).split(".")[0]
    with pytest.raises(InvalidCursor, match="not issued by this API"):
        other.decode(kid + token[token.index("."):])


def test_a_cursor_expires_after_its_time_to_live():
    now = [1_000_000.0]
    codec = CursorCodec("secret", ttl_seconds=60, clock=lambda: now[0])
    token = codec.encode(KEY)
    now[0] += 60
    assert codec.decode(token) == KEY
    now[0] += 1
    with pytest.raises(InvalidCursor, match="expired"):
        codec.decode(token)
    # Issued in the future (past a minute of skew): not ours to trust.
    future = CursorCodec("secret", clock=lambda: now[0] + 3600).encode(KEY)
    with pytest.raises(InvalidCursor):
        codec.decode(future)


def test_after_a_rotation_cursors_of_the_previous_secret_still_page_on():
    old = CursorCodec("old").encode(KEY)
    rotated = CursorCodec("new", previous="old")
    assert rotated.decode(old) == KEY
    assert rotated.encode(KEY).split(".")[0] != old.split(".")[0]  # new cursors name the new key
    with pytest.raises(InvalidCursor, match="no longer holds"):
        CursorCodec("newer", previous="new").decode(old)


def test_without_a_secret_each_codec_has_its_own():
    token = CursorCodec().encode(KEY)
    with pytest.raises(InvalidCursor):
        CursorCodec().decode(token)


def test_a_signed_cursor_of_the_wrong_shape_is_refused():
    codec = CursorCodec("secret")
    lookups = TransactionLookups(FakeDynamoDB(), "t", codec)
    for key in [{"invoice_no": {"S": "1"}}, dict(KEY, extra={"S": "x"}), dict(KEY, customer_id={"S": "17850"})]:
        with pytest.raises(InvalidCursor):
            lookups.customer_start_key(codec.encode(key), 17850)
    with pytest.raises(InvalidCursor, match="another customer"):
        lookups.customer_start_key(codec.encode(KEY), 99)
    for bad in [[1], {"a": "b"}, {"a": {"S": 1}}, {"a": {"S": "x", "N": "1"}}]:
        with pytest.raises(InvalidCursor):
            codec.decode(codec.encode(bad))


# --- DynamoDB item -> record -------------------------------------------------


def variety() -> list[Transaction]:
    base = transaction(1)
    return [
        base,
        transaction(2, customer=None),
        Transaction(**{**{f: getattr(base, f) for f in base.__struct_fields__},
                       "description": None, "country": None, "unit_price": Decimal("-0.0001"),
                       "quantity": -80995, "invoice_date": dt.datetime(2011, 12, 9, 12, 50, 7),
                       "line": 2**31 - 1, "event_id": event_id("x", 3)}),
        Transaction(**{**{f: getattr(base, f) for f in base.__struct_fields__},
                       "description": "12\" PINK HEART,\r\nSCALLOPED — ÉDGE", "unit_price": Decimal("38970"),
                       "invoice_no": "C536379", "stock_code": "D"}),
    ]


@pytest.mark.parametrize("record", variety())
def test_from_item_inverts_to_item(record):
    assert from_item(to_item(record)) == record


@pytest.mark.parametrize("item, message", [
    ({}, "'event_id'"),
    ({**to_item(transaction(1)), "quantity": {"S": "6"}}, "'quantity' of type N"),
    ({**to_item(transaction(1)), "quantity": {"N": "six"}}, "not a transaction"),
    ({**to_item(transaction(1)), "invoice_date": {"S": "yesterday"}}, "not a transaction"),
    ({**to_item(transaction(1)), "unit_price": {"N": "1.23456"}}, "not a transaction"),
    ({**to_item(transaction(1)), "event_id": "abc"}, "'event_id'"),
])
def test_from_item_names_what_is_wrong(item, message):
    with pytest.raises(InvalidRecord, match=message):
        from_item(item)


# --- lookups -----------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1000, 2, 3])
@pytest.mark.parametrize("limit", [1, 3, 7, 8])
def test_pages_walk_the_customer_newest_first_and_the_last_is_never_empty(limit, page_size):
    records = customer_records(7)
    fake = FakeDynamoDB(records + customer_records(3, customer=99), page_size=page_size)
    lookups = TransactionLookups(fake, "t", CursorCodec("s"))
    seen, cursor, pages = [], None, 0
    while True:
        page = lookups.customer_page(17850, limit, cursor)
        pages += 1
        assert page.records and len(page.records) <= limit
        seen.extend(page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(records, key=lambda r: r.invoice_date, reverse=True)
    assert pages == -(-7 // limit)
    assert all(q["ScanIndexForward"] is False and q["IndexName"] == "by_customer" for q in fake.queries)


def test_an_unknown_customer_has_an_empty_first_page():
    page = TransactionLookups(FakeDynamoDB(customer_records(2)), "t", CursorCodec("s")).customer_page(5, 20)
    assert page.records == [] and page.next_cursor is None


def test_invoice_lines_follow_every_page_and_come_by_source_and_line():
    lines = [transaction(n, invoice="536365") for n in (12, 3, 7, 1, 30)]
    other = [transaction(2, invoice="536366")]
    fake = FakeDynamoDB(lines + other, page_size=2)
    found = TransactionLookups(fake, "t", CursorCodec("s")).invoice_lines("536365")
    assert [r.line for r in found] == [1, 3, 7, 12, 30]
    assert len(fake.queries) == 3


def test_dynamodb_errors_are_lookup_unavailable():
    lookups = TransactionLookups(FakeDynamoDB(fail="ProvisionedThroughputExceededException"), "t", CursorCodec("s"))
    with pytest.raises(LookupUnavailable):
        lookups.invoice_lines("1")
    with pytest.raises(LookupUnavailable):
        lookups.customer_page(1, 5)
