"""Background processes of the local stack: liveness as `up` and `down` see it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from local_stack.errors import StackError
from local_stack.processes import BackgroundProcess


def test_own_child_is_alive_even_when_its_cmdline_differs(tmp_path):
    # The shell execs sleep, so /proc shows a command line other than the one
    # started, as it does for a moment while any exec is being set up.
    process = BackgroundProcess("child", ("sh", "-c", "exec sleep 30"), tmp_path)
    pid = process.start()
    try:
        process.wait_ready(lambda: True, 5)
        assert process.pid() == pid
    finally:
        assert process.stop(timeout=5)
    assert process.pid() is None


def test_a_pid_file_naming_another_program_is_not_trusted(tmp_path):
    # Another process, not started here, with a command line the pid file does not name.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "stale.pid").write_text(json.dumps({"pid": other.pid, "argv": ["prometheus"]}))
        stale = BackgroundProcess("stale", ("prometheus",), tmp_path)
        assert stale.pid() is None
        assert stale.stop() is False
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_child_that_exits_is_reported_with_its_log(tmp_path):
    process = BackgroundProcess("dies", ("sh", "-c", "echo bad config >&2; exit 3"), tmp_path)
    process.start()
    with pytest.raises(StackError, match=r"dies exited during start-up(.|\n)*bad config"):
        process.wait_ready(lambda: False, 5)
