"""Where a batch goes. Every sink has one method, `write(batch)`, which is
idempotent (writing the same batch twice leaves the sink as after once) and
either returns with the batch durable, saying how many records it took, or
raises a `SinkError`."""

from __future__ import annotations

from typing import Protocol

from consumer.batch import Batch
from retail_stream import retries


class SinkError(Exception):
    """A write did not become durable. Retrying the same batch is safe; when
    `permanent`, it is also pointless (access denied, a missing resource)."""

    def __init__(self, sink: str, message: str, code: str = "error", *, resource: str = "",
                 permanent: bool = False) -> None:
        super().__init__(f"{sink}: {message}")
        self.sink = sink
        self.code = code  # low-cardinality, for metrics: an AWS error code, a SQLSTATE, a class name
        self.resource = resource  # what was written: a table, a bucket; never a secret
        self.permanent = permanent

    @classmethod
    def caused_by(cls, sink: str, resource: str, exc: BaseException, doing: str = "") -> SinkError:
        """The SinkError for a client's exception, classified once (retail_stream.retries)."""
        message = f"{doing}: {exc}" if doing else str(exc)
        return cls(sink, message.strip(), retries.error_code(exc), resource=resource,
                   permanent=retries.permanent(exc))


class Sink(Protocol):
    name: str
    after: tuple[str, ...]  # the sinks that must hold a batch before this one reads it

    def write(self, batch: Batch) -> int:
        """Make `batch` durable in this sink and return how many of its
        records this sink holds; raises SinkError if it is not durable."""
        ...
