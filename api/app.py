"""The HTTP API as a Litestar app: `create_app(settings, writer, dynamodb)`.

    POST /transactions                          body -> ingest.read_body -> ingest.check -> publish (Kinesis)
    GET  /customers/{customer_id}/transactions  lookups.customer_page (index by_customer, newest first)
    GET  /invoices/{invoice_no}                 lookups.invoice_lines (the table, by (source, line))
    GET  /healthz, /metrics, /schema/openapi.json

Clients come in from the composition root (api/server.py), so tests pass
fakes or the local stack's. Blocking work (boto3, the writer's backoff) runs
in worker threads. Every error is an `ErrorBody`; bad input is a 4xx, never
a 500.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import structlog
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import Parameter
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api import ingest
from api.cursor import CURSOR_PATTERN, CursorCodec, InvalidCursor
from api.lookups import LookupUnavailable, TransactionLookups
from api.metrics import PREFIX, ApiMetrics
from api.publish import publish, status_code
from api.responses import (
    CustomerTransactions,
    ErrorBody,
    Health,
    IngestResult,
    InvoiceLines,
    TransactionView,
)
from producer.kinesis_writer import KinesisWriter
from retail_stream.schema import CSV_COLUMNS, KEY_MAX_BYTES, MAX_INT32
from retail_stream.settings import Settings

log = structlog.get_logger(__name__)

MAX_PAGE = 100
DEFAULT_PAGE = 20


def new_source_id() -> str:
    """A fresh source for a request that names none: its event_ids are new."""
    return f"api-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Services:
    """What the handlers use, made once per app."""

    settings: Settings
    writer: KinesisWriter
    lookups: TransactionLookups
    metrics: ApiMetrics


def _error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "Malformed request: the body, a parameter or the cursor",
        404: "Nothing found",
        413: "Body larger than API_MAX_BODY_BYTES, or more items than API_MAX_ITEMS",
        415: "Content-Type other than application/json or text/csv (UTF-8)",
        503: "DynamoDB did not answer; try again",
    }
    return {code: ResponseSpec(ErrorBody, description=descriptions[code], generate_examples=False) for code in codes}


# --- POST /transactions ------------------------------------------------------

_CELL = Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NUMBER), Schema(type=OpenAPIType.NULL)])
_ROW = Schema(
    type=OpenAPIType.OBJECT,
    description="One Online Retail row keyed by its CSV column names; a missing or null value is an empty cell",
    properties={
        **{column: _CELL for column in CSV_COLUMNS},
        "line": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_INT32,
                       description="the row's line, from which its event_id derives (default: its 1-based position)"),
    },
)


@dataclass
class IngestOperation(Operation):
    """The operation of POST /transactions with its two body forms documented
    (the handler reads the body itself, so Litestar cannot infer it)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Transactions: a JSON object, a JSON array of objects, or an Online Retail CSV "
            "with its header row",
            content={
                ingest.JSON: OpenAPIMediaType(schema=Schema(one_of=[_ROW, Schema(type=OpenAPIType.ARRAY, items=_ROW, min_items=1)])),
                ingest.CSV: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING,
                                                           description=f"header: {','.join(CSV_COLUMNS)}")),
            },
        )


@post(
    "/transactions",
    status_code=202,
    operation_class=IngestOperation,
    summary="Put transactions into the stream",
    description="Every item is validated like a CSV row of the producer; valid ones go into the Kinesis "
    "stream. The event_id of an item is event_id(source, line): send the same source and lines again "
    "and nothing is doubled downstream.",
    responses={
        422: ResponseSpec(IngestResult, description="Every item was rejected", generate_examples=False),
        503: ResponseSpec(IngestResult, description="Kinesis kept refusing some items (status \"failed\"): "
                          "send the request again", generate_examples=False),
        **_errors(400, 413, 415),
    },
)
async def post_transactions(
    request: Request,
    services: NamedDependency[Services],
    source: Annotated[
        str | None,
        Parameter(description="the stable id the event_ids derive from (default: a fresh api-<uuid>)",
                  min_length=1, max_length=ingest.MAX_SOURCE_CHARS),
    ] = None,
) -> Response[IngestResult]:
    source = new_source_id() if source is None else source
    problem = ingest.source_problem(source)
    if problem:
        raise _error(400, problem)
    body = await request.body()  # Litestar answers 413 past request_max_body_size
    content_type = request.headers.get("content-type")
    outcomes = await anyio.to_thread.run_sync(partial(_ingest, services, body, content_type, source))
    services.metrics.items(outcomes)
    status = status_code(outcomes)
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(IngestResult.of(source, outcomes), status_code=status, headers=headers)


def _ingest(services: Services, body: bytes, content_type: str | None, source: str):
    try:
        candidates = ingest.read_body(body, content_type, services.settings.api_max_items)
    except ingest.BodyError as exc:
        raise _error(exc.status_code, str(exc)) from None
    return publish(ingest.check(candidates, source), services.writer)


# --- GET lookups -------------------------------------------------------------


