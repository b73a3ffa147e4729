"""structlog set-up: JSON lines on stderr, one event per line.

stderr, always: a record processor's stdout is the KCL protocol channel.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(level: str = "INFO", stream: TextIO | None = None, **context: object) -> None:
    """Configure structlog and the stdlib root logger to write to `stream`
    (default stderr); `context` is bound to every event."""
    stream = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(stream=stream, level=numeric, format="%(message)s", force=True)
    # botocore's own chatter is rarely what an operator wants at INFO.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    renderer = (
        structlog.dev.ConsoleRenderer()
        if stream.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(**context)
