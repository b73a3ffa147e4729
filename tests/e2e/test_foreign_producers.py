"""Records from producers we did not write, through the real KCL daemon.

One stream carries, side by side: KPL aggregates made by AWS's own
`aws-kinesis-agg` (grouped by destination shard, explicit hash key inside the
shard, as the KPL does), plain records put with boto3 and with the AWS CLI
(`aws kinesis put-records`), our producer's `--aggregate`, and aggregates
whose framing is corrupt. The consumer flushes
every 37 records, so nearly every batch starts or ends inside an aggregate.
Then the consumer is restarted with other flush sizes (1 and 20,000) on new
records: the sinks must hold every user record, DynamoDB and the warehouse
exactly once, whatever the cut.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator

from consumer.kpl import BAD_AGGREGATE
from local_stack import census
from producer.aggregation import ShardMap, hash_key
from producer.csv_source import valid_records
from retail_stream import aws
from retail_stream.schema import Transaction, encode
from tests.conftest import running_stack
from tests.e2e.harness import Pipeline
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"


def rows(source: str) -> list[Transaction]:
    """The sample's valid rows under this source id."""
    return valid_records(CSV, source)


def put_with_aws_kinesis_agg(kinesis, stream: str, records: list[Transaction], max_size: int) -> int:
    """Aggregate as the KPL does, with AWS's library: one aggregator per
    destination shard, each aggregate put with the shard's explicit hash key.
    Returns the Kinesis records put."""
    shard_map = ShardMap.load(kinesis, stream)
    aggregators = {s.shard_id: RecordAggregator(max_size) for s in shard_map.shards}
    aggregates = []
    for record in records:
        shard = shard_map.shard_for(hash_key(record.partition_key))
        full = aggregators[shard.shard_id].add_user_record(record.partition_key, encode(record))
        if full:
            aggregates.append((shard, full))
    aggregates += [(shard_map.get(sid), a.clear_and_get()) for sid, a in aggregators.items() if a.get_num_user_records()]
    entries = []
    for shard, aggregate in aggregates:
        partition_key, _, data = aggregate.get_contents()
        entries.append({"Data": data, "PartitionKey": partition_key, "ExplicitHashKey": str(shard.starting_hash_key)})
    for start in range(0, len(entries), 100):
        answer = kinesis.put_records(StreamName=stream, Records=entries[start:start + 100])
        assert answer["FailedRecordCount"] == 0
    return len(entries)


def put_plain(kinesis, stream: str, records: list[Transaction]) -> None:
    for start in range(0, len(records), 500):
        answer = kinesis.put_records(StreamName=stream, Records=[
            {"Data": encode(r), "PartitionKey": r.partition_key} for r in records[start:start + 500]])
        assert answer["FailedRecordCount"] == 0


def put_with_aws_cli(env: dict, tmp: Path, stream: str, records: list[Transaction]) -> None:
    """`aws kinesis put-records` (awscli from PyPI), 500 records a call; v1 sends `Data` text as it is."""
    for start in range(0, len(records), 500):
        request = tmp / f"put-records-{start}.json"
        request.write_text(json.dumps({"StreamName": stream, "Records": [
            {"Data": encode(r).decode(), "PartitionKey": r.partition_key} for r in records[start:start + 500]]}))
        out = subprocess.run([sys.executable, "-m", "awscli", "kinesis", "put-records", "--cli-input-json",
                              f"file://{request}"], env=env, stdout=subprocess.PIPE, text=True, check=True, timeout=60)
        assert json.loads(out.stdout)["FailedRecordCount"] == 0


