"""The first step of a shard's flow: a stream record's bytes as a transaction,
or as a dead letter that says why not."""

from __future__ import annotations

from consumer.batch import DeadLetter, StreamRecord
from consumer.kpl import undecodable_reason
from retail_stream.schema import InvalidRecord, Transaction, decode


def parse(record: StreamRecord) -> Transaction | DeadLetter:
    """The record's transaction, or a dead letter holding the record and the
    reason it is not one (a corrupt KPL aggregate named as such). Pure; never raises
    for bad input."""
    try:
        return decode(record.data)
    except InvalidRecord as exc:
        return DeadLetter(record, undecodable_reason(record.data, str(exc)))
