import datetime as dt
import gzip
import json
import threading
import time
from decimal import Decimal

import psycopg2
import pytest
from botocore.exceptions import ClientError

from consumer.batch import Batch, DeadLetter, Position
from consumer.sinks.dead_letters import dead_letter_key, to_line
from consumer.sinks import SinkError
from consumer.sinks.dynamodb import DynamoDBSink, to_item, write_requests
from consumer.sinks.raw_zone import object_key, to_ndjson_gz
from consumer.sinks.warehouse import jsonpaths_fields, ndjson_to_copy_text
from consumer.wiring import Clients, build_sinks, jsonpaths_document
from retail_stream.schema import Transaction, decode
from retail_stream.settings import Settings
from tests.support.consumer_fakes import stream_record, transaction


def batch(records, dead=(), first=("100",), last=("200",), arrival_ms=1_291_192_000_000):
    return Batch("shardId-000000000001", tuple(records), tuple(dead), Position(*first), Position(*last),
                 arrival_ms)


def test_item_keys_and_sparse_customer_index():
    item = to_item(transaction(2))
    assert item["invoice_no"] == {"S": "536365"}
    assert item["event_id"]["S"] == transaction(2).event_id
    assert item["unit_price"] == {"N": "2.55"}
    assert item["customer_id"] == {"N": "17850"}
    assert item["customer_sort"]["S"].startswith("2010-12-01T08:26:00#536365#")
    anonymous = to_item(transaction(3, customer=None))
    assert "customer_id" not in anonymous and "customer_sort" not in anonymous


def test_item_price_is_never_in_exponent_form():
    record = transaction(2)
    record = Transaction(**{**{f: getattr(record, f) for f in record.__struct_fields__},
                            "unit_price": Decimal("1E+2")})
    assert to_item(record)["unit_price"] == {"N": "100"}


def test_write_requests_chunks_by_25_and_never_repeats_a_key():
    records = [transaction(i) for i in range(1, 61)] + [transaction(5)]
    calls = list(write_requests(records))
    assert [len(c) for c in calls] == [25, 25, 10]
    keys = [(r["PutRequest"]["Item"]["invoice_no"]["S"], r["PutRequest"]["Item"]["event_id"]["S"])
            for c in calls for r in c]
    assert len(keys) == len(set(keys)) == 60


def test_raw_object_key_is_deterministic_and_date_partitioned():
    b = batch([transaction(1)])
    assert object_key("raw/transactions", b) == (
        "raw/transactions/dt=2010-12-01/shard=shardId-000000000001/100-200.ndjson.gz"
    )
    assert object_key("raw/transactions", b) == object_key("raw/transactions", batch([transaction(1)]))


def test_ndjson_gz_round_trips_and_is_byte_stable():
    records = (transaction(1), transaction(2, customer=None))
    body = to_ndjson_gz(records, 1)
    assert body == to_ndjson_gz(records, 1)
    lines = gzip.decompress(body).splitlines()
    assert [decode(line) for line in lines] == list(records)


def test_dead_letter_line_keeps_raw_bytes_and_reason():
    record = stream_record(7, data=b"\x00\xffgarbage")
    line = json.loads(to_line(DeadLetter(record, "JSON is malformed"), "shardId-1"))
    assert line["reason"] == "JSON is malformed"
    assert line["sequence_number"] == "7"
    assert line["shard_id"] == "shardId-1"
    import base64
    assert base64.b64decode(line["data_base64"]) == b"\x00\xffgarbage"


def test_dead_letter_key_names_the_record_not_the_batch():
    dead = DeadLetter(stream_record(7, data=b"x"), "JSON is malformed")
    key = dead_letter_key("dead-letter/transactions", "shardId-1", dead)
    assert key.startswith("dead-letter/transactions/dt=") and key.endswith("/shard=shardId-1/7-0.ndjson")
    later = DeadLetter(stream_record(7, data=b"x"), "JSON is malformed")
    assert dead_letter_key("dead-letter/transactions", "shardId-1", later) == key


def test_jsonpaths_fields_match_the_record_fields_in_order():
    assert jsonpaths_fields(jsonpaths_document()) == Transaction.__struct_fields__


@pytest.mark.parametrize("bad", ['{"jsonpaths": ["$.a.b"]}', '{"jsonpaths": ["$[0]"]}'])
def test_jsonpaths_rejects_nested_paths(bad):
    with pytest.raises(ValueError):
        jsonpaths_fields(bad)


def test_copy_text_applies_jsonpaths_exactly():
    record = transaction(1, customer=None)
    record = Transaction(**{**{f: getattr(record, f) for f in record.__struct_fields__},
                            "description": "TAB\there, back\\slash\nnewline",
                            "unit_price": Decimal("0.1000")})
    text = ndjson_to_copy_text(to_ndjson_gz((record,), 1), ("event_id", "description", "unit_price", "customer_id"))
    assert text == f"{record.event_id}\tTAB\\there, back\\\\slash\\nnewline\t0.1000\t\\N\n"


