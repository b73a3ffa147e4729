"""The HTTP API as a real server for the tests: `python -m api` on a free
port, with the environment it is given, stopped with SIGTERM as ECS does."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

import httpx

from tests.support.ports import free_port

START_TIMEOUT_SECONDS = 30


@contextlib.contextmanager
def running_api(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """Start the API, wait until /healthz answers, yield its base URL. On the
    way out it must stop cleanly (exit 0) within its graceful-shutdown time."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env), stdout=log, stderr=log,
        )
        try:
            wait_healthy(url, server, log_path)
            yield url
        finally:
            server.send_signal(signal.SIGTERM)
            status = server.wait(30)
    assert status == 0, f"the API exited with {status}; its log: {log_path}"


def wait_healthy(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the API exited with {server.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"the API did not answer /healthz in {START_TIMEOUT_SECONDS} s: {log_path}")
