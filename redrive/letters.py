"""Dead letters as the re-drive sees them, all pure: a stored letter read
back, its event id, what re-driving it would send (or why not), its mark.

A re-drive puts the record back on the stream, so the consumer writes it to
every sink as it writes any record; DynamoDB and the warehouse are keyed by
event id, so the record must keep the one it had. A letter whose bytes carry
a valid id keeps it; one whose bytes carry none (not JSON, another writer's
shape) gets one made from its place in the stream, so every re-drive of it
sends the same id.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import msgspec

from producer.batching import Entry, UnsendableEntry, check_entry
from retail_stream.schema import InvalidRecord, Transaction, decode, encode

# `<key>.redriven.json` beside the letter: one listing of a day shows letters and marks together.
MARK_SUFFIX = ".redriven.json"
LETTER_SUFFIX = ".ndjson"
_EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
_DAY = re.compile(r"/dt=(\d{4}-\d{2}-\d{2})/")


class UnreadableLetter(ValueError):
    """An object under the dead-letter prefix that is not a dead letter as
    the consumer writes them (consumer/sinks/dead_letters.py)."""


@dataclass(frozen=True)
class StoredLetter:
    """One dead letter as the consumer stored it."""

    key: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    arrival_ms: int
    reason: str
    data: bytes

    @property
    def arrival(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.arrival_ms / 1000, dt.timezone.utc)


def from_line(key: str, body: bytes) -> StoredLetter:
    """The letter in a dead-letter object (the consumer's `to_line`, read
    back). Raises UnreadableLetter."""
    try:
        fields = json.loads(body)
        return StoredLetter(key, str(fields["shard_id"]), str(fields["sequence_number"]),
                            int(fields["sub_sequence_number"]), str(fields["partition_key"]),
                            int(fields["arrival_ms"]), str(fields["reason"]),
                            base64.b64decode(fields["data_base64"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise UnreadableLetter(f"{key}: not a dead letter ({type(exc).__name__}: {exc})") from None


def is_letter_key(key: str, prefix: str) -> bool:
    """A dead letter's own key (not its mark, not a stranger) under `prefix`. Pure."""
    return key.startswith(f"{prefix}/dt=") and key.endswith(LETTER_SUFFIX)


def mark_key(letter_key: str) -> str:
    return letter_key + MARK_SUFFIX


def day_of(key: str) -> str | None:
    """The `dt=` arrival day a letter or mark key is filed under. Pure."""
    found = _DAY.search(key)
    return found.group(1) if found else None


def derived_event_id(shard_id: str, sequence_number: str, sub_sequence_number: int) -> str:
    """The event id of a record that came without one: made from its place in
    the stream, which no other record shares, so it is the same on every re-drive."""
    return hashlib.blake2b(f"dead-letter\n{shard_id}\n{sequence_number}\n{sub_sequence_number}".encode(),
                           digest_size=16).hexdigest()


def json_object(data: bytes) -> dict[str, Any] | None:
    """`data` as a JSON object, or None when it is not one. Numbers with a
    fraction come back as Decimal, so a price goes out as it came in."""
    try:
        found = json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):  # not JSON, not UTF-8
        return None
    return found if isinstance(found, dict) else None


_exact = msgspec.json.Encoder(decimal_format="number")


def to_json(found: dict[str, Any]) -> bytes:
    """A JSON object as `json_object` read it, written back with exact numbers."""
    return _exact.encode(found)


def event_id_of(letter: StoredLetter) -> str:
    """The id the record keeps on every re-drive: the one in its bytes when
    they carry a valid one, else `derived_event_id`."""
    found = (json_object(letter.data) or {}).get("event_id")
    if isinstance(found, str) and _EVENT_ID.match(found):
        return found
    return derived_event_id(letter.shard_id, letter.sequence_number, letter.sub_sequence_number)


def editable(letter: StoredLetter) -> dict[str, Any]:
    """What `redrive show` prints for a user to fix: the record's JSON object
    with its event id, or, when the bytes are no JSON object, every field of
    the record empty but the event id."""
    found = json_object(letter.data)
    if found is None:
        found = {name: None for name in Transaction.__struct_fields__}
    return {**found, "event_id": event_id_of(letter)}


@dataclass(frozen=True)
class Resend:
    """What re-driving a letter sends: its record's bytes (with the letter's
    event id), under the record's own partition key."""

    letter: StoredLetter
    event_id: str
    data: bytes
    partition_key: str

    @property
    def entry(self) -> Entry:
        return Entry(self.data, self.partition_key)

    @property
    def size(self) -> int:
        """Bytes it counts against a PutRecords call."""
        return self.entry.size

    @property
    def changed(self) -> bool:
        """Sent bytes other than the stored ones: a data fix, or an event id added."""
        return self.data != self.letter.data


