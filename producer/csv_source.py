"""Reading Online Retail CSV files as they really come.

UTF-8 with or without a byte-order mark, or the Windows exports' cp1252 /
ISO-8859-1 (`£` as the single byte 0xA3); CRLF or LF line endings; the
Online Retail or the Online Retail II header; quoted fields holding commas,
doubled quotes or line breaks, non-ASCII text. The encoding is decided from
the whole file's bytes before a row is read (`auto`: UTF-8 if every line is,
else cp1252, else ISO-8859-1), so a file is never half sent. Rows are
streamed one at a time, each with the physical line it starts on, so a
reject can point at the exact place in the file; the line numbers, and so
the event ids, do not depend on the encoding.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import BinaryIO, Iterator

from retail_stream.schema import CSV_COLUMNS, InvalidRecord, Transaction, parse_row

ENCODINGS = ("auto", "utf-8", "cp1252", "latin-1")
# The layouts a file may have: the same eight columns in the same order, under
# the names of each release of the data set.
LAYOUTS = {
    "Online Retail": CSV_COLUMNS,
    "Online Retail II": ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
                         "Customer ID", "Country"),
}


class SourceError(Exception):
    """The file as a whole cannot be read: missing, unreadable, not text in
    its encoding, not CSV, or not an Online Retail header. The message names
    the file and, when known, the line."""


Row = tuple[int, list[str]]


def read_rows(path: Path | str, encoding: str = "auto") -> Iterator[Row]:
    """Yield `(line_number, fields)` for every data row of the CSV at `path`.

    `line_number` is the physical line the row starts on (the header is line
    1), so a quoted field spanning several lines moves the next row's number
    on by as many lines. Blank lines are skipped (they are not rows); rows with
    the wrong number of fields are yielded as they are, for the caller to
    reject. Streams the file: memory is bounded by the longest row.

    Raises SourceError (lazily, when iteration reaches the problem) if the file
    cannot be opened or read, if the header is not one of LAYOUTS, if `encoding`
    is `auto` and the file is neither UTF-8 nor cp1252 nor ISO-8859-1 (never,
    as every byte is ISO-8859-1), or at the first line that is not valid text
    in the given `encoding` or not valid CSV; rows before that point have
    already been yielded. `check_source` first refuses such a file whole.
    """
    path = Path(path)
    with _open(path) as handle:
        yield from read_stream(handle, path, encoding)


def check_source(path: Path | str, encoding: str = "auto") -> str:
    """Read the whole of `path` once: every line must decode in `encoding`
    and line 1 must be a known header. Returns the encoding to read it with
    (`auto` resolved). For a run: refuse a bad file before anything is sent.
    Raises SourceError as `read_rows` would, naming the line and byte."""
    path = Path(path)
    with _open(path) as handle:
        resolved = resolve_encoding(handle, path, encoding)
        if encoding != "auto":  # auto has just decoded every line in `resolved`
            for _ in _decoded_lines(handle, path, resolved):
                pass
            handle.seek(0)
        for _ in read_stream(handle, path, resolved):
            break  # the header
    return resolved


def line_count(path: Path | str) -> int:
    """Lines in a file (a last line without its line break counts), read in
    large chunks: about 0.1 s for the full data set. Raises SourceError."""
    lines, last = 0, b"\n"
    with _open(Path(path)) as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot open: {exc.strerror or exc}") from None


def resolve_encoding(handle: BinaryIO, path: Path | str, encoding: str) -> str:
    """`encoding`, or for `auto` the first of UTF-8, cp1252 and ISO-8859-1 in
    which every line of `handle` decodes. Reads a seekable handle through
    and rewinds it."""
    if encoding not in ENCODINGS:
        raise SourceError(f"{path}: unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")
    if encoding != "auto":
        return encoding
    start = handle.read(2)
    handle.seek(0)
    if start in (b"\xff\xfe", b"\xfe\xff"):
        raise SourceError(f"{path}: line 1: UTF-16 text (byte-order mark 0x{start[0]:02x} 0x{start[1]:02x}); "
                          "save it as UTF-8 or cp1252")
    for candidate in ("utf-8", "cp1252"):
        try:
            for _ in _decoded_lines(handle, path, candidate):
                pass
            return candidate
        except SourceError:
            continue
        finally:
            handle.seek(0)
    return "latin-1"  # every byte is a character in ISO-8859-1


def read_stream(handle: BinaryIO, path: Path | str, encoding: str = "auto") -> Iterator[Row]:
    """`read_rows` over an open binary stream (a file, or an HTTP body in a
    BytesIO; seekable for `auto`); `path` only names it in error messages.
    Same rows, same line numbers, same SourceErrors; does not close `handle`."""
    lines = _decoded_lines(handle, path, resolve_encoding(handle, path, encoding))
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
        raise SourceError(f"{path}: empty file, expected a header: {_layouts()}")


def check_header(fields: list[str], path: Path | str = "<csv>") -> str:
    """The layout `fields` is the header of; raise SourceError, listing the
    layouts, when it is none (whitespace around a name is tolerated:
    spreadsheet exports sometimes pad it)."""
    names = tuple(f.strip() for f in fields)
    for layout, columns in LAYOUTS.items():
        if names == columns:
            return layout
    raise SourceError(f"{path}: line 1: header is {','.join(fields)!r}, expected one of: {_layouts()}")


def _layouts() -> str:
    return "; ".join(f"{name} ({','.join(columns)})" for name, columns in LAYOUTS.items())


def _decoded_lines(handle: BinaryIO, path: Path | str, encoding: str) -> Iterator[str]:
    """The file's physical lines as text, line endings kept (the csv module
    needs them to see line breaks inside quoted fields).

    Decoding line by line, not through a text wrapper, is what lets an
    undecodable byte be reported at its own line: neither a UTF-8 multi-byte
    sequence nor any of the single-byte encodings uses the byte 0x0A but for
    a line feed, so splitting on it first is safe.
    """
    number = 0
    # utf-8-sig drops a byte-order mark, which only line 1 may carry.
    first = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode(first if number == 1 else encoding)
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path}: line {number}: not {_NAMES.get(encoding, encoding)} text (byte "
                    f"0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
                ) from None
    except OSError as exc:
        raise SourceError(f"{path}: read failed after line {number}: {exc.strerror or exc}") from None


_NAMES = {"utf-8": "UTF-8", "cp1252": "cp1252", "latin-1": "ISO-8859-1"}


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
