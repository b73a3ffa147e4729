"""The HTTP API as a real server (`python -m api`, uvicorn) on the local
stack: its OpenAPI document checked by schemathesis against the running
server (with a key, and proving 401 without one), bodies into the real
Kinesis stream, lookups from the real DynamoDB, keys that change under it.

The API writes to a stream of its own here, so the records schemathesis
generates change nothing the other integration tests count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
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
from tests.support.waiting import wait_until

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
    env = {**os.environ, "KINESIS_STREAM_NAME": api_settings.stream_name, "API_CURSOR_SECRET": "integration-" + "s" * 32,
           "API_MAX_BODY_BYTES": str(64 * 1024), "API_MAX_ITEMS": "50",
           # schemathesis sends hundreds of requests with one key; the limits have a test of their own
           "API_RATE_LIMIT_PER_SECOND": "10000", "API_RATE_LIMIT_BURST": "10000"}
    with running_api(env, tmp_path_factory.mktemp("api") / "api.log") as running:
        yield running


@pytest.fixture(scope="module")
def http(api):
    with api.client() as client:
        yield client


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_keeps_its_openapi_promises(api, mode):
    """Schemathesis, against the running server, on every operation of the
    document it serves, with a key: valid and invalid requests alike never
    get a 500, and every answer (status, headers, body) is one the document
    declares; its ignored_auth check sends each request again without the
    key and expects a refusal."""
    auth = {"X-API-Key": api.keys["tester"]}
    schema = schemathesis.openapi.from_url(f"{api.url}/schema/openapi.json", headers=auth)
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
            continue  # /healthz: no input to get wrong

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck),
                             database=None)
        def keeps_its_promises(case):
            case.call_and_validate(headers=auth, excluded_checks=beyond_the_schema)

        keeps_its_promises()


@pytest.mark.parametrize("method, path", [("POST", "/transactions"), ("GET", "/customers/17850/transactions"),
                                          ("GET", "/invoices/536365"), ("GET", "/schema/openapi.json")])
def test_every_route_but_health_is_401_without_a_key(api, method, path):
    for headers in ({}, {"X-API-Key": "rsk_" + "0" * 43}, {"Authorization": "Bearer not.a.token"}):
        response = httpx.request(method, f"{api.url}{path}", headers={"Content-Type": "application/json", **headers},
                                 content=b"{}" if method == "POST" else None)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{api.url}/healthz").status_code == 200


def test_a_key_made_while_it_runs_works_and_a_revoked_one_stops(api, api_settings, tmp_path):
    """retail-api-keys against the API's own key file: no restart, within API_KEYS_RELOAD_SECONDS."""
    keys_file = str(api.keys_file)
    made = subprocess.run([sys.executable, "-m", "api.keys_cli", "create", "--name", "late", "--permissions", "read",
                           "--file", keys_file], capture_output=True, text=True, check=True)
    key = made.stdout.strip()
    assert key.startswith("rsk_") and key not in open(keys_file).read()
    wait_until(lambda: httpx.get(f"{api.url}/invoices/1", headers={"X-API-Key": key}).status_code == 404,
               10, "the new key to be taken")
    subprocess.run([sys.executable, "-m", "api.keys_cli", "revoke", "--name", "late", "--file", keys_file], check=True)
    wait_until(lambda: httpx.get(f"{api.url}/invoices/1", headers={"X-API-Key": key}).status_code == 401,
               10, "the revoked key to be refused")


def test_keys_in_a_secrets_manager_secret_are_taken_and_revoked_without_a_restart(api_settings, tmp_path):
    secret = f"retail-api-keys-{uuid.uuid4().hex[:8]}"
    cli = [sys.executable, "-m", "api.keys_cli"]
    key = subprocess.run([*cli, "create", "--name", "ops", "--permissions", "read", "--secret-id", secret],
                         capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "KINESIS_STREAM_NAME": api_settings.stream_name, "API_KEYS_SECRET_ID": secret}
    with running_api(env, tmp_path / "api.log") as secret_api:
        assert httpx.get(f"{secret_api.url}/invoices/1", headers={"X-API-Key": key}).status_code == 404
        listed = subprocess.run([*cli, "list", "--secret-id", secret], capture_output=True, text=True, check=True)
        assert listed.stdout.startswith("ops\tclient=ops\tpermissions=read") and key not in listed.stdout
        subprocess.run([*cli, "revoke", "--name", "ops", "--secret-id", secret], check=True)
        wait_until(lambda: httpx.get(f"{secret_api.url}/invoices/1", headers={"X-API-Key": key}).status_code == 401,
                   10, "the revoked key to be refused")


