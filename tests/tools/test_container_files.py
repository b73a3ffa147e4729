"""The Dockerfile and docker-compose.yml, checked without a container engine
by hadolint and by the Compose specification's schema (check-jsonschema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"


def tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=ROOT)


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = tool("hadolint", "--failure-threshold", "info", "--no-color", "docker/Dockerfile")
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_the_compose_file_follows_the_compose_specification():
    result = tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_would_catch_a_misspelt_key(tmp_path):
    spec = yaml.safe_load(COMPOSE.read_text())
    spec["services"]["consumer"]["depend_on"] = spec["services"]["consumer"].pop("depends_on")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(spec))
    assert tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)).returncode != 0
