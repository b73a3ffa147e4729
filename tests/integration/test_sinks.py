"""Each sink's contract against the real emulator and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import uuid

import msgspec
import psycopg2
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from psycopg2 import sql

from consumer.batch import DeadLetter, Position
from consumer.sinks.dynamodb import CUSTOMER_INDEX
from consumer.sinks.warehouse import Target, jsonpaths_fields, merge_statements, redshift_copy_statement
from consumer.wiring import build_sinks, jsonpaths_document, service_clients
from retail_stream import aws
from retail_stream.schema import decode
from tests.support.consumer_fakes import make_batch, stream_record, transaction

pytestmark = pytest.mark.integration


def unique_invoice() -> str:
    return str(uuid.uuid4().int % 10**9)


def sinks(settings):
    """The service's sinks, wired as the service wires them, on the local servers."""
    return build_sinks(settings, service_clients(settings))


def warehouse(settings, query, *params):
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def test_dynamodb_rows_found_by_invoice_and_by_customer_newest_first(settings):
    client = aws.client("dynamodb", settings)
    invoice = unique_invoice()
    customer = 40_000 + int(invoice) % 10_000
    records = [transaction(i, customer=customer, invoice=invoice) for i in range(1, 31)]
    records.append(transaction(99, customer=None, invoice=invoice))
    sink = sinks(settings).dynamodb
    sink.write(make_batch(records))
    sink.write(make_batch(records))  # a replay overwrites, adds nothing

    lines = client.query(
        TableName=settings.dynamodb_table,
        KeyConditionExpression="invoice_no = :i",
        ExpressionAttributeValues={":i": {"S": invoice}},
    )["Items"]
    assert len(lines) == 31
    by_customer = client.query(
        TableName=settings.dynamodb_table,
        IndexName=CUSTOMER_INDEX,
        KeyConditionExpression="customer_id = :c",
        ExpressionAttributeValues={":c": {"N": str(customer)}},
        ScanIndexForward=False,
    )["Items"]
    assert len(by_customer) == 30  # the row without a customer is not in the index
    sorts = [item["customer_sort"]["S"] for item in by_customer]
    assert sorts == sorted(sorts, reverse=True)
    assert {item["unit_price"]["N"] for item in lines} == {"2.55"}


def test_raw_zone_object_is_created_once_and_holds_the_batch(settings):
    s3 = aws.client("s3", settings)
    sink = sinks(settings).raw_zone
    batch = make_batch([transaction(i, invoice=unique_invoice()) for i in range(1, 4)])
    sink.write(batch)
    sink.write(batch)  # the conditional create refuses, and that is success
    body = s3.get_object(Bucket=settings.s3_bucket, Key=sink.key_for(batch))["Body"].read()
    assert [decode(line) for line in gzip.decompress(body).splitlines()] == list(batch.records)


def test_warehouse_load_is_idempotent_across_batch_boundaries(settings):
    wired = sinks(settings)
    raw_zone, warehouse_sink = wired.raw_zone, wired.warehouse
    invoice = unique_invoice()
    records = [transaction(i, invoice=invoice) for i in range(1, 11)]
    shard = f"shardId-{invoice}"
    first = make_batch(records[:6], "1", "6", shard=shard)
    # After a crash the shard is re-read with other boundaries: rows 4-10.
    second = make_batch(records[3:], "4", "10", shard=shard)
    for batch in (first, first, second, second):
        raw_zone.write(batch)
        warehouse_sink.write(batch)

    rows = warehouse(
        settings,
        "SELECT count(*), count(DISTINCT event_id), sum(quantity), min(unit_price::text) "
        "FROM retail.transactions WHERE invoice_no = %s",
        invoice,
    )
    assert rows == [(10, 10, 60, "2.5500")]
    ledger = warehouse(
        settings, "SELECT rows_in_object, rows_inserted FROM retail.load_ledger WHERE shard_id = %s "
        "ORDER BY first_sequence", shard,
    )
    assert ledger == [(6, 6), (7, 4)]


cuts = st.lists(st.integers(1, 29), max_size=6).map(lambda points: sorted(set(points)))


