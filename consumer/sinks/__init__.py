"""Where a batch goes. Every sink has one method, `write(batch)`, which is
idempotent (writing the same batch twice leaves the sink as after once) and
either returns with the batch durable, saying how many records it took, or
raises a `SinkError`."""

from __future__ import annotations

from typing import Protocol

from botocore.exceptions import ClientError

from consumer.batch import Batch


class SinkError(Exception):
    """A write did not become durable. Retrying the same batch is safe."""

    def __init__(self, sink: str, message: str, kind: str = "error") -> None:
        super().__init__(f"{sink}: {message}")
        self.sink = sink
        self.kind = kind  # a low-cardinality name for metrics: an AWS error code, an exception class


def error_kind(exc: Exception) -> str:
    """An AWS error code (ThrottlingException, 500…) or the exception's class name."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") or "ClientError"
    return type(exc).__name__


class Sink(Protocol):
    name: str

    def write(self, batch: Batch) -> int:
        """Make `batch` durable in this sink and return how many of its
        records this sink holds; raises SinkError if it is not durable."""
        ...
