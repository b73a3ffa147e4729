"""Request bodies into records: what the producer does with a CSV file, for
one HTTP body. Pure.

    read_body(body, content type) -> [Candidate]   a JSON object, a JSON array of objects, or CSV
    check(candidates, source)     -> [Checked]     retail_stream.schema.parse_row, item by item

A body that cannot be read at all raises a `BodyError` (400, 413 or 415, the
status it maps to); an item that is not a valid transaction is rejected on
its own, with the reason `parse_row` gives, so one bad line never costs the
others. Every item is validated as the CSV row it stands for (its values as
strings, in column order), so the API accepts exactly what the producer
accepts, and an item's event_id is the one the producer gives that row:
`event_id(source, line)`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Sequence

import msgspec

from producer.csv_source import SourceError, read_stream
from retail_stream.schema import CSV_COLUMNS, MAX_INT32, InvalidRecord, Transaction, parse_row

JSON = "application/json"
CSV = "text/csv"
MEDIA_TYPES = (JSON, CSV)
LINE_KEY = "line"
MAX_SOURCE_CHARS = 255  # Transaction.source
# A JSON number with more digits than this is out of range for every column
# (and would cost a quadratic int -> str conversion).
_MAX_NUMBER_DIGITS = 64

# Untyped, so a wrong value is one item's problem, not the whole body's;
# non-integer numbers as exact Decimals, never through a float.
_json = msgspec.json.Decoder(float_hook=Decimal)


class BodyError(ValueError):
    """The body as a whole cannot be taken; `status_code` is the HTTP answer."""

    status_code = 400


class MalformedBody(BodyError):
    """Not JSON, not an object or an array of objects, not the Online Retail CSV."""

    status_code = 400


class TooLarge(BodyError):
    """More items than one request may hold."""

    status_code = 413


class UnsupportedMediaType(BodyError):
    status_code = 415


@dataclass(frozen=True)
class Candidate:
    """One item of a body, as read: the CSV row it stands for, or why it
    cannot stand for one. `index` is its 0-based position in the body; `line`
    the line its event_id derives from (None when its own `line` is unusable)."""

    index: int
    line: int | None
    fields: tuple[str, ...] | None
    problem: str | None = None


@dataclass(frozen=True)
class Checked:
    """An item after the schema: its record, or the reason it was rejected."""

    index: int
    line: int | None
    record: Transaction | None
    reason: str | None = None


def media_type(content_type: str | None) -> str:
    """The body's media type, one of MEDIA_TYPES. Raises UnsupportedMediaType
    for any other, and for a charset other than UTF-8."""
    if not content_type:
        raise UnsupportedMediaType(f"Content-Type is missing; send {JSON} or {CSV}")
    kind, *parameters = (part.strip() for part in content_type.split(";"))
    kind = kind.lower()
    if kind not in MEDIA_TYPES:
        raise UnsupportedMediaType(f"Content-Type {kind!r} is not supported; send {JSON} or {CSV}")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {value.strip()!r} is not supported; send UTF-8")
    return kind


def read_body(body: bytes, content_type: str | None, max_items: int) -> list[Candidate]:
    """Every item of `body`, in order. Raises UnsupportedMediaType, TooLarge
    (more than `max_items` items) or MalformedBody (including an empty body
    and one with no items)."""
    kind = media_type(content_type)
    if not body.strip():
        raise MalformedBody("the body is empty")
    candidates = read_csv(body, max_items) if kind == CSV else read_json(body, max_items)
    if not candidates:
        raise MalformedBody("the body holds no transactions")
    return candidates


def read_json(body: bytes, max_items: int) -> list[Candidate]:
    """A JSON object, or an array of objects, keyed by the CSV column names
    (values strings, numbers or null) with an optional integer `line`."""
    try:
        # RFC 8259 lets a parser ignore a byte-order mark; spreadsheets write one.
        document = _json.decode(body.removeprefix(b"\xef\xbb\xbf"))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedBody(f"the body is not JSON: {_first_line(exc)}") from None
    if isinstance(document, dict):
        items = [document]
    elif isinstance(document, list):
        items = document
    else:
        raise MalformedBody("the body must be a JSON object or an array of objects")
    if len(items) > max_items:
        raise TooLarge(f"the body holds {len(items)} items, more than the {max_items} a request may hold")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedBody(f"item {index} is not a JSON object")
    return _numbered([_candidate(index, item) for index, item in enumerate(items)])


def read_csv(body: bytes, max_items: int) -> list[Candidate]:
    """An Online Retail CSV with its header; each row's line is the physical
    line it starts on, as the producer numbers it."""
    candidates = []
    try:
        for line, fields in read_stream(io.BytesIO(body), "CSV body", "utf-8"):
            if len(candidates) == max_items:
                raise TooLarge(f"the body holds more than the {max_items} rows a request may hold")
            candidates.append(Candidate(len(candidates), line, tuple(fields)))
    except SourceError as exc:
        raise MalformedBody(str(exc)) from None
    return candidates


def check(candidates: Sequence[Candidate], source: str) -> list[Checked]:
    """Validate every candidate with the shared schema. Pure."""
    checked = []
    for candidate in candidates:
        if candidate.problem is not None or candidate.fields is None or candidate.line is None:
            checked.append(Checked(candidate.index, candidate.line, None, candidate.problem))
            continue
        try:
            record = parse_row(list(candidate.fields), source, candidate.line)
        except InvalidRecord as exc:
            checked.append(Checked(candidate.index, candidate.line, None, str(exc)))
        else:
            checked.append(Checked(candidate.index, candidate.line, record))
    return checked


def source_problem(source: str) -> str | None:
    """Why `source` cannot name a request's rows, or None. Pure."""
    if not 1 <= len(source) <= MAX_SOURCE_CHARS:
        return f"source must be 1 to {MAX_SOURCE_CHARS} characters"
    if not source.isprintable():
        return "source must hold printable characters only"
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        return "source is not valid Unicode text"
    return None