@dataclass(frozen=True)
class Refusal:
    """A letter that will not be sent, and why."""

    letter: StoredLetter
    reason: str


def plan(letter: StoredLetter, fix: bytes | None = None) -> Resend | Refusal:
    """What a re-drive of `letter` sends: the stored bytes (after a schema
    fix) or `fix`, a corrected record (after a data fix); checked with the
    consumer's own schema, so a record it would dead-letter again is refused
    here, with the reason. The event id is the letter's (`event_id_of`): a fix
    without one gets it, a fix with another one is refused."""
    event_id = event_id_of(letter)
    source = letter.data if fix is None else fix
    if fix is None:
        try:
            record = decode(source)
        except InvalidRecord:
            record = None
        if record is not None and record.event_id == event_id:
            return _sendable(letter, event_id, source, record)  # the very bytes that were refused
    found = json_object(source)
    if found is None:
        what = "the fix" if fix is not None else "the stored record"
        return Refusal(letter, f"{what} is not a JSON object: fix the data (redrive show, then send --data)")
    given = found.get("event_id")
    if fix is not None and given is not None and given != event_id:
        return Refusal(letter, f"the fix changes the event id ({event_id} to {given}): "
                               "a re-driven record keeps its id, so every sink can tell it is the same")
    try:
        record = decode(to_json({**found, "event_id": event_id}))
    except InvalidRecord as exc:
        return Refusal(letter, f"would be dead-lettered again: {exc}")
    return _sendable(letter, event_id, encode(record), record)


def _sendable(letter: StoredLetter, event_id: str, data: bytes, record: Transaction) -> Resend | Refusal:
    resend = Resend(letter, event_id, data, record.partition_key)
    try:
        check_entry(resend.entry)
    except UnsendableEntry as exc:
        return Refusal(letter, f"Kinesis would refuse it: {exc}")
    return resend


@dataclass(frozen=True)
class Mark:
    """That a letter was re-driven: when, by whom, as which event, and where
    the re-sent record landed in the stream."""

    letter_key: str
    redriven_at: dt.datetime
    by: str
    event_id: str
    stream: str
    shard_id: str
    sequence_number: str
    sent_base64: str | None  # the bytes sent, when not the stored ones
    forced: bool = False
    previous: dict[str, Any] | None = None  # the mark a forced re-drive replaced

    @classmethod
    def of(cls, resend: Resend, *, at: dt.datetime, by: str, stream: str, shard_id: str, sequence_number: str,
           forced: bool = False, previous: dict[str, Any] | None = None) -> Mark:
        sent = base64.b64encode(resend.data).decode("ascii") if resend.changed else None
        return cls(resend.letter.key, at, by, resend.event_id, stream, shard_id, sequence_number, sent,
                   forced, previous)

    def as_dict(self) -> dict[str, Any]:
        return {"dead_letter": self.letter_key, "redriven_at": self.redriven_at.isoformat(), "by": self.by,
                "event_id": self.event_id, "stream": self.stream, "shard_id": self.shard_id,
                "sequence_number": self.sequence_number, "sent_base64": self.sent_base64,
                "forced": self.forced, "previous": self.previous}

    def body(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode() + b"\n"


def sent_before(mark: dict[str, Any] | None) -> bytes | None:
    """The record an earlier re-drive sent when it was not the stored bytes
    (a fixed record, kept in its mark), so a forced re-drive sends it again;
    None otherwise."""
    sent = (mark or {}).get("sent_base64")
    return base64.b64decode(sent) if sent else None


@dataclass(frozen=True)
class Chosen:
    """Which letters a command is about: arrival days (inclusive, either end
    open) and a reason substring (case-insensitive)."""

    first: dt.date | None = None
    last: dt.date | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.first and self.last and self.last < self.first:
            raise ValueError(f"the days end ({self.last}) before they start ({self.first})")

    def holds_day(self, day: str | None) -> bool:
        return day is not None and (self.first is None or day >= self.first.isoformat()) and (
            self.last is None or day <= self.last.isoformat())

    def holds(self, letter: StoredLetter) -> bool:
        return self.holds_day(day_of(letter.key)) and (
            self.reason is None or self.reason.lower() in letter.reason.lower())


def counts_by_reason(letters: Iterable[tuple[StoredLetter, bool]]) -> dict[str, dict[str, int]]:
    """{reason: {"pending": n, "redriven": n}} over (letter, marked) pairs,
    the most frequent reason first. Pure."""
    counts: dict[str, dict[str, int]] = {}
    for letter, marked in letters:
        tally = counts.setdefault(letter.reason, {"pending": 0, "redriven": 0})
        tally["redriven" if marked else "pending"] += 1
    return dict(sorted(counts.items(), key=lambda item: (-sum(item[1].values()), item[0])))
