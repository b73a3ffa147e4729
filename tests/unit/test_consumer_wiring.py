"""The composition root: the sinks in their order, and no other place that makes them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from consumer.pipeline import ShardPipeline
from consumer.wiring import Clients, WiringError, build_pipeline, build_sinks, ordered
from retail_stream.settings import Settings
from tests.support.consumer_fakes import RecordingSink

PROJECT = Path(__file__).resolve().parents[2]
SINK_CLASSES = {"DynamoDBSink", "RawZoneSink", "WarehouseSink", "DeadLetterSink"}


def wired(**settings) -> list:
    clients = Clients(s3=object(), dynamodb=object(), connect_warehouse=lambda: None)
    return build_sinks(Settings(**settings), clients).in_order()


def test_a_batch_goes_to_dynamodb_the_raw_zone_the_warehouse_then_dead_letters():
    assert [s.name for s in wired()] == ["dynamodb", "s3", "warehouse", "dead_letter"]
    assert [s.name for s in wired(warehouse_dialect="redshift",
                                  redshift_iam_role="arn:aws:iam::123456789012:role/copy")][2] == "warehouse"


def test_the_warehouse_says_it_reads_the_raw_zone_object():
    sinks = wired()
    assert sinks[2].after == ("s3",)
    assert sinks[1].key_for.__self__ is sinks[1]  # the key it loads is the raw zone's own


def test_a_sink_before_the_one_it_reads_from_is_refused():
    warehouse, raw = RecordingSink("warehouse", after=("s3",)), RecordingSink("s3")
    assert ordered([raw, warehouse]) == [raw, warehouse]
    with pytest.raises(WiringError, match="'warehouse' reads what 's3' writes"):
        ordered([warehouse, raw])
    dynamodb, raw_zone, warehouse_sink, dead = wired()
    with pytest.raises(WiringError):
        build_pipeline(Settings(), "shardId-0", [dynamodb, warehouse_sink, raw_zone, dead], metrics=None)


def test_the_pipeline_takes_its_limits_from_settings():
    from consumer.metrics import ConsumerMetrics
    from prometheus_client import CollectorRegistry

    settings = Settings(flush_retry_seconds=42, checkpoint_attempts=3, flush_max_records=7)
    pipeline = build_pipeline(settings, "shardId-0", wired(), ConsumerMetrics(CollectorRegistry()))
    assert isinstance(pipeline, ShardPipeline)
    assert pipeline.retry.deadline == 42 and pipeline.checkpoint_retry.attempts == 3
    assert pipeline.buffer.policy.max_records == 7


def sink_constructions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(PROJECT)}:{node.lineno} {node.func.id}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SINK_CLASSES]


def test_no_module_but_the_wiring_constructs_a_sink():
    shipped = [p for folder in ("consumer", "producer", "api", "bench", "local_stack", "reporting", "retail_stream",
                                "reconcile", "rebuild", "redrive")
               for p in (PROJECT / folder).rglob("*.py")]
    found = [c for p in shipped if p.name != "wiring.py" for c in sink_constructions(p)]
    assert found == []
    assert len(sink_constructions(PROJECT / "consumer" / "wiring.py")) == len(SINK_CLASSES)
