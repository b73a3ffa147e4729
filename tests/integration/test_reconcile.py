"""Reconciliation and rebuilds against the real emulator and PostgreSQL:
the consumer's own sinks write a few batches into a raw-zone prefix of the
test's own, then stores are damaged by hand and judged, then rebuilt."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import uuid

import httpx
import psycopg2
import pytest

from consumer.sinks import SinkError
from consumer.wiring import build_rebuild_sinks, build_sinks, service_clients
from reconcile import cli as reconcile_cli
from reconcile.window import Window
from rebuild.cli import rebuild
from tests.support.consumer_fakes import make_batch, transaction
from tests.support.ports import free_ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DAY = dt.date(2010, 12, 1)  # make_batch's arrival day
WINDOW = Window(DAY, DAY)


@pytest.fixture
def written(settings):
    """(settings with a raw zone of their own, clients, the batches written through every sink)."""
    mine = dataclasses.replace(settings, s3_raw_prefix=f"raw-{uuid.uuid4().hex[:8]}")
    clients = service_clients(mine)
    sinks = build_sinks(mine, clients)
    invoice = str(uuid.uuid4().int % 10**9)
    batches = [make_batch([transaction(line, invoice=invoice) for line in range(start, start + 5)],
                          first=str(100 + start), last=str(104 + start)) for start in (1, 6, 11)]
    for batch in batches:
        for sink in (sinks.dynamodb, sinks.raw_zone, sinks.warehouse):
            sink.write(batch)
    return mine, clients, batches


def reconciled(settings, clients):
    return reconcile_cli.run(settings, clients, WINDOW, settle_seconds=0)


def delete_dynamodb(clients, settings, rows):
    for row in rows:
        clients.dynamodb.delete_item(TableName=settings.dynamodb_table, Key={
            "invoice_no": {"S": row.invoice_no}, "event_id": {"S": row.event_id}})


def warehouse_sql(settings, statement, *params):
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        found = cur.fetchall() if cur.description else None
    conn.close()
    return found


def test_stores_that_agree_show_no_drift_and_equal_sums(written):
    settings, clients, batches = written
    report = reconciled(settings, clients)
    figures = report.figures
    assert report.drift == 0
    assert figures["raw_zone"]["rows"] == figures["dynamodb"]["rows"] == figures["warehouse"]["rows"] == 15
    assert figures["raw_zone"]["amount"] == figures["dynamodb"]["amount"] == figures["warehouse"]["amount"] \
        == "229.5000" == str(sum(r.quantity * r.unit_price for b in batches for r in b.records)) + "00"
    assert (figures["raw_zone"]["objects"], figures["warehouse"]["unloaded_objects"]) == (3, 0)


def test_damage_by_hand_is_named_exactly_by_store_shard_and_position(written):
    settings, clients, batches = written
    gone_from_dynamodb = [batches[0].records[1], batches[2].records[4]]
    gone_from_warehouse = batches[1].records[2]
    doubled = batches[2].records[0]
    delete_dynamodb(clients, settings, gone_from_dynamodb)
    warehouse_sql(settings, "DELETE FROM retail.transactions WHERE event_id = %s", gone_from_warehouse.event_id)
    warehouse_sql(settings, "INSERT INTO retail.transactions SELECT * FROM retail.transactions WHERE event_id = %s",
                  doubled.event_id)
    try:
        report = reconciled(settings, clients).as_dict()
        assert report["drift"] == 4
        assert report["drift_by_store"] == {"raw_zone": 0, "dynamodb": 2, "warehouse": 2}
        assert sorted(e["event_id"] for e in report["missing"]["dynamodb"]) \
            == sorted(r.event_id for r in gone_from_dynamodb)
        [missing] = report["missing"]["warehouse"]
        assert (missing["event_id"], missing["shard_id"], missing["first"], missing["last"]) == (
            gone_from_warehouse.event_id, batches[1].shard_id, "106", "110")
        assert [e["event_id"] for e in report["doubled"]["warehouse"]] == [doubled.event_id]
        assert report["stores"]["warehouse"]["rows"] == 15  # one gone, one twice
        assert report["by_shard"][batches[0].shard_id] == {"dynamodb": 1}
    finally:
        warehouse_sql(settings, "DELETE FROM retail.transactions WHERE event_id = %s", doubled.event_id)


def test_a_raw_object_the_ledger_loaded_but_s3_lost_is_drift(written):
    settings, clients, batches = written
    key = build_sinks(settings, clients).raw_zone.key_for(batches[1])
    clients.s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    report = reconciled(settings, clients)
    assert report.lost_objects == [key]
    assert report.drift_by_store == {"raw_zone": 1, "dynamodb": 0, "warehouse": 0}


def test_a_rebuild_interrupted_then_run_again_brings_the_stores_back_once(written):
    settings, clients, batches = written
    lost = [r for b in batches for r in b.records[::2]]  # 9 of the 15 rows
    delete_dynamodb(clients, settings, lost)
    warehouse_sql(settings, "DELETE FROM retail.transactions WHERE event_id = ANY(%s)", [r.event_id for r in lost])
    assert reconciled(settings, clients).drift == 18

    def sinks():
        return build_rebuild_sinks(settings, clients, ["dynamodb", "warehouse"])

    class DiesOnTheSecondObject:
        name, after, calls = "dies", (), 0

        def write(self, batch):
            self.calls += 1
            if self.calls == 2:
                raise SinkError("dies", "killed mid-run")

    with pytest.raises(SinkError):
        dies = DiesOnTheSecondObject()
        rebuild(settings, clients, WINDOW, lambda: [dies, *sinks()], workers=1)
    assert reconciled(settings, clients).drift == 12  # the first object's 3 rows back in both stores, then it died
    tally = rebuild(settings, clients, WINDOW, sinks, workers=3)
    assert (tally.objects, tally.rows) == (3, 15)
    report = reconciled(settings, clients)
    assert report.drift == 0 and report.figures["warehouse"]["rows"] == 15
    rebuild(settings, clients, WINDOW, sinks, workers=3)  # again: nothing doubles
    assert reconciled(settings, clients).figures["warehouse"]["rows"] == 15


def test_the_cli_keeps_its_report_and_pushes_its_gauges(written, tmp_path):
    settings, clients, batches = written
    delete_dynamodb(clients, settings, batches[0].records[:1])
    port, = free_ports(1)
    gateway = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}",
                                "--persistence.file="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 30, "the Pushgateway to answer")
        env = {"S3_RAW_PREFIX": settings.s3_raw_prefix, "LOG_FORMAT": "json"}
        done = subprocess.run([sys.executable, "-m", "reconcile", "--from", DAY.isoformat(), "--settle-seconds", "0",
                               "--pushgateway", url], capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, **env})
        assert done.returncode == 1, done.stderr
        document = json.loads(done.stdout.strip().splitlines()[-1])
        assert document["drift"] == 1
        bucket, key = document["report"].removeprefix("s3://").split("/", 1)
        kept = json.loads(clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert kept["missing"] == document["missing"]
        scraped = httpx.get(f"{url}/metrics").text
        assert 'retail_reconcile_drift{instance="",job="retail_reconcile",store="dynamodb"} 1' in scraped
        assert 'retail_reconcile_drift{instance="",job="retail_reconcile",store="warehouse"} 0' in scraped
        assert "retail_reconcile_last_success_timestamp_seconds{" in scraped
    finally:
        gateway.terminate()
        gateway.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_hourly_window_reads_only_the_objects_written_in_its_hours(written):
    settings, clients, batches = written
    now = dt.datetime.now(dt.timezone.utc)
    this_hour = Window(DAY, DAY, written_from=now - dt.timedelta(hours=1), written_to=now + dt.timedelta(hours=1))
    hours_ago = Window(DAY, DAY, written_from=now - dt.timedelta(hours=3), written_to=now - dt.timedelta(hours=2))
    assert reconcile_cli.run(settings, clients, this_hour, settle_seconds=0).figures["raw_zone"]["objects"] == 3
    earlier = reconcile_cli.run(settings, clients, hours_ago, settle_seconds=0)
    assert (earlier.figures["raw_zone"]["objects"], earlier.drift) == (0, 0)
