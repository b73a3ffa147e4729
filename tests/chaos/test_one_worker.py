"""Faults around one consumer worker: kills, SIGTERM, sink outages, a
faulty stream for the producer, poison records, records a sink would refuse
(a crash at every point of a flush: test_crash_points.py). One stack and one
KCL for the module; each scenario replays its own source, so each is judged
on its own rows."""

from __future__ import annotations

import json
import random
import time

import pytest

from consumer.daemon import EXIT_SINK_REFUSED
from local_stack import census
from tests.chaos.harness import Rule, expected_ids, scaled, source_ids, summary
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# The rig (tests/chaos/conftest.py): one worker, w1, started for the module.
RIG_OPTIONS = {"folder": "chaos-one"}


def wait_for_a_batch(worker, written_before: int, what: str) -> None:
    """Until the worker has written a batch beyond the first `written_before`."""
    wait_until(lambda: len(worker.events("batch_written")) > written_before, 60, what)


def test_sigkill_again_and_again(rig):
    source, passes, kills = "chaos-sigkill", scaled(3, 20), scaled(2, 10)
    rng = random.Random(11)
    worker = rig.worker("w1")
    producer = rig.producer(source, passes, "--rate", str(scaled(300, 500)))
    started = time.monotonic()
    for kill in range(kills):
        if kill == 0:
            # One kill certainly mid-flush: DynamoDB written, the raw-zone write in flight.
            rig.proxy.inject(Rule("mid-flush", "hold", "s3", "PutObject", target=f"/{rig.settings.s3_raw_prefix}/"))
            rig.proxy.wait_fired("mid-flush")
        else:
            time.sleep(rng.uniform(0.5, 5))  # the fault's own timing: kills at random moments of the replay
        worker.kill()
        rig.proxy.clear()  # the held write lands late, after its sender died
        worker = rig.worker("w1")
    summary(producer)
    outcome = rig.judge("sigkill", f"{kills} SIGKILLs of every process of the worker (one mid-flush)",
                        source_ids(source, passes), expected_ids(source, passes), rig.wait_drained(),
                        seconds_under_fire=round(time.monotonic() - started, 1))
    outcome.assert_clean()


def test_sigterm_flushes_checkpoints_and_exits_in_time(rig):
    source, passes = "chaos-sigterm", scaled(2, 10)
    worker = rig.worker("w1")
    written = len(worker.events("batch_written"))
    producer = rig.producer(source, passes, "--rate", "300")
    # Stopped mid-replay: once it has written (and so will checkpoint) a batch of this replay.
    wait_for_a_batch(worker, written, "w1 to write a batch of the replay before the SIGTERM")
    code, seconds = worker.stop()
    assert code == 0 and seconds < 30, (code, seconds)  # inside ECS's default stop timeout
    at_stop = rig.checkpoints()
    before = len(worker.events("batch_written"))
    summary(producer)
    rig.worker("w1")
    catch_up = rig.wait_drained()
    # What the restarted worker wrote starts after what was checkpointed at the stop.
    for event in worker.events("batch_written")[before:]:
        checkpoint = at_stop.get(event["shard_id"]) or ""
        if checkpoint.isdigit():
            assert int(event["first_sequence"]) > int(checkpoint), (event, at_stop)
    outcome = rig.judge("sigterm", "SIGTERM mid-replay, then a restart", source_ids(source, passes),
                        expected_ids(source, passes), catch_up, stop_seconds=round(seconds, 1))
    outcome.assert_clean()


def test_warehouse_down_for_30_seconds(rig):
    source, passes, outage = "chaos-pg-down", scaled(2, 6), 30
    worker = rig.worker("w1")
    pid, retries_before = worker.process.pid, len(worker.events("sink_retry"))
    written = len(worker.events("batch_written"))
    producer = rig.producer(source, passes, "--rate", "300")
    # Stopped while the replay flows: once a batch of it has reached the warehouse.
    wait_for_a_batch(worker, written, "w1 to write a batch of the replay before the outage")
    rig.stack.postgres.stop()
    stopped = time.monotonic()
    try:
        # A flush in progress when it stopped may still checkpoint: the
        # checkpoints are taken once every shard's flush has met the outage.
        shards = set(rig.checkpoints())
        wait_until(lambda: {e["shard_id"] for e in worker.events("sink_retry")[retries_before:]
                            if e["sink"] == "warehouse"} >= shards, outage - 5,
                   "every shard's flush to retry the warehouse")
        frozen = rig.checkpoints()
        # The rest of the outage: its length is the fault itself, a duration.
        time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
        # Nothing can be durable in the warehouse, so no checkpoint may move.
        assert rig.checkpoints() == frozen
    finally:
        rig.stack.postgres.start()
    summary(producer)
    catch_up = rig.wait_drained()
    assert worker.running() and worker.process.pid == pid, "the worker must ride out the outage, not crash-loop"
    retries = [e for e in worker.events("sink_retry")[retries_before:] if e["sink"] == "warehouse"]
    assert len(retries) >= 2 and max(e["delay"] for e in retries) > min(e["delay"] for e in retries)
    outcome = rig.judge("warehouse_outage", f"PostgreSQL stopped for {outage} s", source_ids(source, passes),
                        expected_ids(source, passes), catch_up, warehouse_retries=len(retries))
    outcome.assert_clean()


