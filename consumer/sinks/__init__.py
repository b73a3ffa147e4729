"""Where a batch goes. Every sink has one method, `write(batch)`, which is
idempotent (writing the same batch twice leaves the sink as after once) and
either returns with the batch durable or raises a `SinkError`."""

from __future__ import annotations

from typing import Protocol

from consumer.batch import Batch


class SinkError(Exception):
    """A write did not become durable. Retrying the same batch is safe."""

    def __init__(self, sink: str, message: str) -> None:
        super().__init__(f"{sink}: {message}")
        self.sink = sink


class Sink(Protocol):
    name: str

    def write(self, batch: Batch) -> None:
        """Make `batch` durable in this sink; raises SinkError if it is not."""
        ...