@given(first_cuts=cuts, replays=st.lists(st.tuples(st.integers(0, 29), st.integers(1, 30)), min_size=1, max_size=4))
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_replaying_any_part_of_earlier_batches_in_any_cut_adds_no_row(settings, first_cuts, replays):
    """30 rows over a week, loaded in one cut, then any runs of them again in
    other cuts (new objects, so the ledger cannot tell): the bounded merge
    on (invoice_date, event_id) keeps every row once."""
    wired = sinks(settings)
    invoice = unique_invoice()
    base = dt.datetime(2011, 3, 1)
    records = [msgspec.structs.replace(transaction(i, invoice=invoice),
                                       invoice_date=base + dt.timedelta(days=(i * 5) % 7, minutes=i))
               for i in range(1, 31)]
    shard = f"shardId-{invoice}"
    bounds = [0, *first_cuts, 30]
    loads = list(zip(bounds, bounds[1:])) + [(start, max(start + 1, stop)) for start, stop in replays]
    for start, stop in loads:
        stop = min(stop, 30)
        batch = make_batch(records[start:stop], str(start + 1), str(stop), shard=shard)
        wired.raw_zone.write(batch)
        wired.warehouse.write(batch)
    rows = warehouse(settings, "SELECT count(*), count(DISTINCT event_id) FROM retail.transactions "
                     "WHERE invoice_no = %s", invoice)
    assert rows == [(30, 30)]


def test_the_merge_reads_only_the_batchs_days(settings):
    """PostgreSQL's plan for the merge looks rows up by the (invoice_date,
    event_id) index within the stage's dates: never a scan of the whole table."""
    statements = merge_statements(Target("retail", "transactions", jsonpaths_fields(jsonpaths_document())))
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(statements["stage"])
        cur.execute(sql.SQL("INSERT INTO stage_transactions SELECT * FROM retail.transactions LIMIT 50"))
        cur.execute(statements["analyze"])
        cur.execute(sql.SQL("EXPLAIN ") + statements["merge"], (dt.datetime(2011, 1, 1), dt.datetime(2011, 1, 8)))
        plan = "\n".join(row[0] for row in cur.fetchall())
        conn.rollback()
    conn.close()
    assert "transactions_day_event" in plan, plan
    assert "Seq Scan on transactions t" not in plan, plan


def test_batches_cut_inside_one_aggregate_reach_the_warehouse_once_each(settings):
    """Ten user records of one KPL aggregate (one sequence number), cut in
    three batches, then re-read after a crash from sub-sequence 3 and cut in
    one: every row once, and the ledger names both ends of every object."""
    wired = sinks(settings)
    raw_zone, warehouse_sink = wired.raw_zone, wired.warehouse
    invoice = unique_invoice()
    records = [transaction(i + 1, invoice=invoice) for i in range(10)]
    shard = f"shardId-{invoice}"
    cuts = [(0, 3), (4, 7), (8, 9), (4, 9)]
    for first, last in cuts:
        batch = make_batch(records[first:last + 1], Position("7", first), Position("7", last), shard=shard)
        raw_zone.write(batch)
        warehouse_sink.write(batch)
    rows = warehouse(settings, "SELECT count(*), count(DISTINCT event_id) FROM retail.transactions "
                     "WHERE invoice_no = %s", invoice)
    assert rows == [(10, 10)]
    ledger = warehouse(
        settings, "SELECT object_key, first_sequence, first_sub_sequence, last_sequence, last_sub_sequence, "
        "rows_in_object, rows_inserted FROM retail.load_ledger WHERE shard_id = %s ORDER BY loaded_at", shard)
    assert [row[1:] for row in ledger] == [("7", 0, "7", 3, 4, 4), ("7", 4, "7", 7, 4, 4),
                                           ("7", 8, "7", 9, 2, 2), ("7", 4, "7", 9, 6, 0)]
    assert [row[0].rsplit("/", 1)[1] for row in ledger] == [
        "7-7.3.ndjson.gz", "7.4-7.7.ndjson.gz", "7.8-7.9.ndjson.gz", "7.4-7.9.ndjson.gz"]


def test_warehouse_rows_keep_every_value_exactly(settings):
    wired = sinks(settings)
    raw_zone, warehouse_sink = wired.raw_zone, wired.warehouse
    invoice = unique_invoice()
    record = transaction(1, customer=None, invoice=invoice)
    batch = make_batch([record])
    raw_zone.write(batch)
    warehouse_sink.write(batch)
    row = warehouse(
        settings,
        "SELECT event_id, invoice_no, stock_code, description, quantity, invoice_date, unit_price, "
        "customer_id, country, source, line FROM retail.transactions WHERE invoice_no = %s",
        invoice,
    )[0]
    assert row == tuple(getattr(record, f) for f in record.__struct_fields__)


