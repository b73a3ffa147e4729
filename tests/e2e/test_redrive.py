"""`python -m redrive` on the real pipeline: bad records dead-lettered by the
real KCL daemon's consumer, fixed, re-driven once into every sink; a second
re-drive (plain, then forced) changes no exactly-once store. The daemon
starts once for the module; the tests run in file order, each on what the
one before left.

Three letters: a transaction whose quantity is "12x" (a data fix), a record
that is not JSON at all (a data fix, and an event id made from its place in
the stream), and a valid record that an older schema had refused, planted as
that consumer would have written it (a schema fix: the stored bytes go out).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import psycopg2
import pytest

from consumer.batch import DeadLetter, StreamRecord
from consumer.sinks.dead_letters import dead_letter_key, to_line
from local_stack import census
from producer.csv_source import valid_records
from redrive.letters import derived_event_id
from retail_stream import aws
from retail_stream.schema import encode
from tests.conftest import running_stack
from tests.e2e.harness import Pipeline
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"
VALID, QUANTITY, RAW, PLANTED = (valid_records(CSV, f"redrive-{name}.csv")
                                  for name in ("valid", "quantity", "raw", "schema"))
NOT_JSON = b"536999;85123A;WHITE HANGING HEART T-LIGHT HOLDER;12;12/1/2010 8:26;2.55;17850;United Kingdom"
OLD_SCHEMA_REASON = "an older schema refused it: Object contains unknown field `line`"


def bad_quantity() -> bytes:
    record = msgspec.json.decode(encode(QUANTITY[0]))
    return json.dumps({**record, "quantity": "12x"}).encode()


def redrive(pipeline, *args: str) -> tuple[int, dict, str]:
    """(exit status, the last stdout line as JSON, stderr) of `python -m redrive ARGS`."""
    done = subprocess.run([sys.executable, "-m", "redrive", *args], env=pipeline.env, cwd=pipeline.tmp,
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


class Stores:
    """What the stores hold, read from themselves."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.s3 = aws.client("s3", settings)

    def dynamodb(self) -> Counter:
        """event id -> items (with the quantity), over the whole (small) table."""
        paginator = aws.client("dynamodb", self.settings).get_paginator("scan")
        return Counter((i["event_id"]["S"], int(i["quantity"]["N"])) for page in paginator.paginate(
            TableName=self.settings.dynamodb_table) for i in page["Items"])

    def warehouse(self) -> Counter:
        with psycopg2.connect(self.settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT event_id, quantity FROM retail.transactions")
            found = Counter(cur.fetchall())
        conn.close()
        return found

    def raw_zone(self) -> Counter:
        _, lines = census.s3_lines(self.settings, self.settings.s3_raw_prefix)
        return Counter(json.loads(line)["event_id"] for line in lines)

    def stream(self) -> list[bytes]:
        return [r["Data"] for records in census.stream_records(self.settings).values() for r in records]

    def mark(self, key: str) -> dict:
        found = self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key + ".redriven.json")
        return json.loads(found["Body"].read())

    def snapshot(self) -> dict:
        return {"dynamodb": self.dynamodb(), "warehouse": self.warehouse(), "raw_zone": self.raw_zone(),
                "stream": len(self.stream())}


def plant_old_letter(settings) -> str:
    """A dead letter as a consumer with an older schema wrote it, for a record
    the schema takes now."""
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    record = StreamRecord(encode(PLANTED[0]), "49000000000000000000000000000000000000000000000000000001", 0,
                          PLANTED[0].partition_key, now_ms)
    dead = DeadLetter(record, OLD_SCHEMA_REASON)
    key = dead_letter_key(settings.s3_dead_letter_prefix, "shardId-000000000000", dead)
    aws.client("s3", settings).put_object(Bucket=settings.s3_bucket, Key=key,
                                          Body=to_line(dead, "shardId-000000000000"))
    return key


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-redrive")
    with running_stack(tmp / "stack") as stack:
        p = Pipeline(stack, tmp)
        try:
            kinesis = aws.client("kinesis", p.settings)
            entries = [{"Data": encode(r), "PartitionKey": r.partition_key} for r in VALID[:3]]
            entries += [{"Data": bad_quantity(), "PartitionKey": QUANTITY[0].partition_key},
                        {"Data": NOT_JSON, "PartitionKey": "raw-1"}]
            answer = kinesis.put_records(StreamName=p.settings.stream_name, Records=entries)
            assert answer["FailedRecordCount"] == 0
            p.start_consumer()
            wait_until(p.drained, 300, "the consumer to checkpoint every shard's last record", every=1)
            p.stores = Stores(p.settings)
            p.planted = plant_old_letter(p.settings)
            yield p
        finally:
            if p.consumer and p.consumer.poll() is None:
                p.stop_consumer()


