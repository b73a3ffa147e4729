"""`make chaos`: the fault-injection suite at full length, then its report.

Runs pytest over tests/chaos with CHAOS_SCALE=long (`--short` for the
`make test` lengths) and over the checkpoint-protocol tests, then prints one
row per scenario and, as the very last line, the same figures as one line of
JSON keyed by scenario. Exit status is pytest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PROTOCOL_TESTS = "tests/unit/test_consumer_protocol.py"
COLUMNS = (
    ("scenario", "scenario"), ("source_rows", "rows"), ("dynamodb_rows", "DynamoDB"),
    ("redshift_rows", "Redshift"), ("s3_records", "S3"), ("poison_injected", "poison"),
    ("dead_lettered", "dead"), ("lost", "lost"), ("duplicated_dynamodb", "dup DDB"),
    ("duplicated_redshift", "dup RS"), ("catch_up_seconds", "catch-up s"), ("passed", "ok"),
)
JSON_KEYS = ("source_rows", "lost", "duplicated_dynamodb", "duplicated_redshift", "poison_injected",
             "dead_lettered", "dynamodb_rows", "redshift_rows", "s3_records", "catch_up_seconds", "faults", "passed")


def main(argv: list[str]) -> int:
    short = "--short" in argv
    pytest_args = [a for a in argv if a != "--short"]
    with tempfile.TemporaryDirectory() as tmp:
        outcomes_file, junit = Path(tmp) / "outcomes.jsonl", Path(tmp) / "junit.xml"
        env = {**os.environ, "CHAOS_SCALE": "short" if short else "long", "CHAOS_REPORT_FILE": str(outcomes_file)}
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/chaos", PROTOCOL_TESTS,
             f"--junitxml={junit}", *pytest_args],
            cwd=PROJECT, env=env,
        ).returncode
        outcomes = [json.loads(line) for line in outcomes_file.read_text().splitlines()] \
            if outcomes_file.exists() else []
        results = test_results(junit)
    rows = scenario_rows(outcomes, results)
    print()
    print(table(rows))
    print(json.dumps({row["scenario"]: {k: row.get(k) for k in JSON_KEYS} for row in rows}))
    return code


def test_results(junit: Path) -> dict[str, bool]:
    """Passed or not, per test name (parametrized names included)."""
    if not junit.exists():
        return {}
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        failed = any(child.tag in ("failure", "error") for child in case)
        results[f"{case.get('classname')}::{case.get('name')}"] = not failed
    return results


def scenario_rows(outcomes: list[dict], results: dict[str, bool]) -> list[dict]:
    """One row per recorded scenario, with whether its test passed; the
    protocol tests as one more row; a failed test that recorded nothing as its own row."""
    rows = []
    for outcome in outcomes:
        test = outcome["notes"].get("test", "")
        rows.append({**outcome, "passed": results.get(test, False) if test else None})
    recorded = {outcome["notes"].get("test") for outcome in outcomes}
    protocol = {name: ok for name, ok in results.items() if "test_consumer_protocol" in name}
    if protocol:
        rows.append({"scenario": "checkpoint_protocol", "faults": f"{len(protocol)} scripted daemon sessions",
                     "source_rows": 0, "lost": 0, "duplicated_dynamodb": 0, "duplicated_redshift": 0,
                     "poison_injected": 0, "dead_lettered": 0, "passed": all(protocol.values())})
    for name, ok in results.items():
        if not ok and "tests.chaos" in name and name not in recorded:
            rows.append({"scenario": name.rsplit("::", 1)[-1], "faults": "(no figures: failed before judging)",
                         "passed": False})
    return rows


def table(rows: list[dict]) -> str:
    cells = [[label for _, label in COLUMNS]]
    for row in rows:
        cells.append(["" if row.get(key) is None else str(row.get(key)) for key, _ in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    faults = [f"  {row['scenario']}: {row.get('faults', '')}" for row in rows]
    return "\n".join(lines + ["", "Faults injected:", *faults])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
