"""The bench's input: the sample's rows repeated to any size, as a real
Online Retail CSV (its header once, every row on its own line, so each gets
its own event_id)."""

from __future__ import annotations

from pathlib import Path

from producer.csv_source import read_rows, valid_records  # noqa: F401  (the benches' oracle)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "TestSample.csv"


def write_csv(path: Path, rows: int) -> Path:
    """A CSV of exactly `rows` data rows, cycling through the sample's."""
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    header, body = lines[0], [line for line in lines[1:] if line.strip()]
    with path.open("wb") as out:
        out.write(header)
        for i in range(rows):
            out.write(body[i % len(body)])
    return path