def landed(settings, mark: dict) -> bytes:
    """The bytes of the record at the stream position a mark names."""
    kinesis = aws.client("kinesis", settings)
    iterator = kinesis.get_shard_iterator(StreamName=settings.stream_name, ShardId=mark["shard_id"],
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          StartingSequenceNumber=mark["sequence_number"])["ShardIterator"]
    return kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"][0]["Data"]


def keys_by_reason(pipeline) -> dict[str, str]:
    status, listing, _ = redrive(pipeline, "list")
    assert status == 0
    found = {}
    for row in listing["listed"]:
        name = ("quantity" if "quantity" in row["reason"] else "older schema" if "older schema" in row["reason"]
                else "raw")
        found[name] = row["key"]
    return found


def test_bad_records_are_listed_pending_by_reason(pipeline):
    status, listing, summary = redrive(pipeline, "list")
    assert status == 0
    assert (listing["letters"], listing["pending"], listing["redriven"]) == (3, 3, 0)
    assert sum(c["pending"] for c in listing["by_reason"].values()) == 3
    by_key = {row["key"]: row for row in listing["listed"]}
    keys = keys_by_reason(pipeline)
    assert keys.keys() == {"quantity", "raw", "older schema"}
    assert by_key[keys["quantity"]]["event_id"] == QUANTITY[0].event_id  # the id in its bytes
    raw = by_key[keys["raw"]]
    sequence = raw["key"].rsplit("/", 1)[1].removesuffix(".ndjson").rsplit("-", 1)[0]
    assert raw["event_id"] == derived_event_id(raw["shard_id"], sequence, 0)  # none in its bytes
    assert "3 dead letters (3 pending, 0 re-driven)" in summary

    today = dt.datetime.now(dt.timezone.utc).date()
    _, narrowed, _ = redrive(pipeline, "list", "--reason", "QUANTITY", "--from", today.isoformat())
    assert [row["key"] for row in narrowed["listed"]] == [keys["quantity"]]
    _, tomorrow, _ = redrive(pipeline, "list", "--from", (today + dt.timedelta(days=1)).isoformat())
    assert tomorrow["letters"] == 0


def test_a_record_that_would_be_dead_lettered_again_is_refused_and_nothing_is_sent(pipeline, tmp_path):
    stores, keys = pipeline.stores, keys_by_reason(pipeline)
    before = stores.snapshot()
    status, outcome, summary = redrive(pipeline, "send", keys["quantity"])
    assert status == 1 and outcome["refused"] == 1 and outcome["sent"] == 0
    assert "would be dead-lettered again" in outcome["letters"][0]["reason"]
    assert "quantity" in outcome["letters"][0]["reason"] and "REFUSED" in summary

    status, shown, _ = redrive(pipeline, "show", keys["quantity"])
    assert status == 0 and shown["quantity"] == "12x" and shown["event_id"] == QUANTITY[0].event_id
    other_id = tmp_path / "other-id.json"
    other_id.write_text(json.dumps({**shown, "quantity": 12, "event_id": "0" * 32}))
    status, outcome, _ = redrive(pipeline, "send", keys["quantity"], "--data", str(other_id))
    assert status == 1 and "changes the event id" in outcome["letters"][0]["reason"]

    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({**shown, "quantity": 12}))
    status, outcome, summary = redrive(pipeline, "send", keys["quantity"], "--data", str(fixed), "--dry-run")
    assert status == 0 and outcome["dry_run"] and outcome["would_send"] == 1
    payload = json.loads(outcome["letters"][0]["payload"])
    assert (payload["event_id"], payload["quantity"]) == (QUANTITY[0].event_id, 12)
    assert "dry run: 1 would be sent" in summary
    assert stores.snapshot() == before
    _, listing, _ = redrive(pipeline, "list")
    assert listing["redriven"] == 0


