"""`retail-api` / `python -m api`: serve the HTTP API with uvicorn.

The composition root: settings, logging, the Kinesis writer, the DynamoDB
client and the front door (the API keys, the OIDC token verifier, the rate
limiter) are made here and passed to `create_app`; /metrics is served on
API_METRICS_PORT beside it. With API_TLS=self-signed it serves HTTPS with a
certificate made at start (behind a load balancer, which does not verify it). Logs are structlog JSON
lines on stderr (uvicorn's own lines go through the same root logger);
nothing is written to stdout. SIGTERM and SIGINT stop it gracefully:
requests in flight finish first.

Exit status: 0 after a clean stop, 2 for bad arguments or settings, no way
to authenticate callers (no API_KEYS_FILE, API_KEYS_SECRET_ID or
API_JWT_ISSUER), a key document that cannot be read, or a port that cannot be bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Sequence

import structlog
import uvicorn
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import REGISTRY, CollectorRegistry

from api.app import create_app
from api.auth import Door
from api.credentials import KeyFileError, KeyRing, key_origins
from api.limits import RateLimiter
from api.metrics import ApiMetrics
from api.tls import self_signed_files
from api.tokens import TokenVerifier
from producer.kinesis_writer import PUT_RECORDS_BACKOFF, KinesisWriter
from retail_stream import aws, logs
from retail_stream.metrics_server import MetricsServer
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
    try:
        door = front_door(settings)
    except (KeyFileError, OSError, SettingsError, ClientError, BotoCoreError) as exc:
        print(f"retail-api: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # A request waits on a refusing stream fewer attempts than the replay does: a client is waiting.
    writer = KinesisWriter(aws.client("kinesis", settings, validate=False), settings.stream_name,
                           backoff=dataclasses.replace(PUT_RECORDS_BACKOFF, attempts=settings.api_put_records_attempts))
    app = create_app(settings, writer, aws.client("dynamodb", settings), door)
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    metrics_port = settings.metrics_port_for("api")
    try:
        metrics = MetricsServer(settings.metrics_host, metrics_port, metrics_path=settings.metrics_path,
                                registry=lambda: REGISTRY).start()
    except OSError as exc:
        print(f"retail-api: error: cannot serve metrics on port {metrics_port}: {exc.strerror} "
              "(API_METRICS_PORT)", file=sys.stderr)
        return EXIT_USAGE
    tls = self_signed_files() if settings.api_tls == "self-signed" else None
    log.info("api.starting", host=host, port=port, tls=settings.api_tls, metrics_port=metrics.port,
             stream=settings.stream_name, table=settings.dynamodb_table)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the root logger logs.configure set up: stderr only
        access_log=False,  # the app logs one line per request itself
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal once it has shut down; with these
    # handlers in place that ends here, in exit status 0, not in a kill.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: None)
    try:
        server.run()
    finally:
        metrics.stop()
        if tls:
            tls.remove()
    if not server.started:  # the port could not be bound (uvicorn logged why)
        return EXIT_USAGE
    log.info("api.stopped")
    return EXIT_OK


def front_door(settings: Settings, registry: CollectorRegistry | None = None) -> Door:
    """Who may call, from the settings: the key documents (read now: one that
    cannot be read stops the start), the OIDC verifier, the rate limiter.
    Raises SettingsError when no credential at all could pass."""
    readers = key_origins(settings, lambda: aws.client("secretsmanager", settings))
    if not readers and not settings.api_jwt_issuer:
        raise SettingsError("no way to authenticate callers: set API_KEYS_FILE, API_KEYS_SECRET_ID "
                            "or API_JWT_ISSUER (see the README: API keys)")
    keys = KeyRing(readers, settings.api_keys_reload_seconds) if readers else None
    if keys:
        keys.load()
    tokens = TokenVerifier(settings.api_jwt_issuer, settings.api_jwt_audience, jwks_url=settings.api_jwt_jwks_url,
                           scope_prefix=settings.api_jwt_scope_prefix,
                           client_claim=settings.api_jwt_client_claim) if settings.api_jwt_issuer else None
    limiter = RateLimiter(settings.api_rate_limit_per_second, settings.api_rate_limit_burst)
    return Door(keys, tokens, limiter, ApiMetrics(registry))
