"""`make report`: the sample through the whole pipeline, then the report.

Starts a throwaway local stack (its own folder and free ports, so it runs
beside a stack from `make up`), replays the CSV with the producer, runs the
consumer until every sink holds every valid row, runs `python -m reporting`
on the warehouse it loaded and stops the stack. The report is this command's
stdout (its JSON figures the very last line) and its exit status; progress
goes to stderr. Arguments it does not know go to `python -m reporting`
(`--chart PATH.png`, `--limit N`, `--view NAME`).

To report on a stack you keep running instead: `make up`, replay, then
`eval "$(make -s env)"; .venv/bin/python -m reporting`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from local_stack.demo import DEFAULT_CSV, run_producer, say, stop, wait_for_sinks
from local_stack.ports import free_port
from local_stack.stack import LocalStack, project_dir
from retail_stream import logs
from retail_stream.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Replay a CSV through the pipeline on a throwaway local stack, then print the report. "
        "Other arguments go to python -m reporting.",
    )
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the sinks")
    args, report_args = parser.parse_known_args(argv)
    csv = args.csv.resolve()
    # The stack's own events: stderr, not the report.
    logs.configure("INFO", log_format=Settings.from_env().log_format, service="local_stack")

    stack = LocalStack(project_dir() / ".local" / "report", 0, 0, 0)
    stack.down(purge=True)
    say(f"starting a local stack in {stack.state_dir}")
    stack.up()
    try:
        os.environ.update(stack.environment())  # this process reads the stores too
        # A free metrics port: the producer and then the consumer use it, never a running stack's.
        env = {**os.environ, "FLUSH_MAX_AGE_SECONDS": "5", "KCL_WORKER_ID": "report",
               "METRICS_PORT": str(free_port())}
        say(f"replaying {csv}")
        expected = run_producer(csv, stack.state_dir / "rejects.jsonl", env)["sent"]
        log_path = stack.state_dir / "consumer.log"
        say(f"starting the consumer (log: {log_path})")
        with log_path.open("w") as log:
            consumer = subprocess.Popen([sys.executable, "-m", "consumer"], env=env, stdout=log, stderr=log)
            try:
                wait_for_sinks(Settings.from_env(env), expected, consumer, args.timeout)
            finally:
                say(f"consumer stopped (status {stop(consumer)})")
        say("reporting on the warehouse")
        return subprocess.run(
            [sys.executable, "-m", "reporting", *report_args], env=env, cwd=project_dir(), check=False
        ).returncode
    finally:
        stack.down()


if __name__ == "__main__":
    sys.exit(main())
