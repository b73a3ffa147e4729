"""The project's services as children of a local-stack command (`make demo`,
`make report`, `make bench`): the producer's replay, the consumer, and the
wait for the consumer to drain what was sent, watched through what is cheap
to read (its counter in Prometheus, the warehouse's load ledger)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from consumer.lifetime import die_with_parent
from local_stack import census
from local_stack.ports import free_port
from local_stack.prometheus import PrometheusServer
from local_stack.stopping import deferred
from retail_stream.progress import Progress
from retail_stream.settings import Settings

# SIGTERM to the consumer, then this long for the KCL's graceful shutdown
# (leases released, last checkpoints written) before SIGKILL.
CONSUMER_STOP_TIMEOUT_SECONDS = 60
POLL_SECONDS = 2
PROCESSED = "sum(retail_consumer_records_processed_total)"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_producer(csv: Path, rejects: Path, env: dict, *extra: str) -> dict:
    """Replay the CSV into the stream; returns the producer's JSON summary.
    Its progress (a bar on a terminal) goes to our stderr."""
    result = subprocess.run(  # nosec B603: our argv, no shell
        [sys.executable, "-m", "producer", str(csv), "--rejects", str(rejects), *extra],
        env=env, stdout=subprocess.PIPE, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"producer failed with status {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def scraped_environments(prometheus: PrometheusServer, env: dict) -> tuple[dict, dict]:
    """`env` for the producer and for the consumer, each serving its metrics
    on a free port of its own that Prometheus now scrapes (two ports: a job
    must never scrape the other service's counters)."""
    producer_port = free_port()
    consumer_port = next(port for port in iter(free_port, None) if port != producer_port)
    prometheus.write_targets({"producer": [f"127.0.0.1:{producer_port}"],
                              "consumer": [f"127.0.0.1:{consumer_port}"]})
    return {**env, "METRICS_PORT": str(producer_port)}, {**env, "METRICS_PORT": str(consumer_port)}


@contextlib.contextmanager
def consumer_running(env: dict, log_path: Path) -> Iterator[subprocess.Popen]:
    """`python -m consumer` (the KCL daemon's supervisor) with `env`, its
    output in `log_path`; stopped on leaving, whatever the reason. It dies
    with this process, so even a SIGKILL here leaves no worker behind."""
    consumer = None
    with log_path.open("w") as log:
        try:
            with deferred():  # started and known to the finally below, or neither
                consumer = subprocess.Popen(  # nosec B603: our argv, no shell
                    [sys.executable, "-m", "consumer"], env=env, stdout=log, stderr=log,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            yield consumer
        finally:
            if consumer is not None:
                stop(consumer)


def stop(consumer: subprocess.Popen, timeout: float = CONSUMER_STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, SIGKILL after `timeout`; returns the exit status."""
    if consumer.poll() is None:
        consumer.send_signal(signal.SIGTERM)
    try:
        return consumer.wait(timeout)
    except subprocess.TimeoutExpired:
        consumer.kill()
        return consumer.wait()


@dataclass(frozen=True)
class Drained:
    loaded: int  # rows the warehouse's ledger says were inserted
    processed: int  # the consumer's records as Prometheus scraped them
    seconds: float  # from the consumer's start to the last row loaded

    @property
    def per_second(self) -> float:
        return self.loaded / self.seconds if self.seconds > 0 else 0.0


def wait_for_drain(settings: Settings, prometheus: PrometheusServer, expected: int,
                   consumer: subprocess.Popen, timeout: float) -> Drained:
    """Block until the warehouse has loaded `expected` rows, showing progress.
    The warehouse is the last sink a batch reaches, so by then DynamoDB and
    the raw zone hold them too. Each poll reads the load ledger (a row per
    batch) and one Prometheus query: nothing that grows with the data."""
    started = time.monotonic()
    progress = Progress(sys.stderr, "drain", expected)
    loaded = processed = 0
    try:
        while True:
            if consumer.poll() is not None:
                raise SystemExit(f"consumer exited early with status {consumer.returncode}")
            loaded = census.warehouse_loaded(settings)
            processed = int(prometheus.value(PROCESSED) or 0)
            if loaded >= expected:
                return Drained(loaded, processed, time.monotonic() - started)
            if time.monotonic() - started > timeout:
                raise SystemExit(f"timed out after {timeout:.0f} s: the warehouse has {loaded} of {expected} rows")
            progress.show(loaded, f"processed {processed:,}")
            time.sleep(POLL_SECONDS)
    finally:
        progress.close(loaded, f"processed {processed:,}")


def processed_after_scrape(prometheus: PrometheusServer, expected: int, wait: float = 30) -> int:
    """The consumer's processed-records counter once a scrape has caught up with `expected`."""
    deadline = time.monotonic() + wait
    while (prometheus.value(PROCESSED) or 0) < expected and time.monotonic() < deadline:
        time.sleep(1)
    return int(prometheus.value(PROCESSED) or 0)
