"""The warehouse DDL: Redshift's (schema.redshift.sql) parses as Redshift and
carries the layout the merge and the views rely on; PostgreSQL's (what the
tests run) has the same columns and the index that stands in for the sort key."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import ErrorLevel, exp

from consumer.sinks.warehouse import jsonpaths_fields
from consumer.wiring import jsonpaths_document
from local_stack.provision import warehouse_sql
from retail_stream.settings import Settings


def parsed(dialect: str) -> list[exp.Expression]:
    return sqlglot.parse(warehouse_sql(Settings(), dialect), read="redshift" if dialect == "redshift" else "postgres",
                         error_level=ErrorLevel.RAISE)


def table(trees, name: str) -> exp.Create:
    return next(t for t in trees if isinstance(t, exp.Create) and t.kind == "TABLE" and t.this.this.name == name)


def columns(create: exp.Create) -> dict[str, str]:
    return {c.name: c.args["kind"].sql() for c in create.this.expressions if isinstance(c, exp.ColumnDef)}


def properties(create: exp.Create) -> dict[str, str]:
    return {type(p).__name__: p.sql(dialect="redshift") for p in create.args["properties"].expressions}


def test_every_statement_parses_as_redshift():
    trees = parsed("redshift")
    assert [t.kind for t in trees[:3]] == ["SCHEMA", "TABLE", "TABLE"]
    assert all(t.kind == "VIEW" for t in trees[3:]) and len(trees) > 3


def test_the_table_is_distributed_by_event_id_and_sorted_by_invoice_date():
    transactions = table(parsed("redshift"), "transactions")
    assert properties(transactions) == {"DistKeyProperty": "DISTKEY(event_id)",
                                        "SortKeyProperty": "SORTKEY(invoice_date)"}
    ledger = table(parsed("redshift"), "load_ledger")
    assert properties(ledger) == {"DistStyleProperty": "DISTSTYLE ALL", "SortKeyProperty": "SORTKEY(object_key)"}


def test_every_column_has_an_encoding_and_the_sort_key_is_raw():
    text = warehouse_sql(Settings(), "redshift")
    start = text.index('CREATE TABLE IF NOT EXISTS "retail"."transactions"')
    body = text[start:text.index("DISTKEY", start)]
    encodings = dict(re.findall(r"^\s+(\w+)\s+.*ENCODE (\w+),?$", body, re.M))
    assert set(encodings) == set(jsonpaths_fields(jsonpaths_document()))
    assert encodings["invoice_date"] == "RAW"


def test_both_dialects_have_the_same_columns_and_postgres_the_index():
    redshift, postgres = parsed("redshift"), parsed("postgres")
    for name in ("transactions", "load_ledger"):
        assert columns(table(redshift, name)) == columns(table(postgres, name))
    (index,) = [t for t in postgres if isinstance(t, exp.Create) and t.kind == "INDEX"]
    assert [c.name for c in index.find_all(exp.Column)] == ["invoice_date", "event_id"]
    assert not [t for t in redshift if isinstance(t, exp.Create) and t.kind == "INDEX"]  # Redshift has none
