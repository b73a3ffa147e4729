"""`python -m local_stack up|down|status|env|provision`."""

from __future__ import annotations

import argparse
import shlex
import sys

from local_stack.processes import StackError
from local_stack.stack import LocalStack
from retail_stream import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description="The embedded local stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the emulator and PostgreSQL, create the stream, table, bucket, schema")
    down = commands.add_parser("down", help="stop them")
    down.add_argument("--purge", action="store_true", help="also delete their data")
    commands.add_parser("status", help="say what runs")
    commands.add_parser("env", help="print export lines: eval \"$(python -m local_stack env)\"")
    provision = commands.add_parser("provision", help="only create the resources, at the endpoints of the "
                                    "environment (AWS_ENDPOINT_URL, WAREHOUSE_DSN), as compose's init step does")
    provision.add_argument("--shards", type=int, default=2)
    args = parser.parse_args(argv)
    logs.configure("INFO", service="local_stack")

    try:
        if args.command == "provision":
            from local_stack.provision import provision as run_provision
            from retail_stream.settings import Settings

            run_provision(Settings.from_env(), shard_count=args.shards)
            return 0
        stack = LocalStack()
        if args.command == "up":
            stack.up()
            print(f"local stack up in {stack.state_dir}: AWS emulator {stack.endpoint}, "
                  f"PostgreSQL {stack.postgres.dsn}", file=sys.stderr)
        elif args.command == "down":
            stack.down(purge=args.purge)
        elif args.command == "status":
            for name, up in stack.running().items():
                print(f"{name}: {'running' if up else 'stopped'}")
        elif args.command == "env":
            for key, value in stack.environment().items():
                print(f"export {key}={shlex.quote(value)}")
    except StackError as exc:
        print(f"local_stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