def corrupt_aggregates(tag: str) -> list[bytes]:
    """Aggregates of two valid rows each, broken as framing breaks in the wild."""
    def aggregate(n: int) -> bytes:
        aggregator = RecordAggregator()
        for record in rows(f"{tag}-{n}")[:2]:
            aggregator.add_user_record(record.partition_key, encode(record))
        return aggregator.clear_and_get().get_contents()[2]

    bad_md5 = aggregate(1)
    bad_md5 = bad_md5[:-1] + bytes([bad_md5[-1] ^ 0xFF])
    body = aggregate(2)[4:-16][:40]
    truncated_protobuf = b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()
    truncated_record = aggregate(3)[:60]
    return [bad_md5, truncated_protobuf, truncated_record]


class Sinks:
    """What each store holds of some sources, read from the stores themselves."""

    def __init__(self, settings, sources: list[str]) -> None:
        self.settings = settings
        self.sources = sources

    def dynamodb(self) -> list[str]:
        paginator = aws.client("dynamodb", self.settings).get_paginator("scan")
        return [i["event_id"]["S"] for page in paginator.paginate(
            TableName=self.settings.dynamodb_table, ProjectionExpression="event_id, #s",
            ExpressionAttributeNames={"#s": "source"}) for i in page["Items"] if i["source"]["S"] in self.sources]

    def warehouse(self) -> list[str]:
        with psycopg2.connect(self.settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT event_id FROM retail.transactions WHERE source = ANY(%s)", (self.sources,))
            found = [row[0] for row in cur.fetchall()]
        conn.close()
        return found

    def raw_zone(self) -> list[str]:
        _, lines = census.s3_lines(self.settings, self.settings.s3_raw_prefix)
        return [r["event_id"] for r in map(json.loads, lines) if r["source"] in self.sources]

    def assert_every_row(self, expected: set[str]) -> None:
        dynamodb, warehouse, raw = self.dynamodb(), self.warehouse(), self.raw_zone()
        assert sorted(dynamodb) == sorted(expected), "DynamoDB: every user record exactly once"
        assert sorted(warehouse) == sorted(expected), "warehouse: every user record exactly once"
        assert set(raw) == expected, "raw zone: every user record at least once"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-foreign")
    with running_stack(tmp / "stack") as stack:
        p = Pipeline(stack, tmp, FLUSH_MAX_RECORDS="37", FLUSH_MAX_AGE_SECONDS="1")
        try:
            p.start_consumer()
            yield p
        finally:
            if p.consumer and p.consumer.poll() is None:
                p.stop_consumer()


def batch_events(pipeline) -> list[dict]:
    events = []
    for line in (pipeline.tmp / "consumer.log").read_text(errors="replace").splitlines():
        if '"batch_written"' in line:
            events.append(json.loads(line))
    return events


def test_aggregated_and_plain_records_on_one_stream_each_land_once(pipeline):
    kinesis = aws.client("kinesis", pipeline.settings)
    stream = pipeline.settings.stream_name
    library, plain = rows("kpl-library.csv"), rows("plain.csv")
    aggregates = put_with_aws_kinesis_agg(kinesis, stream, library, max_size=8_000)
    put_plain(kinesis, stream, plain)
    put_with_aws_cli(pipeline.env, pipeline.tmp, stream, rows("awscli.csv"))
    ours = pipeline.produce(str(CSV), "--aggregate", "--aggregate-bytes", "12000", "--source-id", "ours.csv",
                            "--rejects", str(pipeline.tmp / "rejects-ours.jsonl"))
    poison = corrupt_aggregates("corrupt")
    for n, data in enumerate(poison):
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=f"corrupt-{n}")
    assert aggregates < len(library) / 10 and ours["sent"] == len(plain)

    wait_until(pipeline.drained, 300, "the consumer to checkpoint every shard's last user record", every=1)
    sources = ["kpl-library.csv", "plain.csv", "awscli.csv", "ours.csv"]
    expected = {r.event_id for source in sources for r in rows(source)}
    Sinks(pipeline.settings, sources).assert_every_row(expected)

    # The corrupt aggregates: dead-lettered whole, with their raw bytes and a reason that names them.
    _, lines = census.s3_lines(pipeline.settings, pipeline.settings.s3_dead_letter_prefix)
    letters = [json.loads(line) for line in lines]
    assert sorted(base64.b64decode(d["data_base64"]) for d in letters) == sorted(poison)
    assert all(d["reason"].startswith(BAD_AGGREGATE) for d in letters)

    # Batches really were cut inside aggregates, and no two share a raw-zone key.
    events = batch_events(pipeline)
    inside = [e for e in events if e["first_sub_sequence"] > 0 or e["last_sub_sequence"] > 0]
    assert len(inside) > len(events) / 2
    keys = {(e["shard_id"], e["first_sequence"], e["first_sub_sequence"], e["last_sequence"], e["last_sub_sequence"])
            for e in events if e["records"]}
    objects, _ = census.s3_lines(pipeline.settings, pipeline.settings.s3_raw_prefix)
    assert objects == len(keys) == len([e for e in events if e["records"]])


