"""The local stack: the AWS emulator and a throwaway PostgreSQL, run in the
background from a state folder, then provisioned.

`up()` returns with both servers running; `down()`, from this process or any
other, stops them. The state folder holds everything: the emulator's pid file
and log, the PostgreSQL cluster (or a pointer to where it had to go) and
`stack.json`, the ports the running stack uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import structlog

from local_stack.api_keys import KEYS_FILE, dev_key, ensure_dev_key
from local_stack.errors import StackError
from local_stack.ports import free_port, port_in_use
from local_stack.postgres import PostgresServer
from local_stack.processes import BackgroundProcess
from local_stack.prometheus import PrometheusServer
from local_stack.provision import provision
from producer.cli import API_KEY_VARIABLE
from retail_stream.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_EMULATOR_PORT = 4566
DEFAULT_POSTGRES_PORT = 5439
DEFAULT_PROMETHEUS_PORT = 9090
EMULATOR_START_TIMEOUT_SECONDS = 30
STATE_FILE = "stack.json"

# What a service needs to use the stack besides the endpoints. The KCL
# timings suit an emulator and a few workers: the first start waits one
# shard-sync interval, and a stopped worker's leases move once its lease has
# expired (failover time) and its worker metrics are two intervals old.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",  # nosec B105: the emulator's, which takes any
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",  # plain boto3 and the aws CLI read only this one
    "KCL_SHARD_SYNC_INTERVAL_MS": "5000",
    "KCL_LEASE_ASSIGNMENT_INTERVAL_MS": "2000",
    "KCL_FAILOVER_TIME_MS": "5000",
    "KCL_WORKER_METRICS_INTERVAL_MS": "2000",
    "KCL_IDLE_TIME_BETWEEN_READS_MS": "250",
}


def project_dir() -> Path:
    """The project's root folder (the one holding local_stack/)."""
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StackStatus:
    """What runs now; None for a server that is stopped."""

    state_dir: Path
    emulator_pid: int | None
    emulator_endpoint: str | None
    postgres_dsn: str | None
    postgres_dir: Path
    prometheus_url: str | None = None
    api_key: str | None = None  # the development API key (local_stack/api_keys.py)

    @property
    def running(self) -> bool:
        return self.emulator_pid is not None and self.postgres_dsn is not None


