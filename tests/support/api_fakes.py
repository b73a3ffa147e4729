"""A DynamoDB Query fake for the API's lookups: the table's and the customer
index's key order, Limit, ExclusiveStartKey and LastEvaluatedKey as DynamoDB
has them (a page that reaches its Limit carries a LastEvaluatedKey, even when
nothing follows)."""

from __future__ import annotations

import datetime as dt

from botocore.exceptions import ClientError

from consumer.sinks.dynamodb import CUSTOMER_INDEX, to_item
from retail_stream.schema import Transaction, event_id
from tests.support.consumer_fakes import transaction

TABLE_KEY = ("invoice_no", "event_id")
INDEX_KEY = ("customer_id", "customer_sort")


class FakeDynamoDB:
    def __init__(self, records=(), *, page_size: int = 1000, fail: str | None = None) -> None:
        self.items = [to_item(r) for r in records]
        self.page_size = page_size  # DynamoDB's own page cut (1 MB), smaller for tests
        self.fail = fail
        self.queries: list[dict] = []

    def put(self, *records) -> None:
        self.items.extend(to_item(r) for r in records)

    def query(self, **kw):
        self.queries.append(kw)
        if self.fail:
            raise ClientError({"Error": {"Code": self.fail, "Message": "scripted"}}, "Query")
        value = kw["ExpressionAttributeValues"]
        if kw.get("IndexName") == CUSTOMER_INDEX:
            partition, sort = INDEX_KEY
            wanted = value[":c"]
            keys = (*INDEX_KEY, *TABLE_KEY)
        else:
            partition, sort = TABLE_KEY
            wanted = value[":i"]
            keys = TABLE_KEY
        items = [i for i in self.items if i.get(partition) == wanted]
        items.sort(key=lambda i: i[sort]["S"], reverse=not kw.get("ScanIndexForward", True))
        start = kw.get("ExclusiveStartKey")
        if start:
            position = [i[sort]["S"] for i in items].index(start[sort]["S"]) + 1
            items = items[position:]
        limit = min(kw.get("Limit", self.page_size), self.page_size)
        page = items[:limit]
        response = {"Items": page, "Count": len(page)}
        if len(page) == limit and page:
            response["LastEvaluatedKey"] = {k: page[-1][k] for k in keys}
        return response


def customer_records(count: int, customer: int = 17850) -> list[Transaction]:
    """`count` records of one customer, an hour apart, each of its own invoice."""
    base = transaction(1, customer=customer)
    fields = {f: getattr(base, f) for f in base.__struct_fields__}
    return [
        Transaction(**{**fields, "source": "c.csv", "line": n, "event_id": event_id("c.csv", n), "invoice_no": f"5{n:05d}",
                       "invoice_date": dt.datetime(2010, 12, 1) + dt.timedelta(hours=n)})
        for n in range(1, count + 1)
    ]


# --- the front door with known keys ---------------------------------------------

KEYS = {  # name -> (permissions, client, producer ids)
    "tester": (["ingest", "read"], "tester", False),
    "reader": (["read"], "reader", False),
    "writer": (["ingest"], "writer", False),
    "other": (["ingest", "read"], "other", False),
    "replay": (["ingest"], "replay", True),
}


def key_document(keys=KEYS) -> tuple[str, dict[str, str]]:
    """A key document holding `keys`, and each key's plaintext by name."""
    from api.credentials import add_key

    text, plaintext = "", {}
    for name, (permissions, client, producer_ids) in keys.items():
        text, plaintext[name] = add_key(text, name, permissions, client=client, producer_ids=producer_ids)
    return text, plaintext


def door_with_keys(registry, *, rate: float = 1000.0, burst: int = 1000, clock=None, tokens=None):
    """A front door over an in-memory key document; (door, plaintext keys by name)."""
    import time

    from api.auth import Door
    from api.credentials import KeyRing
    from api.limits import RateLimiter
    from api.metrics import ApiMetrics

    text, plaintext = key_document()
    ring = KeyRing({"memory": lambda: text}, background=False)
    ring.load()
    limiter = RateLimiter(rate, burst, clock=clock or time.monotonic)
    return Door(ring, tokens, limiter, ApiMetrics(registry)), plaintext
