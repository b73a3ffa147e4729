"""Where the processor's all-in CPU goes: each step of a batch's way through
it, run alone over the same records with the same parts as the all-in run
(bench/transport.py), in µs a record. What the steps do not add up to of
the all-in figure is the pipeline around them (the KCL protocol's
checkpoints, buffering, the DynamoDB calls' threads, metrics, logging)."""

from __future__ import annotations

import time
from typing import Callable, Iterable

from bench import processor, transport
from consumer.batch import Batch, Position
from consumer.parse import parse
from consumer.record_processor import load_action
from consumer.sinks.batch_write import BatchWriter
from consumer.sinks.dynamodb import write_calls
from consumer.sinks.raw_zone import to_ndjson_gz
from consumer.wiring import build_sinks
from retail_stream.settings import Settings

RUNS = 3  # each step's figure: the best of this many
# In a batch's order; "rest" is the all-in figure less the others.
STEPS = ("kcl_message", "decode_validate", "dynamodb_bodies", "dynamodb_signing", "dynamodb_calls",
         "raw_zone_gzip", "raw_zone_put", "warehouse", "rest")


def best_cpu(step: Callable[[], object], runs: int = RUNS) -> float:
    """The least CPU seconds `step` took in `runs` runs."""
    least = float("inf")
    for _ in range(runs):
        started = time.process_time()
        step()
        least = min(least, time.process_time() - started)
    return least


class TimedSigner:
    """A RequestSigner's `sign`, timed: how much of a call is signing."""

    def __init__(self, sign: Callable) -> None:
        self._sign = sign
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        started = time.process_time()
        try:
            return self._sign(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - started


def breakdown(payloads: list[bytes], settings: Settings, dialect: str = "redshift") -> dict[str, float]:
    """µs a record of each step, over `payloads` cut into the service's flushes."""
    settings = transport.fresh_warehouse(processor.bench_settings(settings, dialect), processor.ALL_IN_SCHEMA)
    session = transport.AnsweringSession()
    clients = transport.all_in_clients(settings, session)
    lines = [line for line in processor.daemon_lines(payloads) if '"processRecords"' in line]
    stream_records = [r for line in lines for r in load_action(line, _not_other_messages).records]
    rows = [parse(r) for r in stream_records]
    batches = list(_batches(rows, settings.flush_max_records))
    writer = BatchWriter(clients.dynamodb, settings.dynamodb_table)
    bodies = [call.body for batch in batches for call in write_calls(settings.dynamodb_table, batch.records)]
    signer = TimedSigner(clients.dynamodb._request_signer.sign)
    clients.dynamodb._request_signer.sign = signer
    sinks = build_sinks(settings, clients)
    count = len(rows)

    def each(function: Callable, items: Iterable) -> Callable[[], None]:
        return lambda: [function(item) for item in items]

    seconds = {
        "kcl_message": best_cpu(each(lambda line: load_action(line, _not_other_messages), lines)),
        "decode_validate": best_cpu(each(parse, stream_records)),
        "dynamodb_bodies": best_cpu(each(lambda b: list(write_calls(settings.dynamodb_table, b.records)), batches)),
        "raw_zone_gzip": best_cpu(each(lambda b: to_ndjson_gz(b.records, settings.raw_zone_gzip_level), batches)),
        # Once: a second load of a batch finds it in the ledger and skips the COPY.
        "warehouse": best_cpu(each(sinks.warehouse.write, batches), runs=1),
    }
    # A call's signing and the rest of it, from the run with the least CPU in all.
    calls = []
    for _ in range(RUNS):
        signer.seconds = 0.0
        calls.append((best_cpu(each(writer.send, bodies), runs=1), signer.seconds))
    total, signing = min(calls)
    seconds["dynamodb_signing"], seconds["dynamodb_calls"] = signing, total - signing
    seconds["raw_zone_put"] = max(0.0, best_cpu(each(sinks.raw_zone.write, batches)) - seconds["raw_zone_gzip"])
    return {step: round(seconds[step] * 1e6 / count, 2) for step in STEPS if step in seconds}


def _batches(rows: list, size: int) -> Iterable[Batch]:
    for start in range(0, len(rows), size):
        chunk = tuple(rows[start : start + size])
        yield Batch("shardId-steps", chunk, (), Position(str(start + 1)), Position(str(start + len(chunk))),
                    1_700_000_000_000)


def _not_other_messages(line: str):
    raise AssertionError(f"not a processRecords message: {line[:80]}")
