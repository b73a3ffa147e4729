"""The warehouse (Redshift, or PostgreSQL locally): a COPY of exactly the
batch's raw-zone object, merged on (invoice_date, event_id), recorded in a
load ledger, all in one transaction. Loading the same object twice adds nothing.

The merge looks for duplicates only between the stage's first and last
invoice date: a replayed row carries its original's invoice date (and
source and line, hence event id), so the range is exact, and the table's
sort key (Redshift's zone maps) or index (PostgreSQL) keeps a load's cost to
the batch's own days, however large the table grows (`python -m bench.warehouse`).

Redshift enforces no unique keys, so the merge, not a constraint, keeps
duplicates out. COPY takes no bind parameters: every name and literal in it
is composed with psycopg2.sql, never pasted.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
from dataclasses import dataclass
from typing import Callable, Protocol

import msgspec
import psycopg2
from botocore.exceptions import BotoCoreError, ClientError
from psycopg2 import sql

from consumer.batch import Batch
from consumer.sinks import SinkError

STAGE = sql.Identifier("stage_transactions")
_PATH = re.compile(r"""^\$(?:\['([^']+)'\]|\.([A-Za-z_][A-Za-z0-9_]*))$""")


def jsonpaths_fields(document: str) -> tuple[str, ...]:
    """The field names of a JSONPaths file (`$['name']` or `$.name`), in order. Pure."""
    fields = []
    for path in json.loads(document)["jsonpaths"]:
        match = _PATH.match(path)
        if not match:
            raise ValueError(f"unsupported JSONPath {path!r}: only top-level fields")
        fields.append(match.group(1) or match.group(2))
    return tuple(fields)


@dataclass(frozen=True)
class Target:
    """The table a batch lands in, its ledger, and its column list (the
    JSONPaths order, so COPY maps the n-th path to the n-th column)."""

    schema: str
    table: str
    columns: tuple[str, ...]

    @property
    def table_id(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    @property
    def ledger_id(self) -> sql.Composable:
        return sql.Identifier(self.schema, "load_ledger")

    @property
    def column_list(self) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, self.columns))


