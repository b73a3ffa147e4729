"""DynamoDB: every valid row stored once, as one item.

Key design (table created by local_stack/provision.py and deploy/):
- table key: `invoice_no` (partition) + `event_id` (sort). "All lines of
  invoice Y" is one Query on the table. Rows without a customer live here too,
  spread by invoice, so no partition collects them.
- index `by_customer`: `customer_id` (partition) + `customer_sort`
  (`<invoice_date>#<invoice_no>#<event_id>`). "All transactions of customer X,
  newest first" is one Query with ScanIndexForward=false. The index is sparse:
  a row without a customer has no `customer_id` and is not in it.
The item key is the row's identity, so a replayed row overwrites itself.

A batch's BatchWriteItem calls go `concurrency` at a time: one call at a
time (25 items per round trip) would cap a shard near a thousand items a
second, the very rate a shard can be written at.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii as _quote
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from consumer.batch import Batch
from consumer.sinks import SinkError
from retail_stream.retries import Backoff
from retail_stream.schema import InvalidRecord, Transaction

MAX_ITEMS_PER_CALL = 25
CUSTOMER_INDEX = "by_customer"
# Unprocessed items (a throttled table answers 200 with some items left):
# 8 tries in all, waits from up to 50 ms doubling to 2 s (about 5 s at most).
UNPROCESSED_BACKOFF = Backoff(base=0.05, cap=2.0, attempts=8)


def to_item(record: Transaction) -> dict:
    """The item for one row, in DynamoDB's typed attribute form. Pure."""
    when = record.invoice_date.isoformat()
    item = {
        "invoice_no": {"S": record.invoice_no},
        "event_id": {"S": record.event_id},
        "stock_code": {"S": record.stock_code},
        "quantity": {"N": str(record.quantity)},
        "invoice_date": {"S": when},
        "unit_price": {"N": format(record.unit_price, "f")},
        "source": {"S": record.source},
        "line": {"N": str(record.line)},
    }
    if record.description:
        item["description"] = {"S": record.description}
    if record.country:
        item["country"] = {"S": record.country}
    if record.customer_id is not None:
        item["customer_id"] = {"N": str(record.customer_id)}
        item["customer_sort"] = {"S": f"{when}#{record.invoice_no}#{record.event_id}"}
    return item


def from_item(item: dict) -> Transaction:
    """The row an item holds: the inverse of `to_item` (`from_item(to_item(r))
    == r`). Pure. Raises InvalidRecord, naming the attribute, for an item
    `to_item` could not have written."""
    try:
        return Transaction(
            event_id=_attribute(item, "event_id", "S"),
            invoice_no=_attribute(item, "invoice_no", "S"),
            stock_code=_attribute(item, "stock_code", "S"),
            description=_attribute(item, "description", "S", optional=True),
            quantity=int(_attribute(item, "quantity", "N")),
            invoice_date=dt.datetime.fromisoformat(_attribute(item, "invoice_date", "S")),
            unit_price=Decimal(_attribute(item, "unit_price", "N")),
            customer_id=_optional_int(_attribute(item, "customer_id", "N", optional=True)),
            country=_attribute(item, "country", "S", optional=True),
            source=_attribute(item, "source", "S"),
            line=int(_attribute(item, "line", "N")),
        )
    except InvalidRecord:
        raise
    except (ValueError, InvalidOperation) as exc:
        raise InvalidRecord(f"item is not a transaction: {exc}") from None


def _attribute(item: dict, name: str, kind: str, optional: bool = False) -> str | None:
    value = item.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, dict) or not isinstance(value.get(kind), str):
        raise InvalidRecord(f"item has no {name!r} of type {kind}")
    return value[kind]


def _optional_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def put_request_json(record: Transaction) -> str:
    """`{"PutRequest": {"Item": to_item(record)}}` as botocore's serializer
    writes it (json.dumps: ", " and ": " between, non-ASCII as \\u escapes),
    made without the dicts. Pure. The user's text goes through json's own
    escaping function; the rest (hex ids, digits, ISO dates) needs none."""
    when = record.invoice_date.isoformat()
    invoice_no = _quote(record.invoice_no)
    text = (
        f'{{"PutRequest": {{"Item": {{"invoice_no": {{"S": {invoice_no}}}, '
        f'"event_id": {{"S": "{record.event_id}"}}, "stock_code": {{"S": {_quote(record.stock_code)}}}, '
        f'"quantity": {{"N": "{record.quantity}"}}, "invoice_date": {{"S": "{when}"}}, '
        f'"unit_price": {{"N": "{record.unit_price:f}"}}, "source": {{"S": {_quote(record.source)}}}, '
        f'"line": {{"N": "{record.line}"}}'
    )
    if record.description:
        text += f', "description": {{"S": {_quote(record.description)}}}'
    if record.country:
        text += f', "country": {{"S": {_quote(record.country)}}}'
    if record.customer_id is not None:
        # invoice_no already quoted: the sort key is `<when>#<invoice_no>#<event_id>`.
        text += (f', "customer_id": {{"N": "{record.customer_id}"}}, '
                 f'"customer_sort": {{"S": "{when}#{invoice_no[1:-1]}#{record.event_id}"}}')
    return text + "}}}"


