import pytest

from consumer.buffer import FlushPolicy, ShardBuffer
from consumer.checkpoints import CheckpointFailed, CheckpointThrottled, LeaseLost
from consumer.pipeline import FlushFailed, ShardPipeline, SinkRefused
from retail_stream.retries import Backoff
from tests.support.consumer_fakes import (
    LosingCheckpointer,
    RecordingCheckpointer,
    RecordingMetrics,
    RecordingSink,
    stream_record,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(max_records=3, max_bytes=10**9, max_age=60.0, sinks=None, deadline=30.0):
    clock = Clock()
    log: list[str] = []
    sinks = sinks or [RecordingSink("dynamodb", log=log), RecordingSink("s3", log=log)]
    for s in sinks:
        s.log = log
    pipeline = ShardPipeline(
        ShardBuffer("shardId-0", FlushPolicy(max_records, max_bytes, max_age)),
        sinks,
        Backoff(base=0.5, cap=4, deadline=deadline),
        clock=clock,
        sleep=clock.sleep,
    )
    return pipeline, clock, log, sinks


def test_flushes_at_record_count_and_checkpoints_after_every_sink():
    pipeline, _, log, sinks = make(max_records=3)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(i) for i in range(1, 8)], cp)
    assert log == [
        "dynamodb:3", "s3:3", "checkpoint:3",
        "dynamodb:6", "s3:6", "checkpoint:6",
    ]
    assert len(pipeline.buffer) == 1  # record 7 waits for the next flush


def test_flushes_on_age_even_without_new_records():
    pipeline, clock, log, _ = make(max_records=100, max_age=60)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(1)], cp)
    assert cp.positions == []
    clock.now += 59
    pipeline.receive([], cp)
    assert cp.positions == []
    clock.now += 1
    pipeline.receive([], cp)
    assert cp.positions == ["1"]


def test_flushes_on_byte_size():
    size = len(stream_record(1).data)
    pipeline, _, _, _ = make(max_records=100, max_bytes=2 * size)
    cp = RecordingCheckpointer()
    pipeline.receive([stream_record(1), stream_record(2), stream_record(3)], cp)
    assert cp.positions == ["2"]


def test_failing_sink_is_retried_and_checkpoint_waits_for_it():
    log: list[str] = []
    sinks = [RecordingSink("dynamodb"), RecordingSink("warehouse", failures=2)]
    pipeline, clock, log, _ = make(max_records=2, sinks=sinks)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(1), stream_record(2)], cp)
    assert log == ["dynamodb:2", "warehouse:fail", "warehouse:fail", "warehouse:2", "checkpoint:2"]
    assert clock.now > 0  # it backed off between attempts


def test_sink_failing_past_the_deadline_never_checkpoints():
    sinks = [RecordingSink("dynamodb", failures=10**6)]
    pipeline, clock, log, _ = make(max_records=1, sinks=sinks, deadline=30)
    cp = RecordingCheckpointer(log)
    with pytest.raises(FlushFailed):
        pipeline.receive([stream_record(1)], cp)
    assert cp.positions == []
    # Given up before a wait that would end past the deadline: within it, by less than the longest wait.
    assert 30 - 4 <= clock.now < 30


def test_a_sink_that_refuses_for_good_stops_the_batch_at_once():
    log: list[str] = []
    metrics = RecordingMetrics()
    sinks = [RecordingSink("dynamodb", failures=10**6, permanent=True), RecordingSink("s3")]
    pipeline, clock, log, _ = make(max_records=1, sinks=sinks)
    pipeline.metrics = metrics
    cp = RecordingCheckpointer(log)
    with pytest.raises(SinkRefused) as info:
        pipeline.receive([stream_record(1), stream_record(2)], cp)
    assert (info.value.sink, info.value.resource, info.value.code) == ("dynamodb", "t", "AccessDeniedException")
    assert log == ["dynamodb:fail"]  # one try, no sleep, no later sink, no checkpoint
    assert clock.now == 0 and cp.positions == []
    assert metrics.named("sink_refused") == [("dynamodb", "AccessDeniedException")]


def test_invalid_records_are_dead_lettered_and_do_not_stop_the_shard():
    pipeline, _, _, sinks = make(max_records=3)
    cp = RecordingCheckpointer()
    pipeline.receive([stream_record(1), stream_record(2, data=b"\xff not json"), stream_record(3)], cp)
    batch = sinks[0].batches[0]
    assert [r.line for r in batch.records] == [1, 3]
    assert len(batch.dead_letters) == 1
    assert batch.dead_letters[0].record.data == b"\xff not json"
    assert "malformed" in batch.dead_letters[0].reason
    assert cp.positions == ["3"]


def test_lease_lost_drops_buffer_and_never_checkpoints():
    pipeline, _, log, sinks = make(max_records=10)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(1), stream_record(2)], cp)
    pipeline.lose_lease()
    pipeline.receive([stream_record(3)], cp)
    pipeline.finish(cp, shard_end=False)
    assert log == []
    assert len(pipeline.buffer) == 0


