"""The chaos suite's rig and its oracle.

The rig is a local stack with the fault proxy in front of the emulator: the
producer, the consumer workers and the KCL inside them all talk to AWS
through the proxy, while the oracle reads the sinks straight from the stores.
Workers are real process groups (daemon, JVM, one Python child per shard), so
a kill or a freeze hits all of them, as it would a container.

The oracle judges by what a reader of the sinks sees: every source row has a
unique event id, so lost = expected ids missing from a sink, duplicated =
rows minus distinct ids.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import psycopg2
from psycopg2 import sql

from local_stack import census
from producer.csv_source import valid_records
from producer.replay import pass_source_id
from retail_stream import aws
from retail_stream.settings import Settings
from tests.chaos.proxy import FaultProxy, Rule
from local_stack.stack import LocalStack
from tests.conftest import running_stack
from tests.support.ports import free_port
from tests.support.waiting import wait_until

CSV = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"
LONG = os.environ.get("CHAOS_SCALE", "short") == "long"
# Where `python -m tests.chaos` collects the outcomes for its report.
REPORT_FILE = os.environ.get("CHAOS_REPORT_FILE")


def scaled(short, long):
    """The short figure in `make test`, the long one in `make chaos`."""
    return long if LONG else short


def expected_ids(source_id: str, passes: int) -> set[str]:
    """The event ids of the valid rows a replay of the sample with this source id sends."""
    return {r.event_id for pass_no in range(passes) for r in valid_records(CSV, pass_source_id(source_id, pass_no))}


def source_ids(source_id: str, passes: int) -> list[str]:
    return [pass_source_id(source_id, pass_no) for pass_no in range(passes)]


@dataclass
class Outcome:
    """One scenario's figures, as the report prints them."""

    scenario: str
    faults: str
    source_rows: int
    dynamodb_rows: int
    redshift_rows: int
    s3_records: int
    poison_injected: int
    dead_lettered: int
    lost: int
    lost_dynamodb: int
    lost_redshift: int
    lost_s3: int
    duplicated_dynamodb: int
    duplicated_redshift: int
    unexpected: int
    catch_up_seconds: float
    notes: dict = field(default_factory=dict)

    def assert_clean(self) -> None:
        """Nothing lost, nothing doubled, every poison record set aside."""
        record(self)
        problems = {k: v for k, v in asdict(self).items()
                    if k in ("lost", "duplicated_dynamodb", "duplicated_redshift", "unexpected") and v}
        assert not problems, f"{self.scenario}: {problems} ({self})"
        assert self.dead_lettered == self.poison_injected, self


def record(outcome: Outcome) -> None:
    """Append the outcome, named by its test as JUnit XML names it, for the report."""
    if REPORT_FILE:
        path, _, name = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0].partition("::")
        outcome.notes["test"] = f"{path.removesuffix('.py').replace('/', '.')}::{name}"
        with open(REPORT_FILE, "a") as out:
            out.write(json.dumps(asdict(outcome)) + "\n")


