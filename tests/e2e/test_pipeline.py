"""The whole pipeline with the real KCL MultiLangDaemon: producer -> Kinesis
-> consumer -> DynamoDB, S3, PostgreSQL. The daemon starts once for the module.

The tests run in file order: the first ones judge the sinks after one replay
of the sample; the last two add to them (a second replay, then the same CSV
through the HTTP API under another source id).
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg2
import pytest

from local_stack import census
from producer.csv_source import read_rows
from retail_stream import aws
from retail_stream.schema import InvalidRecord, event_id, parse_row
from tests.api_server import running_api
from tests.conftest import running_stack
from tests.e2e.harness import Pipeline
from tests.report_oracle import amount, expected_views, kind, read_views
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"


def expected_records():
    valid, invalid = {}, 0
    for line, fields in read_rows(CSV):
        try:
            record = parse_row(fields, CSV.name, line)
        except InvalidRecord:
            invalid += 1
            continue
        valid[record.event_id] = record
    return valid, invalid


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with running_stack(tmp / "stack") as stack:
        p = Pipeline(stack, tmp)
        try:
            p.first_replay = p.produce(str(CSV), "--rejects", str(tmp / "rejects.jsonl"))
            p.start_consumer()
            wait_until(p.drained, 300, "the consumer to checkpoint every shard's last record", every=1)
            p.first = census.take(p.settings)
            yield p
        finally:
            if p.consumer and p.consumer.poll() is None:
                p.stop_consumer()


def test_every_valid_row_is_once_in_every_sink(pipeline):
    valid, invalid = expected_records()
    first = pipeline.first
    assert pipeline.first_replay["sent"] == len(valid)
    assert pipeline.first_replay["rejected"] == invalid > 0
    assert first.kinesis_records == len(valid)
    assert first.dynamodb_items == len(valid)
    assert first.s3_records == first.s3_distinct_events == len(valid)
    assert first.redshift_rows == first.redshift_distinct_events == len(valid)
    assert first.dead_lettered == 0


def test_warehouse_rows_equal_the_source_rows(pipeline):
    valid, _ = expected_records()
    settings = pipeline.settings
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT event_id, invoice_no, stock_code, description, quantity, invoice_date, unit_price, "
            "customer_id, country, source, line FROM retail.transactions"
        )
        rows = {row[0]: row for row in cur.fetchall()}
    conn.close()
    assert rows.keys() == valid.keys()
    for event_id, record in valid.items():
        assert rows[event_id] == tuple(getattr(record, f) for f in record.__struct_fields__)


def test_reporting_views_equal_figures_computed_from_the_source_rows(pipeline):
    """The reporting views over what the pipeline loaded hold exactly the
    figures tests/report_oracle.py computes in Python from the rows the
    producer accepted; `python -m reporting` prints their totals."""
    valid, _ = expected_records()
    assert pipeline.first_replay["sent"] == len(valid)
    expected = expected_views(valid.values())
    settings = pipeline.settings
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        found = read_views(cur, settings.warehouse_schema)
    conn.close()
    for view, rows in expected.items():
        assert found[view] == rows, view

    out = subprocess.run(
        [sys.executable, "-m", "reporting", "--limit", "3"], env=pipeline.env, cwd=CSV.parents[1],
        stdout=subprocess.PIPE, text=True, check=True, timeout=60,
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1], parse_float=Decimal)
    gross = sum((amount(r) for r in valid.values() if kind(r) == "sale"), Decimal(0))
    cancelled = -sum((amount(r) for r in valid.values() if kind(r) == "cancellation"), Decimal(0))
    assert (figures["gross_revenue"], figures["cancelled_revenue"]) == (gross, cancelled)
    assert figures["net_revenue"] == gross - cancelled
    assert figures["days"] == len({r.invoice_date.date() for r in valid.values()})
    assert figures["views"] == {view: len(rows) for view, rows in expected.items()}


def test_dynamodb_items_equal_the_source_rows(pipeline):
    valid, _ = expected_records()
    client = aws.client("dynamodb", pipeline.settings)
    items = [i for page in client.get_paginator("scan").paginate(TableName=pipeline.settings.dynamodb_table)
             for i in page["Items"]]
    by_id = {i["event_id"]["S"]: i for i in items}
    assert by_id.keys() == valid.keys()
    for event_id, record in valid.items():
        item = by_id[event_id]
        assert item["invoice_no"]["S"] == record.invoice_no
        assert int(item["quantity"]["N"]) == record.quantity
        assert item["unit_price"]["N"] == format(record.unit_price, "f")
        assert ("customer_id" in item) == (record.customer_id is not None)


def test_s3_objects_are_gzip_ndjson_with_the_source_rows(pipeline):
    valid, _ = expected_records()
    _, lines = census.s3_lines(pipeline.settings, pipeline.settings.s3_raw_prefix)
    assert {json.loads(line)["event_id"] for line in lines} == valid.keys()


def test_checkpoints_reached_the_end_of_every_shard(pipeline):
    last = pipeline.last_sequences()
    assert len(last) == 2
    assert pipeline.checkpoints() == last


def test_a_second_replay_changes_no_row_count(pipeline):
    before = census.take(pipeline.settings)
    again = pipeline.produce(str(CSV), "--rejects", str(pipeline.tmp / "rejects-2.jsonl"))
    assert again["sent"] == pipeline.first_replay["sent"]
    wait_until(pipeline.drained, 180, "the replayed records to be checkpointed", every=1)
    after = census.take(pipeline.settings)
    assert after.kinesis_records == before.kinesis_records + again["sent"]
    assert after.dynamodb_items == before.dynamodb_items
    assert after.redshift_rows == after.redshift_distinct_events == before.redshift_rows
    assert after.s3_distinct_events == before.s3_distinct_events


API_SOURCES = ("via-api.csv", "posted.csv")


def test_a_csv_through_the_http_api_reaches_every_sink(pipeline):
    """The sample again, through `python -m api`: once replayed by the
    producer with --via-api, once posted as a CSV body, both with a key made
    with --producer-ids. Every valid row is in every sink under the API's
    source ids with the producer's own event ids, and the API reads them back."""
    valid, invalid = expected_records()
    env = {**pipeline.env, "API_MAX_ITEMS": "2000"}  # the whole sample in one request
    with running_api(env, pipeline.tmp / "api.log") as api:
        url = api.url
        key_file = pipeline.tmp / "replay.key"
        key_file.write_text(api.keys["replay"] + "\n")
        replayed = pipeline.produce(str(CSV), "--via-api", url, "--api-key-file", str(key_file),
                                    "--source-id", API_SOURCES[0], "--rejects", str(pipeline.tmp / "rejects-api.jsonl"))
        posted = httpx.post(f"{url}/transactions", params={"source": API_SOURCES[1]}, content=CSV.read_bytes(),
                            headers={"Content-Type": "text/csv", "X-API-Key": api.keys["replay"]}, timeout=60).json()
        assert (replayed["sent"], replayed["rejected"], replayed["api"]) == (len(valid), invalid, url)
        assert (posted["accepted"], posted["rejected"], posted["failed"]) == (len(valid), invalid, 0)
        wait_until(pipeline.drained, 180, "the API's records to be checkpointed", every=1)

        invoices = {event_id(source, r.line): r.invoice_no for source in API_SOURCES for r in valid.values()}
        assert {r["event_id"] for r in posted["results"] if r["status"] == "accepted"} <= invoices.keys()
        settings = pipeline.settings
        _, raw = census.s3_lines(settings, settings.s3_raw_prefix)
        assert invoices.keys() <= {json.loads(line)["event_id"] for line in raw}
        with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT event_id FROM retail.transactions WHERE source = ANY(%s)", (list(API_SOURCES),))
            assert sorted(row[0] for row in cur.fetchall()) == sorted(invoices)
        conn.close()
        client = aws.client("dynamodb", settings)
        keys = [{"invoice_no": {"S": invoice}, "event_id": {"S": key}} for key, invoice in invoices.items()]
        for start in range(0, len(keys), 100):  # BatchGetItem's limit
            request = {settings.dynamodb_table: {"Keys": keys[start:start + 100]}}
            found = client.batch_get_item(RequestItems=request)["Responses"][settings.dynamodb_table]
            assert len(found) == len(keys[start:start + 100])

        # The API reads back a customer's transactions from all three sources.
        customer = max({r.customer_id for r in valid.values() if r.customer_id},
                       key=lambda c: sum(r.customer_id == c for r in valid.values()))
        items, cursor = [], None
        while True:
            page = httpx.get(f"{url}/customers/{customer}/transactions", headers={"X-API-Key": api.keys["tester"]},
                             params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert len(items) == 3 * sum(r.customer_id == customer for r in valid.values())
    assert [i["invoice_date"] for i in items] == sorted((i["invoice_date"] for i in items), reverse=True)



# Operations on what the runs above left: reconcile, damage by hand, rebuild.
# Every source's rows arrived in the last two days (two, in case the run
# crossed midnight UTC); nothing is settling, the consumer is idle.
WINDOW_ARGS = ("--days", "2", "--settle-seconds", "0")


def run_tool(pipeline, module: str, *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", module, *args], env=pipeline.env, cwd=pipeline.tmp,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_reconcile_finds_the_stores_in_agreement(pipeline):
    valid, _ = expected_records()
    status, report = run_tool(pipeline, "reconcile", *WINDOW_ARGS)
    assert (status, report["drift"]) == (0, 0), report
    rows = 3 * len(valid)  # the sample under three sources: the producer's, and the API's two
    stores = report["stores"]
    assert stores["raw_zone"]["rows"] == stores["dynamodb"]["rows"] == stores["warehouse"]["rows"] == rows
    three = 3 * sum(r.quantity * r.unit_price for r in valid.values())
    assert stores["raw_zone"]["amount"] == stores["dynamodb"]["amount"] == stores["warehouse"]["amount"] \
        == f"{three:.4f}"
    assert report["report"].startswith(f"s3://{pipeline.settings.s3_bucket}/{pipeline.settings.s3_reports_prefix}/")


def test_rows_deleted_by_hand_are_reported_exactly_then_rebuilt(pipeline):
    settings = pipeline.settings
    valid, _ = expected_records()
    victims = sorted(valid.values(), key=lambda r: r.event_id)
    from_dynamodb, from_warehouse = victims[:10], victims[10:15]
    client = aws.client("dynamodb", settings)
    for row in from_dynamodb:
        client.delete_item(TableName=settings.dynamodb_table,
                           Key={"invoice_no": {"S": row.invoice_no}, "event_id": {"S": row.event_id}})
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM retail.transactions WHERE event_id = ANY(%s)", ([r.event_id for r in from_warehouse],))
        assert cur.rowcount == 5
    conn.close()

    status, report = run_tool(pipeline, "reconcile", *WINDOW_ARGS)
    assert (status, report["drift"], report["drift_by_store"]) == (1, 15, {"raw_zone": 0, "dynamodb": 10, "warehouse": 5})
    assert {e["event_id"] for e in report["missing"]["dynamodb"]} == {r.event_id for r in from_dynamodb}
    assert {e["event_id"] for e in report["missing"]["warehouse"]} == {r.event_id for r in from_warehouse}
    assert all(e["shard_id"].startswith("shardId-") and e["first"] <= e["last"] for e in report["missing"]["dynamodb"])
    assert report["doubled"] == {"dynamodb": [], "warehouse": []}

    window = report["window"]
    status, rebuilt = run_tool(pipeline, "rebuild", "--from", window["from"], "--to", window["to"], "--target", "both",
                               "--settle-seconds", "0")
    assert (status, rebuilt["reconciliation"]["drift"]) == (0, 0), rebuilt
    status, report = run_tool(pipeline, "reconcile", *WINDOW_ARGS)
    assert (status, report["drift"]) == (0, 0)
    # Rows, not events: a row the rebuild had doubled would count twice here.
    assert report["stores"]["warehouse"]["rows"] == report["stores"]["dynamodb"]["rows"] == 3 * len(valid)
