"""A reconciliation's window, and the raw zone's rows in it.

The raw zone is the reference: every row the consumer accepted is in one of
its objects (or several, when a re-read shard cut a batch differently), and
its keys are partitioned by arrival day (`dt=`). So a window is a run of
arrival days, read by listing those partitions: the cost follows the
window, never the size of the stores. Invoice days narrow it further.

An hourly window is the objects *written* in those hours (S3's
LastModified, set once: objects are create-only): each object falls in
exactly one hour, so hourly runs neither miss nor repeat one, and an
object is written within a flush (FLUSH_MAX_AGE_SECONDS) of its rows'
arrival. Its days are listed (cheap: a thousand keys a request), but only
its hours' objects are read.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable

from consumer.sinks.raw_zone import ObjectName, from_ndjson_gz, parse_object_key
from retail_stream.progress import Progress
from retail_stream.schema import Transaction

READ_THREADS = 8


@dataclass(frozen=True)
class Window:
    """Arrival days `first`..`last` (UTC, inclusive); rows whose invoice day
    is outside `invoice_from`..`invoice_to` (when given) are left out."""

    first: dt.date
    last: dt.date
    invoice_from: dt.date | None = None
    invoice_to: dt.date | None = None
    written_from: dt.datetime | None = None  # with written_to: only objects written in [from, to), UTC
    written_to: dt.datetime | None = None

    def __post_init__(self) -> None:
        if (self.written_from is None) != (self.written_to is None):
            raise ValueError("a written window needs both ends")
        if self.written_from and self.written_to and self.written_to <= self.written_from:
            raise ValueError(f"the hours end ({self.written_to}) before they start ({self.written_from})")
        if self.last < self.first:
            raise ValueError(f"the window ends ({self.last}) before it starts ({self.first})")
        if self.invoice_from and self.invoice_to and self.invoice_to < self.invoice_from:
            raise ValueError(f"the invoice days end ({self.invoice_to}) before they start ({self.invoice_from})")

    @classmethod
    def last_hours(cls, hours: int, before: dt.datetime) -> Window:
        """The last `hours` whole clock hours ending at or before `before`
        (UTC). Their objects' `dt=` day may be the day before the hour (a
        batch's first row arrived before midnight), so that day is listed too."""
        if hours < 1:
            raise ValueError("--hours must be at least 1")
        end = before.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(hours=hours)
        return cls(start.date() - dt.timedelta(days=1), (end - dt.timedelta(microseconds=1)).date(),
                   written_from=start, written_to=end)

    def written(self, when: dt.datetime) -> bool:
        """Whether an object written at `when` is in the window's hours (always, without hours)."""
        return self.written_from is None or self.written_from <= when < self.written_to

    @classmethod
    def last_days(cls, days: int, today: dt.date) -> Window:
        """The last `days` arrival days, today included."""
        if days < 1:
            raise ValueError("--days must be at least 1")
        return cls(today - dt.timedelta(days=days - 1), today)

    def days(self) -> list[str]:
        """Every arrival day, as the raw zone's `dt=` spells it. Pure."""
        return [(self.first + dt.timedelta(days=n)).isoformat() for n in range((self.last - self.first).days + 1)]

    def holds(self, row: Transaction) -> bool:
        day = row.invoice_date.date()
        return (self.invoice_from is None or day >= self.invoice_from) and (
            self.invoice_to is None or day <= self.invoice_to)

    def as_dict(self) -> dict:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(),
                "invoice_from": self.invoice_from and self.invoice_from.isoformat(),
                "invoice_to": self.invoice_to and self.invoice_to.isoformat(),
                "written_from": self.written_from and self.written_from.isoformat(),
                "written_to": self.written_to and self.written_to.isoformat()}


@dataclass(frozen=True, slots=True)
class RawRow:
    """One event as the raw zone holds it, and the first object it was found in."""

    event_id: str
    invoice_no: str
    invoice_date: dt.datetime
    quantity: int
    amount: Decimal  # quantity x unit price, exact
    found_in: ObjectName

    @classmethod
    def of(cls, row: Transaction, found_in: ObjectName) -> RawRow:
        return cls(row.event_id, row.invoice_no, row.invoice_date, row.quantity, row.quantity * row.unit_price,
                   found_in)


@dataclass(frozen=True)
class RawWindow:
    objects: tuple[ObjectName, ...]  # read
    settling: tuple[str, ...]  # keys too recent to judge: their loads may still be under way
    listed: frozenset[str]  # every key under the window's days, in its hours or not
    records: int  # lines read, repeats included
    rows: dict[str, RawRow]  # by event id, each once


def listed_objects(s3: Any, bucket: str, prefix: str, days: Iterable[str]) -> list[dict]:
    """Every object under the days' `dt=` partitions (ListObjectsV2 entries)."""
    found = []
    paginator = s3.get_paginator("list_objects_v2")
    for day in days:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/dt={day}/"):
            found.extend(page.get("Contents", []))
    return found


def read_window(s3: Any, bucket: str, prefix: str, window: Window, *, settle_seconds: float,
                now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                progress: Progress | None = None) -> RawWindow:
    """The window's raw-zone rows. Objects written in the last `settle_seconds`
    are set aside (named in `settling`), with keys that are not the raw
    zone's; their rows are neither read nor judged."""
    cutoff = now() - dt.timedelta(seconds=settle_seconds)
    names, settling = [], []
    listed = listed_objects(s3, bucket, prefix, window.days())
    for entry in listed:
        name = parse_object_key(entry["Key"])
        if name is None or not window.written(entry["LastModified"]):
            continue
        (settling if entry["LastModified"] > cutoff else names).append(name)

    def read(name: ObjectName) -> tuple[ObjectName, list[Transaction]]:
        return name, from_ndjson_gz(s3.get_object(Bucket=bucket, Key=name.key)["Body"].read())

    rows: dict[str, RawRow] = {}
    records = 0
    if progress:
        progress.total = len(names)
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for done, (name, found) in enumerate(pool.map(read, names), 1):  # in key order: a row's first object is stable
            records += len(found)
            for row in found:
                if row.event_id not in rows and window.holds(row):
                    rows[row.event_id] = RawRow.of(row, name)
            if progress:
                progress.show(done, f"{records:,} records")
    if progress:
        progress.close(len(names), f"{records:,} records")
    return RawWindow(tuple(names), tuple(e.key for e in settling), frozenset(e["Key"] for e in listed), records,
                     rows)
