"""The local stack itself: a stack of its own in a temporary folder, on free
ports; what `up` provisions; that provisioning again changes nothing; that
another process sees it and stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import boto3
import httpx
import psycopg2
import pytest

from local_stack.errors import StackError
from local_stack.ports import accepts_connections
from local_stack.provision import provision
from local_stack.stack import LocalStack
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = LocalStack(tmp_path_factory.mktemp("own-stack"), emulator_port=0, postgres_port=0, prometheus_port=0)
    stack.up()
    try:
        yield stack
    finally:
        stack.down(purge=True)  # the cluster may live outside tmp_path (see postgres.py)


def client(stack: LocalStack, service: str):
    env = stack.environment()
    return boto3.client(
        service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def warehouse(stack: LocalStack, query: str, *params) -> list[tuple]:
    conn = psycopg2.connect(stack.postgres.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    """The CLI in another process, pointed at the test's stack folder only."""
    env = {**os.environ, "LOCAL_STACK_DIR": str(stack.state_dir)}
    for variable in ("LOCAL_STACK_AWS_PORT", "LOCAL_STACK_PG_PORT"):
        env.pop(variable, None)
    return subprocess.run(
        [sys.executable, "-m", "local_stack", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_environment_points_at_the_stack(stack):
    env = stack.environment()
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{stack.emulator_port}"
    assert env["WAREHOUSE_DSN"] == f"postgresql://retail@127.0.0.1:{stack.postgres_port}/retail"
    assert env["KCL_SHARD_SYNC_INTERVAL_MS"] == "5000"
    assert stack.settings().warehouse_dsn == env["WAREHOUSE_DSN"]


def test_stream_is_active_with_two_shards(stack):
    settings = stack.settings()
    summary = client(stack, "kinesis").describe_stream_summary(StreamName=settings.stream_name)
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2


def test_table_has_the_key_design_and_a_sparse_customer_index(stack):
    settings = stack.settings()
    table = client(stack, "dynamodb").describe_table(TableName=settings.dynamodb_table)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "invoice_no", "KeyType": "HASH"},
        {"AttributeName": "event_id", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_customer"
    assert index["KeySchema"] == [
        {"AttributeName": "customer_id", "KeyType": "HASH"},
        {"AttributeName": "customer_sort", "KeyType": "RANGE"},
    ]
    assert index["Projection"]["ProjectionType"] == "ALL"
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"invoice_no": "S", "event_id": "S", "customer_id": "N", "customer_sort": "S"}


def test_bucket_holds_the_jsonpaths_file(stack):
    settings = stack.settings()
    assert settings.jsonpaths_uri == f"s3://{settings.s3_bucket}/jsonpaths/transactions.jsonpaths"
    body = client(stack, "s3").get_object(Bucket=settings.s3_bucket, Key="jsonpaths/transactions.jsonpaths")
    shipped = resources.files("retail_stream").joinpath("sql", "transactions.jsonpaths").read_bytes()
    assert body["Body"].read() == shipped
    assert json.loads(shipped)["jsonpaths"][0] == "$['event_id']"


def test_warehouse_tables_exist_without_unique_constraints(stack):
    settings = stack.settings()
    tables = warehouse(
        stack,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
        settings.warehouse_schema,
    )
    assert tables == [("load_ledger",), (settings.warehouse_table,)]
    views = warehouse(
        stack, "SELECT table_name FROM information_schema.views WHERE table_schema = %s ORDER BY 1",
        settings.warehouse_schema,
    )
    assert [name for (name,) in views] == [
        "report_adjustments", "report_cancellations_by_country", "report_customers", "report_lines",
        "report_products", "report_revenue_by_day_country",
    ]
    # Redshift never enforces them; the load's merge on event_id is what de-duplicates.
    constraints = warehouse(
        stack,
        "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = %s AND c.contype IN ('p', 'u')",
        settings.warehouse_schema,
    )
    unique_indexes = warehouse(
        stack,
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND i.indisunique",
        settings.warehouse_schema,
    )
    assert constraints == [] and unique_indexes == []
    owner = warehouse(stack, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                      settings.warehouse_schema)
    assert owner == [("retail",)]


def test_provisioning_again_keeps_everything_as_it_was(stack, monkeypatch):
    settings = stack.settings()
    kinesis, dynamodb = client(stack, "kinesis"), client(stack, "dynamodb")
    shards = kinesis.list_shards(StreamName=settings.stream_name)["Shards"]
    item = {"invoice_no": {"S": "reprovision"}, "event_id": {"S": "0" * 32}}
    dynamodb.put_item(TableName=settings.dynamodb_table, Item=item)
    table = f"{settings.warehouse_schema}.{settings.warehouse_table}"
    warehouse(
        stack,
        f"INSERT INTO {table} (event_id, invoice_no, stock_code, quantity, invoice_date, unit_price, source, line) "
        "VALUES (%s, 'reprovision', 'X', 1, now(), 1, 'test', 1)",
        "0" * 32,
    )

    stack.up()  # the whole of `up` again: servers kept, resources kept
    for key, value in stack.environment().items():
        monkeypatch.setenv(key, value)
    provision(settings)  # and provisioning alone, as compose's init step runs it

    assert kinesis.list_shards(StreamName=settings.stream_name)["Shards"] == shards
    assert dynamodb.get_item(TableName=settings.dynamodb_table, Key=item)["Item"] == item
    assert warehouse(stack, f"SELECT count(*) FROM {table} WHERE invoice_no = 'reprovision'") == [(1,)]


def test_a_taken_port_is_refused_before_anything_starts(tmp_path, stack):
    other = LocalStack(tmp_path / "other", emulator_port=free_port(), postgres_port=stack.postgres_port, prometheus_port=0)
    with pytest.raises(StackError, match=f"port {stack.postgres_port} .*taken"):
        other.up()
    assert not accepts_connections(other.emulator_port)


def test_the_api_as_the_readme_starts_it_wants_the_development_key(stack, tmp_path):
    """`make up` made a key; `eval "$(make -s env)"; python -m api` takes it, and nothing else."""
    status = cli(stack, "status")
    key = stack.status().api_key
    assert key and key.startswith("rsk_") and f"API dev key   {key}" in status.stdout
    keys_file = stack.state_dir / "api-keys.json"
    assert key not in keys_file.read_text() and oct(keys_file.stat().st_mode & 0o777) == "0o600"
    exported = dict(line.removeprefix("export ").split("=", 1) for line in cli(stack, "env").stdout.splitlines())
    assert exported["API_KEYS_FILE"] == str(keys_file) and exported["RETAIL_API_KEY"] == key
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, **stack.environment(), "API_PORT": str(port), "API_METRICS_PORT": str(metrics_port)}
    api = subprocess.Popen([sys.executable, "-m", "api"], env=env, stdout=subprocess.DEVNULL,
                           stderr=(tmp_path / "api.log").open("w"))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: accepts_connections(port), 30, "the API to listen")
        body = {"InvoiceNo": "536365", "StockCode": "85123A", "Quantity": 6, "InvoiceDate": "2010-12-01T08:26:00",
                "UnitPrice": "2.55", "CustomerID": 17850, "Country": "United Kingdom"}
        assert httpx.post(f"{url}/transactions", json=body).status_code == 401
        assert httpx.get(f"{url}/invoices/536365").status_code == 401
        posted = httpx.post(f"{url}/transactions", json=body, headers={"X-API-Key": key})
        assert posted.status_code == 202 and posted.json()["source"].startswith("dev/api-"), posted.text
        assert httpx.get(f"{url}/invoices/nothing", headers={"X-API-Key": key}).status_code == 404
    finally:
        api.terminate()
        assert api.wait(30) == 0
    assert key not in (tmp_path / "api.log").read_text()


def test_another_process_sees_the_stack_and_stops_it(stack):
    env = cli(stack, "env")
    assert env.returncode == 0, env.stderr
    assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{stack.emulator_port}\n" in env.stdout
    status = cli(stack, "status")
    assert status.returncode == 0, status.stderr + status.stdout

    down = cli(stack, "down")

    assert down.returncode == 0, down.stderr
    assert not accepts_connections(stack.emulator_port)
    assert not accepts_connections(stack.postgres_port)
    assert stack.emulator.pid() is None and not stack.emulator.pid_file.exists()
    assert not stack.status().running
    assert cli(stack, "status").returncode == 3
