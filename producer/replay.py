"""The replay: CSV rows -> destination.prepare -> (rejects | entries) -> batches -> destination.send.

    rows = read_rows(csv)                           csv_source.py
    entry = destination.prepare(source, line, row)  destinations.py   -- bad row --> RejectsFile
            (Kinesis: parse_row + encode; the API: the row as a JSON object)
    batch = builder.add(entry)                      batching.py  (paced by pacing.py)  -- too big --> RejectsFile
    refused = destination.send(batch)               kinesis_writer.py or api_destination.py
                                                    -- refused by the API --> RejectsFile

Every source row gets the same event_id on every replay (it is derived from the
source id and the line), so replaying a file never creates new rows
downstream; a `--loop` pass after the first uses the source id `<name>~<pass>`
precisely so that it does.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterator, Sequence

import structlog

from producer.batching import UnsendableEntry
from producer.csv_source import SourceError, read_rows
from producer.destinations import Destination, KinesisDestination
from producer.kinesis_writer import KinesisWriter
from producer.metrics import NoProducerMetrics, ProducerMetrics
from producer.pacing import RateLimiter, TimelinePacer
from retail_stream.schema import CSV_COLUMNS, InvalidRecord, parse_invoice_date

log = structlog.get_logger(__name__)

REJECTS_DIR = Path("rejects")


def default_rejects_path(csv_path: Path) -> Path:
    """`rejects/<csv file name>.rejects.jsonl`, relative to the current directory."""
    return REJECTS_DIR / f"{csv_path.name}.rejects.jsonl"


def pass_source_id(source_id: str, pass_no: int) -> str:
    """The source id of pass `pass_no`: the plain id on the first pass (0),
    `<id>~<pass>` after it, so every pass's rows get new event_ids."""
    return source_id if pass_no == 0 else f"{source_id}~{pass_no}"