@get(
    "/customers/{customer_id:int}/transactions",
    sync_to_thread=True,
    summary="One customer's transactions, newest first",
    responses=_errors(400, 404, 503),
)
def customer_transactions(
    services: NamedDependency[Services],
    customer_id: Annotated[int, Parameter(ge=1, le=MAX_INT32, description="the CustomerID")],
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="items per page")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Parameter(description="next_cursor of the previous page", max_length=2048, pattern=CURSOR_PATTERN),
    ] = None,
) -> CustomerTransactions:
    try:
        page = services.lookups.customer_page(customer_id, limit, cursor)
    except InvalidCursor as exc:
        raise _error(400, f"invalid cursor: {exc}") from None
    except LookupUnavailable as exc:
        raise _unavailable(exc) from None
    if not page.records and cursor is None:
        raise NotFoundException(detail=f"no transactions of customer {customer_id}")
    return CustomerTransactions(customer_id, [TransactionView.of(r) for r in page.records], page.next_cursor)


@get(
    "/invoices/{invoice_no:str}",
    sync_to_thread=True,
    summary="Every line of one invoice, by (source, line)",
    responses=_errors(400, 404, 503),
)
def invoice(
    services: NamedDependency[Services],
    invoice_no: Annotated[str, Parameter(min_length=1, max_length=KEY_MAX_BYTES, description="the InvoiceNo")],
) -> InvoiceLines:
    try:
        size = len(invoice_no.encode("utf-8"))
    except UnicodeEncodeError:
        raise _error(400, "invoice_no is not valid Unicode text") from None
    if size > KEY_MAX_BYTES:
        raise _error(400, f"invoice_no is longer than {KEY_MAX_BYTES} bytes")
    try:
        lines = services.lookups.invoice_lines(invoice_no)
    except LookupUnavailable as exc:
        raise _unavailable(exc) from None
    if not lines:
        raise NotFoundException(detail=f"no invoice {invoice_no!r}")
    return InvoiceLines(invoice_no, [TransactionView.of(r) for r in lines])


def _unavailable(exc: LookupUnavailable) -> HTTPException:
    log.warning("dynamodb.unavailable", error=str(exc))
    return HTTPException(status_code=503, detail="DynamoDB is not answering; try again", headers={"Retry-After": "1"})


# --- health and metrics ------------------------------------------------------


@get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT)
async def prometheus_metrics(services: NamedDependency[Services]) -> Response[bytes]:
    body = generate_latest(REGISTRY)
    if services.metrics.registry is not REGISTRY:  # tests keep the API's own counters apart
        body += generate_latest(services.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# --- errors and logs ---------------------------------------------------------


def http_error(request: Request, exc: HTTPException) -> Response[ErrorBody]:
    extra = exc.extra if exc.extra else None
    return Response(ErrorBody(exc.status_code, exc.detail, extra), status_code=exc.status_code, headers=exc.headers)


def internal_error(request: Request, exc: Exception) -> Response[ErrorBody]:
    log.exception("request.failed", method=request.method, path=request.url.path)
    return Response(ErrorBody(500, "internal error"), status_code=500)


class RequestClock(ASGIMiddleware):
    """Stamps when a routed request started, for the access log line."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["state"]["started"] = time.perf_counter()
        await next_app(scope, receive, send)


async def access_log(message: Message, scope: Scope) -> None:
    """One log line per request (unrouted ones too), when its status is sent."""
    if message["type"] != "http.response.start":
        return
    started = scope.get("state", {}).get("started")
    log.info(
        "request",
        method=scope.get("method"),
        path=scope.get("path"),
        route=scope.get("path_template") or None,
        status=message["status"],
        ms=round((time.perf_counter() - started) * 1000, 1) if started else None,
    )


def create_app(
    settings: Settings,
    kinesis_writer: KinesisWriter,
    dynamodb_client: Any,
    *,
    metrics: ApiMetrics | None = None,
    cursors: CursorCodec | None = None,
) -> Litestar:
    """The app, over the given clients. `metrics` defaults to the API's
    counters on prometheus_client's default registry (tests pass their own);
    `cursors` to a codec with API_CURSOR_SECRET."""
    services = Services(
        settings=settings,
        writer=kinesis_writer,
        lookups=TransactionLookups(
            dynamodb_client, settings.dynamodb_table, cursors or CursorCodec(settings.api_cursor_secret)
        ),
        metrics=metrics or ApiMetrics(),
    )
    prometheus = PrometheusConfig(app_name="retail-api", prefix=PREFIX, group_path=True, exclude=["^/metrics$"])
    return Litestar(
        route_handlers=[post_transactions, customer_transactions, invoice, healthz, prometheus_metrics],
        dependencies={"services": _provide(services)},
        middleware=[prometheus.middleware, RequestClock()],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        before_send=[access_log],
        request_max_body_size=settings.api_max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="retail-stream API", version="1.0.0",
            description="Put Online Retail transactions into the Kinesis stream; read them back from DynamoDB.",
            render_plugins=[JsonRenderPlugin()],
        ),
        logging_config=None,
    )


def _provide(services: Services) -> Provide:
    def provide() -> Services:
        return services

    return Provide(provide, use_cache=True, sync_to_thread=False)
