"""The whole KCL protocol, driven in memory through amazon_kclpy's KCLProcess."""

import io
import json

import pytest
import structlog
import structlog.testing

from consumer.batch import StreamRecord
from consumer.buffer import FlushPolicy, ShardBuffer
from consumer.pipeline import ShardPipeline
from retail_stream.retries import Backoff
from consumer.record_processor import (
    EXIT_NOT_DURABLE,
    EXIT_SINK_REFUSED,
    REFUSAL_FILE_ENV,
    RecordProcessor,
    kcl_process,
    load_action,
    to_stream_record,
)
from amazon_kclpy import kcl
from tests.support.consumer_fakes import RecordingSink, kcl_record, stream_record


def run(messages: list[dict], sinks, max_records=2, deadline=0.0, sleeps=None):
    """Feed daemon messages; return what the processor wrote on stdout, parsed."""
    def build(shard_id):
        return ShardPipeline(
            ShardBuffer(shard_id, FlushPolicy(max_records, 10**9, 60)),
            sinks,
            Backoff(base=0, cap=0, deadline=deadline),
            sleep=(sleeps if sleeps is not None else []).append,
        )

    stdin = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    stdout, stderr = io.StringIO(), io.StringIO()
    process = kcl_process(RecordProcessor(build), stdin, stdout, stderr)
    exit_code = None
    try:
        process.run()
    except SystemExit as exc:
        exit_code = exc.code
    return [json.loads(line) for line in stdout.getvalue().splitlines() if line], exit_code


def init():
    return {"action": "initialize", "shardId": "shardId-000000000000", "sequenceNumber": "TRIM_HORIZON",
            "subSequenceNumber": 0}


def records(*seqs):
    return {"action": "processRecords", "millisBehindLatest": 0,
            "records": [kcl_record(s, stream_record(s).data) for s in seqs]}


def ack(seq):
    return {"action": "checkpoint", "sequenceNumber": str(seq), "subSequenceNumber": 0}


def test_checkpoint_follows_durable_write_and_stdout_holds_only_protocol():
    sink = RecordingSink("dynamodb")
    out, code = run([init(), records(1, 2), ack(2), {"action": "shutdownRequested"}], [sink])
    assert code is None
    assert out == [
        {"action": "status", "responseFor": "initialize"},
        {"action": "checkpoint", "sequenceNumber": "2", "subSequenceNumber": 0},
        {"action": "status", "responseFor": "processRecords"},
        {"action": "status", "responseFor": "shutdownRequested"},
    ]
    assert [r.line for r in sink.batches[0].records] == [1, 2]


def test_throttled_checkpoint_is_retried():
    sink = RecordingSink("dynamodb")
    throttled = dict(ack(2), error="ThrottlingException")
    out, code = run([init(), records(1, 2), throttled, ack(2)], [sink])
    assert code is None
    checkpoints = [m for m in out if m["action"] == "checkpoint"]
    assert len(checkpoints) == 2


def test_throttling_that_does_not_end_gives_up_after_bounded_backoff():
    sink, sleeps = RecordingSink("dynamodb"), []
    throttled = dict(ack(2), error="ThrottlingException")
    out, code = run([init(), records(1, 2), *[throttled] * 10], [sink], sleeps=sleeps)
    # Six attempts, then the process ends so the KCL restarts the shard from
    # its last checkpoint; the waits grow but stay bounded.
    assert code == EXIT_NOT_DURABLE
    assert [m["action"] for m in out].count("checkpoint") == 6
    assert len(sleeps) == 5 and sum(sleeps) < 30  # a wait between tries, none after the last
    assert {"action": "status", "responseFor": "processRecords"} not in out


def test_shutdown_exception_on_checkpoint_stops_writing():
    sink = RecordingSink("dynamodb")
    refused = dict(ack(2), error="ShutdownException")
    out, code = run([init(), records(1, 2), refused, records(3, 4)], [sink])
    assert code is None
    assert len(sink.batches) == 1
    assert [m["action"] for m in out].count("checkpoint") == 1


