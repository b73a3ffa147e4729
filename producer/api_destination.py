"""`--via-api`: the replay's rows sent to the HTTP API (api/) instead of
straight to Kinesis, as JSON arrays of at most 500 rows.

Each row goes as an object keyed by the CSV column names, with its line, and
every request names the replay's source id (`?source=`), so sending a
request again (after a 503, a timeout, a dropped connection) doubles nothing
downstream. The API stores the rows in the key's client namespace; a key made
with `retail-api-keys create --producer-ids` gets each row the event_id a
direct replay would. A 401 or 403 stops the replay at once (a key the API
does not take will not be taken on a retry).
The API validates; here a row is refused only when it cannot be an object
(the wrong number of fields) or is too large for a request. Rows the API
rejects come back as Refusals, with the API's reason, for the rejects file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import httpx
import structlog

from producer.batching import MAX_BATCH_RECORDS, BatchBuilder, UnsendableEntry
from producer.destinations import Refusal
from producer.kinesis_writer import THROTTLED, DeliveryError, FailedEntry, WriterStats
from producer.metrics import NoProducerMetrics, ProducerMetrics
from retail_stream.retries import Backoff
from retail_stream.settings import Settings
from retail_stream.schema import CSV_COLUMNS, InvalidRecord

log = structlog.get_logger(__name__)

# Under the API's default API_MAX_BODY_BYTES (5 MiB) with room to spare; a
# chunk the API still finds too large (413) is split in two.
MAX_REQUEST_BYTES = 1024 * 1024
# Worth another attempt: the API's "Kinesis kept refusing" and a proxy's or
# load balancer's answers while the API restarts.
RETRYABLE_STATUSES = frozenset({502, 503, 504})
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# PUT_RECORDS_ATTEMPTS requests in all (8; --max-attempts), waits from up to 0.2 s doubling to 10 s.
API_BACKOFF = Backoff(base=0.2, cap=10.0, attempts=Settings.put_records_attempts)


@dataclass(frozen=True)
class ApiRow:
    """One row bound for the API: its JSON object, and where it came from."""

    source_id: str
    line: int
    fields: tuple[str, ...]
    body: bytes  # the row's JSON object

    @property
    def size(self) -> int:
        return len(self.body) + 1  # and a comma in the array

    @property
    def rows(self) -> int:
        return 1


def check_row(row: ApiRow, max_bytes: int) -> None:
    """The batch builder's check: a row alone over a request's size is unsendable."""
    if row.size > max_bytes:
        raise UnsendableEntry(f"row is {row.size} bytes as JSON, over the {max_bytes}-byte request limit")


class ApiDestination:
    """Sends batches of rows to `POST {base_url}/transactions` with `client`
    (an httpx.Client; tests pass Litestar's TestClient). Blocking; not
    thread-safe. Retries a request answered 502/503/504 or lost to a transport
    error, as `backoff` allows; a 503 is re-sent with only its "failed" rows."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        client: httpx.Client | None = None,
        backoff: Backoff = API_BACKOFF,
        sleep: Callable[[float], object] = time.sleep,
        metrics: ProducerMetrics | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/transactions"
        # An API key or an OIDC access token: the API tells them apart.
        self._auth = {"Authorization": f"Bearer {credential}"}
        self._client = client or httpx.Client(timeout=TIMEOUT)
        self._backoff = backoff
        self._sleep = sleep
        self._metrics = metrics or NoProducerMetrics()
        self.stats = WriterStats()

    def prepare(self, source_id: str, line: int, fields: list[str]) -> ApiRow:
        if len(fields) != len(CSV_COLUMNS):  # parse_row's own words, so the rejects read the same
            raise InvalidRecord(f"expected {len(CSV_COLUMNS)} fields, found {len(fields)}")
        row = dict(zip(CSV_COLUMNS, fields), line=line)
        return ApiRow(source_id, line, tuple(fields), json.dumps(row, ensure_ascii=False).encode())

    def batch_builder(self, max_records: int | None) -> BatchBuilder:
        return BatchBuilder(max_records=min(max_records or MAX_BATCH_RECORDS, MAX_BATCH_RECORDS),
                            max_bytes=MAX_REQUEST_BYTES,
                            check=check_row)

    def send(self, batch: Sequence[ApiRow]) -> list[Refusal]:
        refusals: list[Refusal] = []
        for group in _by_source(batch):
            refusals.extend(self._send_group(group))
        return refusals

    def _send_group(self, rows: Sequence[ApiRow]) -> list[Refusal]:
        """Send rows of one source until each is accepted or rejected."""
        refusals: list[Refusal] = []
        pending = list(rows)
        attempt = 0
        while pending:
            attempt += 1
            if attempt > 1:
                self._count(retried=len(pending))
                self._sleep(self._backoff.delay(attempt - 1))
            outcome = self._post(pending)
            if isinstance(outcome, _TooLarge):
                if len(pending) == 1:
                    row = pending[0]
                    refusals.append(Refusal(row.source_id, row.line, row.fields, f"too large for the API: {outcome.detail}"))
                    return refusals
                half = len(pending) // 2  # the API's limit is lower than ours: halve, and go on
                return refusals + self._send_group(pending[:half]) + self._send_group(pending[half:])
            if isinstance(outcome, _Fatal):  # a 400, 415, 500: sending it again would not help
                self._count(failed=len(pending))
                raise DeliveryError(
                    f"POST {self.url}: {outcome.code}: {outcome.detail}",
                    [FailedEntry(row, outcome.code, outcome.detail) for row in pending], attempt,
                )
            if isinstance(outcome, _Retry):
                failed = [FailedEntry(row, outcome.code, outcome.message) for row in pending]
                log.warning("api.retry", url=self.url, attempt=attempt, rows=len(pending), error=outcome.message)
            else:
                results = outcome
                still: list[ApiRow] = []
                failed = []
                for row, result in zip(pending, results):
                    status = result.get("status")
                    if status == "accepted":
                        self._count(records_sent=1, bytes_sent=len(row.body))
                    elif status == "rejected":
                        refusals.append(Refusal(row.source_id, row.line, row.fields, str(result.get("reason"))))
                    else:  # failed: valid, but Kinesis kept refusing it
                        reason = str(result.get("reason") or "failed")
                        still.append(row)
                        failed.append(FailedEntry(row, reason.split(":", 1)[0], reason))
                        if reason.startswith(THROTTLED):
                            self._count(throttled=1)
                pending = still
            if pending and not self._backoff.allows(attempt):
                self._count(failed=len(pending))
                raise DeliveryError(f"POST {self.url}: rows still not accepted after {attempt} attempts", failed, attempt)
        return refusals

    def _post(self, rows: Sequence[ApiRow]) -> list[dict] | _Retry | _TooLarge | _Fatal:
        """One request: the per-row results (in the rows' order), or what to do instead."""
        body = b"[" + b",".join(row.body for row in rows) + b"]"
        self._count(calls=1)
        try:
            response = self._client.post(
                self.url, params={"source": rows[0].source_id}, content=body,
                headers={"Content-Type": "application/json", **self._auth},
            )
        except httpx.TransportError as exc:  # refused, reset, timed out: the rows may or may not be in
            return _Retry(type(exc).__name__, f"{type(exc).__name__}: {exc}")
        if response.status_code == 413:
            return _TooLarge(_detail(response))
        if response.status_code in (202, 422, 503):
            results = _results(response, len(rows))
            if results is not None:
                return results
        if response.status_code in RETRYABLE_STATUSES:
            return _Retry(str(response.status_code), f"HTTP {response.status_code}: {_detail(response)}")
        return _Fatal(f"HTTP {response.status_code}", _detail(response))

    def _count(self, **increments: int) -> None:
        for name, value in increments.items():
            setattr(self.stats, name, getattr(self.stats, name) + value)
        # The producer's counters, where they mean the same (not PutRecords calls).
        self._metrics.count(**{k: v for k, v in increments.items() if k in ("records_sent", "retried", "throttled")})


@dataclass(frozen=True)
class _Retry:
    code: str
    message: str


@dataclass(frozen=True)
class _TooLarge:
    detail: str


@dataclass(frozen=True)
class _Fatal:
    code: str
    detail: str


def _by_source(batch: Sequence[ApiRow]) -> list[list[ApiRow]]:
    """Consecutive rows of one source (a request names one source)."""
    groups: list[list[ApiRow]] = []
    for row in batch:
        if groups and groups[-1][0].source_id == row.source_id:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _results(response: httpx.Response, count: int) -> list[dict] | None:
    """The per-item results of an ingest answer, or None if it is not one."""
    try:
        results = response.json().get("results")
    except (ValueError, AttributeError):
        return None
    if not isinstance(results, list) or len(results) != count or not all(isinstance(r, dict) for r in results):
        return None
    return results


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]
