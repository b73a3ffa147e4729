"""docker-compose.yml as shipped, built and run with podman, the consumer
scaled to two: the sample replay and a CSV posted to the HTTP API reach every
sink once, the API reads the posted rows back from DynamoDB, both consumers
share the shards, their lag reaches Prometheus, which scrapes the API too,
every image runs as a non-root user on a read-only root with no capabilities
and no privilege gain, the API refuses a request without the development
key and takes it with the key, and SIGTERM stops a
consumer cleanly inside its stop timeout. `make container-test` runs this module."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from local_stack import census
from local_stack.demo import count_source_rows
from retail_stream import aws
from retail_stream.settings import Settings
from tests.containers.compose import ComposeStack, Podman, Project
from tests.support.ports import free_ports

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "data" / "TestSample.csv"
# Grafana is the upstream image and no registry is reachable here; it is the
# one service not started (its provisioning is checked in tests/unit/test_dashboard.py).
NOT_STARTED_HERE = {"grafana"}
OWN_IMAGES = ["emulator", "postgres", "consumer", "producer", "api", "prometheus"]
DRAIN_TIMEOUT = 240
CONSUMERS = 2
API_HEALTH_TIMEOUT = 120
# Posted to the API as a CSV body; the customer is not in the sample, so its
# transactions are exactly these rows.
API_SOURCE = "container-api"
API_CUSTOMER = 99901
API_CSV = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    f"990001,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/9/2011 12:50,2.55,{API_CUSTOMER}.0,France\n"
    f"990002,71053,WHITE METAL LANTERN,2,12/9/2011 12:55,3.39,{API_CUSTOMER}.0,France\n"
)
API_ROWS = API_CSV.count("\n") - 1


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """Host ports of the published services, free ones so a running local stack does not clash."""
    return dict(zip(("emulator", "postgres", "prometheus", "api"), free_ports(4)))


@pytest.fixture(scope="module")
def stack(ports):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: `make container-test` needs podman, runc and debootstrap")
    environ = {
        **os.environ,
        "BASE_IMAGE": os.environ.get("BASE_IMAGE", "localhost/bookworm-slim:latest"),
        "PIP_OPTIONS": os.environ.get("PIP_OPTIONS", "--no-index"),
        **{f"{service.upper()}_PORT": str(port) for service, port in ports.items()},
    }
    project = Project.load(ROOT / "docker-compose.yml", "retailtest", environ)
    compose = ComposeStack(project, Podman(ROOT / "tests" / "containers" / "containers.conf"))
    compose.down()  # whatever an interrupted run left
    services = [name for name in project.services if name not in NOT_STARTED_HERE]
    compose.build(services)
    try:
        compose.up(services, scale={"consumer": CONSUMERS})
        yield compose
    finally:
        for name in compose.containers():
            print(f"--- {name} ---\n{compose.podman('logs', name, check=False).stderr[-3000:]}")
        compose.down()


@pytest.fixture(scope="module")
def sinks(stack, ports):
    """Settings that reach the stack's emulator and PostgreSQL from this host."""
    environ = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['emulator']}",
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1",
        "WAREHOUSE_DSN": f"postgresql://retail:retail@127.0.0.1:{ports['postgres']}/retail",
    }
    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        yield Settings.from_env(environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def http(method: str, url: str, body: bytes | None = None, content_type: str | None = None,
         key: str | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one request; an error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def api_key(stack) -> str:
    """The development key the init step made, read as the README says."""
    stack.wait_for("api", "service_healthy", API_HEALTH_TIMEOUT)
    found = stack.exec("api", "cat", "/run/api-keys/dev-api-key")
    assert found.returncode == 0 and found.stdout.startswith("rsk_"), found
    return found.stdout.strip()


@pytest.fixture(scope="module")
def posted(stack, ports, api_key) -> dict:
    """The API's answer to the CSV posted once, when it is healthy, before
    anything waits for the drain: the expected counts include its rows.
    Without the key, the same request is refused and sends nothing."""
    query = urllib.parse.urlencode({"source": API_SOURCE})
    url = f"http://127.0.0.1:{ports['api']}/transactions?{query}"
    assert http("POST", url, API_CSV.encode(), "text/csv")[0] == 401
    assert http("GET", f"http://127.0.0.1:{ports['api']}/invoices/990001")[0] == 401
    status, answer = http("POST", url, API_CSV.encode(), "text/csv", key=api_key)
    assert status == 202, (status, answer)
    return answer


def rejected_rows(stack) -> list[dict]:
    """The producer's rejects file, inside its container (none yet: empty)."""
    rejects = stack.exec("producer", "cat", "/tmp/rejects.jsonl")
    return [json.loads(line) for line in rejects.stdout.splitlines()] if rejects.returncode == 0 else []


def expected_rows(stack) -> int:
    """Valid rows: the replay's (the CSV's rows less those the producer set
    aside) and those posted to the API (all valid)."""
    return count_source_rows(CSV) - len(rejected_rows(stack)) + API_ROWS


def wait_drained(stack, settings: Settings) -> census.Census:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        valid, found = expected_rows(stack), census.take(settings)
        if min(found.redshift_rows, found.dynamodb_items, found.s3_records) >= valid:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not drained after {DRAIN_TIMEOUT} s: {valid} valid rows, found {found}")
        time.sleep(3)


def prometheus_query(port: int, query: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_the_sample_replay_lands_once_in_every_sink(stack, sinks, posted):
    found = wait_drained(stack, sinks)
    rejected = rejected_rows(stack)
    assert rejected and all(r.get("reason") for r in rejected), rejected[:3]
    valid = expected_rows(stack)
    assert found.kinesis_records == valid
    assert found.dynamodb_items == valid
    assert found.redshift_rows == found.redshift_distinct_events == valid
    assert found.s3_distinct_events == valid and found.s3_objects >= 1
    assert found.dead_lettered == 0


def test_the_api_takes_a_csv_and_reads_the_customer_back(stack, sinks, posted, ports, api_key):
    stored_source = f"dev/{API_SOURCE}"  # the development key's client namespace
    assert (posted["source"], posted["items"], posted["accepted"]) == (stored_source, API_ROWS, API_ROWS), posted
    event_ids = {item["event_id"] for item in posted["results"]}
    wait_drained(stack, sinks)
    status, page = http("GET", f"http://127.0.0.1:{ports['api']}/customers/{API_CUSTOMER}/transactions", key=api_key)
    assert status == 200, page
    items = page["items"]
    assert {item["event_id"] for item in items} == event_ids, page
    # Newest first, each as posted.
    assert [item["invoice_no"] for item in items] == ["990002", "990001"], page
    assert all(item["source"] == stored_source and item["customer_id"] == API_CUSTOMER for item in items), page
    assert [item["unit_price"] for item in items] == ["3.39", "2.55"], page
    assert page["next_cursor"] is None
    status, invoice = http("GET", f"http://127.0.0.1:{ports['api']}/invoices/990001", key=api_key)
    assert status == 200 and [item["stock_code"] for item in invoice["items"]] == ["85123A"], invoice


def test_prometheus_scrapes_the_consumers_lag_per_shard(stack, sinks, posted, ports):
    wait_drained(stack, sinks)
    deadline = time.monotonic() + 60
    query = functools.partial(prometheus_query, ports["prometheus"])
    # A shard's series appears with its processor's first batch, in the next scrape.
    while len(lag := query("retail_consumer_millis_behind_latest")) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    shards = {series["metric"]["shard_id"] for series in lag}
    assert len(shards) == 2, lag
    processed = query("sum(retail_consumer_records_processed_total)")
    assert processed and float(processed[0]["value"][1]) >= expected_rows(stack)
    # Every replica is scraped, found by the service's name.
    up = sorted((s["metric"]["job"], s["value"][1]) for s in query("up"))
    assert up == [("retail-api", "1")] + [("retail-consumer", "1")] * CONSUMERS + [("retail-producer", "1")], up
    # The API's own counters: the items of the POST above, in the next scrape at the latest.
    deadline = time.monotonic() + 30
    while not (accepted := query('sum(retail_api_items_total{status="accepted"})')) and time.monotonic() < deadline:
        time.sleep(2)
    assert accepted and float(accepted[0]["value"][1]) == API_ROWS, accepted


def test_the_consumers_share_the_shards(stack, sinks, posted):
    wait_drained(stack, sinks)
    leases = aws.client("dynamodb", sinks).scan(TableName=sinks.kcl_application_name)["Items"]
    owners = {lease["leaseOwner"]["S"] for lease in leases if "leaseOwner" in lease}
    hosts = {stack.exec("consumer", "hostname", index=i).stdout.strip() for i in range(1, CONSUMERS + 1)}
    assert owners == hosts, (owners, hosts)


@pytest.mark.parametrize("service", OWN_IMAGES)
def test_every_image_runs_as_a_non_root_user_on_a_read_only_root(stack, service):
    uid = stack.exec(service, "id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid
    written = stack.exec(service, "touch", "/probe")
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written
    # cap_drop: [ALL] and no-new-privileges, as the service's main process has them.
    status = dict(line.split(":\t", 1) for line in stack.exec(service, "cat", "/proc/1/status").stdout.splitlines()
                  if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1", status


def test_sigterm_stops_the_consumer_cleanly_within_its_stop_timeout(stack, sinks, posted):
    wait_drained(stack, sinks)
    container = stack.project.container("consumer")
    timeout = int(stack.podman("inspect", "--format", "{{.Config.StopTimeout}}", container).stdout)
    assert timeout == 30
    started = time.monotonic()
    stack.podman("stop", container, timeout=timeout + 30)
    took = time.monotonic() - started
    state = stack.state(container)
    logs = stack.logs("consumer")
    # Exit 0 after a forwarded SIGTERM; a SIGKILL at the timeout would be 137.
    assert state["ExitCode"] == 0, logs
    assert took < timeout, took
    assert '"daemon_exited"' in logs or "daemon_exited" in logs
    after = census.take(sinks)
    assert after.redshift_rows == after.redshift_distinct_events == expected_rows(stack)