def test_dynamodb_and_s3_failing_and_throttling(rig):
    source, passes, window = "chaos-aws-faults", scaled(4, 15), scaled(15, 60)
    worker = rig.worker("w1")
    pid = worker.process.pid
    table, raw = rig.settings.dynamodb_table, rig.settings.s3_bucket
    # Each kind of fault in turn on the first calls (rules are tried in order),
    # then random throttling and slow answers for the rest of the window.
    faults = (
        Rule("ddb-throttle", "error", "dynamodb", "BatchWriteItem", table, status=400,
             code="ProvisionedThroughputExceededException", times=2),
        Rule("ddb-500", "error", "dynamodb", "BatchWriteItem", table, status=500, code="InternalServerError", times=2),
        Rule("ddb-unprocessed", "partial", "dynamodb", "BatchWriteItem", table, fraction=0.3, times=3),
        Rule("ddb-slow", "delay", "dynamodb", "BatchWriteItem", table, seconds=2, times=1),
        Rule("ddb-random", "error", "dynamodb", "BatchWriteItem", table, status=400,
             code="ProvisionedThroughputExceededException", rate=0.1),
        Rule("s3-slowdown", "error", "s3", "PutObject", raw, status=503, code="SlowDown", times=2),
        Rule("s3-500", "error", "s3", "PutObject", raw, status=500, code="InternalError", times=2),
        Rule("s3-slow", "delay", "s3", "PutObject", raw, seconds=3, times=1),
        Rule("s3-random", "error", "s3", "PutObject", raw, status=503, code="SlowDown", rate=0.1),
    )
    rig.proxy.inject(*faults)
    producer = rig.producer(source, passes, "--rate", "300")
    started = time.monotonic()
    wait_until(lambda: all(r["fired"] for r in rig.proxy.stats()["rules"] if r["times"]), 120,
               "every kind of fault to fire")
    # The rest of the window: its length is the fault itself, a duration.
    time.sleep(max(0.0, window - (time.monotonic() - started)))
    fired = {r["name"]: r["fired"] for r in rig.proxy.stats()["rules"]}
    rig.proxy.clear()
    summary(producer)
    catch_up = rig.wait_drained()
    assert worker.running() and worker.process.pid == pid
    outcome = rig.judge("dynamodb_s3_faults", f"{window} s of DynamoDB/S3 throttling, 500s, unprocessed items, "
                        "slow answers", source_ids(source, passes), expected_ids(source, passes), catch_up,
                        faults_fired=fired)
    outcome.assert_clean()


def test_producer_meets_throttling_and_partial_failures(rig):
    source, passes = "chaos-put-faults", scaled(2, 10)
    rig.worker("w1")
    stream = rig.settings.stream_name
    # Whole calls refused first (throttled, then 500s), then 30% of the entries
    # of the next three calls failed. Counted, not random: a short replay makes
    # only a handful of calls, and every rule must fire in every run.
    rig.proxy.inject(
        Rule("put-throttle", "error", "kinesis", "PutRecords", stream, status=400,
             code="ProvisionedThroughputExceededException", times=2),
        Rule("put-500", "error", "kinesis", "PutRecords", stream, status=500, code="InternalFailure", times=2),
        Rule("put-partial", "partial", "kinesis", "PutRecords", stream, fraction=0.3, times=3,
             code="ProvisionedThroughputExceededException"),
    )
    try:
        sent = rig.produce(source, passes, "--max-attempts", "30")
        fired = {r["name"]: r["fired"] for r in rig.proxy.stats()["rules"]}
    finally:
        rig.proxy.clear()
    assert all(fired.values()), fired
    expected = expected_ids(source, passes)
    assert sent["sent"] == len(expected) and sent["retried"] > 0, sent
    in_stream = [json.loads(r["Data"]) for records in census.stream_records(rig.settings).values() for r in records
                 if b"chaos-put-faults" in r["Data"]]
    stream_ids = [r["event_id"] for r in in_stream]
    assert set(stream_ids) == expected
    # A refused entry never reached the stream, so no retry may have added a copy.
    assert len(stream_ids) == len(expected)
    outcome = rig.judge("producer_faults", "PutRecords throttled, 500s, then 30% of the entries of three calls",
                        source_ids(source, passes), expected, rig.wait_drained(),
                        producer_retried=sent["retried"], faults_fired=fired)
    outcome.assert_clean()


