"""SIGTERM mid-run to `make demo`, `make report`, `make bench` and
`python -m local_stack up` stops everything they started: the consumer and
its JVM, the emulator, PostgreSQL, Prometheus. No process of theirs is left.

A run's processes are found by a tag in their environment, which every child
inherits (the JVM and its record processors too), and PostgreSQL, started
with an environment of its own, by its cluster's folder."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_stack.postgres import PostgresServer
from local_stack.services import CONSUMER_STOP_TIMEOUT_SECONDS
from local_stack.stack import project_dir
from tests.support.ports import free_ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

TAG = "RETAIL_STOP_TEST_TAG"
START_TIMEOUT_SECONDS = 120
EXIT_GRACE_SECONDS = 5  # for a process the command stopped to be gone, after the command's exit
PY = sys.executable


def tagged(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment holds the tag."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append((int(proc.name), cmdline))
    return found


def postmasters(state_dir: Path) -> list[tuple[int, str]]:
    """PostgreSQL servers running on the cluster of the stack in `state_dir`."""
    server = PostgresServer(state_dir / "postgres", 0)
    clusters = [f"-D {home / 'pgdata'}" for home in (server.data_dir, server.fallback_dir)]
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(cmdline.endswith(cluster) or f"{cluster} " in cmdline for cluster in clusters):
            found.append((int(proc.name), cmdline))
    return found


def wait_for(tag: str, marker: str, command: subprocess.Popen) -> None:
    """Until the marker's process runs; an AssertionError if the command ends first."""
    def ran() -> str | None:
        if any(marker in cmdline for _, cmdline in tagged(tag)):
            return "ran"
        return "ended" if command.poll() is not None else None

    outcome = wait_until(ran, START_TIMEOUT_SECONDS, f"{marker!r} to run", every=0.05)
    assert outcome == "ran", f"the command ended (status {command.returncode}) before {marker!r} ran"


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    marker: str  # the process whose start means "mid-run" (a record processor: a lease taken)
    folder: str  # the command's stack, under LOCAL_STACK_DIR
    ctrl_c: bool = False  # SIGINT to the whole process group, as a terminal sends it; else SIGTERM to the command

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-").replace(",", "")


MAKE = ["make", "--no-print-directory"]
CASES = [
    Case("make demo", [*MAKE, "demo"], "consumer.record_processor", "demo"),
    # Just as the JVM starts: the moment a stop used to be lost (consumer/daemon.py).
    Case("make demo, Ctrl-C", [*MAKE, "demo"], "MultiLangDaemon", "demo", ctrl_c=True),
    Case("make report", [*MAKE, "report"], "MultiLangDaemon", "report"),
    # Stopped while its producer replays: its consumer runs through the same
    # consumer_running as the demo's, stopped mid-drain above.
    Case("make bench", [*MAKE, "bench", "BENCH_ARGS=--rows 3000 --naive-rows 200 --latency-seconds 5"],
         "-m producer", "bench"),
    # `up` leaves the stack running once it is up: stopped while it comes up.
    Case("python -m local_stack up", [PY, "-m", "local_stack", "up"], "local_stack.emulator", "."),
]


@dataclass
class Outcome:
    status: int
    seconds: float  # from the signal to the command's exit
    running: list  # the run's processes when it was signalled
    left: list  # and after it exited
    log: str


def run_and_stop(case: Case, root: Path) -> Outcome:
    tag = uuid.uuid4().hex
    ports = free_ports(3)  # for `up`: the default ports may be a developer's own stack
    stacks = root / case.slug
    stack_dir = (stacks / case.folder).resolve()
    env = {**os.environ, TAG: tag, "LOCAL_STACK_DIR": str(stacks),
           "LOCAL_STACK_AWS_PORT": str(ports[0]), "LOCAL_STACK_PG_PORT": str(ports[1]),
           "LOCAL_STACK_PROMETHEUS_PORT": str(ports[2])}
    log_path = root / f"{case.slug}.log"
    with log_path.open("wb") as log:
        # A process group of its own: the Ctrl-C case signals all of it, and only it.
        command = subprocess.Popen(case.argv, cwd=project_dir(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_for(tag, case.marker, command)
            running = tagged(tag) + postmasters(stack_dir)
            if case.ctrl_c:
                os.killpg(command.pid, signal.SIGINT)
            else:
                command.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status = command.wait(CONSUMER_STOP_TIMEOUT_SECONDS + 60)
            seconds = time.monotonic() - signalled
        finally:
            if command.poll() is None:
                os.killpg(command.pid, signal.SIGKILL)
    # A grandchild reparented to init may still be exiting: a moment for the
    # last ones to go, then what is still there is what the command left.
    def left() -> list[tuple[int, str]]:
        return tagged(tag) + postmasters(stack_dir)

    with contextlib.suppress(AssertionError):  # the test reports what is left
        wait_until(lambda: not left(), EXIT_GRACE_SECONDS, "the run's last processes to exit", every=0.05)
    return Outcome(status, seconds, running, left(), log_path.read_text(errors="replace"))


@pytest.fixture
def sigint_as_from_a_terminal():
    """A Ctrl-C as from a terminal. Started in the background (`cmd &` in a
    script), these tests find SIGINT ignored, and an ignored signal stays
    ignored in every program they start, so make would not stop by it. A
    handler, unlike an ignore, is reset to the default at exec."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.usefixtures("sigint_as_from_a_terminal")
def test_a_stop_signal_mid_run_stops_everything_each_command_started(tmp_path):
    # Side by side: each has its own folder, ports and tag, and most of the
    # wait is the stop itself.
    with ThreadPoolExecutor(len(CASES)) as pool:
        outcomes = list(pool.map(lambda case: run_and_stop(case, tmp_path), CASES))
    for case, outcome in zip(CASES, outcomes):
        sig = signal.SIGINT if case.ctrl_c else signal.SIGTERM
        assert any(case.marker in cmdline for _, cmdline in outcome.running), f"{case.name}: not mid-run"
        assert outcome.left == [], f"{case.name}: left running: {outcome.left}"
        # make passes the signal on, waits for its recipe, then ends by the same
        # signal; the command itself exits 128 + the signal, as a shell reports it.
        assert outcome.status == (-sig if case.argv[0] == "make" else 128 + sig), (case.name, outcome.status)
        assert outcome.seconds < CONSUMER_STOP_TIMEOUT_SECONDS + 30, f"{case.name}: {outcome.seconds:.0f} s to stop"
        assert f"stopped by {sig.name}: everything this command started is stopped" in outcome.log, (
            case.name, outcome.log[-3000:])
