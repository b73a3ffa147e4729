"""The re-drive's pure parts: letters read back, their event ids, what a
re-drive sends or refuses, marks, choices, and the CLI's documents."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import msgspec
import pytest

from consumer.batch import DeadLetter
from consumer.sinks.dead_letters import dead_letter_key, to_line
from redrive import cli
from redrive.letters import (Chosen, Mark, Refusal, Resend, StoredLetter, UnreadableLetter, counts_by_reason,
                             day_of, derived_event_id, editable, event_id_of, from_line, is_letter_key, mark_key,
                             plan, sent_before, to_json)
from redrive.store import Listed
from retail_stream.schema import Transaction, decode, encode
from tests.support.consumer_fakes import stream_record, transaction

PREFIX = "dead-letter/transactions"
SHARD = "shardId-000000000001"
GOOD = transaction(7)


def letter(data: bytes, reason: str = "bad", seq: int = 4242, sub: int = 0) -> StoredLetter:
    """A letter as the consumer's own dead-letter sink writes it, read back."""
    dead = DeadLetter(stream_record(seq, data, sub=sub), reason)
    return from_line(dead_letter_key(PREFIX, SHARD, dead), to_line(dead, SHARD))


def fields(record: Transaction, **changes) -> dict:
    return {**msgspec.json.decode(encode(record)), **changes}


def as_bytes(found: dict) -> bytes:
    return json.dumps(found).encode()


@pytest.mark.parametrize("data", [encode(GOOD), b"not json", b"\x00\xff\xfe binary", b""])
def test_a_letter_reads_back_what_the_consumer_wrote(data):
    dead = DeadLetter(stream_record(4242, data, sub=3), "why")
    found = from_line(dead_letter_key(PREFIX, SHARD, dead), to_line(dead, SHARD))
    assert (found.shard_id, found.sequence_number, found.sub_sequence_number) == (SHARD, "4242", 3)
    assert (found.data, found.reason, found.partition_key) == (data, "why", "c17850")
    assert found.arrival == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    assert found.key == f"{PREFIX}/dt=2023-11-14/shard={SHARD}/4242-3.ndjson"


@pytest.mark.parametrize("body", [b"", b"[]", b'{"shard_id": "s"}', b"not json",
                                  to_line(DeadLetter(stream_record(1), "r"), SHARD).replace(b'"data_base64": "',
                                                                                           b'"data_base64": "!!')])
def test_anything_else_is_an_unreadable_letter(body):
    with pytest.raises(UnreadableLetter, match="k: not a dead letter"):
        from_line("k", body)


@pytest.mark.parametrize("key, is_letter", [
    (f"{PREFIX}/dt=2026-12-06/shard={SHARD}/1-0.ndjson", True),
    (f"{PREFIX}/dt=2026-12-06/shard={SHARD}/1-0.ndjson.redriven.json", False),
    (f"other/dt=2026-12-06/shard={SHARD}/1-0.ndjson", False),
    (f"{PREFIX}/1-0.ndjson", False),
])
def test_letter_keys(key, is_letter):
    assert is_letter_key(key, PREFIX) is is_letter
    assert day_of(key) == ("2026-12-06" if "dt=" in key else None)


def test_a_mark_sits_beside_its_letter():
    assert mark_key("p/dt=2026-12-06/shard=s/1-0.ndjson") == "p/dt=2026-12-06/shard=s/1-0.ndjson.redriven.json"


def test_a_derived_event_id_is_stable_per_position_and_has_the_schema_form():
    first = derived_event_id(SHARD, "4242", 0)
    assert first == derived_event_id(SHARD, "4242", 0)
    others = {derived_event_id(SHARD, "4242", 1), derived_event_id(SHARD, "4243", 0),
              derived_event_id("shardId-000000000002", "4242", 0)}
    assert first not in others and len(others) == 3
    decode(encode(msgspec.structs.replace(GOOD, event_id=first)))  # a valid id for the schema


@pytest.mark.parametrize("data, kept", [
    (encode(GOOD), True),
    (as_bytes(fields(GOOD, quantity="12x")), True),
    (as_bytes({k: v for k, v in fields(GOOD).items() if k != "event_id"}), False),
    (as_bytes(fields(GOOD, event_id="NOT-AN-ID")), False),
    (b"not json", False),
    (b"[1, 2]", False),
])
def test_a_letter_keeps_the_event_id_in_its_bytes_or_gets_one_from_its_position(data, kept):
    assert event_id_of(letter(data)) == (GOOD.event_id if kept else derived_event_id(SHARD, "4242", 0))


def test_the_stored_bytes_go_out_unchanged_when_the_schema_takes_them_now():
    stored = letter(encode(GOOD), reason="an older schema refused it")
    sent = plan(stored)
    assert isinstance(sent, Resend) and not sent.changed
    assert (sent.data, sent.event_id, sent.partition_key) == (encode(GOOD), GOOD.event_id, GOOD.partition_key)


