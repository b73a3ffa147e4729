"""The HTTP API as a Litestar app: `create_app(settings, writer, dynamodb)`.

    POST /transactions                          ingest: body -> ingest.read_body -> ingest.check -> publish (Kinesis)
    GET  /customers/{customer_id}/transactions  read: lookups.customer_page (index by_customer, newest first)
    GET  /invoices/{invoice_no}                 read: lookups.invoice_lines (the table, by (source, line))
    GET  /schema/openapi.json                   any credential
    GET  /healthz                               open

Every route but /healthz passes the front door (api/auth.py: a credential,
then its rate limit) and its permission guard. /metrics is served on a port
of its own (api/server.py), never beside the routes. Clients come in from
the composition root (api/server.py), so tests pass fakes or the local stack's. Blocking work (boto3, the writer's backoff) runs
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
from litestar import Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.middleware import DefineMiddleware
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.params import Parameter
from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api import ingest
from api.auth import OPEN, Door, FrontDoor, requires
from api.credentials import Principal
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
        401: "No credential, or one that is not valid (unknown, revoked, expired)",
        403: "The credential lacks this route's permission (ingest or read)",
        404: "Nothing found",
        413: "Body larger than API_MAX_BODY_BYTES, or more items than API_MAX_ITEMS",
        415: "Content-Type other than application/json or text/csv (UTF-8)",
        429: "More requests than the credential's rate limit; see Retry-After",
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
    guards=[requires("ingest")],
    description="Every item is validated like a CSV row of the producer; valid ones go into the Kinesis "
    "stream. The items are stored under the source `<client>/<source>` (the client is the credential's), "
    "and an item's event_id is event_id(that source, line): send the same source and lines again and "
    "nothing is doubled downstream, while no client can write another client's event ids.",
    responses={
        422: ResponseSpec(IngestResult, description="Every item was rejected", generate_examples=False),
        503: ResponseSpec(IngestResult, description="Kinesis kept refusing some items (status \"failed\"): "
                          "send the request again", generate_examples=False),
        **_errors(400, 401, 403, 413, 415, 429),
    },
)
async def post_transactions(
    request: Request,
    services: NamedDependency[Services],
    source: Annotated[
        str | None,
        Parameter(description="the stable id the event_ids derive from, in the caller's namespace "
                  "(default: a fresh api-<uuid>)", min_length=1, max_length=ingest.MAX_SOURCE_CHARS),
    ] = None,
) -> Response[IngestResult]:
    principal: Principal = request.user
    given = new_source_id() if source is None else source
    source = principal.source_for(given)
    problem = ingest.source_problem(given)
    if not problem and principal.client is None and "/" in given:
        problem = "source may not hold '/' with a producer-ids key: that is how client namespaces are spelt"
    if not problem and len(source) > ingest.MAX_SOURCE_CHARS:
        problem = f"source must be at most {ingest.MAX_SOURCE_CHARS - len(source) + len(given)} characters " \
                  f"for this client (stored as {principal.client}/<source>)"
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
    guards=[requires("read")],
    summary="One customer's transactions, newest first",
    responses=_errors(400, 401, 403, 404, 429, 503),
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
    guards=[requires("read")],
    summary="Every line of one invoice, by (source, line)",
    responses=_errors(400, 401, 403, 404, 429, 503),
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


# --- health ------------------------------------------------------------------


@get("/healthz", summary="Liveness: the process answers", opt=OPEN, security=[{}])
async def healthz() -> Health:
    return Health()


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
    door: Door,
    *,
    cursors: CursorCodec | None = None,
) -> Litestar:
    """The app, over the given clients and front door (whose metrics the
    handlers count on too); `cursors` defaults to a codec with API_CURSOR_SECRET."""
    services = Services(
        settings=settings,
        writer=kinesis_writer,
        lookups=TransactionLookups(
            dynamodb_client, settings.dynamodb_table, cursors or CursorCodec(
                settings.api_cursor_secret, previous=settings.api_cursor_previous_secret,
                ttl_seconds=settings.api_cursor_ttl_seconds),
        ),
        metrics=door.metrics,
    )
    # Litestar's request metrics live on prometheus_client's default registry.
    prometheus = PrometheusConfig(app_name="retail-api", prefix=PREFIX, group_path=True)
    return Litestar(
        route_handlers=[post_transactions, customer_transactions, invoice, healthz],
        dependencies={"services": _provide(services)},
        middleware=[prometheus.middleware, RequestClock(), DefineMiddleware(FrontDoor, door=door)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        before_send=[access_log],
        request_max_body_size=settings.api_max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="retail-stream API", version="1.0.0",
            description="Put Online Retail transactions into the Kinesis stream; read them back from DynamoDB. "
            "Every route but /healthz needs a credential: an API key (X-API-Key) or an OIDC bearer token.",
            render_plugins=[JsonRenderPlugin()],
            components=Components(security_schemes={
                "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header",
                                         description="an API key made with retail-api-keys"),
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                         description="an OIDC access token (Cognito or any provider)"),
            }),
            security=[{"apiKey": []}, {"bearer": []}],
        ),
        logging_config=None,
    )


def _provide(services: Services) -> Provide:
    def provide() -> Services:
        return services

    return Provide(provide, use_cache=True, sync_to_thread=False)
