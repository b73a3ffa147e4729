"""The transaction record: one row of an Online Retail CSV, typed.

The producer builds records from CSV rows (`parse_row`); both services encode
and decode the wire form (`encode`, `decode`) with the same rules, so a record
the consumer accepts is exactly one the producer could have sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal
from typing import Annotated, Iterable

import msgspec

# The header of the Online Retail data set, in order.
CSV_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

# Bounds that keep every value loadable into the warehouse columns (retail_stream/sql/schema.sql).
MAX_INT32 = 2**31 - 1
PRICE_MAX_ABS = Decimal("1e14")
PRICE_MAX_DECIMALS = 4
_EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
# ASCII only: int() and Decimal() would also take "1_000" and other scripts' digits.
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
# Control characters the warehouse refuses (NUL above all); tab and line breaks are text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Key columns are VARCHAR(32), which Redshift measures in bytes.
KEY_MAX_BYTES = 32
_KEY_SAFE_CHARS = KEY_MAX_BYTES // 4  # at most 4 bytes a character: no longer key can be too long

ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Text = Annotated[str, msgspec.Meta(max_length=255)]


class InvalidRecord(ValueError):
    """A row or record that breaks the schema; the message is the reason."""


class Transaction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One invoice line. Field order is the wire order."""

    event_id: str
    invoice_no: ShortText
    stock_code: ShortText
    description: Text | None
    quantity: int
    invoice_date: dt.datetime
    unit_price: Decimal
    customer_id: int | None
    country: Text | None
    source: Text
    line: int

    def __post_init__(self) -> None:
        # msgspec turns these into ValidationError on decode.
        if not _EVENT_ID.match(self.event_id):
            raise ValueError("event_id must be 32 lowercase hex digits")
        if not -MAX_INT32 <= self.quantity <= MAX_INT32:
            raise ValueError("quantity out of range")
        _check_price(self.unit_price)
        if self.customer_id is not None and not 0 < self.customer_id <= MAX_INT32:
            raise ValueError("customer_id out of range")
        if self.invoice_date.tzinfo is not None:
            raise ValueError("invoice_date must carry no time zone")
        if self.line < 1:
            raise ValueError("line must be positive")
        # This runs for every record consumed: the two keys and the text scan
        # below are written out for as few Python operations as they can take.
        invoice_no, stock_code = self.invoice_no, self.stock_code
        # A character is at most 4 bytes: a short value needs no encoding to pass.
        if len(invoice_no) > _KEY_SAFE_CHARS and len(invoice_no.encode()) > KEY_MAX_BYTES:
            raise ValueError(f"invoice_no longer than {KEY_MAX_BYTES} bytes")
        if len(stock_code) > _KEY_SAFE_CHARS and len(stock_code.encode()) > KEY_MAX_BYTES:
            raise ValueError(f"stock_code longer than {KEY_MAX_BYTES} bytes")
        texts = (invoice_no, stock_code, self.description or "", self.country or "", self.source)
        text = "".join(texts)
        # One scan for all, and only a bad record looks for which. No control
        # character is printable, so a printable text (nearly every one)
        # needs no regex, which costs twice isprintable().
        if not text.isprintable() and _CONTROL.search(text):
            name = next(n for n, v in zip(_TEXT_FIELDS, texts) if _CONTROL.search(v))
            raise ValueError(f"{name} contains a control character")

    @property
    def partition_key(self) -> str:
        """Kinesis partition key: one customer's records stay on one shard, in
        order; rows without a customer spread by invoice."""
        if self.customer_id is not None:
            return f"c{self.customer_id}"
        return f"i{self.invoice_no}"


def _check_price(price: Decimal) -> None:
    if not price.is_finite() or abs(price) >= PRICE_MAX_ABS:
        raise ValueError("unit_price out of range")
    # Trailing zeros are fine ("2.55000"); digits the column would round away are not.
    if price != price.quantize(_PRICE_STEP):
        raise ValueError(f"unit_price has more than {PRICE_MAX_DECIMALS} decimal places")


_PRICE_STEP = Decimal(1).scaleb(-PRICE_MAX_DECIMALS)
_TEXT_FIELDS = ("invoice_no", "stock_code", "description", "country", "source")

