"""The composition root: the sinks and a shard's pipeline, made once from
settings and the clients they are given.

The service gives real clients (`service_clients`); the bench gives clients
that record calls, the integration tests the local servers'. Nothing else
constructs a sink with its clients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Sequence

from consumer.buffer import FlushPolicy, ShardBuffer
from consumer.checkpoints import CHECKPOINT_BACKOFF
from consumer.metrics import ConsumerMetrics, ShardMetrics
from consumer.pipeline import SINK_BACKOFF, ShardPipeline
from consumer.sinks import Sink
from consumer.sinks.batch_write import BatchWriter
from consumer.sinks.dead_letters import DeadLetterSink
from consumer.sinks.dynamodb import DynamoDBSink, ItemWriter
from consumer.sinks.raw_zone import RawZoneSink
from consumer.loader import EachObjectCopy, GroupLoader, LoaderMetrics, ManifestCopy
from consumer.sinks.load_queue import LoadQueueSink
from consumer.sinks.warehouse import LocalCopy, RedshiftCopy, Target, WarehouseSink, jsonpaths_fields
from retail_stream.settings import Settings


class WiringError(ValueError):
    """The sinks cannot work in the order given."""


@dataclass(frozen=True)
class Clients:
    """What the sinks talk to: boto3 clients (or anything with their methods;
    for DynamoDB, anything with an ItemWriter's `send`) and a function that
    opens a warehouse connection."""

    s3: Any
    dynamodb: Any
    connect_warehouse: Callable[[], Any]


def service_clients(settings: Settings) -> Clients:
    """The real clients, from settings and boto3's own configuration chain."""
    import psycopg2

    from retail_stream import aws

    return Clients(
        s3=aws.client("s3", settings),
        dynamodb=aws.client("dynamodb", settings, validate=False),
        connect_warehouse=lambda: psycopg2.connect(settings.warehouse_dsn, connect_timeout=10),
    )


def jsonpaths_document() -> str:
    return resources.files("retail_stream").joinpath("sql/transactions.jsonpaths").read_text()


@dataclass(frozen=True)
class Sinks:
    """The consumer's sinks, each by name; `in_order` is the order a batch
    goes through them."""

    dynamodb: DynamoDBSink
    raw_zone: RawZoneSink
    warehouse: WarehouseSink | LoadQueueSink  # the load itself, or (grouped) its queue
    dead_letters: DeadLetterSink

    def in_order(self) -> list[Sink]:
        """DynamoDB, the S3 raw zone, the warehouse COPY of that raw-zone
        object, then dead letters (checked by `ordered`)."""
        return ordered([self.dynamodb, self.raw_zone, self.warehouse, self.dead_letters])


def warehouse_target(settings: Settings) -> Target:
    return Target(settings.warehouse_schema, settings.warehouse_table, jsonpaths_fields(jsonpaths_document()))


def object_copy(settings: Settings, clients: Clients, target: Target) -> RedshiftCopy | LocalCopy:
    """How one raw-zone object gets into the stage table: Redshift's COPY, or the local stand-in."""
    if settings.warehouse_dialect == "redshift":
        return RedshiftCopy(target, settings.redshift_iam_role, settings.jsonpaths_uri)
    return LocalCopy(target, clients.s3, target.columns)


def item_writer(client, table: str) -> ItemWriter:
    """The DynamoDB sink's writer: a boto3 client's BatchWriteItem with our
    own request bodies (consumer.sinks.batch_write), or a recorder that
    takes the bodies itself."""
    return client if hasattr(client, "send") else BatchWriter(client, table)


def build_sinks(settings: Settings, clients: Clients, *, rebuilding: bool = False) -> Sinks:
    """The sinks, from settings. `rebuilding` (python -m rebuild): the
    warehouse is loaded per object whatever the load mode, and an object the
    ledger names is loaded again (its rows may be gone; the merge adds only
    those the table lacks)."""
    raw_zone = RawZoneSink(clients.s3, settings.s3_bucket, settings.s3_raw_prefix,
                           gzip_level=settings.raw_zone_gzip_level)
    target = warehouse_target(settings)
    # Both read the raw zone's object of the batch, so they name the raw zone's
    # key function and must come after it.
    if settings.warehouse_load_mode == "grouped" and not rebuilding:
        warehouse = LoadQueueSink(clients.s3, settings.s3_bucket, settings.s3_load_queue_prefix, raw_zone.key_for,
                                  after=(raw_zone.name,))
    else:
        warehouse = WarehouseSink(clients.connect_warehouse, target, object_copy(settings, clients, target),
                                  settings.s3_bucket, raw_zone.key_for, after=(raw_zone.name,),
                                  skip_loaded=not rebuilding)
    return Sinks(
        dynamodb=DynamoDBSink(item_writer(clients.dynamodb, settings.dynamodb_table), settings.dynamodb_table,
                              concurrency=settings.dynamodb_concurrency),
        raw_zone=raw_zone,
        warehouse=warehouse,
        dead_letters=DeadLetterSink(clients.s3, settings.s3_bucket, settings.s3_dead_letter_prefix),
    )


REBUILD_TARGETS = ("dynamodb", "warehouse")


def build_rebuild_sinks(settings: Settings, clients: Clients, targets: Sequence[str]) -> list[Sink]:
    """The sinks `python -m rebuild` writes raw-zone objects back into (see `build_sinks`)."""
    unknown = set(targets) - set(REBUILD_TARGETS)
    if unknown:
        raise WiringError(f"no such rebuild target: {', '.join(sorted(unknown))}")
    sinks = build_sinks(settings, clients, rebuilding=True)
    return [getattr(sinks, target) for target in targets]


def build_group_loader(settings: Settings, clients: Clients, metrics: LoaderMetrics | None = None) -> GroupLoader:
    """The grouped mode's loader (one per consumer task, in its supervisor)."""
    target = warehouse_target(settings)
    if settings.warehouse_dialect == "redshift":
        copier = ManifestCopy(target, clients.s3, settings.s3_bucket, settings.s3_manifest_prefix,
                              settings.redshift_iam_role, settings.jsonpaths_uri)
    else:
        copier = EachObjectCopy(LocalCopy(target, clients.s3, target.columns), settings.s3_bucket)
    return GroupLoader(clients.s3, settings.s3_bucket, settings.s3_load_queue_prefix, clients.connect_warehouse,
                       target, copier, max_objects=settings.warehouse_load_max_objects, metrics=metrics)


def ordered(sinks: Sequence[Sink]) -> list[Sink]:
    """`sinks`, unchanged, once every sink is found after the sinks it reads
    from (its `after`: the names of sinks that must hold the batch first);
    raises WiringError otherwise. Pure."""
    seen: set[str] = set()
    for sink in sinks:
        missing = [name for name in getattr(sink, "after", ()) if name not in seen]
        if missing:
            raise WiringError(f"sink {sink.name!r} reads what {', '.join(map(repr, missing))} writes, "
                              "so it must come after it")
        seen.add(sink.name)
    return list(sinks)


def build_pipeline(settings: Settings, shard_id: str, sinks: Sequence[Sink],
                   metrics: ConsumerMetrics) -> ShardPipeline:
    policy = FlushPolicy(settings.flush_max_records, settings.flush_max_bytes, settings.flush_max_age_seconds)
    return ShardPipeline(
        ShardBuffer(shard_id, policy),
        ordered(sinks),
        retry=dataclasses.replace(SINK_BACKOFF, deadline=settings.flush_retry_seconds),
        checkpoint_retry=dataclasses.replace(CHECKPOINT_BACKOFF, attempts=settings.checkpoint_attempts),
        metrics=ShardMetrics(metrics, shard_id),
    )
