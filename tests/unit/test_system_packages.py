"""scripts/ensure-system-packages.sh as a normal user on a machine missing
parts: one line per part with the command that installs it, exit 1, never a
traceback; nothing to say when everything is there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-system-packages.sh"
BASH = shutil.which("bash")


def run(path_dirs: list[Path]) -> subprocess.CompletedProcess:
    env = {"PATH": os.pathsep.join(map(str, path_dirs)), "HOME": "/tmp"}
    return subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def shims(tmp_path: Path, names: list[str], uid: int) -> Path:
    """A PATH of the commands the script uses, the named parts among them, `id -u` answering `uid`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ls", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    for name in names:
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
    for path in bin_dir.iterdir():
        if not path.is_symlink():
            path.chmod(0o755)
    return bin_dir


def test_a_normal_user_is_told_each_missing_part_and_its_command(tmp_path):
    done = run([shims(tmp_path, ["java"], uid=1000)])
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert "missing: Prometheus and promtool (metrics, alert rules); install it with: sudo apt-get install prometheus" \
        in lines
    assert "missing: Prometheus' Pushgateway (the reconciliation's gauges); install it with: sudo apt-get install prometheus-pushgateway" in lines
    assert not any("Java" in line for line in lines)  # java is on this PATH
    assert "Traceback" not in done.stderr


def test_nothing_is_said_when_every_part_is_there(tmp_path):
    # PostgreSQL is found by its server's path (these machines have it), the others on PATH.
    assert any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    done = run([shims(tmp_path, ["java", "prometheus", "promtool", "prometheus-pushgateway"], uid=1000)])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