_encoder = msgspec.json.Encoder(decimal_format="number")
_decoder = msgspec.json.Decoder(Transaction)


def encode(record: Transaction) -> bytes:
    """Wire form: compact JSON, UnitPrice as an exact JSON number."""
    return _encoder.encode(record)


def encode_lines(records: Iterable[Transaction]) -> bytes:
    """Each record's wire form followed by a newline (NDJSON), in one pass in C."""
    return _encoder.encode_lines(records)


def decode(data: bytes) -> Transaction:
    """Parse and validate one wire record; raises InvalidRecord with the reason."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidRecord(str(exc)) from None


# `decode` without the wrapper, for a caller that decodes every record it
# consumes (consumer.parse): raises msgspec.DecodeError, whose str() is
# decode's reason.
decode_wire = _decoder.decode


def event_id(source: str, line: int) -> str:
    """Stable id of a source row: the same file and line give the same id."""
    return hashlib.blake2b(f"{source}\n{line}".encode(), digest_size=16).hexdigest()


def parse_row(fields: list[str], source: str, line: int) -> Transaction:
    """Turn one CSV row (already split) into a Transaction.

    Pure. Raises InvalidRecord naming the first field that is wrong.
    """
    if len(fields) != len(CSV_COLUMNS):
        raise InvalidRecord(f"expected {len(CSV_COLUMNS)} fields, found {len(fields)}")
    invoice, stock, description, quantity, date, price, customer, country = (f.strip() for f in fields)
    # pandas and Spark exports write a missing value as `nan` / `NaN`.
    description, customer, country = ("" if v in _MISSING else v for v in (description, customer, country))
    if not invoice:
        raise InvalidRecord("InvoiceNo is empty")
    if not stock:
        raise InvalidRecord("StockCode is empty")
    try:
        return Transaction(
            event_id=event_id(source, line),
            invoice_no=_text(invoice, "InvoiceNo", 32),
            stock_code=_text(stock, "StockCode", 32),
            description=_text(description, "Description", 255) or None,
            quantity=_integer(quantity, "Quantity"),
            invoice_date=parse_invoice_date(date),
            unit_price=_price(price),
            customer_id=_customer(customer),
            country=_text(country, "Country", 255) or None,
            source=source,
            line=line,
        )
    except ValueError as exc:
        raise InvalidRecord(str(exc)) from None


_MISSING = frozenset({"nan", "NaN"})


def _text(value: str, name: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidRecord(f"{name} longer than {limit} characters")
    return value


def _integer(value: str, name: str) -> int:
    if not _INTEGER.match(value):
        raise InvalidRecord(f"{name} is not an integer: {value!r}")
    return int(value)


def _price(value: str) -> Decimal:
    if not _DECIMAL.match(value):
        raise InvalidRecord(f"UnitPrice is not a number: {value!r}")
    price = Decimal(value)
    try:
        _check_price(price)
    except ValueError as exc:
        raise InvalidRecord(f"UnitPrice {value!r}: {exc}") from None
    return price


def _customer(value: str) -> int | None:
    if not value:
        return None
    number = Decimal(value) if _DECIMAL.match(value) else Decimal("NaN")
    # The data set writes ids as floats ("17850.0"); anything fractional is wrong.
    if not number.is_finite() or number != number.to_integral_value() or not 0 < number <= MAX_INT32:
        raise InvalidRecord(f"CustomerID is not a positive integer: {value!r}")
    return int(number)


def parse_invoice_date(value: str) -> dt.datetime:
    """`12/1/2010 8:26` (M/D/YYYY H:MM[:SS], the data set's form) or ISO 8601.

    An ISO value with an offset is converted to UTC; the result is naive.
    """
    try:
        if "/" in value:
            day_part, _, time_part = value.partition(" ")
            month, day, year = day_part.split("/")
            clock = [int(p) for p in time_part.split(":")] if time_part else [0, 0]
            if len(clock) == 2:
                clock.append(0)
            hour, minute, second = clock
            return dt.datetime(int(year), int(month), int(day), hour, minute, second)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"InvoiceDate is not a date: {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed
