"""The two reads the table's key design serves (consumer/sinks/dynamodb.py):
one customer's transactions newest first, one invoice's lines.

Blocking boto3 calls: the app runs them in worker threads. A DynamoDB error
(throttling past botocore's retries, a missing table, no connection) is a
`LookupUnavailable`, which the API answers with 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from api.cursor import CursorCodec, InvalidCursor
from consumer.sinks.dynamodb import CUSTOMER_INDEX, from_item
from retail_stream.schema import Transaction

# The key attributes of an item in the customer index: the index's and the table's.
_CUSTOMER_KEY = {"customer_id": "N", "customer_sort": "S", "invoice_no": "S", "event_id": "S"}


class LookupUnavailable(Exception):
    """DynamoDB did not answer; the request may be tried again."""


@dataclass(frozen=True)
class Page:
    records: list[Transaction]
    next_cursor: str | None  # None on the last page


class TransactionLookups:
    """Queries on the transactions table. `client` is a boto3 DynamoDB client."""

    def __init__(self, client: Any, table: str, cursors: CursorCodec) -> None:
        self._client = client
        self._table = table
        self._cursors = cursors

    def customer_page(self, customer_id: int, limit: int, cursor: str | None = None) -> Page:
        """Up to `limit` of the customer's transactions, newest first
        (invoice date, then invoice and event id, descending), after `cursor`.

        The next cursor is the key of the page's last item, and there is one
        only when more items follow, so the last page is never an empty one.
        Raises InvalidCursor (not ours, or another customer's) and LookupUnavailable.
        """
        start = self.customer_start_key(cursor, customer_id) if cursor else None
        query = {
            "TableName": self._table,
            "IndexName": CUSTOMER_INDEX,
            "KeyConditionExpression": "customer_id = :c",
            "ExpressionAttributeValues": {":c": {"N": str(customer_id)}},
            "ScanIndexForward": False,
        }
        items = self._query(query, start, at_most=limit + 1)  # one more than the page: is there a next one?
        more = len(items) > limit
        items = items[:limit]
        next_cursor = self._cursors.encode(_customer_key(items[-1])) if more and items else None
        return Page([from_item(item) for item in items], next_cursor)

    def customer_start_key(self, cursor: str, customer_id: int) -> dict:
        """The index key a customer cursor holds; raises InvalidCursor unless
        it is one of ours, for this customer."""
        key = self._cursors.decode(cursor)
        if {name: next(iter(value)) for name, value in key.items()} != _CUSTOMER_KEY:
            raise InvalidCursor("cursor is not a customer transactions cursor")
        if key["customer_id"]["N"] != str(customer_id):
            raise InvalidCursor("cursor belongs to another customer")
        return key

    def invoice_lines(self, invoice_no: str) -> list[Transaction]:
        """Every line of the invoice, ordered by (source, line); [] for none.
        Follows DynamoDB's pages to the end."""
        items = self._query({
            "TableName": self._table,
            "KeyConditionExpression": "invoice_no = :i",
            "ExpressionAttributeValues": {":i": {"S": invoice_no}},
        })
        records = [from_item(item) for item in items]
        return sorted(records, key=lambda r: (r.source, r.line))

    def _query(self, query: dict, start: dict | None = None, at_most: int | None = None) -> list[dict]:
        """The Query's items from `start` on, following DynamoDB's pages until
        the last one or until `at_most` items are in."""
        items: list[dict] = []
        while at_most is None or len(items) < at_most:
            page = dict(query)
            if at_most is not None:
                page["Limit"] = at_most - len(items)
            if start:
                page["ExclusiveStartKey"] = start
            response = self._call("query", page)
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        return items

    def _call(self, operation: str, arguments: dict) -> dict:
        try:
            return getattr(self._client, operation)(**arguments)
        except (ClientError, BotoCoreError) as exc:
            raise LookupUnavailable(f"DynamoDB {operation} failed: {exc}") from exc


def _customer_key(item: dict) -> dict:
    return {name: {kind: item[name][kind]} for name, kind in _CUSTOMER_KEY.items()}
