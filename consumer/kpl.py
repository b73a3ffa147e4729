"""What the consumer knows of KPL aggregation: the KCL does the rest.

The KCL takes the user records out of every well-formed KPL aggregate and
hands each one over with the aggregate's sequence number and its own
sub-sequence number (consumer.batch.Position). An aggregate whose framing is
corrupt (MD5 trailer wrong, protobuf truncated) reaches the processor whole,
as one plain record that starts with the aggregation magic: it is then bad
input like any other, and its dead letter says what it is.
"""

from __future__ import annotations

MAGIC = b"\xf3\x89\x9a\xc2"
BAD_AGGREGATE = "KPL aggregated record with corrupt framing (MD5 trailer or protobuf), left whole by the KCL"


def undecodable_reason(data: bytes, reason: str) -> str:
    """Why `data` is not a transaction, naming a corrupt aggregate as such. Pure."""
    return f"{BAD_AGGREGATE}: {reason}" if data.startswith(MAGIC) else reason
