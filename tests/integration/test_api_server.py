"""The HTTP API as a real server (`python -m api`, uvicorn) on the local
stack: its OpenAPI document checked by schemathesis against the running
server, bodies into the real Kinesis stream, lookups from the real DynamoDB.

The API writes to a stream of its own here, so the records schemathesis
generates change nothing the other integration tests count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from consumer.wiring import build_sinks, service_clients
from local_stack import census
from local_stack.provision import ensure_stream
from retail_stream.schema import CSV_COLUMNS, decode, event_id
from tests.api_server import running_api
from tests.support.consumer_fakes import make_batch, transaction

pytestmark = pytest.mark.integration

HEADER = ",".join(CSV_COLUMNS)
ROWS = [
    '536365,85123A,"WHITE HANGING HEART T-LIGHT HOLDER",6,12/1/2010 8:26,2.55,17850.0,United Kingdom',
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,six,12/1/2010 8:28,1.85,17850,United Kingdom",
    "C536379,D,Discount,-1,2010-12-01T09:41:00,27.50,14527,United Kingdom",
]


@pytest.fixture(scope="module")
def api_settings(settings):
    own = dataclasses.replace(settings, stream_name=f"api-{uuid.uuid4().hex[:8]}")
    ensure_stream(own, shard_count=1)
    return own


@pytest.fixture(scope="module")
def api(api_settings, tmp_path_factory):
    env = {**os.environ, "KINESIS_STREAM_NAME": api_settings.stream_name, "API_CURSOR_SECRET": "integration",
           "API_MAX_BODY_BYTES": str(64 * 1024), "API_MAX_ITEMS": "50"}
    with running_api(env, tmp_path_factory.mktemp("api") / "api.log") as url:
        yield url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_keeps_its_openapi_promises(api, mode):
    """Schemathesis, against the running server, on every operation of the
    document it serves: valid and invalid requests alike never get a 500, and
    every answer (status, headers, body) is one the document declares."""
    schema = schemathesis.openapi.from_url(f"{api}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /transactions", "GET /customers/{customer_id}/transactions", "GET /invoices/{invoice_no}",
    }
    # Not "every schema-valid request succeeds": some are refused by design
    # beyond what a schema can say (a forged cursor; a transaction whose date
    # does not exist, a body of only such items: 400, 422).
    beyond_the_schema = [positive_data_acceptance]
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.body or list(operation.iter_parameters())):
            continue  # /healthz, /metrics: no input to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                             database=None)
        def keeps_its_promises(case):
            case.call_and_validate(excluded_checks=beyond_the_schema)

        keeps_its_promises()


def stream_data(settings) -> list:
    return [decode(r["Data"]) for records in census.stream_records(settings).values() for r in records]


def test_a_csv_body_goes_into_the_stream_with_the_producers_event_ids(api, api_settings):
    source = f"posted-{uuid.uuid4().hex[:8]}.csv"
    body = "\ufeff" + "\r\n".join([HEADER, *ROWS]) + "\r\n"
    response = httpx.post(f"{api}/transactions", params={"source": source}, content=body.encode(),
                          headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["failed"]) == (3, 1, 0)
    assert [r["status"] for r in answer["results"]] == ["accepted", "accepted", "rejected", "accepted"]
    assert answer["results"][2]["reason"].startswith("Quantity")

    stored = {r.event_id: r for r in stream_data(api_settings) if r.source == source}
    assert set(stored) == {event_id(source, line) for line in (2, 3, 5)}
    assert stored[event_id(source, 5)].quantity == -1 and str(stored[event_id(source, 5)].unit_price) == "27.50"


def test_the_real_server_refuses_bad_bodies_with_a_clear_4xx(api):
    too_big = b"[" + b",".join([b'{"InvoiceNo": "1"}'] * 5000) + b"]"
    cases = [
        (too_big, "application/json", 413),
        (b"[" + b",".join([b"{}"] * 51) + b"]", "application/json", 413),
        (b"<xml/>", "application/xml", 415),
        (b"{not json", "application/json", 400),
        (b"Invoice,Stock\n1,2\n", "text/csv", 400),
    ]
    for body, content_type, status in cases:
        response = httpx.post(f"{api}/transactions", content=body, headers={"Content-Type": content_type})
        assert response.status_code == status, (content_type, response.text)
        assert response.json()["status_code"] == status and response.json()["detail"]


def test_lookups_read_what_the_consumers_sink_wrote(api, settings):
    customer = 60_000 + uuid.uuid4().int % 10_000
    invoice = str(uuid.uuid4().int % 10**9)
    # Three lines of one invoice and four of another, days out of line order.
    records = [
        msgspec.structs.replace(
            transaction(i, customer=customer, invoice=invoice if i <= 3 else f"{invoice}9"),
            invoice_date=dt.datetime(2011, 1, 1) + dt.timedelta(days=(5 * i) % 7),
        )
        for i in range(1, 8)
    ]
    build_sinks(settings, service_clients(settings)).dynamodb.write(make_batch(records))

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api}/customers/{customer}/transactions", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    newest_first = sorted(records, key=lambda r: (r.invoice_date, r.invoice_no, r.event_id), reverse=True)
    assert [item["event_id"] for item in seen] == [r.event_id for r in newest_first]

    lines = httpx.get(f"{api}/invoices/{invoice}")
    assert lines.status_code == 200
    assert [item["line"] for item in lines.json()["items"]] == [1, 2, 3]
    assert httpx.get(f"{api}/invoices/no-such-{invoice}").status_code == 404
    assert httpx.get(f"{api}/customers/{customer + 1}/transactions").status_code == 404
    assert httpx.get(f"{api}/customers/{customer}/transactions", params={"cursor": "forged.x"}).status_code == 400


def test_metrics_count_requests_by_route_and_status(api):
    httpx.get(f"{api}/invoices/metrics-probe")
    text = httpx.get(f"{api}/metrics").text
    assert 'path="/invoices/{invoice_no}"' in text and 'status_code="404"' in text
