"""The KCL edge: the only module that imports amazon_kclpy.

The MultiLangDaemon starts `python -m consumer.record_processor` once per
shard lease and talks to it over stdin/stdout. This adapter turns the five
lifecycle calls into calls on a plain ShardPipeline. Nothing here may write
to stdout: it is the protocol channel.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import Callable

import msgspec
import structlog
from amazon_kclpy import kcl, messages
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor

from consumer.batch import StreamRecord
from consumer.checkpoints import CheckpointFailed, CheckpointThrottled, LeaseLost
from consumer.pipeline import ShardPipeline, SinkRefused

LOG_PIPE_ENV = "CONSUMER_LOG_PIPE"
# Where a processor says that a sink refused for good, for the supervisor (consumer.daemon).
REFUSAL_FILE_ENV = "CONSUMER_REFUSAL_FILE"

log = structlog.get_logger("consumer.record_processor")

# amazon_kclpy catches every Exception a processor raises and reports the
# action as done; only SystemExit gets through. A batch that could not be made
# durable must end this process, so the shard restarts from its checkpoint.
EXIT_NOT_DURABLE = 3
EXIT_SINK_REFUSED = 4


class KclCheckpointer:
    """amazon_kclpy's checkpointer with its error names turned into our types."""

    def __init__(self, checkpointer) -> None:
        self._checkpointer = checkpointer

    def checkpoint(self, sequence_number: str | None, sub_sequence_number: int | None) -> None:
        try:
            self._checkpointer.checkpoint(sequence_number, sub_sequence_number)
        except CheckpointError as exc:
            if exc.value == "ThrottlingException":
                raise CheckpointThrottled(exc.value) from exc
            if exc.value == "ShutdownException":
                raise LeaseLost(exc.value) from exc
            raise CheckpointFailed(exc.value) from exc


def to_stream_record(record) -> StreamRecord:
    """amazon_kclpy's Record as ours."""
    return StreamRecord(
        data=record.binary_data,
        sequence_number=record.sequence_number,
        sub_sequence_number=record.sub_sequence_number or 0,
        partition_key=record.partition_key,
        arrival_ms=record.timestamp_millis,
    )


# --- the processRecords message, decoded in C --------------------------------
# amazon_kclpy parses each message with the json module and makes a Record
# object per record, whose data is base64-decoded on access: about half the
# processor's per-record cost. msgspec decodes the message typed, base64
# included, in one pass, and makes the StreamRecords from it in C too
# (msgspec.convert): a StreamRecord's own __init__, run per record, cost more
# than the decoding. Every other message still goes the library's way.


class _WireRecord(msgspec.Struct, gc=False, rename={
    "sequence_number": "sequenceNumber",
    "sub_sequence_number": "subSequenceNumber",
    "partition_key": "partitionKey",
    "arrival_ms": "approximateArrivalTimestamp",
}):
    """A record as the daemon writes it, under StreamRecord's field names, so
    that msgspec.convert can read one off the other."""

    data: bytes  # base64 in the message
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrival_ms: int  # the KCL 3 daemon writes whole millis


class _ProcessRecords(msgspec.Struct, tag_field="action", tag="processRecords", rename="camel"):
    records: list[_WireRecord]
    millis_behind_latest: int | None = None


_process_records = msgspec.json.Decoder(_ProcessRecords)


def load_action(line: str, library_load: Callable):
    """The message on `line` as amazon_kclpy's message object; a
    processRecords one carries StreamRecords, however it was decoded."""
    try:
        message = _process_records.decode(line)
    except msgspec.ValidationError:
        # Another action, or a shape the daemon does not write (a null
        # sub-sequence number, a float arrival time): the library's way.
        action = library_load(line)
        if isinstance(action, messages.ProcessRecordsInput):
            return _process_records_input([to_stream_record(r) for r in action.records], action.millis_behind_latest)
        return action
    records = msgspec.convert(message.records, list[StreamRecord], from_attributes=True)
    return _process_records_input(records, message.millis_behind_latest)


def _process_records_input(records: list[StreamRecord], millis_behind_latest: int | None):
    return messages.ProcessRecordsInput(
        {"action": "processRecords", "records": records, "millisBehindLatest": millis_behind_latest}
    )


def kcl_process(record_processor, input_file, output_file, error_file) -> kcl.KCLProcess:
    """amazon_kclpy's KCLProcess over the files, reading processRecords with `load_action`."""
    process = kcl.KCLProcess(record_processor, input_file=input_file, output_file=output_file, error_file=error_file)
    library_load = process.io_handler.load_action
    process.io_handler.load_action = lambda line: load_action(line, library_load)
    return process


