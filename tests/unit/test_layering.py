"""What may import what: the services never lean on the local tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SERVICES = ("retail_stream", "producer", "consumer", "api", "reporting", "reconcile", "rebuild", "redrive")
TOOLING = ("local_stack", "bench", "tests")  # the emulator, the census (an oracle), the benchmarks


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", SERVICES)
def test_no_service_imports_the_local_tooling(package):
    found = {str(p.relative_to(PROJECT)): sorted(imported(p) & set(TOOLING))
             for p in (PROJECT / package).rglob("*.py")}
    assert {path: names for path, names in found.items() if names} == {}
