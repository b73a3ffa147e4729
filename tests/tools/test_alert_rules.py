"""The alert rules and scrape configuration, checked by Prometheus' own promtool."""

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.tools

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool not found: install Debian's prometheus package (make test does, as root: scripts/ensure-system-packages.sh)"
    return found


@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "config", "--syntax-only", "prometheus.yml"],
    ],
    ids=["check-rules", "test-rules", "check-config"],
)
def test_promtool(promtool, args):
    result = subprocess.run([promtool, *args], cwd=CONFIG, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
