"""The first step of a shard's flow: a stream record's bytes as a transaction,
or as a dead letter that says why not."""

from __future__ import annotations

import msgspec

from consumer.batch import DeadLetter, StreamRecord
from consumer.kpl import undecodable_reason
from retail_stream.schema import Transaction, decode_wire


def parse(record: StreamRecord) -> Transaction | DeadLetter:
    """The record's transaction, or a dead letter holding the record and the
    reason it is not one (a corrupt KPL aggregate named as such). Pure; never raises
    for bad input."""
    try:
        return decode_wire(record.data)  # schema.decode's decoder without its wrapper: run per record
    except msgspec.DecodeError as exc:  # schema.decode's reason too: str() of it
        return DeadLetter(record, undecodable_reason(record.data, str(exc)))
