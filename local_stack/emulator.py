"""The local AWS emulator: moto's server application behind Hypercorn.

One port answers HTTP/1.1 (boto3) and HTTP/2 with prior knowledge (h2c, the
KCL's Java SDK); moto's own Werkzeug server only speaks HTTP/1.1.
Run it as ``python -m local_stack.emulator --port 4566``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any, Callable

# Big enough for any S3 object or PutRecords call the pipeline sends.
MAX_BODY_BYTES = 64 * 1024 * 1024


def build_app():
    """The moto WSGI app wrapped for Hypercorn's asyncio worker."""
    from hypercorn.middleware import AsyncioWSGIMiddleware
    from moto.server import DomainDispatcherApplication, create_backend_app

    from local_stack import dynamodb_fidelity, kinesis_fidelity, s3_fidelity

    kinesis_fidelity.apply()
    dynamodb_fidelity.apply()
    s3_fidelity.apply()
    return AsyncioWSGIMiddleware(
        never_empty(DomainDispatcherApplication(create_backend_app)), max_body_size=MAX_BODY_BYTES
    )


def never_empty(app):
    """`app`, but every response body has at least one chunk.

    Hypercorn's WSGI wrapper (0.17, 0.18) sends the status line with the first
    body chunk: a response without one (any HEAD, such as S3 HeadBucket on a
    missing bucket) ends in "Error in ASGI Framework" and a 500.
    """

    def wsgi(environ, start_response):
        body = app(environ, start_response)
        try:
            chunks = iter(body)
            first = next(chunks, None)
            yield b"" if first is None else first
            yield from chunks
        finally:
            if hasattr(body, "close"):
                body.close()

    return wsgi


def serve(host: str, port: int, app_factory: Callable[[], Any] = build_app) -> None:
    """Serve the ASGI app `app_factory()` builds (the emulator by default)
    over HTTP/1.1 and h2c until SIGTERM or SIGINT."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    # The KCL keeps long-lived HTTP/2 connections open between polls.
    config.keep_alive_timeout = 300

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await hypercorn_serve(app_factory(), config, shutdown_trigger=stop.wait)

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