class Worker:
    """One consumer worker: `python -m consumer` in its own process group."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "KCL_WORKER_ID": name, "METRICS_PORT": str(self.port)}
        self.log_path = log_dir / f"consumer-{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Worker:
        self.starts += 1
        # Every process of this start (daemon, JVM, record processors) inherits it.
        self.env["CHAOS_WORKER_START"] = f"{self.name}-{self.starts}-{os.getpid()}"
        log = self.log_path.open("a")
        log.write(f'{{"event": "chaos_worker_start", "start": {self.starts}}}\n')
        log.flush()
        self.process = subprocess.Popen([sys.executable, "-m", "consumer"], env=self.env,
                                        stdout=log, stderr=log, start_new_session=True)
        log.close()
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 240) -> None:
        wait_until(lambda: self.ready() or not self.running(), timeout, f"worker {self.name} to be ready")
        assert self.running(), f"worker {self.name} exited during start-up:\n{self.log_tail()}"

    def freeze(self) -> None:
        """Stop every process of the worker (supervisor, JVM, record processors), as a paused container."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL every process of the worker at once, as a container kill does."""
        self._signal_all(signal.SIGKILL)
        self.process.wait(30)
        wait_until(lambda: not self.processes(), 15, f"every process of worker {self.name} to die")

    def _signal_all(self, sig: int) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def processes(self) -> list[int]:
        """The running processes of the current start."""
        marker = f"CHAOS_WORKER_START={self.env['CHAOS_WORKER_START']}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker in (proc / "environ").read_bytes().split(b"\0"):
                        found.append(int(proc.name))
                except OSError:
                    continue
        return found

    def stop(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM to the service process, as ECS sends it; (exit code, seconds to exit)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        wait_until(lambda: not self.processes(), 15, f"every process of worker {self.name} to exit")
        return code, time.monotonic() - started

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the worker's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def events(self, name: str) -> list[dict]:
        """The structured log events of this name, from every start."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if f'"{name}"' in line:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == name:
                    found.append(event)
        return found

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Rig:
    """A local stack behind the fault proxy, with workers, the producer and the oracle."""

    def __init__(self, stack: LocalStack, tmp: Path, **worker_env: str) -> None:
        self.tmp = tmp
        self.stack = stack
        self.proxy = FaultProxy(tmp, free_port(), self.stack.endpoint, seed=7).start()
        base = {**os.environ, **self.stack.environment()}
        # What the oracle and the "other writer" use: the emulator itself, never faulted.
        self.settings = Settings.from_env(base)
        self.env = {**base, "AWS_ENDPOINT_URL": self.proxy.url, "FLUSH_MAX_AGE_SECONDS": "1",
                    "LOG_LEVEL": "info", **worker_env}
        self.workers: dict[str, Worker] = {}

    def close(self) -> None:
        for worker in self.workers.values():
            if worker.running():
                worker.kill()
        self.proxy.stop()

    # -- workers ------------------------------------------------------------

    def worker(self, name: str, **env: str) -> Worker:
        """The named worker, started (once ready) if it is not running."""
        worker = self.workers.get(name)
        if worker is None:
            worker = self.workers[name] = Worker(name, {**self.env, **env}, self.tmp)
        if not worker.running():
            worker.start().wait_ready()
        return worker

    # -- writers ------------------------------------------------------------

    def producer(self, source_id: str, passes: int = 1, *args: str) -> subprocess.Popen:
        """Start a replay of the sample through the proxy; its stdout ends with the JSON summary."""
        port = free_port()
        return subprocess.Popen(
            [sys.executable, "-m", "producer", str(CSV), "--source-id", source_id, "--loop", str(passes),
             "--metrics-port", str(port), "--rejects", str(self.tmp / f"rejects-{source_id}.jsonl"), *args],
            env=self.env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=(self.tmp / "producer.log").open("a"),
            text=True,
        )

    def produce(self, source_id: str, passes: int = 1, *args: str) -> dict:
        process = self.producer(source_id, passes, *args)
        return summary(process)

    def put_raw(self, payloads: Iterable[bytes]) -> None:
        """Records from another writer, straight into the stream."""
        kinesis = aws.client("kinesis", self.settings)
        for i, data in enumerate(payloads):
            kinesis.put_record(StreamName=self.settings.stream_name, Data=data, PartitionKey=f"other-{i}")

    # -- progress -----------------------------------------------------------

    def checkpoints(self) -> dict[str, str | None]:
        client = aws.client("dynamodb", self.settings)
        items = client.scan(TableName=self.settings.kcl_application_name)["Items"]
        return {i["leaseKey"]["S"]: i.get("checkpoint", {}).get("S") for i in items}

    def leader(self) -> str | None:
        """The worker holding the KCL 3 leader lock."""
        client = aws.client("dynamodb", self.settings)
        item = client.get_item(TableName=f"{self.settings.kcl_application_name}-CoordinatorState",
                               Key={"key": {"S": "Leader"}}).get("Item", {})
        return item.get("ownerName", {}).get("S")

    def lease_owners(self) -> dict[str, str | None]:
        client = aws.client("dynamodb", self.settings)
        items = client.scan(TableName=self.settings.kcl_application_name)["Items"]
        return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S") for i in items}

    def workers_reporting(self) -> set[str]:
        """The workers whose KCL 3 worker metrics are in their table: those the
        leader counts when it assigns leases."""
        client = aws.client("dynamodb", self.settings)
        try:
            items = client.scan(TableName=f"{self.settings.kcl_application_name}-WorkerMetricStats")["Items"]
        except client.exceptions.ResourceNotFoundException:
            return set()  # no worker has reported yet
        return {i["wid"]["S"] for i in items}

    def drained(self) -> bool:
        """Every shard checkpointed at its last delivered position, sub-sequence
        included (or its end, once closed)."""
        return census.drained(self.settings)

    def wait_drained(self, timeout: float = 300) -> float:
        """Block until drained; the seconds it took."""
        started = time.monotonic()
        wait_until(self.drained, timeout, "the consumer to checkpoint every shard's last record", every=1)
        return round(time.monotonic() - started, 1)

    # -- the oracle -----------------------------------------------------------

    def judge(self, scenario: str, faults: str, sources: list[str], expected: set[str], catch_up: float,
              poison: list[bytes] = (), tag: bytes | None = None, **notes) -> Outcome:
        """Count what each sink holds of these sources' rows and of this scenario's poison."""
        dynamodb = self._dynamodb_ids(sources)
        redshift = self._warehouse_ids(sources)
        s3 = self._s3_ids(sources)
        letters = self._dead_letters(tag or sources[0].encode())
        seen = set(dynamodb) | set(redshift) | set(s3)
        return Outcome(
            scenario=scenario, faults=faults, source_rows=len(expected),
            dynamodb_rows=sum(dynamodb.values()), redshift_rows=sum(redshift.values()),
            s3_records=sum(s3.values()), poison_injected=len(poison), dead_lettered=len(letters),
            lost=len(expected - (set(dynamodb) & set(redshift) & set(s3))),
            lost_dynamodb=len(expected - set(dynamodb)), lost_redshift=len(expected - set(redshift)),
            lost_s3=len(expected - set(s3)),
            duplicated_dynamodb=sum(dynamodb.values()) - len(dynamodb),
            duplicated_redshift=sum(redshift.values()) - len(redshift),
            unexpected=len(seen - expected), catch_up_seconds=catch_up,
            notes={**notes, "poison_matched": sorted(letters) == sorted(poison)} if poison else notes,
        )

    def _dynamodb_ids(self, sources: list[str]) -> Counter:
        paginator = aws.client("dynamodb", self.settings).get_paginator("scan")
        found = Counter()
        for page in paginator.paginate(TableName=self.settings.dynamodb_table, ProjectionExpression="event_id, #s",
                                       ExpressionAttributeNames={"#s": "source"}):
            found.update(i["event_id"]["S"] for i in page["Items"] if i["source"]["S"] in sources)
        return found

    def _warehouse_ids(self, sources: list[str]) -> Counter:
        table = sql.Identifier(self.settings.warehouse_schema, self.settings.warehouse_table)
        with psycopg2.connect(self.settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT event_id FROM {} WHERE source = ANY(%s)").format(table), (list(sources),))
            found = Counter(row[0] for row in cur.fetchall())
        conn.close()
        return found

    def _s3_ids(self, sources: list[str]) -> Counter:
        _, lines = census.s3_lines(self.settings, self.settings.s3_raw_prefix)
        wanted = set(sources)
        return Counter(r["event_id"] for r in map(json.loads, lines) if r["source"] in wanted)

    def _dead_letters(self, tag: bytes) -> list[bytes]:
        """The raw bytes of every dead letter whose record carries `tag`."""
        _, lines = census.s3_lines(self.settings, self.settings.s3_dead_letter_prefix)
        raw = (base64.b64decode(json.loads(line)["data_base64"]) for line in lines)
        return [data for data in raw if tag in data]


def summary(process: subprocess.Popen, timeout: float = 600) -> dict:
    """Wait for a producer; its summary (the last line of its stdout)."""
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"producer exited {process.returncode}: {out[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


@contextlib.contextmanager
def open_rig(tmp: Path, **worker_env: str) -> Iterator[Rig]:
    """A rig on a fresh stack whose variables (the emulator, its credentials)
    are in os.environ for the oracle's clients; all stopped after."""
    with running_stack(tmp / "stack") as stack:
        rig = Rig(stack, tmp, **worker_env)
        try:
            yield rig
        finally:
            rig.close()