def test_dead_letters_land_with_their_raw_bytes(settings):
    s3 = aws.client("s3", settings)
    sink = sinks(settings).dead_letters
    shard = f"shardId-{uuid.uuid4().hex[:8]}"
    garbage = DeadLetter(stream_record(5, data=b"\x00garbage"), "JSON is malformed")
    assert sink.write(make_batch([], dead=[garbage], shard=shard)) == 1
    # Re-read after a crash, the shard cuts its batch elsewhere: still one dead letter.
    other = DeadLetter(stream_record(6, data=b"[]"), "not an object")
    sink.write(make_batch([], dead=[garbage, other], shard=shard))
    listed = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{settings.s3_dead_letter_prefix}/")
    keys = sorted(o["Key"] for o in listed["Contents"] if f"shard={shard}/" in o["Key"])
    assert len(keys) == 2
    line = json.loads(s3.get_object(Bucket=settings.s3_bucket, Key=keys[0])["Body"].read())
    assert line["reason"] == "JSON is malformed" and line["sequence_number"] == "5"
    assert base64.b64decode(line["data_base64"]) == b"\x00garbage"


def test_redshift_copy_parses_as_redshift_sql(settings):
    target = Target("retail", "transactions", jsonpaths_fields(jsonpaths_document()))
    statement = redshift_copy_statement(
        target,
        "s3://retail-raw/raw/transactions/dt=2010-12-01/shard=shardId-0/1-9.ndjson.gz",
        "arn:aws:iam::123456789012:role/redshift-copy",
        "s3://retail-raw/jsonpaths/transactions.jsonpaths",
    )
    with psycopg2.connect(settings.warehouse_dsn) as conn:
        text = statement.as_string(conn)
    conn.close()
    assert text.startswith('COPY "stage_transactions" ("event_id", "invoice_no"')
    assert "IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy'" in text
    assert "FORMAT AS JSON 's3://retail-raw/jsonpaths/transactions.jsonpaths' GZIP" in text
    parsed = sqlglot.parse_one(text, read="redshift")
    assert parsed.key == "copy"


def test_every_load_statement_parses_as_redshift(settings):
    statements = merge_statements(Target("retail", "transactions", jsonpaths_fields(jsonpaths_document())))
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        for name, statement in statements.items():
            text = cur.mogrify(statement, ("k", "s", "1", 0, "9", 0, 9, 9, dt.datetime(2011, 1, 1))[
                :statement.as_string(conn).count("%s")]).decode()
            if name == "merge":
                text = cur.mogrify(statement, (dt.datetime(2011, 1, 1), dt.datetime(2011, 1, 8))).decode()
                assert "BETWEEN '2011-01-01T00:00:00'::timestamp AND '2011-01-08T00:00:00'::timestamp" in text
                text = text.replace("::timestamp", "")  # psycopg2's cast; Redshift reads the bare literal
            assert len(sqlglot.parse(text, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)) == 1, name
    conn.close()


def test_a_hostile_literal_stays_a_literal(settings):
    target = Target("retail", "transactions", ("event_id",))
    statement = redshift_copy_statement(target, "s3://b/k'; DROP TABLE x; --", "arn:aws:iam::1:role/r", "s3://b/p")
    with psycopg2.connect(settings.warehouse_dsn) as conn:
        text = statement.as_string(conn)
    conn.close()
    assert "FROM 's3://b/k''; DROP TABLE x; --'" in text
    assert len(sqlglot.parse(text, read="redshift")) == 1


def test_items_with_foreign_text_are_stored_exactly_as_sent(settings):
    # The sink's request bodies are made by us, not by botocore's serializer
    # (consumer.sinks.batch_write): what a real server reads back must be the rows.
    from consumer.sinks.dynamodb import from_item
    from tests.unit.test_batch_write import ODD_RECORDS

    invoice = unique_invoice()
    rows = {r.event_id: msgspec.structs.replace(r, invoice_no=invoice) for r in ODD_RECORDS}  # the later row wins
    assert sinks(settings).dynamodb.write(make_batch(list(rows.values()))) == len(rows)
    items = aws.client("dynamodb", settings).query(
        TableName=settings.dynamodb_table, KeyConditionExpression="invoice_no = :i",
        ExpressionAttributeValues={":i": {"S": invoice}})["Items"]
    assert {item["event_id"]["S"]: from_item(item) for item in items} == rows