def test_the_api_will_not_start_without_a_way_to_authenticate(api_settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_")}
    started = subprocess.run([sys.executable, "-m", "api", "--port", "0"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode == 2 and "no way to authenticate callers" in started.stderr


def test_two_clients_write_two_records_and_a_repeat_writes_none(api, api_settings):
    source = f"shared-{uuid.uuid4().hex[:8]}.csv"
    body = "\r\n".join([HEADER, ROWS[0]]) + "\r\n"
    answers = []
    for name in ("tester", "other", "tester"):
        response = httpx.post(f"{api.url}/transactions", params={"source": source}, content=body.encode(),
                              headers={"Content-Type": "text/csv", "X-API-Key": api.keys[name]})
        assert response.status_code == 202, response.text
        answers.append(response.json()["results"][0]["event_id"])
    assert answers[0] == answers[2] != answers[1]
    stored = [r for r in stream_data(api_settings) if r.source.endswith(source)]
    assert sorted(r.source for r in stored) == sorted([f"other/{source}", f"tester/{source}", f"tester/{source}"])
    assert {r.event_id for r in stored} == {event_id(f"tester/{source}", 2), event_id(f"other/{source}", 2)}


def test_an_over_rate_client_gets_429_with_retry_after(api_settings, tmp_path):
    env = {**os.environ, "KINESIS_STREAM_NAME": api_settings.stream_name,
           "API_RATE_LIMIT_PER_SECOND": "0.5", "API_RATE_LIMIT_BURST": "5"}
    with running_api(env, tmp_path / "api.log") as limited_api:
        with limited_api.client("reader") as reader, limited_api.client("tester") as tester:
            statuses = [reader.get("/invoices/rate-probe") for _ in range(8)]
            other = tester.get("/invoices/rate-probe")
    assert [r.status_code for r in statuses] == [404] * 5 + [429] * 3
    assert all(r.headers["retry-after"] == "2" for r in statuses[5:])
    assert other.status_code == 404  # limits are per credential


def stream_data(settings) -> list:
    return [decode(r["Data"]) for records in census.stream_records(settings).values() for r in records]


def test_a_csv_body_goes_into_the_stream_with_the_producers_event_ids(api, api_settings):
    source = f"posted-{uuid.uuid4().hex[:8]}.csv"
    body = "\ufeff" + "\r\n".join([HEADER, *ROWS]) + "\r\n"
    response = httpx.post(f"{api.url}/transactions", params={"source": source}, content=body.encode(),
                          headers={"Content-Type": "text/csv; charset=utf-8", "X-API-Key": api.keys["replay"]})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["failed"]) == (3, 1, 0)
    assert [r["status"] for r in answer["results"]] == ["accepted", "accepted", "rejected", "accepted"]
    assert answer["results"][2]["reason"].startswith("Quantity")

    stored = {r.event_id: r for r in stream_data(api_settings) if r.source == source}
    assert set(stored) == {event_id(source, line) for line in (2, 3, 5)}
    assert stored[event_id(source, 5)].quantity == -1 and str(stored[event_id(source, 5)].unit_price) == "27.50"


def test_the_real_server_refuses_bad_bodies_with_a_clear_4xx(http):
    too_big = b"[" + b",".join([b'{"InvoiceNo": "1"}'] * 5000) + b"]"
    cases = [
        (too_big, "application/json", 413),
        (b"[" + b",".join([b"{}"] * 51) + b"]", "application/json", 413),
        (b"<xml/>", "application/xml", 415),
        (b"{not json", "application/json", 400),
        (b"Invoice,Stock\n1,2\n", "text/csv", 400),
    ]
    for body, content_type, status in cases:
        response = http.post("/transactions", content=body, headers={"Content-Type": content_type})
        assert response.status_code == status, (content_type, response.text)
        assert response.json()["status_code"] == status and response.json()["detail"]


def test_lookups_read_what_the_consumers_sink_wrote(http, settings):
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
        page = http.get(f"/customers/{customer}/transactions", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    newest_first = sorted(records, key=lambda r: (r.invoice_date, r.invoice_no, r.event_id), reverse=True)
    assert [item["event_id"] for item in seen] == [r.event_id for r in newest_first]

    lines = http.get(f"/invoices/{invoice}")
    assert lines.status_code == 200
    assert [item["line"] for item in lines.json()["items"]] == [1, 2, 3]
    assert http.get(f"/invoices/no-such-{invoice}").status_code == 404
    assert http.get(f"/customers/{customer + 1}/transactions").status_code == 404
    assert http.get(f"/customers/{customer}/transactions", params={"cursor": "forged.x"}).status_code == 400


def test_metrics_are_on_their_own_port_and_count_requests_by_route_and_status(api, http):
    http.get("/invoices/metrics-probe")
    httpx.get(f"{api.url}/invoices/metrics-probe")  # no key: 401
    assert httpx.get(f"{api.url}/metrics", headers=http.headers).status_code == 404  # not beside the routes
    text = httpx.get(api.metrics_url).text
    assert 'path="/invoices/{invoice_no}"' in text and 'status_code="404"' in text
    assert 'retail_api_auth_failures_total{reason="missing"}' in text
