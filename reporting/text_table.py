"""Aligned plain-text tables. Pure: values in, text out.

Money (Decimal) shows two decimals with thousands separators, rates (columns
named `*_rate`, fractions) as percentages, NULL as "-"; numbers are right-
aligned, text left-aligned and cut at MAX_TEXT_WIDTH characters.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Sequence

MAX_TEXT_WIDTH = 36
NULL = "-"
ELLIPSIS = "…"
_ONE_LINE = str.maketrans("\t\n\r", "   ")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def format_cell(value: Any, column: str = "") -> str:
    """One value as table text (see the module docstring)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal) and column.endswith("_rate"):
        return f"{value * 100:.2f}%"
    if isinstance(value, (Decimal, float)):
        return f"{value:,.2f}"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    text = str(value).translate(_ONE_LINE)  # a description may hold tabs and line breaks
    if len(text) > MAX_TEXT_WIDTH:
        return text[: MAX_TEXT_WIDTH - 1] + ELLIPSIS
    return text


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A header, a rule and one line per row, columns two spaces apart; a
    column whose values are all numbers (or NULL) is right-aligned. Lines
    carry no trailing spaces; no trailing newline."""
    cells = [[format_cell(value, column) for value, column in zip(row, columns)] for row in rows]
    right = [
        any(is_number(row[i]) for row in rows) and all(row[i] is None or is_number(row[i]) for row in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right))
        return "  ".join(padded).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def format_section(title: str, view: str, table: str, shown: int, total: int) -> str:
    """A titled section: the title, which view and how many of its rows are
    shown, then the table (or a note that the view is empty)."""
    heading = f"== {title} ({view}: {shown} of {total} rows) =="
    if total == 0:
        return f"{heading}\n(no rows)"
    return f"{heading}\n{table}"