def test_a_stored_object_without_an_event_id_is_sent_with_the_derived_one():
    stored = letter(as_bytes({k: v for k, v in fields(GOOD).items() if k != "event_id"}))
    sent = plan(stored)
    assert isinstance(sent, Resend) and sent.changed
    assert decode(sent.data) == msgspec.structs.replace(GOOD, event_id=derived_event_id(SHARD, "4242", 0))


@pytest.mark.parametrize("data, fix, reason", [
    (as_bytes(fields(GOOD, quantity="12x")), None, "would be dead-lettered again: Expected `int`, got `str`"),
    (b"not json", None, "the stored record is not a JSON object"),
    (b"not json", b"still not json", "the fix is not a JSON object"),
    (b"not json", as_bytes(fields(GOOD)), f"the fix changes the event id ({derived_event_id(SHARD, '4242', 0)}"),
    (encode(GOOD), as_bytes(fields(GOOD, event_id="0" * 32)), "the fix changes the event id"),
    (encode(GOOD), as_bytes(fields(GOOD, quantity=1.5)), "would be dead-lettered again"),
    (encode(GOOD), as_bytes(fields(GOOD, surprise=1)), "would be dead-lettered again: Object contains unknown"),
])
def test_a_record_the_consumer_would_refuse_again_is_refused_with_its_reason(data, fix, reason):
    refused = plan(letter(data), fix)
    assert isinstance(refused, Refusal) and refused.reason.startswith(reason)


def test_a_data_fix_is_sent_with_the_letters_event_id():
    stored = letter(as_bytes(fields(GOOD, quantity="12x")))
    with_id = plan(stored, as_bytes(fields(GOOD, quantity=12)))
    without_id = plan(stored, as_bytes({k: v for k, v in fields(GOOD, quantity=12).items() if k != "event_id"}))
    assert isinstance(with_id, Resend) and with_id.changed
    assert with_id == Resend(stored, GOOD.event_id, encode(msgspec.structs.replace(GOOD, quantity=12)),
                             GOOD.partition_key) == without_id


def test_a_fix_of_a_record_that_was_not_json_takes_the_derived_event_id():
    stored = letter(b"536365;85123A;6")
    fix = editable(stored) | {k: v for k, v in fields(GOOD).items() if k != "event_id"}
    sent = plan(stored, as_bytes(fix))
    assert isinstance(sent, Resend)
    assert decode(sent.data).event_id == sent.event_id == derived_event_id(SHARD, "4242", 0)


def test_prices_go_out_exactly_as_they_came_in():
    price = b"12345678901.1234"  # more digits than a float holds
    stored = as_bytes(fields(GOOD, quantity="12x", unit_price="PRICE")).replace(b'"PRICE"', price)
    assert price in to_json(editable(letter(stored)))  # what show prints
    sent = plan(letter(stored), stored.replace(b'"12x"', b"12"))
    assert isinstance(sent, Resend) and decode(sent.data).unit_price == Decimal(price.decode())


def test_what_show_prints_to_edit():
    shown = editable(letter(as_bytes(fields(GOOD, quantity="12x"))))
    assert shown == fields(GOOD, quantity="12x", unit_price=Decimal("2.55"))  # exact, as it came
    form = editable(letter(b"\x00binary"))
    assert form == {**{name: None for name in Transaction.__struct_fields__},
                    "event_id": derived_event_id(SHARD, "4242", 0)}


def test_a_mark_says_when_who_which_event_and_where_it_landed():
    at = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc)
    unchanged = plan(letter(encode(GOOD)))
    mark = Mark.of(unchanged, at=at, by="arn:aws:sts::1:assumed-role/ops/ann", stream="s", shard_id=SHARD,
                   sequence_number="99")
    assert json.loads(mark.body()) == {
        "dead_letter": unchanged.letter.key, "redriven_at": "2026-12-06T22:00:00+00:00",
        "by": "arn:aws:sts::1:assumed-role/ops/ann", "event_id": GOOD.event_id, "stream": "s", "shard_id": SHARD,
        "sequence_number": "99", "sent_base64": None, "forced": False, "previous": None}
    fixed = plan(letter(b"x"), as_bytes(editable(letter(b"x")) | {k: v for k, v in fields(GOOD).items()
                                                                  if k != "event_id"}))
    again = Mark.of(fixed, at=at, by="me", stream="s", shard_id=SHARD, sequence_number="100", forced=True,
                    previous=mark.as_dict())
    assert base64.b64decode(again.as_dict()["sent_base64"]) == fixed.data
    assert again.as_dict()["forced"] and again.as_dict()["previous"]["sequence_number"] == "99"


def test_a_forced_redrive_sends_what_the_last_one_sent():
    at = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc)
    stored = letter(as_bytes(fields(GOOD, quantity="12x")))
    fixed = plan(stored, as_bytes(fields(GOOD, quantity=12)))
    mark = Mark.of(fixed, at=at, by="me", stream="s", shard_id=SHARD, sequence_number="1").as_dict()
    assert plan(stored, sent_before(mark)) == fixed
    unchanged = plan(letter(encode(GOOD)))
    mark = Mark.of(unchanged, at=at, by="me", stream="s", shard_id=SHARD, sequence_number="1").as_dict()
    assert sent_before(mark) is None and sent_before(None) is None