POUND_ROWS = [
    "537240,DOT,DOTCOM POSTAGE \u00a3 CHARGE,1,12/6/2010 10:08,52.33,,United Kingdom",
    '537241,M,"MANUAL, \u00a310 OFF",-1,12/6/2010 10:09,10,14911.0,EIRE',
]
HEADER_II = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"


def copies(tmp: Path) -> dict[str, tuple[Path, Path]]:
    """The sample (and two `\u00a3` rows) as people have it: a Windows export
    (cp1252, CRLF) and an Online Retail II file; each beside its plain UTF-8
    twin, which says what the sinks must hold."""
    lines = CSV.read_text(encoding="utf-8-sig").splitlines()
    body = lines[1:] + POUND_ROWS
    made = {}
    for name, header, encoding in (("windows.csv", lines[0], "cp1252"), ("retail-ii.csv", HEADER_II, "utf-8")):
        copy, twin = tmp / name, tmp / f"twin-{name}"
        copy.write_bytes(("\r\n".join([header, *body]) + "\r\n").encode(encoding))
        twin.write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
        made[name] = (copy, twin)
    return made


def test_a_windows_export_and_an_online_retail_ii_file_land_whole(pipeline):
    for name, (copy, twin) in copies(pipeline.tmp).items():
        summary = pipeline.produce(str(copy), "--rejects", str(pipeline.tmp / f"rejects-{name}.jsonl"))
        expected = valid_records(twin, name)
        assert (summary["sent"], summary["rows"]) == (len(expected), 1002)
        wait_until(pipeline.drained, 300, "the consumer to checkpoint every shard's last user record",
                   every=1)
        Sinks(pipeline.settings, [name]).assert_every_row({r.event_id for r in expected})
        with psycopg2.connect(pipeline.settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT description FROM retail.transactions WHERE source = %s AND description LIKE %s "
                        "ORDER BY line", (name, "%\u00a3%"))
            assert [row[0] for row in cur.fetchall()] == ["DOTCOM POSTAGE \u00a3 CHARGE", "MANUAL, \u00a310 OFF"]
        conn.close()


@pytest.mark.parametrize("flush_records", ["1", "20000"])
def test_any_flush_size_cuts_aggregates_without_loss(pipeline, flush_records):
    """The consumer restarted with another flush size: one user record a
    batch, or every aggregate whole in one batch."""
    pipeline.stop_consumer()
    pipeline.env["FLUSH_MAX_RECORDS"] = flush_records
    pipeline.start_consumer()
    kinesis = aws.client("kinesis", pipeline.settings)
    source = f"kpl-flush-{flush_records}.csv"
    records = rows(source)[:300] if flush_records == "1" else rows(source)
    put_with_aws_kinesis_agg(kinesis, pipeline.settings.stream_name, records, max_size=20_000)
    wait_until(pipeline.drained, 300, "the consumer to checkpoint every shard's last user record", every=1)
    Sinks(pipeline.settings, [source]).assert_every_row({r.event_id for r in records})
