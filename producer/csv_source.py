"""Reading Online Retail CSV files as they really come.

UTF-8 with or without a byte-order mark, CRLF or LF line endings, quoted
fields holding commas, doubled quotes or line breaks, non-ASCII text. Rows
are streamed one at a time, each with the physical line it starts on, so a
reject can point at the exact place in the file.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import BinaryIO, Iterator

from retail_stream.schema import CSV_COLUMNS, InvalidRecord, Transaction, parse_row


class SourceError(Exception):
    """The file as a whole cannot be read: missing, unreadable, not UTF-8, not
    CSV, or not the Online Retail header. The message names the file and, when
    known, the line."""


Row = tuple[int, list[str]]


def read_rows(path: Path | str) -> Iterator[Row]:
    """Yield `(line_number, fields)` for every data row of the CSV at `path`.

    `line_number` is the physical line the row starts on (the header is line
    1), so a quoted field spanning several lines moves the next row's number
    on by as many lines. Blank lines are skipped (they are not rows); rows with
    the wrong number of fields are yielded as they are, for the caller to
    reject. Streams the file: memory is bounded by the longest row.

    Raises SourceError (lazily, when iteration reaches the problem) if the file
    cannot be opened or read, if the header is not CSV_COLUMNS, or at the first
    line that is not valid UTF-8 or not valid CSV; rows before that point have
    already been yielded.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        yield from read_stream(handle, path)


def check_source(path: Path | str) -> None:
    """Open `path` and check its header, reading only the first line.

    For a run over several files: refuse a bad one before anything is sent.
    Raises SourceError as `read_rows` would.
    """
    for _ in read_rows(path):
        break


def read_stream(handle: BinaryIO, path: Path | str) -> Iterator[Row]:
    """`read_rows` over an open binary stream (a file, or an HTTP body in a
    BytesIO); `path` only names it in error messages. Same rows, same line
    numbers, same SourceErrors; does not close `handle`."""
    lines = _decoded_lines(handle, path)
    reader = csv.reader(lines, dialect="excel")
    last_line = 0  # the physical line the previous row ended on
    while True:
        start = last_line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise SourceError(f"{path}: line {start}: malformed CSV: {exc}") from None
        last_line = reader.line_num
        if start == 1:
            check_header(fields, path)
            continue
        if fields:
            yield start, fields
    if last_line == 0:
        raise SourceError(f"{path}: empty file, expected the header {','.join(CSV_COLUMNS)}")


def check_header(fields: list[str], path: Path | str = "<csv>") -> None:
    """Raise SourceError unless `fields` is CSV_COLUMNS (whitespace around a
    name is tolerated: spreadsheet exports sometimes pad it)."""
    if tuple(f.strip() for f in fields) != CSV_COLUMNS:
        raise SourceError(
            f"{path}: line 1: header is {','.join(fields)!r}, expected {','.join(CSV_COLUMNS)!r}"
        )


def _decoded_lines(handle: BinaryIO, path: Path | str) -> Iterator[str]:
    """The file's physical lines as text, line endings kept (the csv module
    needs them to see line breaks inside quoted fields).

    Decoding line by line, not through a text wrapper, is what lets an
    undecodable byte be reported at its own line: a UTF-8 multi-byte sequence
    never contains the byte 0x0A, so splitting on it first is safe.
    """
    number = 0
    try:
        for number, raw in enumerate(handle, start=1):
            try:
                # utf-8-sig drops a byte-order mark, which only line 1 may carry.
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path}: line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                    f"{exc.start + 1} of the line)"
                ) from None
    except OSError as exc:
        raise SourceError(f"{path}: read failed after line {number}: {exc.strerror or exc}") from None


def valid_records(path: Path, source_id: str) -> list[Transaction]:
    """The records a replay of `path` under `source_id` sends (bad rows left
    out): what the tests' and benches' oracles expect downstream."""
    records = []
    for line, fields in read_rows(path):
        try:
            records.append(parse_row(fields, source_id, line))
        except InvalidRecord:
            pass
    return records