def _candidate(index: int, item: dict[str, Any]) -> Candidate:
    line = index + 1
    if LINE_KEY in item:
        value = item[LINE_KEY]
        if type(value) is not int or not 1 <= value <= MAX_INT32:
            return Candidate(index, None, None, f"line must be an integer from 1 to {MAX_INT32}")
        line = value
    unknown = [key for key in item if key not in CSV_COLUMNS and key != LINE_KEY]
    if unknown:
        return Candidate(
            index, line, None,
            f"unknown field {unknown[0]!r}: the fields are the CSV columns {', '.join(CSV_COLUMNS)} and line",
        )
    fields = []
    for column in CSV_COLUMNS:
        text, problem = _as_text(item.get(column), column)
        if problem:
            return Candidate(index, line, None, problem)
        fields.append(text)
    return Candidate(index, line, tuple(fields))


def _as_text(value: object, column: str) -> tuple[str, str | None]:
    """A JSON value as the text a CSV cell would hold: (text, problem)."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value, None
    if isinstance(value, bool):  # before int: True is an int to Python
        return "", f"{column} must be a string or a number, not a boolean"
    if isinstance(value, int):
        if abs(value) >= 10**_MAX_NUMBER_DIGITS:
            return "", f"{column} is out of range"
        return str(value), None
    if isinstance(value, Decimal):
        if value.is_finite() and abs(value.adjusted()) <= _MAX_NUMBER_DIGITS and -value.as_tuple().exponent <= _MAX_NUMBER_DIGITS:
            return format(value, "f"), None
        return "", f"{column} is out of range"
    kind = "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else type(value).__name__
    return "", f"{column} must be a string or a number, not {kind}"


def _numbered(candidates: list[Candidate]) -> list[Candidate]:
    """Reject every item after the first that claims a line already used: two
    items with one line would have one event_id, and one would overwrite the other."""
    seen: dict[int, int] = {}
    result = []
    for candidate in candidates:
        if candidate.line is not None and candidate.line in seen:
            candidate = Candidate(
                candidate.index, candidate.line, None,
                f"line {candidate.line} is also item {seen[candidate.line]}'s: lines must be unique in a request",
            )
        elif candidate.line is not None:
            seen[candidate.line] = candidate.index
        result.append(candidate)
    return result


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
