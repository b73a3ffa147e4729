"""The pure parts of reconcile and rebuild: windows, raw-zone keys read
back, the comparison and its report."""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from consumer.batch import Position
from consumer.sinks.raw_zone import from_ndjson_gz, object_key, parse_object_key, to_ndjson_gz
from reconcile.cli import report_key, window_of
from reconcile.compare import money, reconcile
from reconcile.stores import Held, _like_prefix
from reconcile.window import RawRow, RawWindow, Window
from rebuild.cli import batch_of
from retail_stream.schema import InvalidRecord
from retail_stream.settings import Settings
from tests.support.consumer_fakes import make_batch, transaction

UTC = dt.timezone.utc


@given(first=st.integers(0, 10**30), length=st.integers(0, 10**6), first_sub=st.integers(0, 10**4),
       last_sub=st.integers(0, 10**4), arrival=st.integers(0, 4_102_444_800_000))
def test_a_raw_zone_key_reads_back_as_the_batch_that_named_it(first, length, first_sub, last_sub, arrival):
    batch = make_batch([transaction(1)], first=Position(str(first), first_sub),
                       last=Position(str(first + length), last_sub))
    batch = type(batch)(batch.shard_id, batch.records, (), batch.first, batch.last, arrival)
    key = object_key("raw/transactions", batch)
    name = parse_object_key(key)
    assert (name.key, name.day, name.shard_id, name.first, name.last) == (
        key, batch.partition_date, batch.shard_id, batch.first, batch.last)
    assert object_key("raw/transactions", batch_of(name, to_ndjson_gz(batch.records, 1))) == key


@pytest.mark.parametrize("key", [
    "raw/transactions/dt=2026-12-06/shard=s-1/1-2.ndjson",  # not gzip
    "raw/transactions/dt=2026-12-06/shard=s-1/a-2.ndjson.gz",
    "raw/transactions/dt=26-12-06/shard=s-1/1-2.ndjson.gz",
    "raw/transactions/dt=2026-12-06/1-2.ndjson.gz",
    "load-queue/transactions/x.json",
])
def test_keys_the_consumer_did_not_write_are_not_objects(key):
    assert parse_object_key(key) is None


def test_rows_read_back_equal_the_rows_written_and_a_stray_line_is_named():
    rows = [transaction(n) for n in range(1, 4)]
    assert from_ndjson_gz(to_ndjson_gz(tuple(rows), 1)) == rows
    stray = gzip.compress(gzip.decompress(to_ndjson_gz((rows[0],), 1)) + b"{not json}\n")
    with pytest.raises(InvalidRecord, match="line 2"):
        from_ndjson_gz(stray)


def test_hourly_windows_tile_time_and_list_the_day_before():
    at = dt.datetime(2026, 12, 6, 0, 42, tzinfo=UTC)
    window = Window.last_hours(1, at)
    assert (window.written_from, window.written_to) == (dt.datetime(2026, 12, 5, 23, tzinfo=UTC),
                                                      dt.datetime(2026, 12, 6, 0, tzinfo=UTC))
    assert window.days() == ["2026-12-04", "2026-12-05"]
    assert window.written(dt.datetime(2026, 12, 5, 23, tzinfo=UTC))
    assert not window.written(dt.datetime(2026, 12, 6, 0, tzinfo=UTC))  # the next hour's
    later = Window.last_hours(1, at + dt.timedelta(hours=1))
    assert later.written_from == window.written_to
    assert Window.last_days(3, dt.date(2026, 12, 1)).days() == ["2026-11-29", "2026-11-30", "2026-12-01"]


def test_a_window_refuses_to_end_before_it_starts():
    with pytest.raises(ValueError, match="ends"):
        Window(dt.date(2026, 12, 6), dt.date(2026, 12, 5))
    with pytest.raises(ValueError, match="--days"):
        Window.last_days(0, dt.date(2026, 12, 6))
    with pytest.raises(ValueError, match="both ends"):
        Window(dt.date(2026, 12, 6), dt.date(2026, 12, 6), written_from=dt.datetime(2026, 12, 6, tzinfo=UTC))


