"""retail_stream/sql/views.sql is Redshift SQL as much as PostgreSQL SQL.

PostgreSQL runs it in the integration tests; here sqlglot parses every
statement as Redshift with errors raised, and the checks look for what a
lenient parse would let through: functions sqlglot does not know (kept as
anonymous calls), PostgreSQL-only syntax, a generator that cannot write a
construct back as Redshift.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest
import sqlglot
from sqlglot import ErrorLevel, exp

from reporting.reports import REPORTS

VIEWS = [
    "report_lines",  # first: the others read it
    "report_revenue_by_day_country",
    "report_products",
    "report_customers",
    "report_cancellations_by_country",
    "report_adjustments",
]
# Every function the views call, each one documented for Redshift (SQL functions reference).
REDSHIFT_FUNCTIONS = {
    exp.Sum, exp.Count, exp.Min, exp.Max, exp.Cast, exp.Coalesce, exp.Case, exp.If, exp.Nullif, exp.Round,
    exp.Rank, exp.RowNumber,
}
# PostgreSQL-only syntax, in the source text (sqlglot would silently normalise some of it).
POSTGRES_ONLY = {
    "a :: cast": re.compile(r"::"),
    "an aggregate FILTER clause": re.compile(r"\bFILTER\s*\(", re.I),
    "DISTINCT ON": re.compile(r"\bDISTINCT\s+ON\b", re.I),
    "generate_series": re.compile(r"\bgenerate_series\b", re.I),
    "date_trunc (Redshift's differs in types)": re.compile(r"\bdate_trunc\b", re.I),
    "an ILIKE": re.compile(r"\bILIKE\b", re.I),
    "a lateral join": re.compile(r"\bLATERAL\b", re.I),
    "a WITH ... AS MATERIALIZED": re.compile(r"\bMATERIALIZED\b", re.I),
}


def views_sql() -> str:
    """views.sql with its placeholders filled in as provisioning does (quoted identifiers)."""
    text = resources.files("retail_stream").joinpath("sql", "views.sql").read_text(encoding="utf-8")
    return text.replace("{schema}", '"retail"').replace("{table}", '"transactions"')


def code_only(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def statements(read: str = "redshift") -> list[exp.Expression]:
    return sqlglot.parse(views_sql(), read=read, error_level=ErrorLevel.RAISE)


def without_comments(tree: exp.Expression) -> exp.Expression:
    for node in tree.walk():
        node.comments = None
    return tree


def functions(tree: exp.Expression) -> set[type]:
    return {type(node) for node in tree.find_all(exp.Func) if not isinstance(node, (exp.Binary, exp.Connector))}


def test_every_statement_parses_as_redshift_and_creates_or_replaces_a_view():
    parsed = statements()
    assert len(parsed) == len(VIEWS)
    for tree, name in zip(parsed, VIEWS):
        assert isinstance(tree, exp.Create) and tree.kind == "VIEW" and tree.args.get("replace") is True
        assert tree.this.db == "retail" and tree.this.name == name
        assert isinstance(tree.expression, exp.Select)


def test_the_views_call_only_functions_redshift_has():
    for tree in statements():
        assert not list(tree.find_all(exp.Anonymous)), f"functions sqlglot does not know: {tree.this.name}"
        assert functions(tree) <= REDSHIFT_FUNCTIONS, (tree.this.name, functions(tree) - REDSHIFT_FUNCTIONS)
        assert not list(tree.find_all(exp.Filter))


@pytest.mark.parametrize("what", sorted(POSTGRES_ONLY))
def test_no_postgresql_only_syntax(what):
    assert not POSTGRES_ONLY[what].search(code_only(views_sql())), what


def test_the_checks_catch_what_they_look_for():
    # The negative controls: a truncated statement raises, a FILTER clause is seen, an unknown function too.
    with pytest.raises(sqlglot.errors.ParseError):
        sqlglot.parse("CREATE OR REPLACE VIEW v AS SELECT a FROM", read="redshift", error_level=ErrorLevel.RAISE)
    assert POSTGRES_ONLY["an aggregate FILTER clause"].search("SELECT COUNT(*) FILTER (WHERE a) FROM t")
    assert POSTGRES_ONLY["a :: cast"].search("SELECT a::date FROM t")
    tree = sqlglot.parse_one("SELECT generate_series(1, 3)", read="postgres")
    assert functions(tree) - REDSHIFT_FUNCTIONS


def test_redshift_sql_round_trips_without_loss():
    """Written back as Redshift (refusing anything Redshift lacks) and read
    again, each statement is the same tree; read as PostgreSQL (the engine
    that runs it locally) and written as Redshift, it is that tree too."""
    as_redshift = [without_comments(tree) for tree in statements(read="redshift")]
    as_postgres = [without_comments(tree) for tree in statements(read="postgres")]
    for tree, postgres_tree in zip(as_redshift, as_postgres):
        for source in (tree, postgres_tree):
            text = source.sql(dialect="redshift", unsupported_level=ErrorLevel.RAISE)
            assert sqlglot.parse_one(text, read="redshift", error_level=ErrorLevel.RAISE) == tree, tree.this.name


def test_only_the_base_view_reads_the_table():
    parsed = dict(zip(VIEWS, statements()))
    for name, tree in parsed.items():
        read = {(table.db, table.name) for table in tree.expression.find_all(exp.Table)}
        assert read == ({("retail", "transactions")} if name == "report_lines" else {("retail", "report_lines")})


def test_the_reports_show_columns_their_views_have():
    columns = {tree.this.name: set(tree.expression.named_selects) for tree in statements()}
    for report in REPORTS:
        assert set(report.columns) <= columns[report.view], report.name
    assert {"day", "gross_revenue", "cancelled_revenue", "net_revenue"} <= columns["report_revenue_by_day_country"]
    assert {"line_kind", "amount"} <= columns["report_adjustments"]
