"""redrive/store.py against the real emulator: letters listed by day with
their marks, marks created once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest

from consumer.batch import DeadLetter
from consumer.sinks.dead_letters import dead_letter_key, to_line
from redrive.letters import Chosen, UnreadableLetter, mark_key
from redrive.store import NoSuchLetter, listed_keys, put_mark, read_letter, read_listed, read_mark
from retail_stream import aws
from tests.support.consumer_fakes import stream_record

pytestmark = pytest.mark.integration
SHARD = "shardId-000000000000"


@pytest.fixture
def letters(settings):
    """(settings with a dead-letter prefix of their own, s3, {day: key}): one letter a day, 4 to 7 December."""
    mine = dataclasses.replace(settings, s3_dead_letter_prefix=f"dead-{uuid.uuid4().hex[:8]}")
    s3 = aws.client("s3", mine)
    keys = {}
    for n, day in enumerate(range(4, 8)):
        arrival = int(dt.datetime(2026, 12, day, 12, tzinfo=dt.timezone.utc).timestamp() * 1000)
        dead = DeadLetter(stream_record(100 + n, b"not json", arrival_ms=arrival), f"reason {day}")
        keys[day] = dead_letter_key(mine.s3_dead_letter_prefix, SHARD, dead)
        s3.put_object(Bucket=mine.s3_bucket, Key=keys[day], Body=to_line(dead, SHARD))
    return mine, s3, keys


@pytest.mark.parametrize("first, last, days", [
    (None, None, [4, 5, 6, 7]), (5, None, [5, 6, 7]), (None, 5, [4, 5]), (5, 6, [5, 6]), (8, None, []),
])
def test_letters_are_listed_by_arrival_day(letters, first, last, days):
    settings, s3, keys = letters
    choice = Chosen(*(dt.date(2026, 12, d) if d else None for d in (first, last)))
    found, marked = listed_keys(s3, settings.s3_bucket, settings.s3_dead_letter_prefix, choice)
    assert found == [keys[d] for d in days] and marked == set()


def test_a_mark_is_created_once_and_listed_beside_its_letter(letters):
    settings, s3, keys = letters
    bucket = settings.s3_bucket
    assert put_mark(s3, bucket, keys[5], b'{"by": "first"}\n')
    assert not put_mark(s3, bucket, keys[5], b'{"by": "second"}\n')  # another run's mark stays
    assert read_mark(s3, bucket, keys[5]) == {"by": "first"}
    assert put_mark(s3, bucket, keys[5], b'{"by": "forced"}\n', replace=True)
    assert read_mark(s3, bucket, keys[5]) == {"by": "forced"} and read_mark(s3, bucket, keys[6]) is None

    found, marked = listed_keys(s3, bucket, settings.s3_dead_letter_prefix, Chosen())
    assert found == [keys[d] for d in (4, 5, 6, 7)] and marked == {keys[5]}
    listed = read_listed(s3, bucket, found, marked, with_marks=True)
    assert [(x.letter.reason, x.marked, x.mark) for x in listed[:3]] == [
        ("reason 4", False, None), ("reason 5", True, {"by": "forced"}), ("reason 6", False, None)]
    assert [x.marked for x in read_listed(s3, bucket, [keys[5], keys[6]])] == [True, False]  # looked up


def test_a_missing_or_foreign_object_is_no_letter(letters):
    settings, s3, keys = letters
    with pytest.raises(NoSuchLetter):
        read_letter(s3, settings.s3_bucket, keys[4].replace(".ndjson", "9.ndjson"))
    s3.put_object(Bucket=settings.s3_bucket, Key=mark_key(keys[4]), Body=json.dumps({"by": "me"}).encode())
    with pytest.raises(UnreadableLetter):
        read_letter(s3, settings.s3_bucket, mark_key(keys[4]))