def test_the_largest_record_the_schema_admits_fits_every_sink():
    # A record a sink would refuse (DynamoDB: items up to 400 KB; the warehouse:
    # VARCHAR(1024), in bytes) must be refused at decode, where it is dead-lettered,
    # never at write time, where it would fail its whole batch again and again.
    from retail_stream.schema import InvalidRecord, Transaction, decode, encode

    wide = "\U0001d11e" * 255  # four UTF-8 bytes a character, at the schema's length limit
    biggest = Transaction(
        event_id="f" * 32, invoice_no="C" * 32, stock_code="S" * 32, description=wide,
        quantity=-(2**31 - 1), invoice_date=dt.datetime(2011, 12, 9, 12, 50), unit_price=Decimal("-99999999999999.9999"),
        customer_id=2**31 - 1, country=wide, source=wide, line=2**62,
    )
    assert decode(encode(biggest)) == biggest
    item = to_item(biggest)
    size = sum(len(name.encode()) + len(next(iter(value.values())).encode()) for name, value in item.items())
    assert size < 400 * 1024
    assert all(len(text.encode()) <= 1024 for text in (biggest.description, biggest.country, biggest.source))
    with pytest.raises(InvalidRecord, match="length"):
        decode(encode(Transaction(**{**{f: getattr(biggest, f) for f in biggest.__struct_fields__},
                                     "description": "d" * 256})))


class SlowDynamoDB:
    """A BatchWriteItem writer that takes a while, counting the calls in
    flight; the call numbered `fail_at` is refused."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = self.started = self.ended = 0
        self.items = 0
        self.fail_at = fail_at

    def send(self, body):
        with self.lock:
            self.started += 1
            number = self.started
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.01)
        with self.lock:
            self.in_flight -= 1
            self.ended += 1
            if number == self.fail_at:
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "BatchWriteItem")
            self.items += sum(len(v) for v in json.loads(body)["RequestItems"].values())
        return {}


def test_dynamodb_calls_go_side_by_side_and_all_items_are_written():
    client = SlowDynamoDB()
    records = tuple(transaction(i) for i in range(1, 501))
    written = DynamoDBSink(client, "t", concurrency=4).write(Batch("s", records, (), Position("1"), Position("500"), 0))
    assert written == client.items == 500
    assert client.started == 20 and client.most_in_flight == 4


def test_a_failed_dynamodb_call_raises_only_once_the_calls_in_flight_ended():
    client = SlowDynamoDB(fail_at=3)
    records = tuple(transaction(i) for i in range(1, 501))
    with pytest.raises(SinkError):
        DynamoDBSink(client, "t", concurrency=4).write(Batch("s", records, (), Position("1"), Position("500"), 0))
    assert client.in_flight == 0 and client.started == client.ended < 20  # no call left behind, none started after


class Refusing:
    """A client whose every call raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise self.error
        return call


def aws_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "Call")


def sinks_over(s3, dynamodb, connect):
    return build_sinks(Settings(), Clients(s3=s3, dynamodb=dynamodb, connect_warehouse=connect))


@pytest.mark.parametrize(("error", "is_permanent"), [
    (aws_error("AccessDeniedException", 400), True),
    (aws_error("ResourceNotFoundException", 400), True),
    (aws_error("ProvisionedThroughputExceededException", 400), False),
    (aws_error("InternalServerError", 500), False),
])
def test_a_dynamodb_error_says_whether_a_retry_can_help_and_names_the_table(error, is_permanent):
    sink = sinks_over(None, Refusing(error), None).dynamodb
    with pytest.raises(SinkError) as info:
        sink.write(batch([transaction(1)]))
    assert info.value.permanent is is_permanent
    assert (info.value.sink, info.value.resource) == ("dynamodb", "retail-transactions")
    assert info.value.code == error.response["Error"]["Code"]


@pytest.mark.parametrize(("error", "is_permanent"), [
    (aws_error("NoSuchBucket", 404), True),
    (aws_error("AccessDenied", 403), True),
    (aws_error("SlowDown", 503), False),
])
def test_a_raw_zone_error_says_whether_a_retry_can_help_and_names_the_object(error, is_permanent):
    sink = sinks_over(Refusing(error), None, None).raw_zone
    b = batch([transaction(1)])
    with pytest.raises(SinkError) as info:
        sink.write(b)
    assert info.value.permanent is is_permanent
    assert info.value.resource == f"s3://retail-raw/{sink.key_for(b)}"


def test_a_dead_letter_put_to_a_missing_bucket_is_permanent():
    sink = sinks_over(Refusing(aws_error("NoSuchBucket", 404)), None, None).dead_letters
    with pytest.raises(SinkError) as info:
        sink.write(batch([], dead=[DeadLetter(stream_record(1, data=b"x"), "not JSON")]))
    assert info.value.permanent and info.value.resource.startswith("s3://retail-raw/dead-letter/")


@pytest.mark.parametrize(("error", "is_permanent"), [
    (psycopg2.OperationalError('FATAL:  password authentication failed for user "retail"'), True),
    (psycopg2.OperationalError("could not connect to server: Connection refused"), False),
])
def test_a_warehouse_connection_error_says_whether_a_retry_can_help(error, is_permanent):
    def connect():
        raise error

    sink = sinks_over(None, None, connect).warehouse
    with pytest.raises(SinkError) as info:
        sink.write(batch([transaction(1)]))
    assert info.value.permanent is is_permanent
    assert (info.value.sink, info.value.resource) == ("warehouse", "retail.transactions")


def test_a_raw_zone_object_is_each_records_wire_form_on_a_line():
    from retail_stream.schema import encode

    records = [transaction(i) for i in range(1, 40)]
    assert gzip.decompress(to_ndjson_gz(tuple(records), 1)) == b"".join(encode(r) + b"\n" for r in records)
