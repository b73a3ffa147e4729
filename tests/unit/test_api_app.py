"""The app through Litestar's TestClient, over a scripted Kinesis fake (the
real KinesisWriter and batching) and a DynamoDB Query fake."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from api.app import create_app
from api.cursor import CursorCodec
from tests.support.api_fakes import door_with_keys
from api.publish import NOT_SENT, Outcome, status_code
from producer.kinesis_writer import THROTTLED, KinesisWriter
from retail_stream.retries import Backoff
from retail_stream.schema import CSV_COLUMNS, decode, event_id
from retail_stream.settings import Settings
from tests.support.api_fakes import FakeDynamoDB, customer_records
from tests.support.consumer_fakes import transaction
from tests.support.kinesis_fakes import FakeKinesis

HEADER = ",".join(CSV_COLUMNS)
GOOD_ROW = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
BAD_ROW = "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,abc,17850.0,United Kingdom"
GOOD = dict(zip(CSV_COLUMNS, GOOD_ROW.split(",")))


class Api:
    def __init__(self, kinesis=None, dynamodb=None, **settings):
        self.kinesis = kinesis or FakeKinesis()
        self.dynamodb = dynamodb or FakeDynamoDB()
        self.door, self.keys = door_with_keys(CollectorRegistry())
        self.metrics = self.door.metrics
        writer = KinesisWriter(self.kinesis, "retail", backoff=Backoff(0, 0, attempts=3), sleep=lambda s: None)
        self.app = create_app(Settings(**settings), writer, self.dynamodb, self.door, cursors=CursorCodec("test"))

    def __enter__(self) -> TestClient:
        """A client with the `tester` key (client "tester", both permissions)."""
        self.client = TestClient(self.app)
        self.client.headers["X-API-Key"] = self.keys["tester"]
        return self.client.__enter__()

    def metrics_text(self) -> str:
        return (generate_latest(REGISTRY) + generate_latest(self.metrics.registry)).decode()

    def __exit__(self, *exc):
        self.client.__exit__(*exc)

    def stored(self):
        return [decode(data) for data, _ in self.kinesis.stored]


def post_json(client, value, **params):
    return client.post("/transactions", content=json.dumps(value), params=params,
                       headers={"Content-Type": "application/json"})


# --- status rules ------------------------------------------------------------


@pytest.mark.parametrize("statuses, code", [
    (["accepted"], 202), (["accepted", "rejected"], 202), (["rejected", "rejected"], 422),
    (["accepted", "failed"], 503), (["rejected", "failed"], 503), (["failed"], 503),
])
def test_status_code_rules(statuses, code):
    assert status_code([Outcome(i, i + 1, s) for i, s in enumerate(statuses)]) == code


# --- POST /transactions ------------------------------------------------------


def test_a_json_array_goes_into_the_stream_with_the_producers_event_ids():
    api = Api()
    with api as client:
        response = post_json(client, [GOOD, {**GOOD, "UnitPrice": "abc", "line": 9}, {**GOOD, "line": 4}],
                             source="feed.csv")
    assert response.status_code == 202
    body = response.json()
    assert {k: body[k] for k in ("source", "items", "accepted", "rejected", "failed")} == {
        "source": "tester/feed.csv", "items": 3, "accepted": 2, "rejected": 1, "failed": 0}
    assert body["results"] == [
        {"index": 0, "line": 1, "status": "accepted", "event_id": event_id("tester/feed.csv", 1)},
        {"index": 1, "line": 9, "status": "rejected", "reason": "UnitPrice is not a number: 'abc'"},
        {"index": 2, "line": 4, "status": "accepted", "event_id": event_id("tester/feed.csv", 4)},
    ]
    assert [r.event_id for r in api.stored()] == [event_id("tester/feed.csv", 1), event_id("tester/feed.csv", 4)]
    assert [key for _, key in api.kinesis.stored] == ["c17850", "c17850"]
    assert len(api.kinesis.calls) == 1  # one PutRecords call for the request


def test_a_csv_body_uses_its_line_numbers():
    api = Api()
    with api as client:
        response = client.post("/transactions?source=upload.csv", content=f"{HEADER}\r\n{GOOD_ROW}\r\n{BAD_ROW}\r\n\r\n{GOOD_ROW}\r\n",
                               headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 202
    assert [(r["line"], r["status"]) for r in response.json()["results"]] == [
        (2, "accepted"), (3, "rejected"), (5, "accepted")]
    assert [r.line for r in api.stored()] == [2, 5]


def test_without_a_source_each_request_gets_a_fresh_one():
    api = Api()
    with api as client:
        first = post_json(client, GOOD).json()
        second = post_json(client, GOOD).json()
    assert first["source"].startswith("tester/api-") and first["source"] != second["source"]
    assert first["results"][0]["event_id"] == event_id(first["source"], 1)
    assert first["results"][0]["event_id"] != second["results"][0]["event_id"]


def test_a_retry_with_the_same_source_and_lines_sends_the_same_event_ids():
    api = Api()
    with api as client:
        for _ in range(2):
            post_json(client, [GOOD, GOOD], source="batch-7")
    ids = [r.event_id for r in api.stored()]
    assert ids[:2] == ids[2:] and len(set(ids)) == 2


def test_all_rejected_is_422_with_the_same_body():
    api = Api()
    with api as client:
        response = post_json(client, [{**GOOD, "Quantity": "x"}, {"Bogus": 1}])
    assert response.status_code == 422
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (0, 2)
    assert body["results"][1]["reason"].startswith("unknown field 'Bogus'")
    assert api.kinesis.calls == []


def test_kinesis_refusing_is_503_with_failed_items_to_send_again():
    api = Api(FakeKinesis([{1: THROTTLED}] + [{0: THROTTLED}] * 4))  # item 1, on every attempt
    with api as client:
        response = post_json(client, [GOOD, GOOD, {**GOOD, "Quantity": "x"}], source="s")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "failed", "rejected"]
    assert results[1]["event_id"] == event_id("tester/s", 2) and results[1]["reason"].startswith(THROTTLED)
    assert [r.line for r in api.stored()] == [1]


def test_after_a_failed_batch_the_later_ones_are_not_sent():
    rows = [{**GOOD, "line": n} for n in range(1, 503)]  # two PutRecords batches: 500 + 2
    api = Api(FakeKinesis([{0: THROTTLED}] * 3), api_max_items=1000)
    with api as client:
        results = post_json(client, rows, source="s").json()["results"]
    assert [r["status"] for r in results].count("accepted") == 499
    assert results[0]["status"] == "failed" and results[-1] == {
        "index": 501, "line": 502, "status": "failed", "event_id": event_id("tester/s", 502), "reason": NOT_SENT}
    assert len(api.kinesis.calls) == 3


@pytest.mark.parametrize("content, content_type, status, detail", [
    (b"{", "application/json", 400, "not JSON"),
    (b"", "application/json", 400, "empty"),
    (b"[1]", "application/json", 400, "item 0 is not a JSON object"),
    (b"[" * 200_000, "application/json", 400, "nested too deeply"),
    (b"a,b\n1,2\n", "text/csv", 400, "header"),
    (b"\xff\xfe\x00", "text/csv", 400, "not UTF-8"),
    (b"{}", "text/plain", 415, "not supported"),
    (b"{}", "text/csv; charset=latin-1", 415, "charset"),
    (json.dumps([{}] * 501).encode(), "application/json", 413, "501 items"),
])
def test_bad_bodies_get_clear_4xx_errors(content, content_type, status, detail):
    api = Api()
    with api as client:
        response = client.post("/transactions", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert detail in response.json()["detail"] and response.json()["status_code"] == status


def test_a_missing_content_type_is_415():
    api = Api()
    with api as client:
        response = client.post("/transactions", content=b"{}", headers={"Content-Type": ""})
    assert response.status_code == 415


def test_a_body_over_the_byte_limit_is_413_before_it_is_read():
    api = Api(api_max_body_bytes=2048)
    with api as client:
        big = post_json(client, [GOOD] * 20)
        small = post_json(client, [GOOD])
    assert (big.status_code, small.status_code) == (413, 202)
    assert big.json()["status_code"] == 413


@pytest.mark.parametrize("source", ["", "x" * 256, "a\nb", "tab\there"])
def test_a_bad_source_is_400(source):
    api = Api()
    with api as client:
        response = post_json(client, GOOD, source=source)
    assert response.status_code == 400 and "source" in response.text


def test_metrics_count_items_and_requests_by_route_template():
    api = Api()
    with api as client:
        post_json(client, [GOOD, {**GOOD, "UnitPrice": "x", "line": 5}])
        client.get("/customers/4242/transactions")
        text = api.metrics_text()
    assert 'retail_api_items_total{status="accepted"} 1.0' in text
    assert 'retail_api_items_rejected_total{reason="UnitPrice"} 1.0' in text
    assert 'path="/customers/{customer_id}/transactions"' in text and 'status_code="404"' in text
    assert "retail_api_request_duration_seconds_bucket" in text


# --- GET ---------------------------------------------------------------------


def test_customer_pages_newest_first_with_a_cursor():
    records = customer_records(5)
    api = Api(dynamodb=FakeDynamoDB(records))
    with api as client:
        first = client.get("/customers/17850/transactions", params={"limit": 2}).json()
        second = client.get("/customers/17850/transactions", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = client.get("/customers/17850/transactions", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    newest = sorted(records, key=lambda r: r.invoice_date, reverse=True)
    assert [i["line"] for i in first["items"] + second["items"] + third["items"]] == [r.line for r in newest]
    assert third["next_cursor"] is None
    assert first["items"][0] == {
        "event_id": newest[0].event_id, "invoice_no": newest[0].invoice_no, "stock_code": "85123A",
        "description": "WHITE HANGING HEART T-LIGHT HOLDER", "quantity": 6, "invoice_date": "2010-12-01T05:00:00",
        "unit_price": "2.55", "customer_id": 17850, "country": "United Kingdom", "source": "c.csv", "line": 5,
    }


@pytest.mark.parametrize("query, status, detail", [
    ({"limit": 0}, 400, "Validation failed"),
    ({"limit": 101}, 400, "Validation failed"),
    ({"limit": "ten"}, 400, "Validation failed"),
    ({"cursor": "garbage"}, 400, "Validation failed"),  # not token-shaped: the documented pattern
    ({"cursor": "0123abcd.a.b"}, 400, "invalid cursor"),
    ({"cursor": "x" * 3000}, 400, "Validation failed"),
])
def test_bad_paging_parameters_are_400(query, status, detail):
    api = Api(dynamodb=FakeDynamoDB(customer_records(3)))
    with api as client:
        response = client.get("/customers/17850/transactions", params=query)
    assert response.status_code == status and detail in response.json()["detail"]


def test_another_customers_cursor_is_400():
    api = Api(dynamodb=FakeDynamoDB(customer_records(3) + customer_records(3, customer=99)))
    with api as client:
        cursor = client.get("/customers/99/transactions", params={"limit": 1}).json()["next_cursor"]
        response = client.get("/customers/17850/transactions", params={"cursor": cursor})
    assert response.status_code == 400 and "another customer" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/customers/4242/transactions", "/customers/abc/transactions",
                                  "/invoices/999999", "/nowhere"])
def test_unknown_things_are_404_with_an_error_body(path):
    api = Api(dynamodb=FakeDynamoDB(customer_records(3)))
    with api as client:
        response = client.get(path)
    assert response.status_code == 404 and response.json()["status_code"] == 404


def test_an_out_of_range_customer_is_400():
    api = Api()
    with api as client:
        assert client.get("/customers/0/transactions").status_code == 400
        assert client.get(f"/customers/{2**31}/transactions").status_code == 400


def test_an_invoice_comes_whole_by_source_and_line():
    lines = [transaction(n, invoice="536365") for n in (12, 3, 7)]
    api = Api(dynamodb=FakeDynamoDB(lines + [transaction(1, invoice="536366")], page_size=2))
    with api as client:
        body = client.get("/invoices/536365").json()
    assert body["invoice_no"] == "536365" and [i["line"] for i in body["items"]] == [3, 7, 12]


def test_an_overlong_invoice_number_is_400():
    api = Api()
    with api as client:
        assert client.get("/invoices/" + "é" * 20).status_code == 400  # 20 characters, 40 bytes


def test_dynamodb_trouble_is_503_not_500():
    api = Api(dynamodb=FakeDynamoDB(fail="ProvisionedThroughputExceededException"))
    with api as client:
        assert client.get("/invoices/1").status_code == 503
        response = client.get("/customers/1/transactions")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_health_and_the_openapi_document():
    api = Api()
    with api as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        doc = client.get("/schema/openapi.json").json()
    post = doc["paths"]["/transactions"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "403", "413", "415", "422", "429", "503"}
    assert set(post["requestBody"]["content"]) == {"application/json", "text/csv"}
    reads = {"200", "400", "401", "403", "404", "429", "503"}
    assert set(doc["paths"]["/customers/{customer_id}/transactions"]["get"]["responses"]) == reads
    assert set(doc["paths"]["/invoices/{invoice_no}"]["get"]["responses"]) == reads
    assert "/healthz" in doc["paths"] and "/metrics" not in doc["paths"]
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "bearer"}
    assert doc["paths"]["/healthz"]["get"]["security"] == [{}]