def test_fixed_letters_are_redriven_once_into_every_sink(pipeline, tmp_path):
    stores, keys = pipeline.stores, keys_by_reason(pipeline)
    before = stores.snapshot()

    _, shown, _ = redrive(pipeline, "show", keys["quantity"])
    (tmp_path / "quantity.json").write_text(json.dumps({**shown, "quantity": 12}))
    status, outcome, _ = redrive(pipeline, "send", keys["quantity"], "--data", str(tmp_path / "quantity.json"),
                                 "--by", "ops@example.com")
    assert status == 0 and outcome["sent"] == 1

    _, form, stderr = redrive(pipeline, "show", keys["raw"])
    assert set(form) == set(msgspec.structs.asdict(RAW[0])) and repr(NOT_JSON[:20])[2:-1] in stderr
    assert [name for name, value in form.items() if value is not None] == ["event_id"]
    filled = {**msgspec.json.decode(encode(RAW[0])), "event_id": form["event_id"]}
    (tmp_path / "raw.json").write_text(json.dumps(filled))
    status, outcome, _ = redrive(pipeline, "send", keys["raw"], "--data", str(tmp_path / "raw.json"))
    assert status == 0 and outcome["sent"] == 1

    # After the schema fix, by filter: the stored bytes go out as they are; `by` is the caller's identity.
    status, outcome, _ = redrive(pipeline, "send", "--reason", "older schema")
    assert status == 0 and outcome["sent"] == 1 and outcome["letters"][0]["key"] == pipeline.planted

    wait_until(pipeline.drained, 120, "the re-driven records to be checkpointed", every=1)
    after = stores.snapshot()
    ids = {"quantity": QUANTITY[0].event_id, "raw": form["event_id"], "older schema": PLANTED[0].event_id}
    quantities = {"quantity": 12, "raw": RAW[0].quantity, "older schema": PLANTED[0].quantity}
    for name, event_id in ids.items():
        assert after["dynamodb"][(event_id, quantities[name])] == 1, f"{name}: once in DynamoDB"
        assert after["warehouse"][(event_id, quantities[name])] == 1, f"{name}: once in the warehouse"
        assert after["raw_zone"][event_id] == 1, f"{name}: once in the raw zone"
    assert sum(after["dynamodb"].values()) == sum(before["dynamodb"].values()) + 3
    assert sum(after["warehouse"].values()) == sum(before["warehouse"].values()) + 3
    assert after["stream"] == before["stream"] + 3

    stream = stores.stream()
    for name, key in keys.items():
        mark = stores.mark(key)
        assert mark["dead_letter"] == key and mark["event_id"] == ids[name] and not mark["forced"]
        assert dt.datetime.fromisoformat(mark["redriven_at"]) > dt.datetime.now(dt.timezone.utc) - dt.timedelta(
            minutes=10)
        sent = base64.b64decode(mark["sent_base64"]) if mark["sent_base64"] else encode(PLANTED[0])
        assert landed(pipeline.settings, mark) == sent and sent in stream
    assert stores.mark(keys["quantity"])["by"] == "ops@example.com"
    assert stores.mark(keys["older schema"])["by"].startswith("arn:aws:")
    assert stores.mark(keys["older schema"])["sent_base64"] is None  # the stored bytes, as they were

    _, listing, _ = redrive(pipeline, "list")
    assert (listing["pending"], listing["redriven"]) == (0, 3)
    assert {row["by"] for row in listing["listed"]} >= {"ops@example.com"}
    assert census.take(pipeline.settings).dead_lettered == 3  # marks are no dead letters


def test_a_second_redrive_changes_nothing(pipeline):
    stores, keys = pipeline.stores, keys_by_reason(pipeline)
    before, marks = stores.snapshot(), {key: stores.mark(key) for key in keys.values()}
    status, outcome, summary = redrive(pipeline, "send", "--all")
    assert status == 0 and (outcome["sent"], outcome["skipped"]) == (0, 3)
    assert "0 sent, 3 skipped" in summary
    assert stores.snapshot() == before
    assert {key: stores.mark(key) for key in keys.values()} == marks


def test_a_forced_redrive_adds_no_row_to_dynamodb_or_the_warehouse(pipeline):
    stores, keys = pipeline.stores, keys_by_reason(pipeline)
    before, marks = stores.snapshot(), {key: stores.mark(key) for key in keys.values()}
    status, outcome, _ = redrive(pipeline, "send", "--all", "--force", "--by", "ops@example.com")
    assert status == 0 and outcome["sent"] == 3
    wait_until(pipeline.drained, 120, "the forced re-drive to be checkpointed", every=1)
    after = stores.snapshot()
    assert after["stream"] == before["stream"] + 3
    assert after["dynamodb"] == before["dynamodb"]
    assert after["warehouse"] == before["warehouse"]
    # The raw zone is at least once: the new records' batch is a new object, the same events.
    assert after["raw_zone"].keys() == before["raw_zone"].keys()
    assert after["raw_zone"] - before["raw_zone"] == Counter(marks[k]["event_id"] for k in keys.values())
    for key, first in marks.items():
        mark = stores.mark(key)
        assert mark["forced"] and mark["previous"] == first and mark["event_id"] == first["event_id"]
        assert mark["sequence_number"] != first["sequence_number"]
