"""The full-size stand-in file: valid throughout, in every layout and
encoding it writes, with the totals it states matching what the parser reads."""

import json

import pytest

from bench import full_dataset
from local_stack.demo import exact, source_figures
from producer.csv_source import check_source


@pytest.mark.parametrize("options, encoding", [
    ([], "utf-8"),
    (["--encoding", "cp1252", "--crlf"], "cp1252"),
    (["--layout", "Online Retail II", "--pandas"], "utf-8"),
])
def test_every_row_is_valid_and_the_totals_are_the_parsers(tmp_path, capsys, options, encoding):
    out = tmp_path / "online-retail.csv"
    assert full_dataset.main([str(out), "--rows", "6000", *options]) == 0
    stated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert check_source(out) == encoding
    read = source_figures(out)
    assert (read.rows, read.valid) == (6000, 6000) == (stated["rows"], stated["rows"])
    assert read.quantity_sum == stated["quantity_sum"]
    assert exact(read.amount_sum) == stated["amount_sum"]


def test_the_real_files_quirks_are_there():
    rows = full_dataset.rows(60_000)
    assert len(rows) == 60_000
    share = lambda test: sum(map(test, rows)) / len(rows)  # noqa: E731
    assert 0.22 < share(lambda r: r["customer"] is None) < 0.28
    assert 0.01 < share(lambda r: r["invoice"].startswith("C")) < 0.03
    assert sum(r["invoice"].startswith("A") and r["price"].startswith("-") for r in rows) == 3
    assert 0 < share(lambda r: r["description"] == "") < 0.01
    assert 0 < share(lambda r: "," in r["description"]) < 0.03
    assert any("£" in r["description"] for r in rows) and any('"' in r["description"] for r in rows)
    assert any(r["quantity"] < 0 and not r["invoice"].startswith("C") for r in rows)
    assert sum(a == b for a, b in zip(rows, rows[1:])) > 0  # fully duplicated lines
    assert {r["date"] for r in rows[:1]} == {full_dataset.START}
    assert all(r["date"].weekday() != 5 for r in rows)
    assert full_dataset.rows(500, seed=7) == full_dataset.rows(500, seed=7)