@pytest.mark.parametrize("choice, held", [
    (Chosen(), {"a", "b", "c"}),
    (Chosen(first=dt.date(2026, 12, 5)), {"b", "c"}),
    (Chosen(last=dt.date(2026, 12, 5)), {"a", "b"}),
    (Chosen(dt.date(2026, 12, 5), dt.date(2026, 12, 5)), {"b"}),
    (Chosen(reason="QUANTITY"), {"a", "c"}),
    (Chosen(first=dt.date(2026, 12, 6), reason="quantity"), {"c"}),
])
def test_letters_are_chosen_by_arrival_day_and_reason(choice, held):
    days = (("a", "2026-12-04", "bad Quantity"), ("b", "2026-12-05", "JSON is malformed"),
            ("c", "2026-12-06", "quantity out of range"))
    letters = {name: StoredLetter(f"{PREFIX}/dt={day}/shard={SHARD}/1-0.ndjson", SHARD, "1", 0, "k", 0, reason, b"")
               for name, day, reason in days}
    assert {name for name, found in letters.items() if choice.holds(found)} == held


def test_days_that_end_before_they_start_are_refused():
    with pytest.raises(ValueError, match="end"):
        Chosen(dt.date(2026, 12, 6), dt.date(2026, 12, 5))


def test_counts_by_reason_most_frequent_first():
    a, b = letter(b"x", reason="a"), letter(b"y", reason="b")
    assert list(counts_by_reason([(a, False), (b, False), (b, True)]).items()) == [
        ("b", {"pending": 1, "redriven": 1}), ("a", {"pending": 1, "redriven": 0})]


def test_a_key_is_taken_bare_or_as_an_s3_uri_and_must_name_a_letter():
    key = f"{PREFIX}/dt=2026-12-06/shard={SHARD}/1-0.ndjson"
    assert cli.letter_key(key, "bucket", PREFIX) == cli.letter_key(f"s3://bucket/{key}", "bucket", PREFIX) == key
    for wrong in (key + ".redriven.json", "raw/transactions/dt=2026-12-06/x.ndjson.gz", f"s3://other/{key}"):
        with pytest.raises(ValueError, match="not a dead letter key"):
            cli.letter_key(wrong, "bucket", PREFIX)


@pytest.mark.parametrize("argv, error", [
    (["send"], "choose letters"),
    (["send", "k", "--reason", "x"], "not both"),
    (["send", "k", "--all"], "not both"),
    (["send", "--all", "--data", "f.json"], "exactly one KEY"),
    (["send", "k1", "k2", "--data", "f.json"], "exactly one KEY"),
    (["list", "--from", "2026-13-01"], "invalid day value"),
])
def test_the_command_line_refuses_an_unclear_choice(argv, error, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)
    assert exited.value.code == 2 and error in capsys.readouterr().err


def test_a_key_with_a_fix_and_filters_alone_are_clear_choices():
    args = cli.parse_args(["send", "k", "--data", "f.json", "--dry-run", "--by", "me"])
    assert (args.keys, str(args.data), args.dry_run, args.by, args.force) == (["k"], "f.json", True, "me", False)
    assert cli.parse_args(["send", "--reason", "quantity", "--force"]).reason == "quantity"


def test_the_listing_counts_by_status_and_reason():
    pending = letter(b"x", reason="JSON is malformed", seq=1)
    done = letter(b"y", reason="JSON is malformed", seq=2)
    document = cli.listing([Listed(pending, False), Listed(done, True, {"redriven_at": "t", "by": "me"})], 1)
    assert (document["letters"], document["pending"], document["redriven"]) == (2, 1, 1)
    assert document["by_reason"] == {"JSON is malformed": {"pending": 1, "redriven": 1}}
    assert [row["key"] for row in document["listed"]] == [pending.key]  # --max-listed 1
    assert document["listed"][0]["status"] == "pending" and "by" not in document["listed"][0]
    assert "2 dead letters (1 pending, 1 re-driven)" in cli.listing_summary(document)
    assert cli.listing([], 10)["first_arrival"] is None


def test_refused_letters_make_a_send_exit_1():
    sent, refused = cli.Outcome("a", "sent", "e"), cli.Outcome("b", "refused", "e", "why")
    skipped = cli.Outcome("c", "skipped", "e", "marked")
    assert cli.send_status([sent, skipped]) == 0 and cli.send_status([sent, refused]) == 1
    assert cli.tally([sent, refused, skipped]) == {"sent": 1, "would_send": 0, "skipped": 1, "refused": 1}
    assert refused.as_dict() == {"key": "b", "status": "refused", "event_id": "e", "reason": "why"}
    assert "1 sent, 1 skipped (re-driven already), 1 refused" in cli.send_summary([sent, refused, skipped], False)


def test_resends_go_in_putrecords_calls_worth_in_order():
    big = plan(letter(encode(GOOD)), as_bytes(fields(GOOD, description="x" * 255)))
    assert isinstance(big, Resend)
    resends = [big] * 1200
    found = cli.batches(resends)
    assert [len(b) for b in found] == [500, 500, 200] and [r for b in found for r in b] == resends
    assert cli.batches([]) == []
