"""The HTTP API as a real server for the tests: `python -m api` on a free
port (and its metrics on another), with the environment it is given and a
key file of known keys (tests/support/api_fakes.KEYS), stopped with SIGTERM
as ECS does."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import httpx

from tests.support.api_fakes import key_document
from tests.support.ports import free_ports


@dataclass(frozen=True)
class RunningApi:
    url: str
    metrics_url: str
    keys: dict[str, str]  # plaintext by name (tests/support/api_fakes.KEYS)
    keys_file: Path  # API_KEYS_FILE

    def client(self, key: str = "tester", **kwargs) -> httpx.Client:
        """An httpx client for the API with the named key."""
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[key]}, **kwargs)

START_TIMEOUT_SECONDS = 30


@contextlib.contextmanager
def running_api(env: Mapping[str, str], log_path: Path) -> Iterator[RunningApi]:
    """Start the API, wait until /healthz answers, yield where it runs and its
    keys. On the way out it must stop cleanly (exit 0) within its
    graceful-shutdown time, and its log must hold none of the keys."""
    port, metrics_port = free_ports(2)
    url = f"http://127.0.0.1:{port}"
    text, keys = key_document()
    keys_file = log_path.with_name("api-keys.json")
    keys_file.write_text(text)
    env = {"API_KEYS_RELOAD_SECONDS": "1", "METRICS_HOST": "127.0.0.1", **env,
           "API_KEYS_FILE": str(keys_file),  # not a local stack's own
           "API_METRICS_PORT": str(metrics_port), "METRICS_PORT": ""}  # METRICS_PORT would win over ours
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env), stdout=log, stderr=log,
        )
        try:
            wait_healthy(url, server, log_path)
            yield RunningApi(url, f"http://127.0.0.1:{metrics_port}/metrics", keys, keys_file)
        finally:
            server.send_signal(signal.SIGTERM)
            status = server.wait(30)
    assert status == 0, f"the API exited with {status}; its log: {log_path}"
    logged = log_path.read_text()
    assert not [name for name, key in keys.items() if key in logged], "a key was logged"


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
