"""Metrics as an operator sees them: a real Prometheus scraping a running
producer and consumer (the real KCL daemon, started once for the module).

The consumer starts AT_TIMESTAMP: records put in the stream before that
time are there, and never read."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from local_stack import census
from tests.conftest import running_stack
from tests.support.ports import free_ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"
PASSES = 4
# Put before the consumer's start time; not transactions, so each would be dead-lettered if read.
BEFORE_START = [{"Data": b'{"put": "before the start time"}', "PartitionKey": str(n)} for n in range(20)]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observability")
    with running_stack(tmp / "stack") as stack:
        start = put_before_the_start_time(stack.settings())
        consumer_port, producer_port = free_ports(2)
        stack.prometheus.write_targets({
            "consumer": [f"127.0.0.1:{consumer_port}"], "producer": [f"127.0.0.1:{producer_port}"],
        })
        env = {
            **os.environ, "KCL_WORKER_ID": "observed", "FLUSH_MAX_AGE_SECONDS": "1",
            # A deliberately slow reader (50 records a poll, one poll a second per
            # shard) so the producer outpaces it and the lag must rise, then drain.
            "KCL_MAX_RECORDS": "50", "KCL_IDLE_TIME_BETWEEN_READS_MS": "1000",
            "KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": start,
        }
        log = (tmp / "consumer.log").open("w")
        consumer = subprocess.Popen([sys.executable, "-m", "consumer"], env={**env, "METRICS_PORT": str(consumer_port)},
                                    stdout=log, stderr=log)
        state = {"stack": stack, "consumer_url": f"http://127.0.0.1:{consumer_port}", "consumer": consumer}
        try:
            wait_until(lambda: get(f"{state['consumer_url']}/readyz")[0] == 200, 240,
                       "the consumer to be ready", every=1)
            wait_until(lambda: stack.prometheus.value("sum(retail_consumer_leases_held)") == 2, 120,
                       "Prometheus to see both leases held", every=1)
            producer = subprocess.Popen(
                [sys.executable, "-m", "producer", str(CSV), "--loop", str(PASSES), "--rate", "500",
                 "--metrics-port", str(producer_port), "--linger", "8",
                 "--rejects", str(tmp / "rejects.jsonl")],
                env=env, cwd=tmp, stdout=subprocess.PIPE, text=True,
            )
            lags, shards = [0.0], set()
            while producer.poll() is None:
                for series in stack.prometheus.query("retail_consumer_millis_behind_latest"):
                    shards.add(series["metric"]["shard_id"])
                    lags.append(float(series["value"][1]))
                time.sleep(1)
            state["produced"] = json.loads(producer.stdout.read().strip().splitlines()[-1])
            state["lag_while_producing"] = max(lags)
            state["shards_with_lag"] = shards
            yield state
        finally:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(60)


def put_before_the_start_time(settings) -> str:
    """Puts BEFORE_START in the stream, and returns a start time after them:
    the next whole second but one (the KCL takes whole seconds)."""
    from retail_stream import aws

    kinesis = aws.client("kinesis", settings)
    answer = kinesis.put_records(StreamName=settings.stream_name, Records=BEFORE_START)
    assert answer["FailedRecordCount"] == 0
    start = math.ceil(time.time()) + 1
    time.sleep(start - time.time())  # the producer's first record must come after it
    return datetime.fromtimestamp(start, timezone.utc).isoformat()


def test_records_put_before_the_start_time_are_in_the_stream_but_never_read(observed):
    settings = observed["stack"].settings()
    in_stream = sum(len(records) for records in census.stream_records(settings).values())
    assert in_stream == observed["produced"]["sent"] + len(BEFORE_START)
    prometheus = observed["stack"].prometheus
    sent = observed["produced"]["sent"]
    wait_until(lambda: prometheus.value("sum(retail_consumer_records_received_total)") == sent, 240,
               "Prometheus to see every produced record received, and no other", every=1)
    assert census.take(settings).dead_lettered == 0


def test_lag_is_reported_per_shard_and_rises_while_the_producer_outpaces_the_consumer(observed):
    assert observed["shards_with_lag"] == {"shardId-000000000000", "shardId-000000000001"}
    assert observed["lag_while_producing"] > 1000


def test_lag_falls_to_zero_when_the_consumer_drains(observed):
    prometheus = observed["stack"].prometheus
    sent = observed["produced"]["sent"]
    wait_until(lambda: prometheus.value("sum(retail_consumer_records_processed_total)") == sent, 240,
               "Prometheus to see every record processed", every=1)
    wait_until(lambda: prometheus.value("max(retail_consumer_millis_behind_latest)") == 0, 30,
               "the lag to reach zero", every=1)


def test_per_sink_counters_equal_the_rows_in_the_sinks(observed):
    prometheus = observed["stack"].prometheus
    settings = observed["stack"].settings()
    sent = observed["produced"]["sent"]
    wait_until(lambda: prometheus.value('retail_consumer_records_written_total{sink="warehouse"}') == sent,
               240, "the warehouse counter to be scraped at its final value", every=1)
    found = census.take(settings)
    written = {s["metric"]["sink"]: float(s["value"][1])
               for s in prometheus.query("sum by (sink) (retail_consumer_records_written_total)")}
    assert written["dynamodb"] == found.dynamodb_items == sent
    assert written["s3"] == found.s3_records == sent
    assert written["warehouse"] == found.redshift_rows == sent
    assert written.get("dead_letter", 0) == found.dead_lettered == 0


def test_every_record_processor_is_on_the_one_endpoint(observed):
    status, body = get(f"{observed['consumer_url']}/metrics")
    assert status == 200
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        assert f'retail_consumer_records_buffered{{shard_id="{shard}"}}' in body
        assert f'retail_consumer_last_checkpoint_timestamp_seconds{{shard_id="{shard}"}}' in body
    assert "retail_consumer_leases_held 2.0" in body
    assert observed["stack"].prometheus.value("sum(retail_consumer_leases_held)") == 2


def test_the_producer_is_scraped_too(observed):
    # The producer has exited by now: its series are stale, so read their last value.
    prometheus = observed["stack"].prometheus
    assert prometheus.value("sum(last_over_time(retail_producer_records_sent_total[5m]))") == observed["produced"]["sent"]
    assert prometheus.value("sum(last_over_time(retail_producer_rows_rejected_total[5m]))") == observed["produced"]["rejected"]


def test_health_endpoints(observed):
    assert get(f"{observed['consumer_url']}/healthz")[0] == 200
    assert get(f"{observed['consumer_url']}/readyz")[0] == 200
