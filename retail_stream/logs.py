"""structlog set-up: one event per line on stderr, JSON lines for machines
(containers, CI, log files) and structlog's console renderer on a terminal.

stderr, always: a record processor's stdout is the KCL protocol channel.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def renders_console(log_format: str, stream: TextIO) -> bool:
    """`console` or `json` as asked; `auto`: console only on a terminal."""
    return log_format == "console" or (log_format == "auto" and stream.isatty())


def configure(level: str = "INFO", stream: TextIO | None = None, *, log_format: str = "auto",
              **context: object) -> None:
    """Configure structlog and the stdlib root logger to write to `stream`
    (default stderr) in `log_format` (settings.LOG_FORMATS); `context` is
    bound to every event."""
    stream = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    # botocore's own chatter is rarely what an operator wants at INFO.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    renderer = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if renders_console(log_format, stream)
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