class LocalStack:
    """The stack kept in `state_dir`, serving on 127.0.0.1. A port of 0 means
    "any free port", chosen now."""

    def __init__(
        self,
        state_dir: Path,
        emulator_port: int = DEFAULT_EMULATOR_PORT,
        postgres_port: int = DEFAULT_POSTGRES_PORT,
        prometheus_port: int = DEFAULT_PROMETHEUS_PORT,
        *,
        shard_count: int = 2,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.emulator_port = emulator_port or free_port()
        self.postgres_port = postgres_port or free_port()
        self.shard_count = shard_count
        self.postgres = PostgresServer(self.state_dir / "postgres", self.postgres_port)
        self.prometheus = PrometheusServer(self.state_dir, prometheus_port or free_port())
        self.emulator = BackgroundProcess(
            "emulator",
            (sys.executable, "-m", "local_stack.emulator", "--port", str(self.emulator_port)),
            self.state_dir,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalStack:
        """The stack the CLI means: folder `LOCAL_STACK_DIR` (default
        `<project>/.local`); ports `LOCAL_STACK_AWS_PORT` / `LOCAL_STACK_PG_PORT`,
        else those of the stack running from that folder, else 4566
        and 5439. Raises StackError on a malformed port."""
        env = os.environ if environ is None else environ
        state_dir = state_root(env)
        recorded = _read_state(state_dir)

        def port(variable: str, key: str, default: int) -> int:
            raw = env.get(variable) or str(recorded.get(key, default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{variable}={raw!r} is not a TCP port")
            return int(raw)

        return cls(
            state_dir,
            port("LOCAL_STACK_AWS_PORT", "emulator_port", DEFAULT_EMULATOR_PORT),
            port("LOCAL_STACK_PG_PORT", "postgres_port", DEFAULT_POSTGRES_PORT),
            port("LOCAL_STACK_PROMETHEUS_PORT", "prometheus_port", DEFAULT_PROMETHEUS_PORT),
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def environment(self) -> dict[str, str]:
        """The variables that point a service (boto3, the KCL, psycopg2) at this stack."""
        environment = {**LOCAL_ENVIRONMENT, "AWS_ENDPOINT_URL": self.endpoint, "WAREHOUSE_DSN": self.postgres.dsn}
        key = dev_key(self.state_dir)
        if key:  # the API's key file, and the key for producer --via-api and curl
            environment |= {"API_KEYS_FILE": str(self.state_dir / KEYS_FILE), API_KEY_VARIABLE: key}
        return environment

    def settings(self) -> Settings:
        """The services' settings with this stack's variables over the process environment."""
        return Settings.from_env({**os.environ, **self.environment()})

    def up(self) -> None:
        """Start the emulator and PostgreSQL, block until both answer, then
        provision the stream, table, bucket and warehouse. Idempotent: running
        servers and existing resources are kept. Raises StackError when a port
        is taken, the stack already runs on other ports, or a server fails to
        start; what this call started is stopped again before it raises."""
        started = time.monotonic()
        self._refuse_clashes()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_dev_key(self.state_dir)
        try:
            # The emulator's imports take a moment: launch it, set up PostgreSQL meanwhile.
            self.emulator.start()
            self.postgres.start()
            self.emulator.wait_ready(self._emulator_answers, EMULATOR_START_TIMEOUT_SECONDS)
            self.prometheus.start()
            ports = {"emulator_port": self.emulator_port, "postgres_port": self.postgres_port,
                     "prometheus_port": self.prometheus.port}
            _write_state(self.state_dir, ports)
            with _environment_applied(self.environment()):  # boto3 reads the endpoint from os.environ
                provision(self.settings(), shard_count=self.shard_count)
        except BaseException:
            log.error("stack_start_failed", state_dir=str(self.state_dir))
            self.down()
            raise
        log.info(
            "stack_up", state_dir=str(self.state_dir), endpoint=self.endpoint, dsn=self.postgres.dsn,
            seconds=round(time.monotonic() - started, 2),
        )

    def down(self, purge: bool = False) -> None:
        """Stop both servers, blocking until they are gone; with `purge`, also
        delete the state folder (and a cluster kept elsewhere). Idempotent.
        Raises StackError rather than purge a folder that is not a stack's."""
        started = time.monotonic()
        self.emulator.stop()
        self.prometheus.stop()
        self.postgres.stop()
        if purge:
            self._refuse_foreign_purge()
            self.postgres.purge()
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        log.info("stack_down", state_dir=str(self.state_dir), purged=purge,
                 seconds=round(time.monotonic() - started, 2))

    def status(self) -> StackStatus:
        """What runs now, read from the pid file and the cluster. Never blocks long."""
        postgres_port = self.postgres.running_port()
        emulator_pid = self.emulator.pid()
        return StackStatus(
            state_dir=self.state_dir,
            emulator_pid=emulator_pid,
            emulator_endpoint=self.endpoint if emulator_pid is not None else None,
            prometheus_url=self.prometheus.url if self.prometheus.process.pid() is not None else None,
            postgres_dsn=self.postgres.dsn if postgres_port is not None else None,
            postgres_dir=self.postgres.pgdata,
            api_key=dev_key(self.state_dir),
        )

    def _refuse_clashes(self) -> None:
        """Raise StackError, before anything starts, when a port is taken by
        another program or this stack already runs on other ports."""
        if self.emulator.pid() is not None:
            recorded = self.emulator.recorded_argv() or []
            if recorded[1:] != list(self.emulator.argv[1:]):
                raise StackError(
                    f"the emulator in {self.state_dir} already runs as {' '.join(recorded[1:])}, "
                    f"not on port {self.emulator_port}; run down first"
                )
        elif port_in_use(self.emulator_port):
            raise StackError(
                f"port {self.emulator_port} (AWS emulator) is taken by another program; "
                "stop it or choose another port (LOCAL_STACK_AWS_PORT)"
            )
        running = self.postgres.running_port()
        if running is not None and running != self.postgres_port:
            raise StackError(
                f"PostgreSQL in {self.state_dir} already runs on port {running}, not {self.postgres_port}; "
                "run down first"
            )
        if running is None and port_in_use(self.postgres_port):
            raise StackError(
                f"port {self.postgres_port} (PostgreSQL) is taken by another program; "
                "stop it or choose another port (LOCAL_STACK_PG_PORT)"
            )

    def _refuse_foreign_purge(self) -> None:
        if not self.state_dir.exists() or not any(self.state_dir.iterdir()):
            return
        ours = [STATE_FILE, "postgres", self.emulator.log_file.name, self.emulator.pid_file.name]
        if not any((self.state_dir / name).exists() for name in ours):
            raise StackError(f"{self.state_dir} does not look like a local stack folder; not deleting it")

    def _emulator_answers(self) -> bool:
        # No proxies: an HTTP_PROXY in the environment must not swallow a loopback probe.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint}/moto-api/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False


def state_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where stacks keep their folders: `LOCAL_STACK_DIR`, else `<project>/.local`."""
    env = os.environ if environ is None else environ
    return Path(env.get("LOCAL_STACK_DIR") or project_dir() / ".local")


@contextlib.contextmanager
def throwaway_stack(name: str) -> Iterator[LocalStack]:
    """A fresh stack for one command (`make demo`, `report`, `bench`) in
    `<state root>/<name>` on free ports, so it runs beside `make up`: what an
    earlier run left there is purged first. Its variables are set in
    os.environ for this process's own clients; stopped on leaving."""
    stack = LocalStack(state_root() / name, 0, 0, 0)
    stack.down(purge=True)
    stack.up()
    try:
        os.environ.update(stack.environment())
        yield stack
    finally:
        stack.down()


@contextlib.contextmanager
def _environment_applied(variables: Mapping[str, str]) -> Iterator[None]:
    """Set `variables` in os.environ for the block, then restore what was there."""
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read_state(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state_dir: Path, state: dict) -> None:
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
