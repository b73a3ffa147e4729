"""The composition root: clients and sinks made once from settings, passed in."""

from __future__ import annotations

from importlib import resources

import psycopg2

from consumer.buffer import FlushPolicy, ShardBuffer
from consumer.metrics import ConsumerMetrics, ShardMetrics
from consumer.pipeline import RetryPolicy, ShardPipeline
from consumer.sinks.dead_letters import DeadLetterSink
from consumer.sinks.dynamodb import DynamoDBSink
from consumer.sinks.raw_zone import RawZoneSink
from consumer.sinks.warehouse import LocalCopy, RedshiftCopy, Target, WarehouseSink, jsonpaths_fields
from retail_stream import aws
from retail_stream.settings import Settings


def load_settings() -> Settings:
    return Settings.from_env()


def jsonpaths_document() -> str:
    return resources.files("retail_stream").joinpath("sql/transactions.jsonpaths").read_text()


def build_sinks(settings: Settings) -> list:
    """The sinks in write order: DynamoDB, the S3 raw zone, then the warehouse
    COPY of that raw-zone object; dead letters last."""
    s3 = aws.client("s3", settings)
    raw_zone = RawZoneSink(s3, settings.s3_bucket, settings.s3_raw_prefix)
    fields = jsonpaths_fields(jsonpaths_document())
    target = Target(settings.warehouse_schema, settings.warehouse_table, fields)
    if settings.warehouse_dialect == "redshift":
        loader = RedshiftCopy(target, settings.redshift_iam_role, settings.jsonpaths_uri)
    else:
        loader = LocalCopy(target, s3, fields)
    warehouse = WarehouseSink(
        lambda: psycopg2.connect(settings.warehouse_dsn, connect_timeout=10),
        target, loader, settings.s3_bucket, raw_zone.key_for,
    )
    return [
        DynamoDBSink(aws.client("dynamodb", settings, validate=False), settings.dynamodb_table),
        raw_zone,
        warehouse,
        DeadLetterSink(s3, settings.s3_bucket, settings.s3_dead_letter_prefix),
    ]


def build_pipeline(settings: Settings, shard_id: str, metrics: ConsumerMetrics | None = None) -> ShardPipeline:
    policy = FlushPolicy(settings.flush_max_records, settings.flush_max_bytes, settings.flush_max_age_seconds)
    return ShardPipeline(
        ShardBuffer(shard_id, policy),
        build_sinks(settings),
        RetryPolicy(deadline_seconds=settings.flush_retry_seconds),
        metrics=ShardMetrics(metrics or ConsumerMetrics(), shard_id),
    )