def test_checkpoint_refused_with_shutdown_means_lease_lost():
    pipeline, _, _, sinks = make(max_records=1)
    pipeline.receive([stream_record(1)], LosingCheckpointer())
    assert pipeline.lease_lost
    pipeline.receive([stream_record(2)], RecordingCheckpointer())
    assert len(sinks[0].batches) == 1  # nothing written after the lease was lost


class LosesTheLeaseAt(RecordingCheckpointer):
    """Checkpoints until its `flush`-th call, which finds the lease taken."""

    def __init__(self, flush: int, log: list) -> None:
        super().__init__(log)
        self.flush = flush
        self.calls = 0

    def checkpoint(self, sequence_number, sub_sequence_number) -> None:
        self.calls += 1
        if self.calls == self.flush:
            raise LeaseLost("ShutdownException")
        super().checkpoint(sequence_number, sub_sequence_number)


@pytest.mark.parametrize("lost_at", [1, 3, 5])  # the first, a middle and the last flush of the call
def test_after_a_lost_lease_no_record_of_the_call_or_a_later_one_reaches_a_sink(lost_at):
    pipeline, _, log, sinks = make(max_records=2)
    cp = LosesTheLeaseAt(lost_at, log)
    pipeline.receive([stream_record(i) for i in range(1, 11)], cp)  # 5 flushes' worth
    written = [entry for entry in log if entry.startswith("dynamodb:")]
    assert written == [f"dynamodb:{2 * n}" for n in range(1, lost_at + 1)]  # up to the refused one
    assert cp.positions == [str(2 * n) for n in range(1, lost_at)]
    assert pipeline.lease_lost and len(pipeline.buffer) == 0
    pipeline.receive([stream_record(i) for i in range(11, 15)], RecordingCheckpointer(log))
    pipeline.finish(RecordingCheckpointer(log), shard_end=True)
    assert [entry for entry in log if entry.startswith("dynamodb:")] == written
    assert len(sinks[1].batches) == lost_at


def test_throttled_checkpoint_is_retried_then_gives_up():
    pipeline, _, _, _ = make(max_records=1)
    cp = RecordingCheckpointer(errors=[CheckpointThrottled("ThrottlingException")] * 2)
    pipeline.receive([stream_record(1)], cp)
    assert cp.positions == ["1"]
    cp = RecordingCheckpointer(errors=[CheckpointThrottled("ThrottlingException")] * 100)
    with pytest.raises(CheckpointFailed):
        pipeline.receive([stream_record(2)], cp)


def test_shard_end_flushes_then_checkpoints_the_whole_shard():
    pipeline, _, log, _ = make(max_records=10)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(1), stream_record(2)], cp)
    pipeline.finish(cp, shard_end=True)
    assert log == ["dynamodb:2", "s3:2", "checkpoint:2", "checkpoint:None"]


def test_shutdown_requested_flushes_then_checkpoints():
    pipeline, _, log, _ = make(max_records=10)
    cp = RecordingCheckpointer(log)
    pipeline.receive([stream_record(5)], cp)
    pipeline.finish(cp, shard_end=False)
    assert log == ["dynamodb:5", "s3:5", "checkpoint:5"]


def test_metrics_follow_the_flow():
    from tests.support.consumer_fakes import RecordingMetrics

    metrics = RecordingMetrics()
    sinks = [RecordingSink("dynamodb"), RecordingSink("warehouse", failures=1)]
    pipeline, _, _, _ = make(max_records=3, sinks=sinks)
    pipeline.metrics = metrics
    cp = RecordingCheckpointer(errors=[CheckpointThrottled("ThrottlingException")])
    pipeline.receive([stream_record(1), stream_record(2, data=b"{}"), stream_record(3), stream_record(4)], cp,
                     millis_behind_latest=1500)
    assert metrics.named("received") == [(4,)]
    assert metrics.named("lag") == [(1500,)]
    assert [c[:2] for c in metrics.named("sink_written")] == [("dynamodb", 2), ("warehouse", 2)]
    assert metrics.named("sink_failed") == [("warehouse", "error")]
    assert metrics.named("flushed") == [(2, {"missing_field": 1})]
    assert metrics.named("checkpoint_failed") == [("ThrottlingException",)]
    assert metrics.named("checkpointed") == [(3,)]
    assert metrics.named("buffered") == [(1,)]
    pipeline.lose_lease()
    assert metrics.named("lease") == [(False,)]


@pytest.mark.parametrize("reason, kind", [
    ("JSON is malformed: invalid character (byte 0)", "not_json"),
    ("Object missing required field `event_id`", "missing_field"),
    ("Object contains unknown field `z`", "unknown_field"),
    ("Expected `int`, got `str` - at `$.quantity`", "wrong_type"),
    ("unit_price out of range", "invalid_value"),
])
def test_dead_letter_reasons_become_few_labels(reason, kind):
    from consumer.metrics import dead_letter_kind

    assert dead_letter_kind(reason) == kind
