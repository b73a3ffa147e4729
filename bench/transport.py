"""The all-in processor bench's clients: real botocore clients (serializing,
signing, parsing, retry handlers: everything botocore does on a call) whose
HTTP session answers at once as the service would, with no network; and a
real psycopg2 connection to the local PostgreSQL for the warehouse.

What is left out is the HTTP exchange itself (urllib3, the socket, TLS):
the drain's `consumer_processes_us_per_record` has it, against the emulator.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import psycopg2
import psycopg2.extensions
from botocore.awsrequest import AWSResponse
from psycopg2 import sql

from consumer.wiring import Clients
from local_stack.provision import ensure_warehouse
from retail_stream import aws
from retail_stream.settings import Settings

_JSON = {"content-type": "application/x-amz-json-1.0"}


class _Body(io.BytesIO):
    """What AWSResponse reads a body from (urllib3's response, in botocore):
    whole, or (a streamed GetObject body) by read()."""

    def stream(self, **_):
        yield self.getvalue()


@dataclass
class AnsweringSession:
    """botocore's HTTP session, answering as DynamoDB and S3 answer the
    calls the sinks make: BatchWriteItem with nothing unprocessed, PutObject
    with an ETag, GetObject with the object put. Counts what it answered."""

    objects: dict[str, bytes] = field(default_factory=dict)
    dynamodb_calls: int = 0
    dynamodb_items: int = 0
    s3_puts: int = 0

    _counting: threading.Lock = field(default_factory=threading.Lock)  # the sink's workers send at once

    def send(self, request) -> AWSResponse:
        target = request.headers.get("X-Amz-Target")
        if target is not None:  # DynamoDB: the only call the sink makes
            items = request.body.count(b'{"PutRequest": ')  # not json.loads: this is not the processor's CPU
            with self._counting:
                self.dynamodb_calls += 1
                self.dynamodb_items += items
            return AWSResponse(request.url, 200, _JSON, _Body(b'{"UnprocessedItems":{}}'))
        key = unquote(urlsplit(request.url).path)
        if request.method == "PUT":
            body = request.body if isinstance(request.body, bytes) else request.body.read()
            self.objects[key] = body
            self.s3_puts += 1
            return AWSResponse(request.url, 200, {"ETag": '"0"', "Content-Length": "0"}, _Body(b""))
        body = self.objects[key]
        return AWSResponse(request.url, 200, {"Content-Length": str(len(body)), "ETag": '"0"'}, _Body(body))


class RedshiftOnPostgres(psycopg2.extensions.cursor):
    """A psycopg2 cursor on PostgreSQL that takes Redshift's COPY FROM
    's3://...' as Redshift would, with the client's cost: psycopg2 renders
    it and a round trip is made, but PostgreSQL, which cannot read S3, runs
    an empty statement in its place (the stage stays empty: the server's
    work is not the processor's CPU). Every other statement runs as it is."""

    copies = 0

    def execute(self, query, vars=None):
        text = query.as_string(self) if isinstance(query, sql.Composable) else query
        if text.startswith("COPY ") and " FROM 's3://" in text:
            RedshiftOnPostgres.copies += 1
            return super().execute("SELECT 1")
        return super().execute(text, vars)


def fresh_warehouse(settings: Settings, schema: str) -> Settings:
    """`settings` on an empty schema of its own in the local PostgreSQL
    (dropped and made again), so a run finds no ledger of a run before."""
    own = dataclasses.replace(settings, warehouse_schema=schema)
    conn = psycopg2.connect(own.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.close()
    ensure_warehouse(dataclasses.replace(own, warehouse_dialect="postgres"))  # its DDL runs on PostgreSQL
    return own


def all_in_clients(settings: Settings, session: AnsweringSession) -> Clients:
    """The service's own clients (retail_stream.aws, as `service_clients`
    makes them) over `session`, and psycopg2 to the local PostgreSQL."""
    clients = {}
    for service, validate in (("s3", True), ("dynamodb", False)):
        clients[service] = aws.client(service, settings, validate=validate)
        clients[service]._endpoint.http_session = session
    cursor = RedshiftOnPostgres if settings.warehouse_dialect == "redshift" else None
    return Clients(s3=clients["s3"], dynamodb=clients["dynamodb"],
                   connect_warehouse=lambda: psycopg2.connect(settings.warehouse_dsn, cursor_factory=cursor))