def merge_statements(target: Target) -> dict[str, sql.Composable]:
    """The load's SQL, the same on Redshift and PostgreSQL. Pure."""
    cols = target.column_list
    return {
        # Loads of one table run one at a time (Redshift does so anyway);
        # the lock makes the ledger check and the merge see each other.
        "lock": sql.SQL("LOCK TABLE {}").format(target.ledger_id),
        "seen": sql.SQL("SELECT rows_inserted FROM {} WHERE object_key = %s").format(target.ledger_id),
        "stage": sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(STAGE, target.table_id),
        # A fresh temp table has no statistics: without them PostgreSQL plans
        # the merge as a nested loop over the whole table (seconds a batch,
        # growing with the table) instead of a hash anti join.
        "analyze": sql.SQL("ANALYZE {}").format(STAGE),
        "bounds": sql.SQL("SELECT MIN(invoice_date), MAX(invoice_date) FROM {}").format(STAGE),
        # The range as literal bounds (not a subquery), so Redshift prunes blocks by them.
        "merge": sql.SQL(
            "INSERT INTO {target} ({cols}) "
            "SELECT {cols} FROM ("
            "SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY line) AS copy_no "
            "FROM {stage}) AS s "
            "WHERE s.copy_no = 1 "
            "AND NOT EXISTS (SELECT 1 FROM {target} AS t "
            "WHERE t.invoice_date BETWEEN %s AND %s "
            "AND t.invoice_date = s.invoice_date AND t.event_id = s.event_id)"
        ).format(target=target.table_id, cols=cols, stage=STAGE),
        "record": sql.SQL(
            "INSERT INTO {} (object_key, shard_id, first_sequence, first_sub_sequence, last_sequence, "
            "last_sub_sequence, rows_in_object, rows_inserted, loaded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(target.ledger_id),
        "drop": sql.SQL("DROP TABLE {}").format(STAGE),
    }


class ObjectCopy(Protocol):
    """Loads one S3 object into the stage table, inside the caller's transaction."""

    def copy(self, cursor, bucket: str, key: str) -> None: ...


def redshift_copy_statement(
    target: Target, object_uri: str, iam_role: str, jsonpaths_uri: str
) -> sql.Composable:
    """Redshift's own COPY of one gzip'd NDJSON object through the JSONPaths file. Pure."""
    return sql.SQL(
        "COPY {stage} ({cols}) FROM {source} IAM_ROLE {role} "
        "FORMAT AS JSON {paths} GZIP TIMEFORMAT 'auto'"
    ).format(
        stage=STAGE,
        cols=target.column_list,
        source=sql.Literal(object_uri),
        role=sql.Literal(iam_role),
        paths=sql.Literal(jsonpaths_uri),
    )


class RedshiftCopy:
    """COPY ... FROM 's3://...': Redshift reads the object itself."""

    def __init__(self, target: Target, iam_role: str, jsonpaths_uri: str) -> None:
        self._target = target
        self._iam_role = iam_role
        self._jsonpaths_uri = jsonpaths_uri

    def copy(self, cursor, bucket: str, key: str) -> None:
        cursor.execute(
            redshift_copy_statement(self._target, f"s3://{bucket}/{key}", self._iam_role, self._jsonpaths_uri)
        )


# COPY text format: backslash, tab and line breaks escaped; NULL is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
# Numbers keep their exact text: a float's digits as written, never a float.
_ndjson = msgspec.json.Decoder(float_hook=str)


def _copy_text(value: object) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    text = value if type(value) is str else str(value)
    # Most values need no escaping; searching first is what makes that cheap.
    return text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def ndjson_to_copy_text(body: bytes, fields: tuple[str, ...]) -> str:
    """Apply JSONPaths to gzip'd NDJSON, as Redshift would, giving COPY text
    rows. Numbers keep their exact text (no float round trip). Pure."""
    lines = _ndjson.decode_lines(gzip.decompress(body))
    rows = ["\t".join([_copy_text(row.get(f)) for f in fields]) for row in lines]
    rows.append("")  # every row ends with a newline
    return "\n".join(rows)


class LocalCopy:
    """The same load on PostgreSQL: read the object from S3, apply the
    JSONPaths mapping, COPY FROM STDIN."""

    def __init__(self, target: Target, s3_client, fields: tuple[str, ...]) -> None:
        self._target = target
        self._s3 = s3_client
        self._fields = fields

    def copy(self, cursor, bucket: str, key: str) -> None:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise SinkError.caused_by(WarehouseSink.name, f"s3://{bucket}/{key}", exc, "reading the raw-zone object") from exc
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(STAGE, self._target.column_list)
        cursor.copy_expert(statement, io.StringIO(ndjson_to_copy_text(body, self._fields)))


class WarehouseConnection:
    """One warehouse connection, opened on first use and again after `discard`
    (a connection whose transaction failed may be broken: the next use opens another)."""

    def __init__(self, connect: Callable[[], "psycopg2.extensions.connection"]) -> None:
        self._connect = connect
        self._conn = None

    def get(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def discard(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
        self._conn = None


class WarehouseSink:
    """Loads the batch's object in `bucket` at `object_key(batch)`, which the
    sinks named in `after` (the raw zone's) must have written first.

    `skip_loaded=False` (python -m rebuild) loads an object the ledger names
    again: the merge still adds only the rows the table lacks, so a table
    emptied or dropped by hand gets its rows back and nothing doubles."""

    name = "warehouse"

    def __init__(
        self,
        connect: Callable[[], "psycopg2.extensions.connection"],
        target: Target,
        loader: ObjectCopy,
        bucket: str,
        object_key: Callable[[Batch], str],
        *,
        after: tuple[str, ...],
        skip_loaded: bool = True,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    ) -> None:
        self.after = after
        self._skip_loaded = skip_loaded
        self._connection = WarehouseConnection(connect)
        self._statements = merge_statements(target)
        self._loader = loader
        self._bucket = bucket
        self._object_key = object_key
        self._clock = clock
        self._table_name = f"{target.schema}.{target.table}"

    def write(self, batch: Batch) -> int:
        if not batch.records:
            return 0
        key = self._object_key(batch)
        try:
            conn = self._connection.get()
            with conn, conn.cursor() as cur:  # one transaction: commit or roll back whole
                self._load(cur, batch, key)
        except psycopg2.Error as exc:
            self._connection.discard()
            raise SinkError.caused_by(self.name, self._table_name, exc) from exc
        return len(batch.records)

    def _load(self, cur, batch: Batch, key: str) -> None:
        s = self._statements
        cur.execute(s["lock"])
        cur.execute(s["seen"], (key,))
        loaded = cur.fetchone() is not None
        if loaded and self._skip_loaded:
            return  # loaded before: the ledger says so, in the same transaction
        cur.execute(s["stage"])
        self._loader.copy(cur, self._bucket, key)
        cur.execute(s["analyze"])
        cur.execute(s["bounds"])
        first_day, last_day = cur.fetchone()
        cur.execute(s["merge"], (first_day, last_day))
        inserted = cur.rowcount
        if not loaded:
            cur.execute(
                s["record"],
                (key, batch.shard_id, *batch.first, *batch.last, len(batch.records), inserted, self._clock()),
            )
        cur.execute(s["drop"])
