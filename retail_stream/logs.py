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
    # botocore's own chatter is rarely what an operator wants at INFO.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    renderer = (
        structlog.dev.ConsoleRenderer()
        if stream.isatty()
        else structlog.processors.JSONRenderer()
    )
    stamp = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    # Libraries' stdlib records (botocore, uvicorn) become the same JSON lines.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    logging.basicConfig(handlers=[handler], level=numeric, force=True)
    structlog.configure(
        processors=[*stamp, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(**context)
