import dataclasses
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from producer.kinesis_writer import PUT_RECORDS_BACKOFF, THROTTLED, KinesisWriter
from producer.metrics import ProducerMetrics, reject_kind
from retail_stream.metrics_server import MetricsServer
from tests.support.kinesis_fakes import FakeKinesis, Sleeps, entries


def test_writer_counts_calls_failures_retries_throttles_and_bytes():
    registry = CollectorRegistry()
    fake = FakeKinesis([{1: THROTTLED, 3: "InternalFailure", 4: THROTTLED}, {1: THROTTLED}])
    batch = entries(6)
    writer = KinesisWriter(fake, "retail", backoff=dataclasses.replace(PUT_RECORDS_BACKOFF, rng=lambda: 0.5), sleep=Sleeps(),
                           metrics=ProducerMetrics(registry))
    writer.put_batch(batch)
    value = registry.get_sample_value
    assert value("retail_producer_put_records_calls_total") == 3
    assert value("retail_producer_records_sent_total") == 6
    assert value("retail_producer_bytes_sent_total") == sum(e.size for e in batch)
    assert value("retail_producer_retries_total") == 4
    assert value("retail_producer_throttles_total") == 3
    assert value("retail_producer_failed_entries_total", {"error_code": THROTTLED}) == 3
    assert value("retail_producer_failed_entries_total", {"error_code": "InternalFailure"}) == 1
    assert value("retail_producer_put_records_duration_seconds_count") == 3
    assert value("retail_producer_batch_records_sum") == 6 + 3 + 1


@pytest.mark.parametrize("reason, kind", [
    ("Quantity is not an integer: '3.5'", "Quantity"),
    ("UnitPrice is not a number: 'abc'", "UnitPrice"),
    ("InvoiceDate is not a date: '2010-13-45 99:99'", "InvoiceDate"),
    ("CustomerID is not a positive integer: '12A45'", "CustomerID"),
    ("expected 8 fields, found 7", "field_count"),
    ("description contains a control character", "other"),
])
def test_reject_reasons_become_few_labels(reason, kind):
    assert reject_kind(reason) == kind


def test_the_endpoint_serves_metrics_and_health():
    registry = CollectorRegistry()
    metrics = ProducerMetrics(registry)
    metrics.row_read(1)
    server = MetricsServer("127.0.0.1", 0, registry=lambda: registry, checks={"/healthz": lambda: True}).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert "retail_producer_rows_read_total 1.0" in body
        assert "retail_producer_replay_rows_total" in body
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
    finally:
        server.stop()