def _unique(records: Iterable[Transaction]) -> list[Transaction]:
    """Each key once (DynamoDB refuses a call that names a key twice; the later row wins)."""
    return list({(r.invoice_no, r.event_id): r for r in records}.values())


def call_rows(records: Iterable[Transaction]) -> list[list[Transaction]]:
    """The rows of each BatchWriteItem call: at most 25, each key once in the
    whole batch. Pure."""
    unique = _unique(records)
    return [unique[start : start + MAX_ITEMS_PER_CALL] for start in range(0, len(unique), MAX_ITEMS_PER_CALL)]


def write_requests(records: Iterable[Transaction]) -> Iterator[list[dict]]:
    """PutRequests in calls of at most 25, each key once in the whole batch,
    as botocore takes them (`RequestItems={table: call}`). Pure; lazy."""
    for rows in call_rows(records):
        yield [{"PutRequest": {"Item": to_item(r)}} for r in rows]


class Call(NamedTuple):
    """One BatchWriteItem: its request body and how many items it puts."""

    items: int
    body: bytes


def call_of(table: str, rows: list[Transaction]) -> Call:
    """One call's body, byte for byte what botocore's serializer sends for
    `{"RequestItems": {table: [PutRequest of each row]}}`. Pure."""
    items = ", ".join(map(put_request_json, rows))
    return Call(len(rows), f'{{"RequestItems": {{{_quote(table)}: [{items}]}}}}'.encode())


def write_calls(table: str, records: Iterable[Transaction]) -> Iterator[Call]:
    """The BatchWriteItem calls of `write_requests(records)`. Pure; lazy:
    each call's body is made only when it is due."""
    return (call_of(table, rows) for rows in call_rows(records))


def unprocessed_body(unprocessed: Mapping) -> bytes:
    """The body that sends a call's UnprocessedItems again (botocore's
    serializer: json.dumps of the request). Pure."""
    return json.dumps({"RequestItems": unprocessed}).encode()


class ItemWriter(Protocol):
    """Sends one BatchWriteItem request body; answers the parsed response
    (consumer.sinks.batch_write.BatchWriter over a botocore client)."""

    def send(self, body: bytes) -> Mapping: ...


class DynamoDBSink:
    name = "dynamodb"
    after: tuple[str, ...] = ()

    def __init__(
        self,
        writer: ItemWriter,
        table: str,
        *,
        concurrency: int,
        backoff: Backoff = UNPROCESSED_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._writer = writer
        self._table = table
        self._backoff = backoff
        self._sleep = sleep
        self._concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="dynamodb")

    def write(self, batch: Batch) -> int:
        """Put every item, `concurrency` calls in flight; blocks until all are
        written, or raises the first SinkError once the calls in flight have
        ended (so a retry never overlaps them).

        Each of `concurrency` workers takes the next call's rows when it is
        free, makes the body and sends it: one task a worker, not one a call,
        as a hand-over between threads costs more CPU than a call's signing.
        At most `concurrency` bodies exist at once."""
        rows = iter(call_rows(batch.records))
        taking = threading.Lock()
        failures: list[SinkError] = []

        def work() -> int:
            written = 0
            while not failures:  # after the first failure no call starts
                with taking:
                    call = next(rows, None)
                if call is None:
                    break
                try:
                    written += self._write_call(call_of(self._table, call))
                except SinkError as exc:
                    failures.append(exc)
            return written

        workers = [self._pool.submit(work) for _ in range(self._concurrency)]
        written = sum(worker.result() for worker in workers)
        if failures:
            raise failures[0]
        return written

    def _write_call(self, call: Call) -> int:
        """Send one call, then its unprocessed items again until none are
        left; returns how many items the call put."""
        body, tries = call.body, 0
        while True:
            try:
                response = self._writer.send(body)
            except (ClientError, BotoCoreError) as exc:
                raise SinkError.caused_by(self.name, self._table, exc) from exc
            tries += 1
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return call.items
            if not self._backoff.allows(tries):
                left = sum(len(v) for v in pending.values())
                raise SinkError(self.name, f"{left} items still unprocessed after {tries} attempts",
                                "UnprocessedItems", resource=self._table)
            # Unprocessed items mean throttling: back off before resending them.
            self._sleep(self._backoff.delay(tries))
            body = unprocessed_body(pending)
