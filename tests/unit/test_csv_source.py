"""csv_source.read_rows: files as they really come, and the ones it must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.csv_source import SourceError, check_source, read_rows
from retail_stream.schema import CSV_COLUMNS, InvalidRecord, parse_row

HEADER = ",".join(CSV_COLUMNS)
ROW = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"


def write(tmp_path: Path, data: bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(f"\ufeff{HEADER}\r\n{ROW}\r\n".encode(), id="bom-crlf"),
        pytest.param(f"{HEADER}\n{ROW}\n".encode(), id="plain-lf"),
        pytest.param(f"{HEADER}\r\n{ROW}".encode(), id="no-final-newline"),
        pytest.param(f" InvoiceNo , StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country \r\n{ROW}\r\n".encode(), id="padded-header"),
    ],
)
def test_encodings_and_line_endings_give_the_same_row(tmp_path, encoded):
    rows = list(read_rows(write(tmp_path, encoded)))
    assert rows == [(2, ROW.split(","))]


def test_quoted_commas_doubled_quotes_and_non_ascii(tmp_path):
    text = (
        f"\ufeff{HEADER}\r\n"
        '536370,23403,"12"" PINK HEART, SCALLOPED EDGE",2,12/1/2010 8:45,1.25,12583.0,RÉUNION\r\n'
        '536371,23404,CERAMIC PLATE Ø 20CM,1,12/1/2010 8:45,2.95,,EIRE\r\n'
    )
    rows = list(read_rows(write(tmp_path, text.encode())))
    assert rows[0] == (2, ["536370", "23403", '12" PINK HEART, SCALLOPED EDGE', "2", "12/1/2010 8:45", "1.25", "12583.0", "RÉUNION"])
    assert rows[1][1][2] == "CERAMIC PLATE Ø 20CM"
    assert rows[1][1][6] == ""


def test_a_row_is_numbered_by_the_line_it_starts_on(tmp_path):
    text = (
        f"{HEADER}\r\n"
        f"{ROW}\r\n"  # line 2
        '536366,22633,"HAND WARMER\r\nUNION\nJACK",6,12/1/2010 8:28,1.85,17850.0,United Kingdom\r\n'  # 3-5
        "\r\n"  # line 6: blank, skipped
        f"{ROW}\r\n"  # line 7
    )
    rows = list(read_rows(write(tmp_path, text.encode())))
    assert [line for line, _ in rows] == [2, 3, 7]
    assert rows[1][1][2] == "HAND WARMER\r\nUNION\nJACK"


def test_rows_with_the_wrong_field_count_are_yielded_for_the_caller_to_reject(tmp_path):
    text = f"{HEADER}\n536365,85123A,SET OF 4 NAPKINS, PAPER,12,12/1/2010 8:26,0.85,17850.0,United Kingdom\n1,2\n"
    rows = list(read_rows(write(tmp_path, text.encode())))
    assert [(line, len(fields)) for line, fields in rows] == [(2, 9), (3, 2)]


@pytest.mark.parametrize(
    "data, message",
    [
        pytest.param(b"", "empty file", id="empty"),
        pytest.param(b"InvoiceNo,StockCode\r\n" + ROW.encode(), "line 1: header", id="short-header"),
        pytest.param(HEADER.lower().encode() + b"\n", "line 1: header", id="lower-case-header"),
        pytest.param(ROW.encode() + b"\n", "line 1: header", id="no-header"),
        pytest.param(f"{HEADER}\n".encode("utf-16"), "line 1: not UTF-8", id="utf-16"),
        pytest.param(f"{HEADER}\r\nx,\"y\r\n".encode() + b"z" * 140_000, "line 2: malformed CSV", id="unclosed-quote"),
    ],
)
def test_files_that_are_not_online_retail_csv_raise_source_error(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(SourceError, match=message) as info:
        list(read_rows(path))
    assert str(path) in str(info.value)


def test_an_undecodable_byte_mid_file_is_an_error_at_its_line_after_the_rows_before_it(tmp_path):
    data = f"{HEADER}\r\n{ROW}\r\n{ROW}\r\n".encode() + "536399,X,R\xc9UNION,1,12/1/2010 9:00,1.0,,EIRE\r\n".encode("latin-1")
    rows = read_rows(write(tmp_path, data))
    assert next(rows)[0] == 2  # lazy: the bad line has not been reached yet
    assert next(rows)[0] == 3
    with pytest.raises(SourceError, match=r"line 4: not UTF-8 text \(byte 0xc9"):
        next(rows)


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing.csv", lambda tmp: tmp], ids=["missing", "directory"])
def test_a_file_that_cannot_be_opened_raises_source_error(tmp_path, make):
    with pytest.raises(SourceError, match="cannot open"):
        list(read_rows(make(tmp_path)))


def test_check_source_reads_only_the_header(tmp_path):
    check_source(write(tmp_path, f"{HEADER}\n{ROW}\n".encode() + b"\xff\xfe\n"))
    with pytest.raises(SourceError, match="header"):
        check_source(write(tmp_path, b"a,b,c\n", "bad.csv"))


def test_the_sample_file_has_the_counts_its_readme_states():
    rows = list(read_rows(SAMPLE))
    invalid = []
    for line, fields in rows:
        try:
            parse_row(fields, SAMPLE.name, line)
        except InvalidRecord:
            invalid.append(line)
    assert SAMPLE.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(rows) == 1000 and rows[-1][0] == 1002
    assert invalid == [144, 278, 373, 445, 538, 624, 709]
