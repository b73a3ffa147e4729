"""One shard's flow: receive -> parse -> buffer -> flush -> every sink -> checkpoint.

The order that makes "nothing lost" hold lives here: a batch is written to
each sink in turn (retried while the sink is failing, given up at once when
it refuses for good), and only when all of them hold it is its last position
checkpointed. Once a checkpoint finds the lease gone, nothing more is written.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable, Sequence

import structlog

from consumer.batch import Batch, StreamRecord
from consumer.buffer import ShardBuffer
from consumer.checkpoints import CHECKPOINT_BACKOFF, CheckpointFailed, Checkpointer, LeaseLost, checkpoint
from consumer.metrics import NoMetrics, PipelineMetrics, dead_letter_kind
from consumer.parse import parse
from consumer.sinks import Sink, SinkError
from retail_stream.retries import Backoff
from retail_stream.settings import Settings

log = structlog.get_logger("consumer.pipeline")


class FlushFailed(Exception):
    """A sink kept failing past the retry deadline; the batch is not durable
    and must not be checkpointed. The shard restarts from its last checkpoint."""


class SinkRefused(Exception):
    """A sink refused the batch for a reason no retry fixes (access denied, a
    missing table or bucket): the worker must stop and say so."""

    def __init__(self, error: SinkError) -> None:
        super().__init__(str(error))
        self.sink, self.resource, self.code = error.sink, error.resource, error.code


# A failing sink: waits from up to 0.5 s doubling to 20 s, full jitter, until
# FLUSH_RETRY_SECONDS (the wiring gives the configured deadline).
SINK_BACKOFF = Backoff(base=0.5, cap=20.0, deadline=Settings.flush_retry_seconds)


class ShardPipeline:
    def __init__(
        self,
        buffer: ShardBuffer,
        sinks: Sequence[Sink],
        retry: Backoff = SINK_BACKOFF,
        checkpoint_retry: Backoff = CHECKPOINT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        metrics: PipelineMetrics = NoMetrics(),
    ) -> None:
        self.buffer = buffer
        self.metrics = metrics
        self.sinks = tuple(sinks)
        self.retry = retry
        self.checkpoint_retry = checkpoint_retry
        self._clock = clock
        self._sleep = sleep
        self.lease_lost = False

    @property
    def shard_id(self) -> str:
        return self.buffer.shard_id

    def receive(
        self, records: Sequence[StreamRecord], checkpointer: Checkpointer, millis_behind_latest: int | None = None
    ) -> None:
        """Buffer records, flushing and checkpointing whenever the policy says so.
        Once a checkpoint finds the lease lost, nothing more of this call, or
        of any later one, is written.

        Blocks while sinks are retried; raises FlushFailed, SinkRefused or
        CheckpointFailed.
        """
        if self.lease_lost:
            return
        self.metrics.received(len(records))
        if millis_behind_latest is not None:
            self.metrics.lag(millis_behind_latest)
        now = self._clock()
        add = self.buffer.add  # per record: one call, which says too whether a flush is due
        for record in records:
            if add(record, parse(record), now):
                self.flush(checkpointer)
                if self.lease_lost:
                    return  # another worker owns the shard: no more of this call reaches a sink
        if self.buffer.flush_due(self._clock()):
            self.flush(checkpointer)
        self.metrics.buffered(len(self.buffer))

    def flush(self, checkpointer: Checkpointer) -> None:
        """Write what is buffered to every sink, then checkpoint its last record."""
        batch = self.buffer.take()
        if batch is None:
            return
        self.write(batch)
        self.metrics.flushed(len(batch.records), Counter(dead_letter_kind(d.reason) for d in batch.dead_letters))
        if not self._checkpoint(checkpointer, batch.last.sequence, batch.last.sub):
            return
        self.metrics.checkpointed(len(batch.records) + len(batch.dead_letters))
        log.info("checkpointed", shard_id=self.shard_id, sequence=batch.last.sequence,
                 sub_sequence=batch.last.sub)

    def finish(self, checkpointer: Checkpointer, *, shard_end: bool) -> None:
        """Shutdown requested or shard ended: flush, then checkpoint.

        At shard end the checkpoint covers the whole shard (no sequence number),
        which is what lets the KCL start on the child shards.
        """
        if self.lease_lost:
            return
        self.flush(checkpointer)
        if shard_end and not self.lease_lost:
            self._checkpoint(checkpointer, None, None)
        self.metrics.lease(False)

    def _checkpoint(self, checkpointer: Checkpointer, sequence: str | None, sub: int | None) -> bool:
        """Checkpoint; False when the lease turned out to be lost."""
        try:
            checkpoint(checkpointer, sequence, sub, backoff=self.checkpoint_retry, sleep=self._sleep,
                       on_throttle=lambda: self.metrics.checkpoint_failed("ThrottlingException"))
        except LeaseLost:
            self.metrics.checkpoint_failed("ShutdownException")
            self._lose_lease()
            return False
        except CheckpointFailed:
            self.metrics.checkpoint_failed("CheckpointFailed")
            raise
        return True

    def lose_lease(self) -> None:
        """Another worker owns the shard: drop the buffer, never checkpoint."""
        self._lose_lease()

    def _lose_lease(self) -> None:
        dropped = self.buffer.drop()
        self.lease_lost = True
        self.metrics.lease(False)
        log.warning("lease_lost", shard_id=self.shard_id, dropped_records=dropped)

    def write(self, batch: Batch) -> None:
        """Make the batch durable in every sink, in order, or raise FlushFailed
        (still failing at the deadline) or SinkRefused (refused for good)."""
        started = self._clock()
        durations = {}
        for sink in self.sinks:
            durations[sink.name] = round(self._write_with_retry(sink, batch, started), 4)
        log.info(
            "batch_written",
            shard_id=batch.shard_id,
            first_sequence=batch.first.sequence,
            first_sub_sequence=batch.first.sub,
            last_sequence=batch.last.sequence,
            last_sub_sequence=batch.last.sub,
            records=len(batch.records),
            dead_letters=len(batch.dead_letters),
            seconds=round(self._clock() - started, 4),
            sink_seconds=durations,
        )

    def _write_with_retry(self, sink: Sink, batch: Batch, started: float) -> float:
        """Write until the sink succeeds; returns the successful attempt's seconds."""
        tries = 0
        while True:
            attempt_started = self._clock()
            try:
                written = sink.write(batch)
            except SinkError as exc:
                tries += 1
                self.metrics.sink_failed(sink.name, exc.code)
                if exc.permanent:
                    self.metrics.sink_refused(sink.name, exc.code)
                    raise SinkRefused(exc) from exc
                delay = self.retry.delay(tries)
                # Given up before a wait that would end past the deadline.
                if not self.retry.allows(tries, self._clock() - started + delay):
                    raise FlushFailed(f"{exc} (gave up after {tries} attempts)") from exc
                log.warning("sink_retry", shard_id=batch.shard_id, sink=sink.name, attempt=tries,
                            delay=round(delay, 3), error=str(exc))
                self._sleep(delay)
                continue
            seconds = self._clock() - attempt_started
            self.metrics.sink_written(sink.name, written, seconds)
            return seconds
