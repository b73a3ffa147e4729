"""bandit over every package: no finding, and every `# nosec` in the code
names its check and says why, so a justification is read where it applies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tools

PROJECT = Path(__file__).resolve().parents[2]
PACKAGES = ["retail_stream", "producer", "consumer", "api", "reporting", "local_stack", "bench", "reconcile", "rebuild",
            "redrive"]
JUSTIFIED = re.compile(r"# nosec (B\d{3}(, ?B\d{3})*): \S.{8,}")


def test_bandit_finds_nothing_unjustified():
    bandit = Path(sys.executable).with_name("bandit")
    result = subprocess.run([str(bandit), "-q", "-r", *PACKAGES, "-f", "json"], cwd=PROJECT,
                            capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    assert findings == []
    assert report["errors"] == []
    assert report["metrics"]["_totals"]["loc"] > 5000  # it really read the code


def test_every_nosec_names_its_check_and_its_reason():
    unexplained = [f"{path.relative_to(PROJECT)}:{number}"
                   for package in PACKAGES for path in (PROJECT / package).rglob("*.py")
                   for number, line in enumerate(path.read_text().splitlines(), 1)
                   if "# nosec" in line and not JUSTIFIED.search(line)]
    assert unexplained == []
