"""Dead letters in S3: listed with their marks, read, and marked re-driven.

Letters are never changed or deleted: a re-drive adds `<key>.redriven.json`
beside the letter, created only if absent (PutObject If-None-Match), so two
runs racing on one letter leave one mark.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

from botocore.exceptions import ClientError

from redrive.letters import MARK_SUFFIX, Chosen, StoredLetter, day_of, from_line, is_letter_key, mark_key

READ_THREADS = 8


class NoSuchLetter(LookupError):
    """A key named on the command line that holds no dead letter."""


@dataclass(frozen=True)
class Listed:
    """A letter and whether it is marked re-driven (with the mark, once read)."""

    letter: StoredLetter
    marked: bool
    mark: dict[str, Any] | None = None


def listed_keys(s3: Any, bucket: str, prefix: str, chosen: Chosen) -> tuple[list[str], set[str]]:
    """(letter keys, marked letter keys) of the chosen arrival days, in key
    order. Keys sort by day (`dt=YYYY-MM-DD`), so the listing starts at the
    first day and stops after the last: its cost follows the days asked for."""
    letters, marks = [], set()
    start = {"StartAfter": f"{prefix}/dt={chosen.first.isoformat()}"} if chosen.first else {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/dt=", **start):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if chosen.last and (day_of(key) or "") > chosen.last.isoformat():
                return letters, marks
            if is_letter_key(key, prefix) and chosen.holds_day(day_of(key)):
                letters.append(key)
            elif key.endswith(MARK_SUFFIX) and is_letter_key(key[:-len(MARK_SUFFIX)], prefix):
                marks.add(key[:-len(MARK_SUFFIX)])
    return letters, marks


def read_letter(s3: Any, bucket: str, key: str) -> StoredLetter:
    """Raises NoSuchLetter when `key` does not exist, UnreadableLetter when it
    holds something else."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise NoSuchLetter(f"no dead letter s3://{bucket}/{key}") from None
        raise
    return from_line(key, body)


def read_mark(s3: Any, bucket: str, letter_key: str) -> dict[str, Any] | None:
    """The letter's mark, None when it has none."""
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=mark_key(letter_key))["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def read_listed(s3: Any, bucket: str, keys: Iterable[str], marked: set[str] | None = None,
                *, with_marks: bool = False) -> list[Listed]:
    """Each letter of `keys`, side by side, in their order. `marked`: the
    keys known marked from a listing (None: look each mark up). `with_marks`:
    read the marks themselves too (who, when)."""
    def read(key: str) -> Listed:
        letter = read_letter(s3, bucket, key)
        mark = read_mark(s3, bucket, key) if marked is None or (with_marks and key in marked) else None
        return Listed(letter, mark is not None if marked is None else key in marked, mark)

    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="redrive-read") as pool:
        return list(pool.map(read, keys))


def put_mark(s3: Any, bucket: str, letter_key: str, body: bytes, *, replace: bool = False) -> bool:
    """Write the letter's mark; False when one was there already (another run
    marked it first). `replace` (a forced re-drive) overwrites it."""
    create_only = {} if replace else {"IfNoneMatch": "*"}
    try:
        s3.put_object(Bucket=bucket, Key=mark_key(letter_key), Body=body, ContentType="application/json",
                      **create_only)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
            return False
        raise
    return True
