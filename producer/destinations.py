"""Where a replay's rows go: the one seam between "straight into Kinesis" and
"through the HTTP API" (`--via-api`, producer/api_destination.py).

A destination turns a CSV row into something a batch holds (`prepare`),
makes the builder that packs those into batches within its limits, and sends
a batch (`send`). The replay does the rest the same way for both: reading,
pacing, the rejects file and the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from producer.batching import MAX_BATCH_RECORDS, BatchBuilder, Builder, Entry
from producer.kinesis_writer import KinesisWriter, WriterStats
from retail_stream.schema import encode, parse_row


@dataclass(frozen=True)
class Refusal:
    """A row the far side refused on its own merits (not a delivery failure);
    it goes to the rejects file like a row refused locally."""

    source_id: str
    line: int
    fields: tuple[str, ...]
    reason: str


class Destination(Protocol):
    # What got through and how hard the far side pushed back (the summary's figures).
    stats: WriterStats

    def prepare(self, source_id: str, line: int, fields: list[str]) -> Any:
        """What a batch holds for this row. Pure. Raises InvalidRecord or
        UnsendableEntry, with the reason, for a row refused here."""
        ...

    def batch_builder(self, max_records: int | None) -> Builder:
        """A builder packing prepared rows into batches this destination
        takes, at most `max_records` rows a batch (None: as many as fit)."""
        ...

    def send(self, batch: Sequence[Any]) -> list[Refusal]:
        """Deliver `batch`, blocking until it is delivered; returns the rows
        the far side refused. Raises DeliveryError when delivery keeps failing."""
        ...


class KinesisDestination:
    """Rows parsed here (`parse_row`) and written with PutRecords."""

    def __init__(self, writer: KinesisWriter) -> None:
        self._writer = writer
        self.stats = writer.stats

    def prepare(self, source_id: str, line: int, fields: list[str]) -> Entry:
        record = parse_row(fields, source_id, line)
        return Entry(encode(record), record.partition_key)

    def batch_builder(self, max_records: int | None) -> BatchBuilder:
        return BatchBuilder(max_records=max_records or MAX_BATCH_RECORDS)

    def send(self, batch: Sequence[Entry]) -> list[Refusal]:
        self._writer.put_batch(batch)
        return []  # every row that parsed is a record Kinesis takes, or a DeliveryError
