"""The DynamoDB sink's shortcut past botocore's serializer and call path
(consumer.sinks.dynamodb.write_calls, consumer.sinks.batch_write) against
what botocore itself sends for the same items: byte for byte, signature
included, and the same retries and errors."""

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from consumer.sinks import batch_write
from consumer.sinks.batch_write import BatchWriter, invocation_id
from consumer.sinks.dynamodb import DynamoDBSink, unprocessed_body, write_calls, write_requests
from consumer.batch import Batch, Position
from producer.csv_source import valid_records
from retail_stream.schema import Transaction
from tests.support.consumer_fakes import transaction

TABLE = "retail-transactions"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"


def odd(n: int, **fields) -> Transaction:
    base = transaction(n)
    return Transaction(**{**{f: getattr(base, f) for f in base.__struct_fields__}, **fields})


# What foreign input puts in the text: non-ASCII (Latin-1, CJK, astral), JSON's
# own specials, tabs and line breaks; and rows missing every optional field.
ODD_RECORDS = [
    odd(1, description="CRÈME BRÛLÉE SET, 6 “pièces”", country="Côte d'Ivoire"),
    odd(2, description='quote " back\\slash / slash', stock_code='85"123\\A'),
    odd(3, description="tab\there\nnew line\r\n", country="日本"),
    odd(4, description="\U0001d11e clef", invoice_no="C5363\u00e97"),
    odd(5, description=None, country=None, customer_id=None),
    odd(6, unit_price=Decimal("-99999999999999.9999"), quantity=-(2**31 - 1), customer_id=2**31 - 1, line=2**62),
    odd(7, unit_price=Decimal("0E-7"), invoice_date=dt.datetime(2011, 12, 9, 12, 50, 7, 123456)),
    odd(8, unit_price=Decimal("2.5500"), source="s3://bucket/ünïcode file.csv"),
    odd(2, description="the same key again: the later row wins"),
]


def records():
    return valid_records(SAMPLE, "sample") + ODD_RECORDS