def a_row(source: str, line: int, **changes) -> dict:
    """A valid wire record of this source, as a dict to break."""
    row = {"event_id": f"{line:032x}", "invoice_no": "536365", "stock_code": "85123A",
           "description": "WHITE HANGING HEART T-LIGHT HOLDER", "quantity": 6, "invoice_date": "2010-12-01T08:26:00",
           "unit_price": 2.55, "customer_id": 17850, "country": "United Kingdom", "source": source, "line": line}
    return {**row, **changes}


def poison_records(tag: str) -> list[bytes]:
    """What another writer may put on the stream; each carries `tag` so the oracle finds it."""
    rng = random.Random(tag)
    row = a_row(tag, 1)
    missing = {k: v for k, v in a_row(tag, 2).items() if k != "quantity"}
    whole = json.dumps(a_row(tag, 6))
    truncated = whole[: whole.index(tag) + len(tag)]  # cut off right after the tag
    return [
        f"{tag}: not JSON at all".encode(),
        bytes(rng.randrange(256) for _ in range(300)) + tag.encode(),
        json.dumps(missing).encode(),
        json.dumps({**a_row(tag, 3), "discount": 0.1}).encode(),
        json.dumps(a_row(tag, 4, quantity="six")).encode(),
        json.dumps(a_row(tag, 5, invoice_date="yesterday")).encode(),
        json.dumps([row]).encode(),
        truncated.encode(),
        # Near Kinesis' 1 MiB record limit.
        json.dumps({**row, "description": "x" * (1_000_000 - 400)}).encode(),
    ]


def test_poison_records_from_another_writer(rig):
    source, tag = "chaos-poison-rows", "chaos-poison"
    worker = rig.worker("w1")
    dead_before = worker.metric("retail_consumer_records_dead_lettered_total")
    poison = poison_records(tag)
    producer = rig.producer(source, 1, "--rate", "500")
    rig.put_raw(poison)
    summary(producer)
    outcome = rig.judge("poison_records", "not JSON, binary, missing/extra fields, wrong types, truncated, ~1 MB",
                        [source], expected_ids(source, 1), rig.wait_drained(), poison=poison, tag=tag.encode())
    outcome.assert_clean()
    assert outcome.notes["poison_matched"]  # each with its raw bytes
    assert worker.metric("retail_consumer_records_dead_lettered_total") - dead_before == len(poison)


def test_a_record_the_sinks_would_refuse(rig):
    # Valid in every field but one: a 390 KB description, an item DynamoDB
    # refuses (400 KB), in a column Redshift refuses (VARCHAR(1024) bytes), in
    # an object whose COPY would fail whole. It must not be retried forever.
    source, tag = "chaos-refused-rows", "chaos-refused"
    worker = rig.worker("w1")
    retries_before = len(worker.events("sink_retry"))
    too_big = [json.dumps(a_row(tag, 1, description="d" * 390_000)).encode()]
    producer = rig.producer(source, 1, "--rate", "500")
    rig.put_raw(too_big)
    summary(producer)
    outcome = rig.judge("sink_refused_record", "a 390 KB description (DynamoDB item and warehouse column limits)",
                        [source], expected_ids(source, 1), rig.wait_drained(), poison=too_big, tag=tag.encode())
    outcome.assert_clean()
    assert worker.events("sink_retry")[retries_before:] == []


def test_access_denied_stops_the_worker_at_once_and_says_why(rig):
    # A role without dynamodb:BatchWriteItem: no retry can help, so the worker
    # stops at once (not after FLUSH_RETRY_SECONDS) and says which sink,
    # resource and error; fixed and restarted, it loses nothing.
    source = "chaos-access-denied"
    worker = rig.worker("w1")
    table = rig.settings.dynamodb_table
    rig.proxy.inject(Rule("denied", "error", "dynamodb", "BatchWriteItem", table, status=400,
                          code="AccessDeniedException"))
    rig.produce(source, 1)
    rig.proxy.wait_fired("denied")
    denied_at = time.monotonic()
    wait_until(lambda: not worker.running(), 60, "the worker to stop")
    stopped_after = time.monotonic() - denied_at
    assert worker.process.returncode == EXIT_SINK_REFUSED, worker.log_tail()
    refusals = worker.events("sink_refused")  # one per shard that tried to write
    assert refusals and {(e["sink"], e["resource"], e["error"]) for e in refusals} == {
        ("dynamodb", table, "AccessDeniedException")}
    assert [e for e in worker.events("sink_retry") if "AccessDenied" in e.get("error", "")] == []
    assert stopped_after < 15, stopped_after  # not FLUSH_RETRY_SECONDS (300 s), nor the 25 s stop grace
    rig.proxy.clear()  # the role is fixed
    rig.worker("w1")
    outcome = rig.judge("access_denied", "DynamoDB AccessDeniedException on every write, then fixed",
                        [source], expected_ids(source, 1), rig.wait_drained(),
                        stopped_after_seconds=round(stopped_after, 1))
    outcome.assert_clean()
