"""`retail-producer` / `python -m producer`: replay Online Retail CSV files into Kinesis,
directly or through the HTTP API (`--via-api URL`).

The composition root: settings, logging and the Kinesis client (or the API
client) are made here and passed in. stdout carries exactly one line, the closing JSON summary, so
a script can read it with `tail -n 1`; everything else goes to stderr.

Exit status: 0 when every row was sent or rejected, 1 when Kinesis (or the
API) kept refusing records (DeliveryError), 2 for bad arguments or settings and for a
file that cannot be read or lacks the Online Retail header.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import structlog

from producer.aggregation import DEFAULT_AGGREGATE_BYTES, AggregatingDestination, ShardMap
from producer.csv_source import ENCODINGS, SourceError, check_source, line_count
from producer.destinations import Destination, KinesisDestination
from producer.kinesis_writer import PUT_RECORDS_BACKOFF, DeliveryError, KinesisWriter
from producer.metrics import ProducerMetrics
from producer.pacing import RateLimiter, TimelinePacer
from producer.replay import Replay, RejectsFile, ReplaySummary, Source, default_rejects_path
from retail_stream import aws, logs
from retail_stream.metrics_server import MetricsServer
from retail_stream.progress import LINE_INTERVAL_SECONDS, Progress
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_DELIVERY, EXIT_USAGE = 0, 1, 2
API_KEY_VARIABLE = "RETAIL_API_KEY"  # the --via-api credential; never a setting (settings may be shown)
# Room in Transaction.source (255 characters) for a pass suffix "~<n>".
MAX_SOURCE_ID_CHARS = 240


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-producer",
        description="Replay Online Retail CSV files into a Kinesis stream. Rows that are not valid "
        "transactions go to a JSON-lines rejects file; the last line on stdout is a JSON summary.",
    )
    parser.add_argument("csv", nargs="+", type=Path, help="Online Retail CSV file(s), replayed in order")
    parser.add_argument("--stream", help="Kinesis stream name (default: KINESIS_STREAM_NAME or its default)")
    parser.add_argument("--rate", type=float, metavar="N", help="at most N records per second (default: no limit)")
    parser.add_argument(
        "--speedup", type=float, metavar="F",
        help="follow the InvoiceDate timeline F times faster (3600: an hour of invoices a second)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="stop after N rows in all (valid or not)")
    parser.add_argument(
        "--loop", type=int, default=1, metavar="N",
        help="passes over the files (default 1; 0: until stopped). Pass i>0 uses source id <name>~i, "
        "so its rows are new rows downstream",
    )
    parser.add_argument(
        "--source-id", metavar="ID",
        help="stable source id the event_ids derive from (default: the CSV's file name; one CSV only)",
    )
    parser.add_argument(
        "--rejects", type=Path, metavar="PATH",
        help="JSON-lines rejects file, rewritten each run (default: rejects/<csv name>.rejects.jsonl)",
    )
    parser.add_argument(
        "--max-attempts", type=int, metavar="N",
        help="PutRecords attempts (with --via-api: requests) per batch before giving up "
        f"(default: PUT_RECORDS_ATTEMPTS or {Settings.put_records_attempts})",
    )
    parser.add_argument(
        "--via-api", metavar="URL",
        help="send the rows to the HTTP API at URL (e.g. http://127.0.0.1:8080) instead of straight to "
        "Kinesis; same rejects file, and the same event_ids when the API key was made with --producer-ids",
    )
    parser.add_argument(
        "--api-key-file", type=Path, metavar="PATH",
        help=f"with --via-api: a file holding the API key (or an OIDC access token); default: ${API_KEY_VARIABLE}",
    )
    parser.add_argument(
        "--encoding", choices=ENCODINGS, default="auto",
        help="the files' text encoding (default auto: UTF-8 if the whole file is, else cp1252, else "
        "ISO-8859-1, decided before anything is sent)",
    )
    parser.add_argument(
        "--aggregate", action="store_true",
        help="pack rows into KPL aggregated records (as the KPL, Kinesis Agent, Fluent Bit do), grouped by "
        "destination shard: far fewer Kinesis records and PutRecords calls; the KCL unpacks them",
    )
    parser.add_argument(
        "--aggregate-bytes", type=int, default=DEFAULT_AGGREGATE_BYTES, metavar="N",
        help=f"largest aggregated record with --aggregate (default {DEFAULT_AGGREGATE_BYTES}, the KPL's; "
        "at most 1048576)",
    )
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve Prometheus metrics and /healthz here "
        f"(default: METRICS_PORT, else PRODUCER_METRICS_PORT or {Settings.producer_metrics_port})",
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no metrics endpoint")
    parser.add_argument(
        "--linger", type=float, default=0, metavar="SECONDS",
        help="keep serving metrics this long after the replay, so a scrape catches the final values",
    )
    return parser


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the parsed arguments, or None. Pure."""
    if args.rate is not None and not args.rate > 0:
        return "--rate must be positive"
    if args.speedup is not None and not args.speedup > 0:
        return "--speedup must be positive"
    if args.limit is not None and args.limit < 0:
        return "--limit must not be negative"
    if args.loop < 0:
        return "--loop must be 0 (forever) or more"
    if args.max_attempts is not None and args.max_attempts < 1:
        return "--max-attempts must be at least 1"
    if args.via_api is not None and not args.via_api.startswith(("http://", "https://")):
        return "--via-api needs an http:// or https:// URL"
    if args.aggregate and args.via_api is not None:
        return "--aggregate and --via-api exclude each other (the API writes its own records)"
    if not 1024 <= args.aggregate_bytes <= 1024 * 1024:
        return "--aggregate-bytes must be 1024 to 1048576"
    if args.api_key_file is not None and args.via_api is None:
        return "--api-key-file goes with --via-api"
    if args.via_api is not None and args.stream:
        return "--stream and --via-api exclude each other (the API writes to its own stream)"
    if args.source_id is not None and len(args.csv) > 1:
        return "--source-id needs exactly one CSV file (two files with one id would share event_ids)"
    ids = source_ids(args)
    if len(set(ids)) != len(ids):
        return "two CSV files have the same file name, so the same source id; rename one"
    for source_id in ids:
        if not 1 <= len(source_id) <= MAX_SOURCE_ID_CHARS:
            return f"source id must be 1 to {MAX_SOURCE_ID_CHARS} characters: {source_id!r}"
    return None


