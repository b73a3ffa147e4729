"""Recording fakes for the consumer's edges (sinks, the checkpointer, the
metrics) and the records and batches they are given."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal

from consumer.batch import Batch, Position, StreamRecord
from consumer.checkpoints import LeaseLost
from consumer.sinks import SinkError
from retail_stream.schema import Transaction, encode, event_id


def transaction(line: int, customer: int | None = 17850, invoice: str = "536365") -> Transaction:
    source = f"{invoice}.csv"  # ids unique per invoice, so tests sharing a stack never collide
    return Transaction(
        event_id=event_id(source, line),
        invoice_no=invoice,
        stock_code="85123A",
        description="WHITE HANGING HEART T-LIGHT HOLDER",
        quantity=6,
        invoice_date=dt.datetime(2010, 12, 1, 8, 26),
        unit_price=Decimal("2.55"),
        customer_id=customer,
        country="United Kingdom",
        source=source,
        line=line,
    )


def stream_record(seq: int, data: bytes | None = None, arrival_ms: int = 1_700_000_000_000,
                  sub: int = 0) -> StreamRecord:
    return StreamRecord(
        data=encode(transaction(seq)) if data is None else data,
        sequence_number=str(seq),
        sub_sequence_number=sub,
        partition_key="c17850",
        arrival_ms=arrival_ms,
    )


def make_batch(records, first="1", last="9", dead=(), shard=None) -> Batch:
    """A batch from `first` to `last`: a sequence number, or a Position inside an aggregate."""
    shard = shard or f"shardId-{uuid.uuid4().hex[:12]}"
    first, last = (p if isinstance(p, Position) else Position(p) for p in (first, last))
    return Batch(shard, tuple(records), tuple(dead), first, last, 1_291_192_000_000)


def kcl_record(seq: int, data: bytes) -> dict:
    """A record as the MultiLangDaemon sends it over stdin."""
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": "c17850",
        "sequenceNumber": str(seq),
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": 1_700_000_000_000,
    }


class RecordingSink:
    """Fails its first `failures` writes (for good with `permanent`), then records batches."""

    after: tuple[str, ...] = ()

    def __init__(self, name: str, failures: int = 0, log: list | None = None, *, permanent: bool = False,
                 after: tuple[str, ...] = ()) -> None:
        self.name = name
        self.failures = failures
        self.permanent = permanent
        self.after = after
        self.batches: list[Batch] = []
        self.log = log if log is not None else []

    def write(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            self.log.append(f"{self.name}:fail")
            if self.permanent:
                raise SinkError(self.name, "access denied", "AccessDeniedException", resource="t", permanent=True)
            raise SinkError(self.name, "unavailable")
        self.batches.append(batch)
        self.log.append(f"{self.name}:{batch.last.sequence}")
        return len(batch.records)


class RecordingCheckpointer:
    def __init__(self, log: list | None = None, errors: list[Exception] | None = None) -> None:
        self.log = log if log is not None else []
        self.errors = list(errors or [])
        self.positions: list[str | None] = []
        self.subs: list[int | None] = []

    def checkpoint(self, sequence_number, sub_sequence_number) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.positions.append(sequence_number)
        self.subs.append(sub_sequence_number)
        self.log.append(f"checkpoint:{sequence_number}")


class LosingCheckpointer(RecordingCheckpointer):
    def checkpoint(self, sequence_number, sub_sequence_number) -> None:
        raise LeaseLost("ShutdownException")


class RecordingMetrics:
    """Every call the pipeline makes on its metrics, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))

    def named(self, name: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == name]
