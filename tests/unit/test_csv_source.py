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
        pytest.param(f"{HEADER}\n".encode("utf-16"), "line 1: UTF-16 text", id="utf-16"),
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
    rows = read_rows(write(tmp_path, data), "utf-8")
    assert next(rows)[0] == 2  # lazy: the bad line has not been reached yet
    assert next(rows)[0] == 3
    with pytest.raises(SourceError, match=r"line 4: not UTF-8 text \(byte 0xc9"):
        next(rows)


@pytest.mark.parametrize("make", [lambda tmp: tmp / "missing.csv", lambda tmp: tmp], ids=["missing", "directory"])
def test_a_file_that_cannot_be_opened_raises_source_error(tmp_path, make):
    with pytest.raises(SourceError, match="cannot open"):
        list(read_rows(make(tmp_path)))


def test_check_source_decodes_the_whole_file_before_anything_is_sent(tmp_path):
    """A strict encoding is checked to the last line, and a bad file is refused whole, naming line and byte."""
    late = write(tmp_path, f"{HEADER}\n{ROW}\n{ROW}\n".encode() + b"x,\x81,\n")
    with pytest.raises(SourceError, match=r"line 4: not cp1252 text \(byte 0x81 at byte 3 of the line\)"):
        check_source(late, "cp1252")
    with pytest.raises(SourceError, match=r"line 4: not UTF-8 text"):
        check_source(late, "utf-8")
    assert check_source(late) == "latin-1"  # auto: 0x81 is no cp1252 character, every byte is ISO-8859-1
    with pytest.raises(SourceError, match="header"):
        check_source(write(tmp_path, b"a,b,c\n", "bad.csv"))
    with pytest.raises(SourceError, match="unknown encoding 'ebcdic'"):
        check_source(late, "ebcdic")


WINDOWS_ROWS = [
    '536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom',
    '537240,DOT,DOTCOM POSTAGE \u00a3 CHARGE,1,12/6/2010 10:08,52.33,,United Kingdom',
    'C537251,22747,"POPPY\'S PLAYHOUSE, BEDROOM ",-6,12/6/2010 10:45,2.1,16592,RSA',
    'A563185,B,Adjust bad debt,1,8/12/2011 14:50,-11062.06,,United Kingdom',
]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_windows_export_is_read_whole_with_the_same_lines_and_ids(tmp_path, encoding):
    """cp1252 / ISO-8859-1 with CRLF, `\u00a3` as the byte 0xA3: auto finds it,
    and every row and event id is the one the UTF-8 copy gives."""
    text = "\r\n".join([HEADER, *WINDOWS_ROWS]) + "\r\n"
    windows = write(tmp_path, text.encode(encoding), "windows.csv")
    utf8 = write(tmp_path, text.encode(), "utf8.csv")
    assert b"\xa3" in windows.read_bytes()
    assert check_source(windows) == "cp1252" and check_source(utf8) == "utf-8"
    records = [parse_row(f, "s", line) for line, f in read_rows(windows)]
    assert records == [parse_row(f, "s", line) for line, f in read_rows(utf8)]
    assert records[1].description == "DOTCOM POSTAGE \u00a3 CHARGE"
    assert [r.line for r in records] == [2, 3, 4, 5]


def test_an_online_retail_ii_file_and_pandas_values_read_as_the_first_release(tmp_path):
    header_ii = "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country"
    ii = write(tmp_path, (header_ii + "\n" + "\n".join([
        "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom",
        "489436,POST,POSTAGE,1,2009-12-01 09:06:00,18.0,nan,nan",
        "489437,21523,nan,10,2009-12-01 09:08:00,5.95,,United Kingdom",
    ]) + "\n").encode())
    records = [parse_row(f, "ii.csv", line) for line, f in read_rows(ii)]
    assert [(r.customer_id, r.description, r.country) for r in records] == [
        (13085, "15CM CHRISTMAS GLASS BALL 20 LIGHTS", "United Kingdom"),
        (None, "POSTAGE", None), (None, None, "United Kingdom")]
    assert records[0].invoice_date.isoformat() == "2009-12-01T07:45:00"


def test_an_unknown_header_is_refused_with_the_layouts_accepted(tmp_path):
    with pytest.raises(SourceError, match="expected one of: Online Retail \\(InvoiceNo,.*Online Retail II \\(Invoice,"):
        check_source(write(tmp_path, b"Order,Item,Qty\n1,2,3\n"))


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