def source_ids(args: argparse.Namespace) -> list[str]:
    return [args.source_id] if args.source_id is not None else [path.name for path in args.csv]


def expected_rows(args: argparse.Namespace) -> int:
    """About how many rows the run reads, for its progress (0: no end, a
    --loop 0 run): the files' lines but their headers, times the passes,
    capped by --limit. A quoted line break makes it a little high."""
    if args.loop == 0:
        return args.limit or 0
    rows = sum(max(line_count(path) - 1, 0) for path in args.csv) * args.loop
    return min(rows, args.limit) if args.limit is not None else rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the Kinesis client from the environment, run."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad arguments
    problem = argument_problem(args)
    if problem:
        parser.error(problem)
    try:
        settings = Settings.from_env()
        if args.stream:
            settings = dataclasses.replace(settings, stream_name=args.stream)
            settings.validate()
    except SettingsError as exc:
        print(f"retail-producer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, log_format=settings.log_format, service="producer")
    stop = threading.Event()
    _stop_on_signals(stop)
    metrics, server = None, None
    if not args.no_metrics:
        metrics = ProducerMetrics()
        port = args.metrics_port if args.metrics_port is not None else settings.metrics_port_for("producer")
        try:
            # Healthy while the process and its replay loop (the main thread) run.
            server = MetricsServer(settings.metrics_host, port, metrics_path=settings.metrics_path,
                                   checks={"/healthz": threading.main_thread().is_alive}).start()
        except OSError as exc:
            print(f"retail-producer: error: cannot serve metrics on port {port}: {exc.strerror} "
                  "(--metrics-port, METRICS_PORT or --no-metrics)", file=sys.stderr)
            return EXIT_USAGE
    if args.max_attempts is None:
        args.max_attempts = settings.put_records_attempts
    try:
        status = run(args, aws.client("kinesis", settings, validate=False), settings.stream_name, stop=stop, metrics=metrics)
        if server and args.linger > 0:
            stop.wait(args.linger)
        return status
    finally:
        if server:
            server.stop()


def run(
    args: argparse.Namespace,
    kinesis: Any,
    stream_name: str,
    *,
    stop: threading.Event | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    metrics: ProducerMetrics | None = None,
    http_client: Any = None,
) -> int:
    """Replay the files named in `args` through `kinesis`, or with
    `--via-api` through the API (`http_client`, an httpx.Client, or a new
    one); returns the exit status.

    Every file is checked (opened, header read) before anything is sent. Once
    the replay has started, the JSON summary is the last line on `stdout`
    whatever the outcome. `stop`, when set (by a signal), ends the replay
    after sending what was read; its `wait` is also the pacers' sleep, so a
    stop does not wait out a long pause in the timeline.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stop = stop or threading.Event()
    try:
        # Every file decoded to its end before a row is sent: a bad one is refused whole.
        encodings = [check_source(path, args.encoding) for path in args.csv]
    except SourceError as exc:
        print(f"retail-producer: error: {exc}", file=stderr)
        return EXIT_USAGE

    try:
        destination = build_destination(args, kinesis, stream_name, metrics, http_client)
    except CredentialError as exc:
        print(f"retail-producer: error: {exc}", file=stderr)
        return EXIT_USAGE
    progress = ReplayProgress(stderr, clock, expected_rows(args))
    rejects_paths = [args.rejects or default_rejects_path(path) for path in args.csv]
    rejects_files = {path: RejectsFile(path) for path in dict.fromkeys(rejects_paths)}
    sources = [
        Source(path, source_id, rejects_files[rejects], encoding)
        for path, source_id, rejects, encoding in zip(args.csv, source_ids(args), rejects_paths, encodings)
    ]
    with contextlib.ExitStack() as open_files:
        try:
            for rejects in rejects_files.values():
                open_files.enter_context(rejects)
        except OSError as exc:
            print(f"retail-producer: error: cannot write the rejects file: {exc}", file=stderr)
            return EXIT_USAGE
        replay = Replay(
            sources,
            destination,
            limit=args.limit,
            loops=args.loop,
            rate=RateLimiter(args.rate, clock=clock, sleep=stop.wait) if args.rate else None,
            timeline=TimelinePacer(args.speedup, clock=clock, sleep=stop.wait) if args.speedup else None,
            clock=clock,
            should_stop=stop.is_set,
            on_progress=progress.show,
            metrics=metrics,
        )
        status, error = EXIT_OK, None
        try:
            replay.run()
        except SourceError as exc:
            status, error = EXIT_USAGE, str(exc)
        except DeliveryError as exc:
            status, error = EXIT_DELIVERY, str(exc)
            log.error("replay.delivery_failed", error=str(exc), attempts=exc.attempts, failed=len(exc.failed))
        finally:
            progress.close(replay.summary)
    report(replay.summary, stream_name, error, stdout, stderr, api=args.via_api)
    return status


def api_credential(args: argparse.Namespace) -> str:
    """The API key (or token) for --via-api: --api-key-file, else $RETAIL_API_KEY.
    Raises CredentialError when there is none."""
    if args.api_key_file is not None:
        try:
            credential = args.api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialError(f"cannot read --api-key-file {args.api_key_file}: {exc}") from None
    else:
        credential = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not credential:
        raise CredentialError(f"--via-api needs an API key: --api-key-file PATH or ${API_KEY_VARIABLE} "
                              "(make one with retail-api-keys create)")
    return credential


class CredentialError(ValueError):
    """--via-api without a usable API key."""


def build_destination(
    args: argparse.Namespace, kinesis: Any, stream_name: str, metrics: ProducerMetrics | None, http_client: Any
) -> Destination:
    """Where the rows go: the stream itself, or the API in front of it."""
    attempts = args.max_attempts or Settings.put_records_attempts
    if args.via_api:
        from producer.api_destination import API_BACKOFF, ApiDestination  # httpx: only this path needs it

        return ApiDestination(args.via_api, api_credential(args), client=http_client,
                              backoff=dataclasses.replace(API_BACKOFF, attempts=attempts), metrics=metrics)
    writer = KinesisWriter(kinesis, stream_name, backoff=dataclasses.replace(PUT_RECORDS_BACKOFF, attempts=attempts),
                           metrics=metrics)
    if args.aggregate:
        return AggregatingDestination(writer, lambda: ShardMap.load(kinesis, stream_name),
                                      aggregate_bytes=args.aggregate_bytes)
    return KinesisDestination(writer)


def report(
    summary: ReplaySummary, stream_name: str, error: str | None, stdout: TextIO, stderr: TextIO,
    api: str | None = None,
) -> None:
    """Human lines on stderr, then the JSON summary as the last line on stdout
    (`stream` is null when the rows went through the API: its own stream)."""
    lines = [
        f"api                 {api}" if api else f"stream              {stream_name}",
        f"rows read           {summary.rows}",
        f"sent                {summary.sent}",
        f"rejected            {summary.rejected}   ({', '.join(summary.rejects_files)})",
        f"retried             {summary.retried}   ({summary.throttled} throttled, {summary.calls} calls)",
        *([f"rerouted            {summary.rerouted}   (aggregated rows sent again after a reshard)"]
          if summary.rerouted else []),
        f"time                {summary.seconds:.1f} s   ({summary.records_per_second:.0f} records/s)",
    ]
    if summary.interrupted:
        lines.append("stopped early on request, after sending what was read")
    if error:
        lines.append(f"error: {error}")
    print("\n".join(lines), file=stderr, flush=True)
    target = {"stream": None, "api": api} if api else {"stream": stream_name, "api": None}
    print(json.dumps({**summary.as_dict(), **target, "error": error}), file=stdout, flush=True)


class ReplayProgress:
    """The replay's progress: a bar with rate and ETA on a terminal, else a
    `replay.progress` log event every LINE_INTERVAL_SECONDS (log streams stay JSON)."""

    def __init__(self, stderr: TextIO, clock: Callable[[], float], expected_rows: int) -> None:
        self._bar = Progress(stderr, "replay", expected_rows, clock=clock) if stderr.isatty() else None
        self._clock = clock
        self._last = clock()

    def show(self, summary: ReplaySummary) -> None:
        if self._bar:
            self._bar.show(summary.rows, self._note(summary))
        elif self._clock() - self._last >= LINE_INTERVAL_SECONDS:
            self._last = self._clock()
            log.info("replay.progress", rows=summary.rows, sent=summary.sent, rejected=summary.rejected,
                     records_per_second=round(summary.records_per_second))

    def close(self, summary: ReplaySummary) -> None:
        if self._bar:
            self._bar.close(summary.rows, self._note(summary))

    @staticmethod
    def _note(summary: ReplaySummary) -> str:
        return f"sent {summary.sent:,}  rejected {summary.rejected:,}  retried {summary.retried:,}"


def _stop_on_signals(stop: threading.Event) -> None:
    """The first SIGINT or SIGTERM asks for a clean stop (send what was read,
    then summarise); a second one ends the process at once."""

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
