"""Valid items into the stream, through the producer's own batching and
writer, with one outcome per item.

    checked items -> Entry(encode(record), key) -> pack() -> KinesisWriter.put_batch, batch by batch

Blocking (the writer sleeps between retries): the app runs it in a worker
thread. When Kinesis keeps refusing a batch (DeliveryError), the entries it
did not take and every later batch are "failed": the client may send the same
request again (same `source` and lines, so the same event_ids), and the sinks
keep one copy of what was written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from api.ingest import Checked
from producer.batching import Entry, pack
from producer.kinesis_writer import DeliveryError, KinesisWriter
from retail_stream.schema import encode

Status = Literal["accepted", "rejected", "failed"]
NOT_SENT = "not sent: Kinesis refused an earlier batch of this request"


@dataclass(frozen=True)
class Outcome:
    """What became of one item of a request."""

    index: int
    line: int | None
    status: Status
    event_id: str | None = None
    reason: str | None = None


def publish(checked: Sequence[Checked], writer: KinesisWriter) -> list[Outcome]:
    """Send every valid item to the stream; returns one outcome per item, in
    the request's order. Never raises for a delivery failure: it is in the outcomes."""
    outcomes: dict[int, Outcome] = {}
    by_entry: dict[int, Checked] = {}  # id(entry) -> its item
    entries = []
    for item in checked:
        if item.record is None:
            outcomes[item.index] = Outcome(item.index, item.line, "rejected", reason=item.reason)
            continue
        entry = Entry(encode(item.record), item.record.partition_key)
        by_entry[id(entry)] = item
        entries.append(entry)
    batches, refused = pack(entries)
    for entry, reason in refused:
        item = by_entry[id(entry)]
        outcomes[item.index] = Outcome(item.index, item.line, "rejected", reason=reason)
    failure: DeliveryError | None = None
    for batch in batches:
        not_taken: dict[int, str] = {}
        if failure is not None:
            not_taken = {id(entry): NOT_SENT for entry in batch}
        else:
            try:
                writer.put_batch(batch)
            except DeliveryError as exc:
                failure = exc
                not_taken = {id(f.entry): f"{f.error_code}: {f.error_message}" for f in exc.failed}
        for entry in batch:
            item = by_entry[id(entry)]
            record = item.record
            if record is None:  # only checked records are batched; a bug, not bad input
                raise RuntimeError(f"item {item.index} was sent without a record")
            if id(entry) in not_taken:
                outcomes[item.index] = Outcome(item.index, item.line, "failed", record.event_id, not_taken[id(entry)])
            else:
                outcomes[item.index] = Outcome(item.index, item.line, "accepted", record.event_id)
    return [outcomes[item.index] for item in checked]


def status_code(outcomes: Sequence[Outcome]) -> int:
    """The HTTP status of a request: 503 when any item failed (Kinesis kept
    refusing; send it again), else 202 when any was accepted, else 422 (every
    item rejected). Pure."""
    statuses = {o.status for o in outcomes}
    if "failed" in statuses:
        return 503
    if "accepted" in statuses:
        return 202
    return 422
