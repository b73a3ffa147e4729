"""The command line: exit statuses, the JSON summary as the last stdout line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from producer.cli import argument_problem, build_parser, main, run
from producer.kinesis_writer import THROTTLED
from retail_stream.schema import CSV_COLUMNS
from tests.support.kinesis_fakes import FakeKinesis

HEADER = ",".join(CSV_COLUMNS)
GOOD = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
BAD = "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,abc,17850.0,United Kingdom"


def csv_file(tmp_path: Path, name: str = "in.csv", text: str = f"{HEADER}\n{GOOD}\n{BAD}\n{GOOD}\n") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(argv, fake):
    out, err = io.StringIO(), io.StringIO()
    status = run(build_parser().parse_args(argv), fake, "retail", stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_success_prints_only_the_json_summary_on_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake = FakeKinesis()
    status, out, err = invoke([str(csv_file(tmp_path))], fake)
    assert status == 0
    assert len(out.splitlines()) == 1
    summary = json.loads(out)
    assert {k: summary[k] for k in ("rows", "sent", "rejected", "retried", "rejects_file")} == {
        "rows": 3, "sent": 2, "rejected": 1, "retried": 0, "rejects_file": "rejects/in.csv.rejects.jsonl",
    }
    assert summary["seconds"] >= 0 and summary["records_per_second"] >= 0
    assert len((tmp_path / "rejects" / "in.csv.rejects.jsonl").read_text().splitlines()) == 1
    assert "sent                2" in err and "\r" not in err  # no progress line off a terminal


def test_a_bad_header_exits_2_before_anything_is_sent(tmp_path):
    fake = FakeKinesis()
    good = csv_file(tmp_path, "good.csv")
    bad = csv_file(tmp_path, "bad.csv", "a,b\n1,2\n")
    status, out, err = invoke([str(good), str(bad), "--rejects", str(tmp_path / "r.jsonl")], fake)
    assert (status, out, fake.calls) == (2, "", [])
    assert "bad.csv: line 1: header" in err


def test_a_file_not_in_its_encoding_exits_2_and_nothing_of_it_is_sent(tmp_path):
    """The bad byte is on the last line: a strict reader would have sent the rows before it."""
    fake = FakeKinesis()
    path = tmp_path / "windows.csv"
    path.write_bytes(f"{HEADER}\r\n{GOOD}\r\n{GOOD}\r\n".encode() + "536399,X,POSTAGE \u00a3,1,12/1/2010 9:00,1.0,,EIRE\r\n".encode("cp1252"))
    status, out, err = invoke([str(path), "--encoding", "utf-8", "--rejects", str(tmp_path / "r.jsonl")], fake)
    assert (status, out, fake.calls) == (2, "", [])
    assert "windows.csv: line 4: not UTF-8 text (byte 0xa3" in err
    status, out, _ = invoke([str(path), "--rejects", str(tmp_path / "r.jsonl")], fake)  # auto: cp1252
    assert status == 0 and json.loads(out)["sent"] == 3


def test_a_missing_file_exits_2(tmp_path):
    status, out, err = invoke([str(tmp_path / "nope.csv")], FakeKinesis())
    assert status == 2 and out == "" and "cannot open" in err


def test_delivery_failure_exits_1_with_the_summary_and_the_error(tmp_path):
    fake = FakeKinesis([{0: THROTTLED}] * 10)
    status, out, _ = invoke([str(csv_file(tmp_path)), "--max-attempts", "2", "--rejects", str(tmp_path / "r")], fake)
    summary = json.loads(out.splitlines()[-1])
    assert status == 1
    assert summary["sent"] == 1 and summary["retried"] == 1
    assert THROTTLED in summary["error"]


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["a.csv", "--rate", "0"], "--rate"),
        (["a.csv", "--speedup", "-1"], "--speedup"),
        (["a.csv", "--loop", "-1"], "--loop"),
        (["a.csv", "--limit", "-5"], "--limit"),
        (["a.csv", "b.csv", "--source-id", "x"], "--source-id"),
        (["x/a.csv", "y/a.csv"], "same file name"),
        (["a.csv", "--source-id", "s" * 241], "source id"),
        (["a.csv", "b.csv", "--loop", "0", "--rate", "5"], None),
    ],
)
def test_argument_problems(argv, problem):
    found = argument_problem(build_parser().parse_args(argv))
    assert (found is None) if problem is None else (problem in found)


def test_main_exits_2_on_bad_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["a.csv", "--rate", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


def test_help_runs_from_any_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "producer", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--speedup" in result.stdout
