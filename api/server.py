"""`retail-api` / `python -m api`: serve the HTTP API with uvicorn.

The composition root: settings, logging, the Kinesis writer and the DynamoDB
client are made here and passed to `create_app`. Logs are structlog JSON
lines on stderr (uvicorn's own lines go through the same root logger);
nothing is written to stdout. SIGTERM and SIGINT stop it gracefully:
requests in flight finish first.

Exit status: 0 after a clean stop, 2 for bad arguments or settings or a port
that cannot be bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Sequence

import structlog
import uvicorn

from api.app import create_app
from producer.kinesis_writer import PUT_RECORDS_BACKOFF, KinesisWriter
from retail_stream import aws, logs
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_USAGE = 0, 2
# Requests in flight get this long after SIGTERM (ECS waits 30 s by default).
GRACEFUL_SHUTDOWN_SECONDS = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-api",
        description="Serve the HTTP API: POST /transactions into the Kinesis stream; "
        "GET customers' and invoices' transactions from DynamoDB. OpenAPI at /schema/openapi.json.",
    )
    parser.add_argument("--host", help="address to listen on (default: API_HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: API_PORT or 8080)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on bad arguments
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"retail-api: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, log_format=settings.log_format, service="api")
    # A request waits on a refusing stream fewer attempts than the replay does: a client is waiting.
    writer = KinesisWriter(aws.client("kinesis", settings, validate=False), settings.stream_name,
                           backoff=dataclasses.replace(PUT_RECORDS_BACKOFF, attempts=settings.api_put_records_attempts))
    app = create_app(settings, writer, aws.client("dynamodb", settings))
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    log.info("api.starting", host=host, port=port, stream=settings.stream_name, table=settings.dynamodb_table)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the root logger logs.configure set up: stderr only
        access_log=False,  # the app logs one line per request itself
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal once it has shut down; with these
    # handlers in place that ends here, in exit status 0, not in a kill.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    server.run()
    if not server.started:  # the port could not be bound (uvicorn logged why)
        return EXIT_USAGE
    log.info("api.stopped")
    return EXIT_OK
