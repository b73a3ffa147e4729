"""The local stack's census, an oracle for the demo, the bench and the tests:
counts what is actually in each place after a run (the stream, DynamoDB, the
S3 raw zone and dead-letter prefix, the warehouse), read from the stores
themselves, never from counters the services keep. No service imports it."""

from __future__ import annotations

import gzip
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterable

import psycopg2
from psycopg2 import sql

from retail_stream import aws
from retail_stream.settings import Settings

QUERY_THREADS = 8
BATCH_GET_KEYS = 100  # BatchGetItem's limit


@dataclass(frozen=True)
class Census:
    kinesis_records: int
    dynamodb_items: int  # of the rows asked about, those in the table
    dynamodb_table_items: int  # all items, as the table counts them
    s3_objects: int
    s3_records: int
    s3_distinct_events: int
    redshift_rows: int
    redshift_distinct_events: int
    dead_lettered: int

    def as_dict(self) -> dict:
        return asdict(self)


def stream_records(settings: Settings) -> dict[str, list[dict]]:
    """Every record in the stream, per shard, read from TRIM_HORIZON."""
    kinesis = aws.client("kinesis", settings)
    shards = kinesis.list_shards(StreamName=settings.stream_name)["Shards"]
    found: dict[str, list[dict]] = {}
    for shard in shards:
        records = found.setdefault(shard["ShardId"], [])
        iterator = kinesis.get_shard_iterator(
            StreamName=settings.stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(response["Records"])
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return found


def delivered_positions(record: dict, shard: dict) -> list[tuple[str, int]]:
    """The (sequence, sub-sequence) of every user record the KCL hands over
    for this Kinesis record of `shard` (ListShards' shape): one for a plain
    record or a corrupt aggregate, one per user record of a well-formed KPL
    aggregate whose key hashes into the shard (the KCL drops the others). Pure."""
    sequence = record["SequenceNumber"]
    users = kpl_user_keys(record["Data"])
    if users is None:
        return [(sequence, 0)]
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    return [(sequence, sub) for sub, key in enumerate(users) if low <= key <= high]


def kpl_user_keys(data: bytes) -> list[int] | None:
    """The hash keys of a KPL aggregate's user records, in order; None when
    `data` is not a well-formed aggregate (the KCL then delivers it whole)."""
    from aws_kinesis_agg import aggregator  # noqa: F401  (puts the package on sys.path for messages_pb2)
    from aws_kinesis_agg import messages_pb2
    from google.protobuf.message import DecodeError

    from consumer.kpl import MAGIC
    from producer.aggregation import hash_key

    if not data.startswith(MAGIC) or len(data) < 20:
        return None
    body = data[4:-16]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[-16:]:
        return None
    try:
        aggregate = messages_pb2.AggregatedRecord.FromString(body)
        return [int(aggregate.explicit_hash_key_table[r.explicit_hash_key_index])
                if r.HasField("explicit_hash_key_index")
                else hash_key(aggregate.partition_key_table[r.partition_key_index]) for r in aggregate.records]
    except (DecodeError, IndexError, ValueError):  # a key index out of its table: not well-formed
        return None


def shard_ends(settings: Settings) -> dict[str, tuple[str, int]]:
    """Each shard's last delivered position (sequence, sub-sequence): where a
    consumer that has read everything is checkpointed."""
    kinesis = aws.client("kinesis", settings)
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]}
    ends = {}
    for shard_id, records in stream_records(settings).items():
        for record in reversed(records):
            positions = delivered_positions(record, shards[shard_id])
            if positions:
                ends[shard_id] = positions[-1]
                break
    return ends


def checkpoints(settings: Settings) -> dict[str, tuple[str | None, int]]:
    """The KCL's checkpoint of every lease: (sequence or SHARD_END/TRIM_HORIZON…, sub-sequence)."""
    client = aws.client("dynamodb", settings)
    try:
        items = client.scan(TableName=settings.kcl_application_name)["Items"]
    except client.exceptions.ResourceNotFoundException:
        return {}  # the KCL has not created its lease table yet
    return {i["leaseKey"]["S"]: (i.get("checkpoint", {}).get("S"), int(i.get("checkpointSubSequenceNumber", {}).get("N", 0)))
            for i in items}


def drained(settings: Settings) -> bool:
    """Every shard with records checkpointed at its last delivered position (or its end, once closed)."""
    ends, cps = shard_ends(settings), checkpoints(settings)
    return all(cps.get(shard) == end or (cps.get(shard) or (None,))[0] == "SHARD_END" for shard, end in ends.items())


def kinesis_records(settings: Settings) -> int:
    return sum(len(records) for records in stream_records(settings).values())