class Answering:
    """An HTTP session in place of botocore's: keeps every prepared request
    and answers from `answers` (status, JSON body, headers), the last one again."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers) or [(200, {"UnprocessedItems": {}}, {})]
        self.requests = []

    def send(self, request):
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        raw = json.dumps(body).encode()
        return AWSResponse(request.url, status, {"content-type": "application/x-amz-json-1.0", **headers},
                           _Raw(raw))


def headers(request) -> dict:
    """A request's headers; the user agent's feature list (m/...) in order: botocore keeps it as a set."""
    found = dict(request.headers)
    found["User-Agent"] = b" ".join(
        b"m/" + b",".join(sorted(part[2:].split(b","))) if part.startswith(b"m/") else part
        for part in found["User-Agent"].split(b" "))
    return found


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


def client(session: Answering, max_attempts: int = 3):
    made = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                                 aws_session_token="token", region_name="eu-west-1").client(
        "dynamodb", config=Config(retries={"mode": "standard", "max_attempts": max_attempts},
                                  parameter_validation=False))
    made._endpoint.http_session = session
    return made


@pytest.fixture
def frozen(monkeypatch):
    """The clock and the invocation ids botocore signs, fixed, so two signed requests can be compared."""
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: dt.datetime(2026, 12, 7, 1, 2, 3))
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))  # botocore's
    monkeypatch.setattr(batch_write, "invocation_id", lambda: str(uuid.UUID(int=7)))  # ours


def test_each_body_is_botocores_serialization_of_the_same_items_byte_for_byte():
    ours = list(write_calls(TABLE, records()))
    theirs = list(write_requests(records()))
    made = client(Answering())
    serializer, operation = made._serializer, made.meta.service_model.operation_model("BatchWriteItem")
    assert len(ours) == len(theirs) == -(-(len(records()) - 1) // 25)
    for call, requests in zip(ours, theirs):
        body = serializer.serialize_to_request({"RequestItems": {TABLE: requests}}, operation)["body"]
        assert call.body == body
        assert call.items == len(requests)
    assert sum(call.items for call in ours) == len(records()) - 1  # the repeated key once


def test_the_signed_request_is_the_one_botocore_sends(frozen):
    theirs, ours = Answering(), Answering()
    calls = list(write_calls(TABLE, records()))
    botocore_client, writer = client(theirs), BatchWriter(client(ours), TABLE)
    for requests, call in zip(write_requests(records()), calls):
        botocore_client.batch_write_item(RequestItems={TABLE: requests})
        writer.send(call.body)
    assert len(ours.requests) == len(theirs.requests) == len(calls)
    for mine, botocores in zip(ours.requests, theirs.requests):
        assert (mine.method, mine.url, mine.body) == (botocores.method, botocores.url, botocores.body)
        assert headers(mine) == headers(botocores)  # Authorization (the signature) included
    assert b"Signature=" in theirs.requests[0].headers["Authorization"]
    assert theirs.requests[0].headers["X-Amz-Security-Token"] == b"token"


def test_a_server_error_is_retried_as_botocore_retries_it(frozen, monkeypatch):
    import botocore.endpoint

    def answers():
        return Answering((500, {"__type": "InternalServerError", "message": "boom"}, {}),
                         EndpointConnectionError(endpoint_url="https://dynamodb"),
                         (200, {"UnprocessedItems": {}}, {}))

    botocore_slept, slept = [], []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", botocore_slept.append)
    theirs, ours = answers(), answers()
    client(theirs).batch_write_item(RequestItems={TABLE: next(write_requests(records()))})
    answer = BatchWriter(client(ours), TABLE, sleep=slept.append).send(next(write_calls(TABLE, records())).body)
    assert answer["UnprocessedItems"] == {}
    attempts = [r.headers["amz-sdk-request"] for r in ours.requests]
    assert attempts == [r.headers["amz-sdk-request"] for r in theirs.requests] == [
        b"attempt=1; max=4", b"attempt=2; max=4", b"attempt=3; max=4"]
    assert [headers(r) for r in ours.requests] == [headers(r) for r in theirs.requests]
    assert len(slept) == len(botocore_slept) == 2 and all(0 <= s <= 20 for s in slept)


def test_an_error_past_its_retries_raises_botocores_modeled_exception():
    throttled = (400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                       "message": "slow down"}, {})
    made = client(Answering(throttled), max_attempts=2)
    with pytest.raises(made.exceptions.ProvisionedThroughputExceededException) as raised:
        BatchWriter(made, TABLE, sleep=lambda s: None).send(next(write_calls(TABLE, records())).body)
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert len(made._endpoint.http_session.requests) == 3  # max_attempts=2 retries after the first


def test_a_refusal_is_not_retried():
    session = Answering((400, {"__type": "com.amazon.coral.validate#ValidationException", "message": "no"}, {}))
    with pytest.raises(ClientError, match="ValidationException"):
        BatchWriter(client(session), TABLE, sleep=lambda s: None).send(b"{}")
    assert len(session.requests) == 1


def test_unprocessed_items_go_again_as_botocore_would_send_them():
    first = list(write_requests(records()))[0]
    left = {TABLE: first[3:5]}
    session = Answering((200, {"UnprocessedItems": left}, {}), (200, {"UnprocessedItems": {}}, {}))
    made = client(session)
    sink = DynamoDBSink(BatchWriter(made, TABLE), TABLE, concurrency=1, sleep=lambda s: None)
    batch = Batch("shardId-0", tuple(records()[:25]), (), Position("1"), Position("25"), 0)
    assert sink.write(batch) == 25
    operation = made.meta.service_model.operation_model("BatchWriteItem")
    assert session.requests[1].body == made._serializer.serialize_to_request(
        {"RequestItems": left}, operation)["body"] == unprocessed_body(left)


def test_an_invocation_id_is_a_random_uuid4():
    ids = {invocation_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
