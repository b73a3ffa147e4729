"""Create what the pipeline needs, idempotently: the Kinesis stream, the
DynamoDB table (key design: consumer/sinks/dynamodb.py), the S3 bucket with
the JSONPaths file, and the warehouse schema.

Used by the local stack and by docker compose's init step, against whatever
endpoint boto3's configuration names (`AWS_ENDPOINT_URL`); in AWS, deploy/
creates the same resources.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlparse

import psycopg2
import structlog
from botocore.exceptions import ClientError
from psycopg2 import sql

from consumer.sinks.dynamodb import CUSTOMER_INDEX
from local_stack.errors import StackError
from retail_stream import aws
from retail_stream.settings import Settings

log = structlog.get_logger(__name__)

# The table's key design; an existing table with another one is refused, not reused.
TABLE_KEY = [
    {"AttributeName": "invoice_no", "KeyType": "HASH"},
    {"AttributeName": "event_id", "KeyType": "RANGE"},
]
CUSTOMER_INDEX_KEY = [
    {"AttributeName": "customer_id", "KeyType": "HASH"},
    {"AttributeName": "customer_sort", "KeyType": "RANGE"},
]
KEY_ATTRIBUTES = [
    {"AttributeName": "invoice_no", "AttributeType": "S"},
    {"AttributeName": "event_id", "AttributeType": "S"},
    {"AttributeName": "customer_id", "AttributeType": "N"},
    {"AttributeName": "customer_sort", "AttributeType": "S"},
]
# Resources come up at once on the emulator; on AWS a stream takes ~30 s.
WAITER = {"Delay": 1, "MaxAttempts": 120}


def package_file(name: str) -> str:
    """A file shipped in the retail_stream package's sql/ folder."""
    return resources.files("retail_stream").joinpath("sql", name).read_text(encoding="utf-8")


def ensure_stream(settings: Settings, shard_count: int) -> None:
    """Create the stream unless it exists; block until it is ACTIVE. An
    existing stream keeps its shard count (a warning says when it differs)."""
    kinesis = aws.client("kinesis", settings)
    try:
        kinesis.create_stream(StreamName=settings.stream_name, ShardCount=shard_count)
        log.info("stream_created", stream=settings.stream_name, shards=shard_count)
    except kinesis.exceptions.ResourceInUseException:
        pass
    kinesis.get_waiter("stream_exists").wait(StreamName=settings.stream_name, WaiterConfig=WAITER)
    summary = kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"]
    if summary["OpenShardCount"] != shard_count:
        log.warning("stream_shard_count_differs", stream=settings.stream_name,
                    open_shards=summary["OpenShardCount"], wanted=shard_count)


def ensure_table(settings: Settings) -> None:
    """Create the table and its sparse customer index unless the table exists;
    block until it is ACTIVE. Raises StackError when an existing table has
    another key design (purge the stack, or delete the table)."""
    dynamodb = aws.client("dynamodb", settings)
    try:
        dynamodb.create_table(
            TableName=settings.dynamodb_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=KEY_ATTRIBUTES,
            KeySchema=TABLE_KEY,
            GlobalSecondaryIndexes=[
                {
                    "IndexName": CUSTOMER_INDEX,
                    "KeySchema": CUSTOMER_INDEX_KEY,
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        log.info("table_created", table=settings.dynamodb_table)
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=settings.dynamodb_table, WaiterConfig=WAITER)
    table = dynamodb.describe_table(TableName=settings.dynamodb_table)["Table"]
    indexes = {index["IndexName"]: index["KeySchema"] for index in table.get("GlobalSecondaryIndexes", [])}
    if table["KeySchema"] != TABLE_KEY or indexes.get(CUSTOMER_INDEX) != CUSTOMER_INDEX_KEY:
        raise StackError(
            f"DynamoDB table {settings.dynamodb_table!r} exists with another key design "
            f"(key {table['KeySchema']}, indexes {indexes}); delete it or purge the local stack"
        )


def ensure_bucket(s3, bucket: str, region: str) -> None:
    """Create `bucket` unless it exists. Raises StackError when the name
    belongs to another account (bucket names are global on AWS)."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        # HeadBucket has no body: the error code is the bare HTTP status.
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise StackError(
                f"S3 bucket {bucket!r} exists but is not ours ({error}); set S3_BUCKET"
            ) from None
    if region == "us-east-1":  # the one region that refuses a LocationConstraint
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    log.info("bucket_created", bucket=bucket)


def ensure_bucket_and_jsonpaths(settings: Settings) -> None:
    """Create the raw-zone bucket (and the JSONPaths file's bucket, if another)
    and upload the JSONPaths file Redshift's COPY reads. Idempotent: the upload
    overwrites the object with the same bytes."""
    s3 = aws.client("s3", settings)
    target = urlparse(settings.jsonpaths_uri)
    for bucket in dict.fromkeys([settings.s3_bucket, target.netloc]):
        ensure_bucket(s3, bucket, settings.region)
    s3.put_object(
        Bucket=target.netloc, Key=target.path.lstrip("/"),
        Body=package_file("transactions.jsonpaths").encode(), ContentType="application/json",
    )


# Per dialect, run in this order: the reporting views read the table.
WAREHOUSE_SQL = {"postgres": ("schema.sql", "views.sql"), "redshift": ("schema.redshift.sql", "views.sql")}


def warehouse_statements(settings: Settings) -> list[sql.Composed]:
    """The dialect's DDL files, with `{schema}`, `{table}` and `{index}`
    filled in as quoted identifiers. Pure but for reading the package's files."""
    names = {
        "schema": sql.Identifier(settings.warehouse_schema),
        "table": sql.Identifier(settings.warehouse_table),
        "index": sql.Identifier(f"{settings.warehouse_table}_day_event"),
    }
    return [sql.SQL(package_file(name)).format(**names) for name in WAREHOUSE_SQL[settings.warehouse_dialect]]


def warehouse_sql(settings: Settings, dialect: str) -> str:
    """The dialect's DDL and views as one script, names filled in as quoted
    identifiers (settings validate them: lowercase letters, digits, _). Pure
    but for reading the package's files."""
    names = {"schema": settings.warehouse_schema, "table": settings.warehouse_table,
             "index": f"{settings.warehouse_table}_day_event"}
    texts = [package_file(name) for name in WAREHOUSE_SQL[dialect]]
    script = "\n".join(texts)
    for placeholder, name in names.items():
        script = script.replace("{" + placeholder + "}", f'"{name}"')
    return script


def ensure_warehouse(settings: Settings) -> None:
    """Run the dialect's schema (CREATE … IF NOT EXISTS only), then views.sql
    (CREATE OR REPLACE VIEW only), in one transaction."""
    conn = psycopg2.connect(settings.warehouse_dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            for statement in warehouse_statements(settings):
                cur.execute(statement)
    finally:
        conn.close()


def provision(settings: Settings, *, shard_count: int = 2) -> None:
    """Create every resource that is missing; blocks until each is usable.
    Idempotent: existing resources are kept as they are, data included.
    Raises StackError on a clashing resource, botocore or psycopg2 errors when
    a service cannot be reached."""
    ensure_stream(settings, shard_count)
    ensure_table(settings)
    ensure_bucket_and_jsonpaths(settings)
    ensure_warehouse(settings)
    log.info(
        "provisioned", stream=settings.stream_name, table=settings.dynamodb_table, bucket=settings.s3_bucket,
        jsonpaths=settings.jsonpaths_uri, warehouse=f"{settings.warehouse_schema}.{settings.warehouse_table}",
    )
