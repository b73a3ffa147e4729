"""`python -m local_stack up|down|status|env|provision` (also `retail-local-stack`).

Logs go to stderr; stdout carries only what a caller may capture: the
`export` lines of `env` (for `eval "$(python -m local_stack env)"`) and the
summaries of `up` and `status`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import psycopg2
from botocore.exceptions import BotoCoreError, ClientError

from local_stack.errors import StackError
from local_stack.stack import LocalStack, StackStatus
from local_stack.stopping import stops_clean
from retail_stream import logs
from retail_stream.settings import Settings, SettingsError


def export_lines(environment: dict[str, str]) -> str:
    """`export K=V` lines, values shell-quoted. Pure."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())


def describe(status: StackStatus) -> str:
    """A few lines saying what runs where. Pure."""
    return (
        f"state folder  {status.state_dir}\n"
        f"AWS emulator  {status.emulator_endpoint or 'stopped'}"
        f"{f'  (pid {status.emulator_pid})' if status.emulator_pid else ''}\n"
        f"PostgreSQL    {status.postgres_dsn or 'stopped'}  (cluster {status.postgres_dir})\n"
        f"Prometheus    {status.prometheus_url or 'stopped'}\n"
        + (f"API dev key   {status.api_key}  (python -m api takes it from API_KEYS_FILE; "
           f"send it as X-API-Key)\n" if status.api_key else "")
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description="The local stack: AWS emulator and PostgreSQL in the background, provisioned. "
        "Folder: LOCAL_STACK_DIR (default <project>/.local); ports: LOCAL_STACK_AWS_PORT (4566), "
        "LOCAL_STACK_PG_PORT (5439).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start both servers and create the stream, table, bucket and schema")
    down = commands.add_parser("down", help="stop both servers")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data")
    commands.add_parser("status", help="say what runs where; exit status 0 only when both run")
    commands.add_parser("env", help="print export lines: eval \"$(python -m local_stack env)\"")
    provision = commands.add_parser(
        "provision",
        help="only create the resources, at the endpoints the environment names "
        "(AWS_ENDPOINT_URL, WAREHOUSE_DSN), as docker compose's init step does",
    )
    provision.add_argument("--shards", type=int, default=2, help="shards of a new stream (default 2)")
    ddl = commands.add_parser("warehouse-sql", help="print the warehouse's DDL and views, names filled in "
                              "(WAREHOUSE_SCHEMA, WAREHOUSE_TABLE), to run on Redshift yourself")
    ddl.add_argument("--dialect", choices=("redshift", "postgres"), default="redshift")
    provision.add_argument("--api-keys", metavar="DIR",
                           help="also make a development API key in DIR (api-keys.json, dev-api-key) if none is there")
    return parser


@stops_clean
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure("INFO", log_format=Settings.from_env().log_format, service="local_stack")
    try:
        if args.command == "warehouse-sql":
            from local_stack.provision import warehouse_sql

            sys.stdout.write(warehouse_sql(Settings.from_env(), args.dialect))
            return 0
        if args.command == "provision":
            from local_stack.provision import provision

            provision(Settings.from_env(), shard_count=args.shards)
            if args.api_keys:
                from local_stack.api_keys import ensure_dev_key

                ensure_dev_key(Path(args.api_keys))
            return 0
        stack = LocalStack.from_env()
        if args.command == "up":
            stack.up()
            sys.stdout.write(describe(stack.status()) + "\n# to use it from a shell:\n")
            sys.stdout.write(export_lines(stack.environment()))
        elif args.command == "down":
            stack.down(purge=args.purge)
        elif args.command == "status":
            status = stack.status()
            sys.stdout.write(describe(status))
            return 0 if status.running else 3
        elif args.command == "env":
            sys.stdout.write(export_lines(stack.environment()))
    except (StackError, SettingsError) as error:
        print(f"local_stack {args.command}: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, psycopg2.Error) as error:
        # `provision` against endpoints that do not answer (or refuse us): say which, briefly.
        print(f"local_stack {args.command}: {type(error).__name__}: {error}".rstrip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
