"""Create what the pipeline needs, idempotently: the Kinesis stream, the
DynamoDB table (key design: consumer/sinks/dynamodb.py), the S3 bucket with
the JSONPaths file, and the warehouse schema. Used by the local stack and by
docker compose's init step; in AWS, deploy/ creates the same resources."""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlparse

import psycopg2
import structlog
from botocore.exceptions import ClientError
from psycopg2 import sql

from consumer.sinks.dynamodb import CUSTOMER_INDEX
from retail_stream import aws
from retail_stream.settings import Settings

log = structlog.get_logger("local_stack.provision")


def package_text(name: str) -> str:
    return resources.files("retail_stream").joinpath(f"sql/{name}").read_text()


def create_stream(settings: Settings, shard_count: int) -> None:
    kinesis = aws.client("kinesis", settings)
    try:
        kinesis.create_stream(StreamName=settings.stream_name, ShardCount=shard_count)
    except kinesis.exceptions.ResourceInUseException:
        pass
    kinesis.get_waiter("stream_exists").wait(StreamName=settings.stream_name, WaiterConfig={"Delay": 1})


def create_table(settings: Settings) -> None:
    dynamodb = aws.client("dynamodb", settings)
    key = lambda name, kind: {"AttributeName": name, "KeyType": kind}  # noqa: E731
    try:
        dynamodb.create_table(
            TableName=settings.dynamodb_table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "invoice_no", "AttributeType": "S"},
                {"AttributeName": "event_id", "AttributeType": "S"},
                {"AttributeName": "customer_id", "AttributeType": "N"},
                {"AttributeName": "customer_sort", "AttributeType": "S"},
            ],
            KeySchema=[key("invoice_no", "HASH"), key("event_id", "RANGE")],
            GlobalSecondaryIndexes=[{
                "IndexName": CUSTOMER_INDEX,
                "KeySchema": [key("customer_id", "HASH"), key("customer_sort", "RANGE")],
                "Projection": {"ProjectionType": "ALL"},
            }],
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass
    dynamodb.get_waiter("table_exists").wait(TableName=settings.dynamodb_table, WaiterConfig={"Delay": 1})


def create_bucket(settings: Settings) -> None:
    s3 = aws.client("s3", settings)
    try:
        if settings.region == "us-east-1":
            s3.create_bucket(Bucket=settings.s3_bucket)
        else:
            s3.create_bucket(Bucket=settings.s3_bucket,
                             CreateBucketConfiguration={"LocationConstraint": settings.region})
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    uri = urlparse(settings.jsonpaths_uri)
    s3.put_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"), Body=package_text("transactions.jsonpaths").encode(),
                  ContentType="application/json")


def create_warehouse(settings: Settings) -> None:
    statement = sql.SQL(package_text("schema.sql")).format(
        schema=sql.Identifier(settings.warehouse_schema), table=sql.Identifier(settings.warehouse_table)
    )
    conn = psycopg2.connect(settings.warehouse_dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def provision(settings: Settings, *, shard_count: int = 2) -> None:
    """Create every resource that is missing; existing ones are left as they are."""
    create_stream(settings, shard_count)
    create_table(settings)
    create_bucket(settings)
    create_warehouse(settings)
    log.info("provisioned", stream=settings.stream_name, shards=shard_count, table=settings.dynamodb_table,
             bucket=settings.s3_bucket, warehouse=f"{settings.warehouse_schema}.{settings.warehouse_table}")
