"""What DynamoDB and the warehouse hold of a window's events, looked up by
the events' own keys: never a scan of a whole table.

- DynamoDB: BatchGetItem of each row's key (invoice_no, event_id). Half a
  read unit per item; an index by arrival hour would make the reads cheaper
  (a Query bills by 4 KB of items, not per item) but would cost a write unit
  more on every item the consumer ever writes, to save reads done once per
  reconciliation: keys win.
- The warehouse: the window's (event_id, invoice_date) in a temporary table,
  joined to the table between the window's first and last invoice date, the
  range the sort key (Redshift) or index (PostgreSQL) answers; and the load
  ledger by object key.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Sequence

from psycopg2 import extras, sql

from consumer.sinks.warehouse import Target
from reconcile.window import RawRow
from retail_stream.retries import Backoff

BATCH_GET_KEYS = 100  # BatchGetItem's limit
LOOKUP_THREADS = 8
KEYS_PAGE = 1000  # rows per INSERT into the temporary key table
UNPROCESSED_BACKOFF = Backoff(base=0.05, cap=2.0, attempts=10)


@dataclass(frozen=True, slots=True)
class Held:
    """What a store holds of one event: its quantity and amount, and in how many rows."""

    quantity: int
    amount: Decimal
    copies: int = 1


def dynamodb_held(client: Any, table: str, rows: Sequence[RawRow]) -> dict[str, Held]:
    """The items the table holds of `rows`, by event id."""
    chunks = [rows[i:i + BATCH_GET_KEYS] for i in range(0, len(rows), BATCH_GET_KEYS)]

    def get(chunk: Sequence[RawRow]) -> dict[str, Held]:
        request = {table: {
            "Keys": [{"invoice_no": {"S": r.invoice_no}, "event_id": {"S": r.event_id}} for r in chunk],
            "ProjectionExpression": "#e, #q, #p",
            "ExpressionAttributeNames": {"#e": "event_id", "#q": "quantity", "#p": "unit_price"},
        }}
        found: dict[str, Held] = {}
        tries = 0
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(table, []):
                quantity = int(item["quantity"]["N"])
                found[item["event_id"]["S"]] = Held(quantity, quantity * Decimal(item["unit_price"]["N"]))
            request = response.get("UnprocessedKeys") or None
            tries += 1
            if request:
                if not UNPROCESSED_BACKOFF.allows(tries):
                    raise RuntimeError(f"DynamoDB left keys unprocessed after {tries} tries (throttled)")
                time.sleep(UNPROCESSED_BACKOFF.delay(tries))
        return found

    held: dict[str, Held] = {}
    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        for found in pool.map(get, chunks):
            held.update(found)
    return held


def statements(target: Target) -> dict[str, sql.Composable]:
    """The warehouse's reads. Pure."""
    keys = sql.Identifier("reconcile_keys")
    return {
        "keys": sql.SQL("CREATE TEMP TABLE {} (event_id CHAR(32) NOT NULL, invoice_date TIMESTAMP NOT NULL)")
        .format(keys),
        "insert": sql.SQL("INSERT INTO {} (event_id, invoice_date) VALUES %s").format(keys),
        "held": sql.SQL(
            "SELECT t.event_id, COUNT(*), SUM(t.quantity), SUM(t.quantity * t.unit_price) "
            "FROM {table} AS t JOIN {keys} AS k ON t.invoice_date = k.invoice_date AND t.event_id = k.event_id "
            "WHERE t.invoice_date BETWEEN %s AND %s GROUP BY t.event_id"
        ).format(table=target.table_id, keys=keys),
        "loaded": sql.SQL("SELECT object_key FROM {} WHERE object_key IN %s").format(target.ledger_id),
        "ledger_days": sql.SQL("SELECT object_key FROM {} WHERE object_key LIKE %s").format(target.ledger_id),
        "drop": sql.SQL("DROP TABLE {}").format(keys),
    }


@dataclass(frozen=True)
class WarehouseHolding:
    held: dict[str, Held]  # by event id
    loaded: frozenset[str]  # the window's object keys the ledger records
    ledger_keys: frozenset[str]  # every ledger key under the window's days (some may be gone from S3)


def warehouse_held(conn: Any, target: Target, rows: Sequence[RawRow], object_keys: Iterable[str],
                   day_prefixes: Iterable[str]) -> WarehouseHolding:
    """The table's rows of `rows`, the ledger's word on `object_keys`, and the
    ledger's keys under each of `day_prefixes` (`<raw prefix>/dt=<day>/`), in
    one read-only transaction that leaves nothing behind."""
    s = statements(target)
    held: dict[str, Held] = {}
    with conn, conn.cursor() as cur:
        if rows:
            cur.execute(s["keys"])
            extras.execute_values(cur, s["insert"], [(r.event_id, r.invoice_date) for r in rows],
                                  page_size=KEYS_PAGE)
            first = min(r.invoice_date for r in rows)
            last = max(r.invoice_date for r in rows)
            cur.execute(s["held"], (first, last))
            for event_id, copies, quantity, amount in cur.fetchall():
                held[event_id.strip()] = Held(int(quantity), Decimal(amount), int(copies))
            cur.execute(s["drop"])
        loaded: set[str] = set()
        keys = list(object_keys)
        for start in range(0, len(keys), KEYS_PAGE):
            cur.execute(s["loaded"], (tuple(keys[start:start + KEYS_PAGE]),))
            loaded.update(k for (k,) in cur.fetchall())
        ledger: set[str] = set()
        for prefix in day_prefixes:
            cur.execute(s["ledger_days"], (_like_prefix(prefix),))
            ledger.update(k for (k,) in cur.fetchall())
    return WarehouseHolding(held, frozenset(loaded), frozenset(ledger))


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching keys that start with `prefix`, taken literally. Pure."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
