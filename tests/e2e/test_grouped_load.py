"""The pipeline with WAREHOUSE_LOAD_MODE=grouped, end to end with the real KCL
daemon: the shards checkpoint once their batch is queued, the worker's loader
loads the queue every 2 s in one transaction, and every valid row of the
sample ends once in every sink, also after the sample is replayed again."""

from __future__ import annotations

import pytest

from local_stack import census
from tests.conftest import running_stack
from tests.e2e.harness import Pipeline
from tests.e2e.test_pipeline import CSV, expected_records
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def loaded(pipeline, rows: int) -> bool:
    return census.take(pipeline.settings).redshift_rows >= rows


def test_grouped_loads_hold_every_row_once(tmp_path_factory):
    valid, _ = expected_records()
    tmp = tmp_path_factory.mktemp("e2e-grouped")
    with running_stack(tmp / "stack") as stack:
        pipeline = Pipeline(stack, tmp, WAREHOUSE_LOAD_MODE="grouped", WAREHOUSE_LOAD_INTERVAL_SECONDS="2")
        pipeline.produce(str(CSV), "--rejects", str(tmp / "rejects.jsonl"))
        pipeline.start_consumer()
        try:
            wait_until(pipeline.drained, 300, "every shard checkpointed", every=1)
            wait_until(lambda: loaded(pipeline, len(valid)), 120, "the loader to load every queued object", every=1)
            first = census.take(pipeline.settings)
            # The same file again: new records in the stream, the same event ids.
            pipeline.produce(str(CSV), "--rejects", str(tmp / "rejects-2.jsonl"))
            wait_until(pipeline.drained, 300, "the replay checkpointed", every=1)
            wait_until(lambda: queue_empty(pipeline), 120, "the queue to be loaded", every=1)
            again = census.take(pipeline.settings)
            metrics = metrics_text(pipeline)
        finally:
            assert pipeline.stop_consumer() == 0
    for found in (first, again):
        assert found.redshift_rows == found.redshift_distinct_events == len(valid)
        assert found.dynamodb_items == len(valid)
        assert found.s3_distinct_events == len(valid)
    assert "retail_consumer_warehouse_group_loads_total" in metrics
    loads = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("retail_consumer_warehouse_group_loads_total")))
    assert loads >= 1


def queue_empty(pipeline) -> bool:
    from retail_stream import aws

    s3 = aws.client("s3", pipeline.settings)
    page = s3.list_objects_v2(Bucket=pipeline.settings.s3_bucket, Prefix=pipeline.settings.s3_load_queue_prefix + "/")
    return not page.get("Contents")


def metrics_text(pipeline) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{pipeline.env['METRICS_PORT']}/metrics", timeout=5) as response:
        return response.read().decode()
