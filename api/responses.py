"""The API's bodies as msgspec structs: what the handlers return, and through
Litestar, the OpenAPI document's schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Sequence

import msgspec

from api.publish import Outcome
from retail_stream.schema import Transaction

# An exact decimal, as a JSON string: a JSON number would become a float in
# most clients (the stream's wire records carry it as an exact JSON number).
DecimalText = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^-?[0-9]+(\.[0-9]+)?$",
        description="exact decimal as a string, e.g. \"2.55\"",
        examples=["2.55"],
    ),
]
LocalDateTime = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?$",
        description="ISO 8601 date and time with no offset, as in the data set",
        examples=["2010-12-01T08:26:00"],
    ),
]


class ItemResult(msgspec.Struct, omit_defaults=True):
    """One item of a POST /transactions body: accepted (in the stream),
    rejected (not a valid transaction: `reason`) or failed (valid, but Kinesis
    kept refusing it: send it again)."""

    index: Annotated[int, msgspec.Meta(ge=0, description="0-based position of the item in the body")]
    line: Annotated[int | None, msgspec.Meta(description="the line its event_id derives from")]
    status: Literal["accepted", "rejected", "failed"]
    event_id: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, outcome: Outcome) -> ItemResult:
        return cls(outcome.index, outcome.line, outcome.status, outcome.event_id, outcome.reason)


class IngestResult(msgspec.Struct):
    """The answer to POST /transactions, whatever its status (202, 422, 503)."""

    source: Annotated[str, msgspec.Meta(description="the source the event_ids derive from")]
    items: int
    accepted: int
    rejected: int
    failed: int
    results: list[ItemResult]

    @classmethod
    def of(cls, source: str, outcomes: Sequence[Outcome]) -> IngestResult:
        counts = {status: sum(1 for o in outcomes if o.status == status) for status in ("accepted", "rejected", "failed")}
        return cls(source, len(outcomes), **counts, results=[ItemResult.of(o) for o in outcomes])


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error the API answers with (400, 404, 405, 413, 415, 503, 500)."""

    status_code: int
    detail: str
    extra: Any = None  # for a request that fails validation: which parameter, and why


class TransactionView(msgspec.Struct):
    """One stored transaction, in the record format (retail_stream/schema.py)."""

    event_id: str
    invoice_no: str
    stock_code: str
    description: str | None
    quantity: int
    invoice_date: LocalDateTime
    unit_price: DecimalText
    customer_id: int | None
    country: str | None
    source: str
    line: int

    @classmethod
    def of(cls, record: Transaction) -> TransactionView:
        return cls(
            event_id=record.event_id,
            invoice_no=record.invoice_no,
            stock_code=record.stock_code,
            description=record.description,
            quantity=record.quantity,
            invoice_date=record.invoice_date.isoformat(),
            unit_price=format(record.unit_price, "f"),
            customer_id=record.customer_id,
            country=record.country,
            source=record.source,
            line=record.line,
        )


class CustomerTransactions(msgspec.Struct):
    customer_id: int
    items: list[TransactionView]
    next_cursor: Annotated[str | None, msgspec.Meta(description="pass as `cursor` for the next page; null on the last")]


class InvoiceLines(msgspec.Struct):
    invoice_no: str
    items: list[TransactionView]


class Health(msgspec.Struct):
    status: Literal["ok"] = "ok"