class RecordProcessor(processor.RecordProcessorBase):
    def __init__(self, build_pipeline: Callable[[str], ShardPipeline]) -> None:
        self._build = build_pipeline
        self._pipeline: ShardPipeline | None = None

    def initialize(self, initialize_input) -> None:
        structlog.contextvars.bind_contextvars(shard_id=initialize_input.shard_id)
        self._pipeline = self._guard(self._build, initialize_input.shard_id)
        # What is alive now (modules, the sinks' clients and their service
        # models: over 100,000 objects) lives as long as the process. Frozen,
        # it is no longer walked by every full garbage collection, of which
        # each batch's allocations trigger a few. Collected first, so no
        # garbage is kept for good.
        gc.collect()
        gc.freeze()
        self._pipeline.metrics.lease(True)
        log.info("shard_initialized", sequence=initialize_input.sequence_number)

    def process_records(self, process_records_input) -> None:
        self._guard(
            self._pipeline.receive,
            process_records_input.records,  # StreamRecords already (load_action)
            KclCheckpointer(process_records_input.checkpointer),
            process_records_input.millis_behind_latest,
        )

    def lease_lost(self, lease_lost_input) -> None:
        self._pipeline.lose_lease()

    def shard_ended(self, shard_ended_input) -> None:
        log.info("shard_ended")
        self._guard(self._pipeline.finish, KclCheckpointer(shard_ended_input.checkpointer), shard_end=True)

    def shutdown_requested(self, shutdown_requested_input) -> None:
        log.info("shutdown_requested")
        self._guard(
            self._pipeline.finish, KclCheckpointer(shutdown_requested_input.checkpointer), shard_end=False
        )

    @staticmethod
    def _guard(action, *args, **kwargs):
        try:
            return action(*args, **kwargs)
        except SinkRefused as exc:
            # One line that says what to fix; no traceback, it would say nothing more.
            log.error("sink_refused", sink=exc.sink, resource=exc.resource, error=exc.code, message=str(exc),
                      action="the worker stops: fix the access or the resource, then start it again")
            report_refusal(exc, os.environ.get(REFUSAL_FILE_ENV))
            raise SystemExit(EXIT_SINK_REFUSED) from None
        except Exception:
            log.exception("shard_processor_failed")
            raise SystemExit(EXIT_NOT_DURABLE) from None


def report_refusal(exc: SinkRefused, path: str | None) -> None:
    """Tell the supervisor which sink refused (it then stops the worker)."""
    if not path:
        return
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"sink": exc.sink, "resource": exc.resource, "error": exc.code}, out)
    os.replace(tmp, path)  # whole or not at all


def log_stream():
    """Where this processor logs: the supervisor's log pipe when there is one.

    The daemon re-logs every stderr line of a processor as an ERROR of its
    own, and prints it again; the pipe keeps our events single and clean.
    """
    path = os.environ.get(LOG_PIPE_ENV)
    if path:
        try:
            # Non-blocking: with no reader (the supervisor gone) a FIFO open
            # fails at once instead of waiting forever.
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return sys.stderr
        os.set_blocking(fd, True)
        return open(fd, "w", buffering=1, encoding="utf-8")
    return sys.stderr


def main() -> None:
    # The daemon drives shutdown (shutdown_requested); a SIGTERM or SIGINT sent
    # to the whole process group must not kill a shard mid-batch.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from consumer.metrics import ConsumerMetrics
    from consumer.wiring import build_pipeline, build_sinks, service_clients
    from retail_stream import logs
    from retail_stream.settings import Settings

    # Keep the protocol channel for KCLProcess alone; a stray print anywhere
    # (ours or a library's) lands on stderr instead of corrupting it.
    protocol_out, sys.stdout = sys.stdout, sys.stderr
    settings = Settings.from_env()  # the supervisor's, with the worker id it worked out
    logs.configure(settings.log_level, log_stream(), log_format=settings.log_format,
                   service="consumer", worker_id=settings.kcl_worker_id)

    def build(shard_id: str) -> ShardPipeline:
        sinks = build_sinks(settings, service_clients(settings)).in_order()
        return build_pipeline(settings, shard_id, sinks, ConsumerMetrics())

    process = RecordProcessor(build)
    kcl_process(process, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()


if __name__ == "__main__":
    sys.exit(main())
