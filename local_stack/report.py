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
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
from pathlib import Path

from local_stack.demo import DEFAULT_CSV
from local_stack.services import consumer_running, run_producer, say, scraped_environments, wait_for_drain
from local_stack.stack import project_dir, throwaway_stack
from local_stack.stopping import stops_clean
from retail_stream import logs
from retail_stream.settings import Settings


@stops_clean
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Replay a CSV through the pipeline on a throwaway local stack, then print the report. "
        "Other arguments go to python -m reporting.",
    )
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the consumer to drain")
    args, report_args = parser.parse_known_args(argv)
    csv = args.csv.resolve()
    # The stack's own events: stderr, not the report.
    logs.configure("INFO", log_format=Settings.from_env().log_format, service="local_stack")

    say("starting a local stack")
    with throwaway_stack("report") as stack:
        say(f"local stack up in {stack.state_dir}")
        env = {**os.environ, "FLUSH_MAX_AGE_SECONDS": "5", "KCL_WORKER_ID": "report"}
        producer_env, consumer_env = scraped_environments(stack.prometheus, env)
        say(f"replaying {csv}")
        expected = run_producer(csv, stack.state_dir / "rejects.jsonl", producer_env)["sent"]
        log_path = stack.state_dir / "consumer.log"
        say(f"starting the consumer (log: {log_path})")
        with consumer_running(consumer_env, log_path) as consumer:
            wait_for_drain(Settings.from_env(env), stack.prometheus, expected, consumer, args.timeout)
        say(f"consumer stopped (status {consumer.returncode})")
        say("reporting on the warehouse")
        return subprocess.run(  # nosec B603: our argv, no shell
            [sys.executable, "-m", "reporting", *report_args], env=env, cwd=project_dir(), check=False
        ).returncode

if __name__ == "__main__":
    sys.exit(main())
