"""The Dockerfile and docker-compose.yml, checked without a container engine
by hadolint, checkov (its dockerfile checks) and by the Compose
specification's schema (check-jsonschema); and every file of the repository
searched for secrets by checkov."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"


# Credentials checkov's secrets scan finds and we keep, each with the reason: (check, file): why.
ACCEPTED_SECRETS = {
    ("CKV_SECRET_4", "/docker-compose.yml"):
        "the compose stack's own PostgreSQL (retail:retail), a local stand-in for Redshift reachable "
        "only on the compose network; AWS's DSN is a Secrets Manager secret",
    ("CKV_SECRET_4", "/tests/containers/test_compose_stack.py"):
        "the same local stand-in's credentials, as the test reaches it from the host",
}


def tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=ROOT)


def checkov(*argv: str) -> dict:
    """checkov's JSON report. It pins its own boto3 and networkx, so it lives in a
    venv of its own (.venv/tools/checkov; `CHECKOV` overrides)."""
    candidates = (os.environ.get("CHECKOV"), Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov",
                  BIN / "checkov")
    found = [path for path in candidates if path and Path(path).exists()]
    if not found:
        pytest.fail("checkov not found: python3 -m venv .venv/tools/checkov && "
                    ".venv/tools/checkov/bin/pip install 'checkov>=3.2,<4' (or set CHECKOV)")
    # --skip-download: no call home to Prisma Cloud.
    result = subprocess.run([str(found[0]), *argv, "--skip-download", "-o", "json"], capture_output=True,
                            text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


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


def test_checkov_fails_no_dockerfile_check_and_each_skip_says_why():
    report = checkov("-f", "docker/Dockerfile", "--framework", "dockerfile")
    failed = [(c["check_id"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and report["summary"]["passed"] > 50
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    declared = dict(re.findall(r"^# checkov:skip=(CKV_\w+):(.*)$", dockerfile, re.MULTILINE))
    assert all(len(reason.strip()) > 40 for reason in declared.values()), declared
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} == set(declared)  # each still needed


def test_no_secret_in_the_repository_but_the_local_stand_ins():
    """Every file git tracks or would add (nothing it ignores: .venv, data made by the demo)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, cwd=ROOT, check=True).stdout.splitlines()
    files = [name for name in listed if (ROOT / name).is_file()]
    assert len(files) > 100
    arguments = [part for name in files for part in ("-f", name)]
    report = checkov(*arguments, "--framework", "secrets", "--enable-secret-scan-all-files")
    found = {(c["check_id"], c["file_path"]) for c in report["results"]["failed_checks"]}
    assert found - set(ACCEPTED_SECRETS) == set(), report["results"]["failed_checks"]
    assert set(ACCEPTED_SECRETS) <= found, "an accepted finding no longer occurs: drop it from the list"