class RejectsFile:
    """A JSON-lines file of rows that could not be sent, one object per row:
    `{"source", "line", "reason", "fields"}`.

    Opening truncates it: the file holds one run's rejects, so its line count
    is that run's rejected count. Lines are flushed as written, so a crash
    loses none of the rejects found before it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._handle = None

    def __enter__(self) -> RejectsFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("w", encoding="utf-8", newline="\n")
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def write(self, source: str, line: int, reason: str, fields: Sequence[str]) -> None:
        if self._handle is None:
            raise RuntimeError(f"rejects file {self.path} is not open")
        reject = {"source": source, "line": line, "reason": reason, "fields": list(fields)}
        self._handle.write(json.dumps(reject, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.count += 1


@dataclass(frozen=True)
class Source:
    """One CSV file to replay, the stable id its event_ids derive from,
    where its rejects go (several sources may share one rejects file), and
    its encoding (`check_source` resolves `auto` once, before the replay)."""

    path: Path
    source_id: str
    rejects: RejectsFile
    encoding: str = "auto"


@dataclass
class ReplaySummary:
    """The figures of one replay run."""

    rows: int = 0  # data rows read from the CSV files (valid or not)
    sent: int = 0  # rows Kinesis accepted (each counted once, also when aggregated)
    rejected: int = 0  # rows written to a rejects file
    retried: int = 0  # entries re-sent after Kinesis refused them
    throttled: int = 0  # refusals for shard write limits
    calls: int = 0  # PutRecords calls
    rerouted: int = 0  # aggregated rows sent again after a reshard moved their shard
    bytes: int = 0  # data + partition key bytes accepted
    passes: int = 0  # passes started over the files
    seconds: float = 0.0
    rejects_files: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped early on request (a signal), after flushing

    @property
    def records_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        """The summary as plain JSON values; `rejects_file` is the one rejects
        file of the run, or null when it wrote several (see `rejects_files`)."""
        return {
            "rows": self.rows,
            "sent": self.sent,
            "rejected": self.rejected,
            "retried": self.retried,
            "throttled": self.throttled,
            "calls": self.calls,
            "rerouted": self.rerouted,
            "bytes": self.bytes,
            "passes": self.passes,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second, 1),
            "rejects_file": self.rejects_files[0] if len(self.rejects_files) == 1 else None,
            "rejects_files": list(self.rejects_files),
            "interrupted": self.interrupted,
        }


class Replay:
    """Replays `sources` into `destination` (a KinesisWriter stands for
    KinesisDestination over it), in order, `loops` times (0: until stopped).
    Blocking; not thread-safe. `summary` is up to date at any time, also after
    `run` raised."""

    def __init__(
        self,
        sources: Sequence[Source],
        destination: Destination | KinesisWriter,
        *,
        limit: int | None = None,
        loops: int = 1,
        rate: RateLimiter | None = None,
        timeline: TimelinePacer | None = None,
        clock: Callable[[], float] = time.monotonic,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[ReplaySummary], object] = lambda summary: None,
        metrics: ProducerMetrics | None = None,
    ) -> None:
        if loops < 0:
            raise ValueError("loops must be 0 (forever) or more")
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        self._sources = list(sources)
        if isinstance(destination, KinesisWriter):
            destination = KinesisDestination(destination)
        self._destination = destination
        self._limit = limit
        self._loops = loops
        self._rate = rate
        self._timeline = timeline
        self._clock = clock
        self._should_stop = should_stop
        self._on_progress = on_progress
        self._metrics = metrics or NoProducerMetrics()
        # Under a rate limit a batch is one burst, so records leave steadily
        # instead of waiting for 500 to accumulate.
        self._builder = destination.batch_builder(rate.burst if rate else None)
        self._started = clock()
        # The writer may outlive this replay (or serve others): count our share.
        self._stats_before = destination.stats.as_dict()
        self._rejects: dict[str, RejectsFile] = {}  # source id (of this pass) -> its rejects file
        self.summary = ReplaySummary(rejects_files=_unique(str(s.rejects.path) for s in self._sources))

    def run(self) -> ReplaySummary:
        """Replay every row, then send what is still pending; returns the summary.

        Raises SourceError for an unreadable file (the valid rows read before
        the bad line are still sent) and DeliveryError when Kinesis keeps
        refusing records (nothing more is sent).
        """
        log.info("replay.started", files=[str(s.path) for s in self._sources], loops=self._loops)
        self._metrics.replay_total(self._planned_rows())
        try:
            for source_id, line, fields, rejects in self._rows():
                self._replay_row(source_id, line, fields, rejects)
            self._send_pending()
        except SourceError:
            self._send_pending()
            raise
        finally:
            self._tick()
        log.info("replay.finished", **self.summary.as_dict())
        return self.summary

    def _rows(self) -> Iterator[tuple[str, int, list[str], RejectsFile]]:
        """Every row of every pass, until the limit or a stop request."""
        passes = itertools.count() if self._loops == 0 else range(self._loops)
        for pass_no in passes:
            self.summary.passes += 1
            rows_before = self.summary.rows
            for source in self._sources:
                source_id = pass_source_id(source.source_id, pass_no)
                self._rejects[source_id] = source.rejects
                if self._timeline:
                    self._timeline.restart()
                for line, fields in read_rows(source.path, source.encoding):
                    if self._should_stop():
                        self.summary.interrupted = True
                        return
                    if self._limit is not None and self.summary.rows >= self._limit:
                        return
                    self.summary.rows += 1
                    self._metrics.row_read(self.summary.rows)
                    yield source_id, line, fields, source.rejects
            if self.summary.rows == rows_before:
                return  # no data rows at all: looping forever would only spin

    def _planned_rows(self) -> int:
        """Rows this replay will handle: one cheap pass over the files, times
        the passes (one pass when looping forever), capped by the limit."""
        per_pass = 0
        for source in self._sources:
            try:
                for _ in read_rows(source.path, source.encoding):
                    per_pass += 1
            except SourceError:
                pass  # the replay itself meets and reports it, after sending what came before
        total = per_pass * (self._loops or 1)
        return min(total, self._limit) if self._limit is not None else total

    def _replay_row(self, source_id: str, line: int, fields: list[str], rejects: RejectsFile) -> None:
        try:
            entry = self._destination.prepare(source_id, line, fields)
            self._pace(fields)
            closed = self._builder.add(entry)
        except (InvalidRecord, UnsendableEntry) as exc:
            self._reject(rejects, source_id, line, str(exc), fields)
            return
        self._send(closed)

    def _reject(self, rejects: RejectsFile, source_id: str, line: int, reason: str, fields: Sequence[str]) -> None:
        rejects.write(source_id, line, reason, fields)
        self.summary.rejected += 1
        self._metrics.row_rejected(reason)

    def _pace(self, fields: list[str]) -> None:
        if self._timeline is None:
            return
        when = _invoice_date(fields)
        if when is None:
            return  # the destination judges the row; an undatable one is not paced
        if self._timeline.delay(when) > 0:
            # Nothing waiting in the buffer while we sleep: what is due goes now.
            self._send_pending()
        self._timeline.wait(when)

    def _send_pending(self) -> None:
        """Send everything the builder holds (an aggregating one may hold several batches)."""
        while (batch := self._builder.flush()) is not None:
            self._send(batch)

    def _send(self, batch: list | None) -> None:
        if not batch:
            return
        if self._rate:
            self._rate.acquire(sum(entry.rows for entry in batch))
        for refusal in self._destination.send(batch):
            rejects = self._rejects[refusal.source_id]
            self._reject(rejects, refusal.source_id, refusal.line, refusal.reason, refusal.fields)
        self._tick()
        self._on_progress(self.summary)

    def _tick(self) -> None:
        self.summary.seconds = self._clock() - self._started
        stats, before = self._destination.stats, self._stats_before
        # From the writer's counts, so a batch that failed part-way still
        # counts the records Kinesis did accept.
        self.summary.rerouted = stats.rerouted - before["rerouted"]
        self.summary.sent = stats.records_sent - before["records_sent"] - self.summary.rerouted
        self.summary.bytes = stats.bytes_sent - before["bytes_sent"]
        self.summary.retried = stats.retried - before["retried"]
        self.summary.throttled = stats.throttled - before["throttled"]
        self.summary.calls = stats.calls - before["calls"]


_DATE_COLUMN = CSV_COLUMNS.index("InvoiceDate")


def _invoice_date(fields: list[str]) -> dt.datetime | None:
    """The row's InvoiceDate for pacing, or None when it has none that parses."""
    if len(fields) != len(CSV_COLUMNS):
        return None
    try:
        return parse_invoice_date(fields[_DATE_COLUMN].strip())
    except InvalidRecord:
        return None


def _unique(values: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(values))
