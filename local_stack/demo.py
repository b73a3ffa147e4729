"""`make demo`: the whole pipeline on the local stack, start to finish.

Starts a fresh stack, replays a CSV with the producer, runs the consumer until
every sink holds every valid row, prints a summary and, as the very last line,
one JSON object of counts read from the stores themselves; then stops the
stack. Exit status 0 only when every valid row is once in DynamoDB, S3 and
the warehouse and every invalid row is in the rejects file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local_stack import census
from local_stack.stack import LocalStack, project_dir
from producer.csv_source import read_rows
from retail_stream import logs
from retail_stream.settings import Settings

DEFAULT_CSV = project_dir() / "data" / "TestSample.csv"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def count_source_rows(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_producer(csv: Path, rejects: Path, env: dict) -> dict:
    """Replay the CSV into the stream; returns the producer's JSON summary."""
    result = subprocess.run(
        [sys.executable, "-m", "producer", str(csv), "--rejects", str(rejects)],
        env=env, stdout=subprocess.PIPE, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"producer failed with status {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for_sinks(settings: Settings, expected: int, consumer: subprocess.Popen, timeout: float) -> None:
    """Block until DynamoDB, S3 and the warehouse each hold `expected` rows."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if consumer.poll() is not None:
            raise SystemExit(f"consumer exited early with status {consumer.returncode}")
        seen = (
            census.dynamodb_items(settings),
            len({json.loads(line)["event_id"] for line in census.s3_lines(settings, settings.s3_raw_prefix)[1]}),
            census.warehouse_rows(settings)[1],
        )
        if seen != last:
            say(f"  waiting: dynamodb={seen[0]} s3={seen[1]} warehouse={seen[2]} of {expected}")
            last = seen
        if min(seen) >= expected:
            return
        time.sleep(2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {expected} rows in every sink")


def read_prometheus(stack: LocalStack, expected: int, run_seconds: float) -> dict:
    """The consumer's figures as Prometheus scraped them (not as the consumer
    says): its processed-records counter, once a scrape has caught it up, and
    the highest per-shard lag seen during the run."""
    prometheus = stack.prometheus
    processed_query = "sum(retail_consumer_records_processed_total)"
    deadline = time.monotonic() + 30
    while (prometheus.value(processed_query) or 0) < expected and time.monotonic() < deadline:
        time.sleep(1)
    window = f"{int(run_seconds) + 10}s"
    max_lag = prometheus.value(f"max(max_over_time(retail_consumer_millis_behind_latest[{window}]))")
    return {
        "prometheus_records_processed": int(prometheus.value(processed_query) or 0),
        "prometheus_max_lag_ms": int(max_lag or 0),
    }


def stop(consumer: subprocess.Popen, timeout: float = 60) -> int:
    consumer.send_signal(signal.SIGTERM)
    try:
        return consumer.wait(timeout)
    except subprocess.TimeoutExpired:
        consumer.kill()
        return consumer.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline end to end on the local stack.")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the sinks")
    args = parser.parse_args(argv)
    csv = args.csv.resolve()
    # The stack's own events: stderr, not the summary.
    logs.configure("INFO", log_format=Settings.from_env().log_format, service="local_stack")

    stack = LocalStack(state_dir=project_dir() / ".local" / "demo")
    stack.down(purge=True)
    started = time.monotonic()
    say(f"starting the local stack in {stack.state_dir}")
    stack.up()
    try:
        # This process reads the stores too: point its own boto3 at the stack.
        os.environ.update(stack.environment())
        env = {**os.environ, "FLUSH_MAX_AGE_SECONDS": "5", "KCL_WORKER_ID": "demo"}
        settings = Settings.from_env(env)
        rejects = stack.state_dir / "rejects.jsonl"

        say(f"replaying {csv}")
        produced = run_producer(csv, rejects, env)
        expected = produced["sent"]

        log_path = stack.state_dir / "consumer.log"
        say(f"starting the consumer (KCL MultiLangDaemon; log: {log_path})")
        with log_path.open("w") as log:
            consumer = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, stderr=log, stdout=log)
            try:
                wait_for_sinks(settings, expected, consumer, args.timeout)
                scraped = read_prometheus(stack, expected, time.monotonic() - started)
            finally:
                status = stop(consumer)
        say(f"consumer stopped (status {status})")

        found = census.take(settings)
        result = {
            "source_rows": count_source_rows(csv),
            "rejected": count_lines(rejects),
            **found.as_dict(),
            **scraped,
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        stack.down()

    valid = result["source_rows"] - result["rejected"]
    ok = (
        result["dynamodb_items"] == valid
        and result["redshift_rows"] == result["redshift_distinct_events"] == valid
        and result["s3_distinct_events"] == valid
        and result["kinesis_records"] == expected
        and result["prometheus_records_processed"] == expected
        and status == 0
    )
    say("")
    say(f"source rows           {result['source_rows']:>8}")
    say(f"rejected by producer  {result['rejected']:>8}   (see {rejects})")
    say(f"records in Kinesis    {result['kinesis_records']:>8}")
    say(f"items in DynamoDB     {result['dynamodb_items']:>8}")
    say(f"S3 raw zone           {result['s3_records']:>8}   records in {result['s3_objects']} objects")
    say(f"rows in the warehouse {result['redshift_rows']:>8}   ({result['redshift_distinct_events']} distinct)")
    say(f"dead-lettered         {result['dead_lettered']:>8}")
    say(f"Prometheus: processed {result['prometheus_records_processed']:>8}   "
        f"highest lag {result['prometheus_max_lag_ms']} ms")
    say("every valid row is once in every sink" if ok else "MISMATCH: see the counts above")
    print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
