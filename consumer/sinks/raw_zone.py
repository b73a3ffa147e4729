"""S3 raw zone: one gzip NDJSON object per batch.

The key is deterministic from the shard and the batch's first and last
positions (sequence and sub-sequence), and the object is created only if
absent (If-None-Match: *). A shard's order is fixed, so two batches with the
same first and last positions hold the same records: a replayed batch is a
no-op, a batch cut differently gets a key of its own, and the warehouse COPY
always finds exactly the rows it expects.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from consumer.batch import Batch, Position
from consumer.sinks import SinkError
from retail_stream.schema import InvalidRecord, Transaction, decode, encode_lines

_OBJECT_NAME = re.compile(
    r"^(?P<prefix>.+)/dt=(?P<day>\d{4}-\d{2}-\d{2})/shard=(?P<shard>[^/]+)/"
    r"(?P<first>\d+(?:\.\d+)?)-(?P<last>\d+(?:\.\d+)?)\.ndjson\.gz$"
)


def object_key(prefix: str, batch: Batch) -> str:
    """`<prefix>/dt=<date>/shard=<shard>/<first>-<last>.ndjson.gz`, each
    position spelt as `Position.label` (`<seq>` or `<seq>.<sub>`). Pure."""
    return (
        f"{prefix}/dt={batch.partition_date}/shard={batch.shard_id}/"
        f"{batch.first.label}-{batch.last.label}.ndjson.gz"
    )


@dataclass(frozen=True, slots=True)
class ObjectName:
    """What a raw-zone key says: the batch's arrival day, shard and first and
    last positions. The inverse of `object_key`."""

    key: str
    day: str
    shard_id: str
    first: Position
    last: Position


def parse_object_key(key: str) -> ObjectName | None:
    """The `ObjectName` of a key `object_key` made, None for any other key. Pure."""
    match = _OBJECT_NAME.match(key)
    if match is None:
        return None
    return ObjectName(key, match["day"], match["shard"], _position(match["first"]), _position(match["last"]))


def _position(label: str) -> Position:
    sequence, _, sub = label.partition(".")
    return Position(sequence, int(sub or 0))


def to_ndjson_gz(records: tuple[Transaction, ...], level: int) -> bytes:
    """Newline-delimited JSON, gzip'd at `level` with a fixed header time so
    equal batches give equal bytes. Pure."""
    return gzip.compress(encode_lines(records), compresslevel=level, mtime=0)


def from_ndjson_gz(body: bytes) -> list[Transaction]:
    """The rows of a raw-zone object: the inverse of `to_ndjson_gz`. Pure;
    raises InvalidRecord (with the line number) for a line no consumer wrote."""
    rows = []
    for number, line in enumerate(gzip.decompress(body).splitlines(), 1):
        if line.strip():
            try:
                rows.append(decode(line))
            except InvalidRecord as exc:
                raise InvalidRecord(f"line {number}: {exc}") from None
    return rows


def put_once(client, bucket: str, key: str, body: bytes, content_type: str, sink: str) -> None:
    """Create `key` unless it exists already (then it holds this same batch)."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
            return
        raise SinkError.caused_by(sink, f"s3://{bucket}/{key}", exc) from exc
    except BotoCoreError as exc:
        raise SinkError.caused_by(sink, f"s3://{bucket}/{key}", exc) from exc


class RawZoneSink:
    name = "s3"
    after: tuple[str, ...] = ()

    def __init__(self, client, bucket: str, prefix: str, *, gzip_level: int) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self._gzip_level = gzip_level

    def key_for(self, batch: Batch) -> str:
        return object_key(self.prefix, batch)

    def write(self, batch: Batch) -> int:
        if not batch.records:
            return 0
        put_once(
            self._client, self.bucket, self.key_for(batch), to_ndjson_gz(batch.records, self._gzip_level),
            "application/x-ndjson", self.name,
        )
        return len(batch.records)
