"""The local stack: the AWS emulator and PostgreSQL, started in a data folder
of the project, then provisioned. `up` returns with both running in the
background; `down` (from any process) stops them."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

from local_stack import processes
from local_stack.postgres import PostgresServer
from local_stack.provision import provision
from retail_stream.settings import Settings

DEFAULT_EMULATOR_PORT = 4566
DEFAULT_POSTGRES_PORT = 5439

# What a service needs to use the stack; the KCL timings suit an emulator with
# one worker (the first start waits one shard-sync interval).
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": "us-east-1",
    "KCL_SHARD_SYNC_INTERVAL_MS": "5000",
    "KCL_LEASE_ASSIGNMENT_INTERVAL_MS": "2000",
    "KCL_FAILOVER_TIME_MS": "10000",
    "KCL_IDLE_TIME_BETWEEN_READS_MS": "250",
}


def project_dir() -> Path:
    return Path(__file__).resolve().parents[1]


class LocalStack:
    def __init__(self, state_dir: Path | None = None, emulator_port: int | None = None,
                 postgres_port: int | None = None, shard_count: int = 2) -> None:
        env = os.environ
        self.state_dir = Path(state_dir or env.get("LOCAL_STACK_DIR") or project_dir() / ".local").resolve()
        self.emulator_port = emulator_port or int(env.get("LOCAL_STACK_AWS_PORT", DEFAULT_EMULATOR_PORT))
        self.postgres_port = postgres_port or int(env.get("LOCAL_STACK_PG_PORT", DEFAULT_POSTGRES_PORT))
        self.shard_count = shard_count
        self.postgres = PostgresServer(self.state_dir / "postgres" / "data", self.postgres_port)
        self._emulator_pid = self.state_dir / "emulator.pid"
        self._emulator_log = self.state_dir / "emulator.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def environment(self) -> dict[str, str]:
        """Variables that point a service (or boto3, or the KCL) at this stack."""
        return {**LOCAL_ENVIRONMENT, "AWS_ENDPOINT_URL": self.endpoint, "WAREHOUSE_DSN": self.postgres.dsn}

    def settings(self) -> Settings:
        return Settings.from_env({**os.environ, **self.environment()})

    def _emulator_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def up(self) -> None:
        """Start both servers (those already running are kept) and provision. Blocks until ready."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "local_stack.emulator", "--port", str(self.emulator_port)]
        processes.start(command, self._emulator_pid, self._emulator_log)
        self.postgres.start()
        processes.wait_until(self._emulator_answers, 30, f"the AWS emulator on port {self.emulator_port}",
                             self._emulator_log)
        settings = self.settings()
        saved = {k: os.environ.get(k) for k in self.environment()}
        os.environ.update(self.environment())  # boto3 reads the endpoint from the environment
        try:
            provision(settings, shard_count=self.shard_count)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def running(self) -> dict[str, bool]:
        return {
            "emulator": processes.running_pid(self._emulator_pid) is not None,
            "postgres": self.postgres.data_dir.exists() and self.postgres.running(),
        }

    def down(self, purge: bool = False) -> None:
        """Stop both servers; with `purge`, delete their data. Idempotent."""
        processes.stop(self._emulator_pid)
        if purge:
            self.postgres.purge()
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            self.postgres.stop()