def dynamodb_items(settings: Settings, keys: Iterable[tuple[str, str]]) -> int:
    """How many of these (invoice_no, event_id) keys the table holds, by
    BatchGetItem, 100 keys a call, side by side. A key is a dictionary look-up
    in the emulator: the cost follows the rows asked about, not the table.
    (moto's Scan and Query sort and walk the whole table on every call: at the
    data set's full size a Scan took over 14 minutes and was not done.)"""
    client = aws.client("dynamodb", settings)
    table = settings.dynamodb_table
    keys = sorted(set(keys))

    def found(chunk: list[tuple[str, str]]) -> int:
        request = {table: {"Keys": [{"invoice_no": {"S": invoice}, "event_id": {"S": event}}
                                    for invoice, event in chunk],
                           "ProjectionExpression": "event_id"}}
        count = 0
        while request:
            response = client.batch_get_item(RequestItems=request)
            count += len(response["Responses"].get(table, []))
            request = response.get("UnprocessedKeys") or None
        return count

    chunks = [keys[i:i + BATCH_GET_KEYS] for i in range(0, len(keys), BATCH_GET_KEYS)]
    with ThreadPoolExecutor(QUERY_THREADS) as pool:
        return sum(pool.map(found, chunks))


def dynamodb_table_items(settings: Settings) -> int:
    """The table's own item count (DescribeTable): exact in the emulator,
    refreshed about every six hours on AWS. With `dynamodb_items` it shows
    rows that should not be there."""
    return aws.client("dynamodb", settings).describe_table(TableName=settings.dynamodb_table)["Table"]["ItemCount"]


def s3_lines(settings: Settings, prefix: str, suffix: str = "") -> tuple[int, list[bytes]]:
    """(object count, every line of every object) under a prefix whose key
    ends with `suffix`; gunzips .gz objects."""
    s3 = aws.client("s3", settings)
    objects, lines = 0, []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix + "/"):
        for entry in page.get("Contents", []):
            if not entry["Key"].endswith(suffix):
                continue
            body = s3.get_object(Bucket=settings.s3_bucket, Key=entry["Key"])["Body"].read()
            if entry["Key"].endswith(".gz"):
                body = gzip.decompress(body)
            objects += 1
            lines.extend(line for line in body.splitlines() if line.strip())
    return objects, lines


def _warehouse_query(settings: Settings, query: sql.Composable, table: str | None = None) -> list[tuple]:
    """The rows `query` yields, {} in it naming `table` (default the target table)."""
    name = sql.Identifier(settings.warehouse_schema, table or settings.warehouse_table)
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(query.format(name))
        rows = cur.fetchall()
    conn.close()
    return rows


def warehouse_rows(settings: Settings) -> tuple[int, int]:
    """(rows, distinct event ids) in the warehouse table."""
    return _warehouse_query(settings, sql.SQL("SELECT count(*), count(DISTINCT event_id) FROM {}"))[0]


def warehouse_keys(settings: Settings) -> set[tuple[str, str]]:
    """(invoice_no, event_id) of every warehouse row."""
    return set(_warehouse_query(settings, sql.SQL("SELECT invoice_no, event_id FROM {}")))


def warehouse_totals(settings: Settings) -> tuple[str, str]:
    """(sum of quantity, sum of quantity x unit price) over the warehouse
    table, as exact decimal strings: what a user checks against the file."""
    quantity, amount = _warehouse_query(
        settings, sql.SQL("SELECT coalesce(sum(quantity), 0), coalesce(sum(quantity * unit_price), 0) FROM {}"))[0]
    return str(quantity), str(amount)


def warehouse_loaded(settings: Settings) -> int:
    """Rows inserted by every load, from the load ledger: a row per batch,
    so cheap to read at any table size (progress, not a census)."""
    return _warehouse_query(settings, sql.SQL("SELECT coalesce(sum(rows_inserted), 0) FROM {}"), "load_ledger")[0][0]


def take(settings: Settings, keys: Iterable[tuple[str, str]] | None = None) -> Census:
    """Every store counted. DynamoDB is asked for `keys`, (invoice_no,
    event_id) pairs (the source's, when the caller knows them), else for
    every row the raw zone and the warehouse hold: a row missing from all
    three is a loss the other counts show."""
    s3_objects, raw_lines = s3_lines(settings, settings.s3_raw_prefix)
    _, dead_lines = s3_lines(settings, settings.s3_dead_letter_prefix, ".ndjson")  # not the re-drive's marks
    rows, distinct = warehouse_rows(settings)
    raw = [json.loads(line) for line in raw_lines]
    if keys is None:
        keys = {(record["invoice_no"], record["event_id"]) for record in raw} | warehouse_keys(settings)
    return Census(
        kinesis_records=kinesis_records(settings),
        dynamodb_items=dynamodb_items(settings, keys),
        dynamodb_table_items=dynamodb_table_items(settings),
        s3_objects=s3_objects,
        s3_records=len(raw_lines),
        s3_distinct_events=len({record["event_id"] for record in raw}),
        redshift_rows=rows,
        redshift_distinct_events=distinct,
        dead_lettered=len(dead_lines),
    )