def test_shard_end_checkpoints_with_no_sequence():
    sink = RecordingSink("dynamodb")
    out, _ = run(
        [init(), records(1), {"action": "shardEnded"}, ack(1),
         {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None}],
        [sink], max_records=10,
    )
    checkpoints = [m for m in out if m["action"] == "checkpoint"]
    assert checkpoints[-1]["sequenceNumber"] is None
    assert out[-1] == {"action": "status", "responseFor": "shardEnded"}


def test_lease_lost_never_checkpoints_and_drops_buffer():
    sink = RecordingSink("dynamodb")
    out, _ = run([init(), records(1), {"action": "leaseLost"}], [sink], max_records=10)
    assert not any(m["action"] == "checkpoint" for m in out)
    assert sink.batches == []


def test_a_batch_that_cannot_be_made_durable_ends_the_process():
    # amazon_kclpy would swallow an exception and report the batch done.
    sink = RecordingSink("warehouse", failures=10**6)
    out, code = run([init(), records(1, 2)], [sink])
    assert code == EXIT_NOT_DURABLE
    assert not any(m["action"] == "checkpoint" for m in out)
    assert {"action": "status", "responseFor": "processRecords"} not in out


@pytest.mark.parametrize("message", [
    records(1, 2, 3),
    {"action": "processRecords", "millisBehindLatest": 5, "records": [
        {**kcl_record(7, b"\x00\xffnot json"), "subSequenceNumber": None, "approximateArrivalTimestamp": 1.7e12},
        {**kcl_record(8, b""), "subSequenceNumber": 3},
    ]},
    {"action": "processRecords", "millisBehindLatest": None, "records": []},
])
def test_process_records_decoded_fast_equal_the_librarys_records(message):
    line = json.dumps(message)
    library = kcl._IOHandler(None, None, None).load_action
    fast, slow = load_action(line, library), library(line)
    assert type(fast) is type(slow) and fast.action == "processRecords"
    assert fast.records == [to_stream_record(r) for r in slow.records]
    # A shape only the library reads (the arrival time as a string) still gives StreamRecords.
    odd = {**message, "records": [{**r, "approximateArrivalTimestamp": "1700000000000"} for r in message["records"]]}
    fallback = load_action(json.dumps(odd), library)
    assert all(isinstance(r, StreamRecord) for r in fallback.records)
    assert [r.data for r in fallback.records] == [r.data for r in fast.records]
    assert fast.millis_behind_latest == slow.millis_behind_latest


def test_every_other_message_goes_the_librarys_way():
    library = kcl._IOHandler(None, None, None).load_action
    for message in (init(), ack(4), {"action": "shutdownRequested"}, {"action": "leaseLost"}):
        assert type(load_action(json.dumps(message), library)) is type(library(json.dumps(message)))


def test_a_sink_that_refuses_for_good_ends_the_process_at_once_and_tells_the_supervisor(tmp_path, monkeypatch):
    refusal = tmp_path / "refused.json"
    monkeypatch.setenv(REFUSAL_FILE_ENV, str(refusal))
    sink, sleeps = RecordingSink("dynamodb", failures=10**6, permanent=True), []
    with structlog.testing.capture_logs() as logged:
        out, code = run([init(), records(1, 2), ack(2)], [sink], deadline=300, sleeps=sleeps)
    assert code == EXIT_SINK_REFUSED
    (line,) = [e for e in logged if e["log_level"] == "error"]  # one line says it all, no traceback
    assert (line["event"], line["sink"], line["resource"], line["error"]) == (
        "sink_refused", "dynamodb", "t", "AccessDeniedException")
    assert sleeps == [] and sink.log == ["dynamodb:fail"]  # not retried for the 300 s deadline
    assert [m["action"] for m in out].count("checkpoint") == 0
    assert {"action": "status", "responseFor": "processRecords"} not in out
    assert json.loads(refusal.read_text()) == {"sink": "dynamodb", "resource": "t", "error": "AccessDeniedException"}