def test_the_cli_window_waits_out_the_settle_time_before_an_hour_counts():
    args = argparse.Namespace(first=None, last=None, days=None, hours=2, settle_seconds=600,
                              invoice_from=dt.date(2010, 12, 1), invoice_to=None)
    window = window_of(args, dt.datetime(2026, 12, 6, 14, 5, tzinfo=UTC))  # 13:55 after the settle time
    assert (window.written_from.hour, window.written_to.hour, window.invoice_from) == (11, 13, dt.date(2010, 12, 1))
    key = report_key(Settings(), window, dt.datetime(2026, 12, 6, 14, 5, 9, tzinfo=UTC))
    assert key == "reports/reconciliation/dt=2026-12-06/2026-12-05_2026-12-06-20261206T140509Z.json"


def test_like_patterns_take_a_prefix_literally():
    assert _like_prefix("raw/trans_actions%/dt=2026-12-06/") == "raw/trans\\_actions\\%/dt=2026-12-06/%"


def raw_window(*batches) -> RawWindow:
    rows, names = {}, []
    for batch in batches:
        name = parse_object_key(object_key("raw", batch))
        names.append(name)
        for row in batch.records:
            rows.setdefault(row.event_id, RawRow.of(row, name))
    return RawWindow(tuple(names), (), frozenset(n.key for n in names), sum(len(b.records) for b in batches), rows)


def held(rows, copies: int = 1) -> dict[str, Held]:
    return {r.event_id: Held(r.quantity * copies, r.quantity * r.unit_price * copies, copies) for r in rows}


WINDOW = Window(dt.date(2010, 12, 1), dt.date(2010, 12, 1))


def test_every_store_agreeing_is_no_drift_with_equal_exact_sums():
    batch = make_batch([transaction(n) for n in range(1, 6)], first="10", last="14")
    raw = raw_window(batch)
    report = reconcile(WINDOW, raw, held(batch.records), held(batch.records), [n.key for n in raw.objects], [])
    assert report.drift == 0
    assert report.figures["raw_zone"]["amount"] == report.figures["warehouse"]["amount"] == "76.5000"
    assert report.figures["dynamodb"]["quantity"] == 30


def test_each_kind_of_drift_is_counted_in_its_store_and_named_by_shard_and_position():
    one = make_batch([transaction(n) for n in range(1, 4)], first="10", last="12")
    two = make_batch([transaction(n) for n in range(4, 7)], first=Position("20", 1), last=Position("20", 3))
    raw = raw_window(one, two)
    dynamodb = held(one.records + two.records[1:])  # the first of two missing
    warehouse = {**held(one.records[1:]), **held(two.records[:1], copies=2), **held(two.records[1:])}
    warehouse[two.records[2].event_id] = Held(99, Decimal("1"), 1)  # another quantity
    lost = "raw/dt=2010-12-01/shard=x/1-2.ndjson.gz"
    report = reconcile(WINDOW, raw, dynamodb, warehouse, [parse_object_key(object_key("raw", one)).key],
                       [lost, raw.objects[0].key])
    assert report.drift_by_store == {"raw_zone": 1, "dynamodb": 1, "warehouse": 3}
    document = report.as_dict()
    [gone] = document["missing"]["dynamodb"]
    assert (gone["event_id"], gone["shard_id"], gone["first"], gone["last"]) == (
        two.records[0].event_id, two.shard_id, "20.1", "20.3")
    assert [e["event_id"] for e in document["missing"]["warehouse"]] == [one.records[0].event_id]
    assert [e["event_id"] for e in document["doubled"]["warehouse"]] == [two.records[0].event_id]
    assert [e["event_id"] for e in document["differing"]["warehouse"]] == [two.records[2].event_id]
    assert document["lost_objects"] == [lost]
    assert document["unloaded_objects"] == [raw.objects[1].key]  # listed, not drift by itself
    assert document["by_shard"] == {one.shard_id: {"warehouse": 1}, two.shard_id: {"dynamodb": 1, "warehouse": 2}}
    assert document["stores"]["warehouse"]["rows"] == 6  # 2 of one, 2 + 1 + 1 of two
    assert len(report.as_dict(max_listed=0)["missing"]["dynamodb"]) == 0


def test_amounts_are_spelt_at_the_prices_scale():
    assert money(Decimal("229.5")) == "229.5000"
    assert money(Decimal("-0.00005") * 2) == "-0.0001"
