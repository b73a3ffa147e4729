"""`python -m redrive` / `retail-redrive`: list dead letters, show one, and
send chosen ones again, once fixed, through the stream and every sink.

    retail-redrive list [--from DAY] [--to DAY] [--reason TEXT] [--status pending|redriven]
    retail-redrive show KEY                      # the record, as JSON to edit
    retail-redrive send KEY... | --all | [--from DAY] [--to DAY] [--reason TEXT]
                        [--data FIXED.json] [--dry-run] [--force] [--by WHO]

A re-driven record goes back on the Kinesis stream with its event id, so the
consumer writes it like any record: DynamoDB and the warehouse keep one row
per event id, the raw zone gains it. The letter is not deleted: a mark beside
it says when, who, and where the record landed. A marked letter is skipped
(so a second re-drive sends nothing) unless --force, which sends again what
the last re-drive sent.

Exit status 0 when every chosen letter was sent (or skipped as marked), 1
when some were refused (they would be dead-lettered again), 2 when it could
not run. A summary goes to stderr; JSON is the last line on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import structlog

from producer.batching import BatchBuilder, check_entry
from producer.kinesis_writer import PUT_RECORDS_BACKOFF, KinesisWriter
from redrive.letters import (Chosen, Mark, Refusal, Resend, counts_by_reason, editable, event_id_of,
                             is_letter_key, json_object, plan, sent_before, to_json)
from redrive.store import Listed, NoSuchLetter, listed_keys, put_mark, read_listed, read_mark
from retail_stream import logs
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger("redrive")
PROG = "retail-redrive"


@dataclass(frozen=True)
class RedriveClients:
    """What the tool talks to: S3 (the letters), Kinesis (the re-sends) and
    who is asking (sts:GetCallerIdentity's Arn)."""

    s3: Any
    kinesis: Any
    caller: Callable[[], str]


def service_clients(settings: Settings) -> RedriveClients:
    from retail_stream import aws

    return RedriveClients(s3=aws.client("s3", settings), kinesis=aws.client("kinesis", settings),
                          caller=lambda: aws.client("sts", settings).get_caller_identity()["Arn"])


@dataclass(frozen=True)
class Outcome:
    """What became of one chosen letter."""

    key: str
    status: str  # sent, would_send (dry run), skipped (marked), refused
    event_id: str
    reason: str | None = None
    shard_id: str | None = None
    sequence_number: str | None = None
    payload: str | None = None  # dry run: the bytes that would be sent

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def letter_key(given: str, bucket: str, prefix: str) -> str:
    """A key as typed (bare, or `s3://bucket/key`), checked to name a letter
    under the dead-letter prefix. Raises ValueError. Pure."""
    key = given.removeprefix(f"s3://{bucket}/")
    if not is_letter_key(key, prefix):
        raise ValueError(f"{given}: not a dead letter key ({prefix}/dt=DAY/shard=ID/SEQUENCE-SUB.ndjson)")
    return key


def chosen(s3: Any, settings: Settings, keys: Sequence[str], choice: Chosen, *,
           with_marks: bool = False) -> list[Listed]:
    """The letters named by `keys`, or else those `choice` holds."""
    if keys:
        named = [letter_key(k, settings.s3_bucket, settings.s3_dead_letter_prefix) for k in keys]
        return read_listed(s3, settings.s3_bucket, list(dict.fromkeys(named)), with_marks=with_marks)
    letters, marked = listed_keys(s3, settings.s3_bucket, settings.s3_dead_letter_prefix, choice)
    found = read_listed(s3, settings.s3_bucket, letters, marked, with_marks=with_marks)
    return [listed for listed in found if choice.holds(listed.letter)]


def redrive(settings: Settings, clients: RedriveClients, letters: Sequence[Listed], *,
            fix: bytes | None = None, dry_run: bool = False, force: bool = False, by: str | None = None,
            now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> list[Outcome]:
    """Send each letter again unless it is marked (and not `force`) or its
    record would be refused; mark each one sent. A forced re-drive without
    `fix` sends what the last one sent (its mark keeps a fixed record).
    Blocks until Kinesis holds every re-sent record; raises DeliveryError
    (producer.kinesis_writer) when it will not take them: the letters of that
    call stay unmarked, and sending them again is harmless (every sink keeps
    one row per event id)."""
    outcomes: dict[str, Outcome] = {}
    resends: list[Resend] = []
    previous: dict[str, dict[str, Any]] = {}  # the marks a forced re-drive replaces
    for listed in letters:
        letter = listed.letter
        if listed.marked and not force:
            outcomes[letter.key] = Outcome(letter.key, "skipped", event_id_of(letter),
                                           "re-driven already (--force to send again)")
            continue
        mark = (listed.mark or read_mark(clients.s3, settings.s3_bucket, letter.key)) if listed.marked else None
        if mark is not None:
            previous[letter.key] = mark
        planned = plan(letter, fix if fix is not None else sent_before(mark))
        if isinstance(planned, Refusal):
            outcomes[letter.key] = Outcome(letter.key, "refused", event_id_of(letter), planned.reason)
        elif dry_run:
            outcomes[letter.key] = Outcome(letter.key, "would_send", planned.event_id,
                                           payload=planned.data.decode("utf-8", "replace"))
        else:
            resends.append(planned)
    if resends:
        who = by or clients.caller()
        backoff = dataclasses.replace(PUT_RECORDS_BACKOFF, attempts=settings.put_records_attempts)
        writer = KinesisWriter(clients.kinesis, settings.stream_name, backoff=backoff)
        for batch in batches(resends):
            result = writer.put_batch([resend.entry for resend in batch])
            for resend, shard_id, sequence_number in zip(batch, result.shard_ids, result.sequence_numbers):
                key = resend.letter.key
                forced = key in previous
                mark = Mark.of(resend, at=now(), by=who, stream=settings.stream_name, shard_id=shard_id,
                               sequence_number=sequence_number, forced=forced, previous=previous.get(key))
                if not put_mark(clients.s3, settings.s3_bucket, key, mark.body(), replace=forced):
                    log.warning("redrive.marked_by_another_run", key=key)  # it sent the same event: absorbed
                log.info("redrive.sent", key=key, event_id=resend.event_id, shard_id=shard_id,
                         sequence_number=sequence_number)
                outcomes[key] = Outcome(key, "sent", resend.event_id, shard_id=shard_id,
                                        sequence_number=sequence_number)
    return [outcomes[listed.letter.key] for listed in letters]


def batches(resends: Sequence[Resend]) -> list[list[Resend]]:
    """`resends` in order, in PutRecords calls' worth (500 records, 5 MiB). Pure."""
    builder = BatchBuilder(check=lambda resend, limit: check_entry(resend.entry, limit))
    found = [closed for closed in map(builder.add, resends) if closed]  # plan() refused what none could hold
    last = builder.flush()
    return found + [last] if last else found


def send_status(outcomes: Sequence[Outcome]) -> int:
    """1 when a letter was refused, else 0. Pure."""
    return 1 if any(o.status == "refused" for o in outcomes) else 0


def tally(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = {status: 0 for status in ("sent", "would_send", "skipped", "refused")}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


def listing(letters: Sequence[Listed], max_listed: int) -> dict[str, Any]:
    """The JSON document of `list`. Pure."""
    arrivals = sorted(listed.letter.arrival for listed in letters)
    marked = sum(1 for listed in letters if listed.marked)
    return {
        "letters": len(letters), "pending": len(letters) - marked, "redriven": marked,
        "first_arrival": arrivals[0].isoformat() if arrivals else None,
        "last_arrival": arrivals[-1].isoformat() if arrivals else None,
        "by_reason": counts_by_reason((listed.letter, listed.marked) for listed in letters),
        "listed": [{"key": listed.letter.key, "arrival": listed.letter.arrival.isoformat(),
                    "shard_id": listed.letter.shard_id, "reason": listed.letter.reason,
                    "status": "redriven" if listed.marked else "pending",
                    "event_id": event_id_of(listed.letter),
                    **({"redriven_at": listed.mark.get("redriven_at"), "by": listed.mark.get("by")}
                       if listed.mark else {})}
                   for listed in letters[:max_listed]],
    }


def listing_summary(document: dict[str, Any]) -> str:
    head = f"{document['letters']} dead letters ({document['pending']} pending, {document['redriven']} re-driven)"
    if document["letters"]:
        head += f", arrived {document['first_arrival']} to {document['last_arrival']}"
    lines = [head]
    if document["by_reason"]:
        lines.append(f"  {'pending':>8} {'redriven':>8}  reason")
        lines += [f"  {c['pending']:>8} {c['redriven']:>8}  {reason}"
                  for reason, c in document["by_reason"].items()]
    lines += [f"  {row['status']:<8}  {row['arrival']}  {row['key']}" for row in document["listed"]]
    return "\n".join(lines)


def send_summary(outcomes: Sequence[Outcome], dry_run: bool) -> str:
    counts = tally(outcomes)
    head = (f"dry run: {counts['would_send']} would be sent" if dry_run else f"{counts['sent']} sent") + (
        f", {counts['skipped']} skipped (re-driven already), {counts['refused']} refused")
    shown = {"sent": "sent", "would_send": "would send", "skipped": "skipped", "refused": "REFUSED"}
    return "\n".join([head] + [f"  {shown[o.status]:<10} {o.key}  event {o.event_id}"
                               + (f"\n             {o.reason}" if o.reason else "") for o in outcomes])


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="one letter: its facts (stderr), its record to edit (stdout)")
    show.add_argument("key")
    listed = commands.add_parser("list", help="dead letters by reason and arrival, pending or re-driven")
    send = commands.add_parser("send", help="re-send chosen letters through the stream, and mark them")
    send.add_argument("keys", nargs="*", metavar="KEY", help="letters by key (as `list` shows them)")
    send.add_argument("--all", action="store_true", help="every letter the filters hold (none: every letter)")
    send.add_argument("--data", type=Path, metavar="FILE",
                      help="the corrected record (JSON), for one KEY: a data fix (default: the stored bytes)")
    send.add_argument("--dry-run", action="store_true", help="show what would be sent; send and mark nothing")
    send.add_argument("--force", action="store_true", help="send letters marked re-driven again")
    send.add_argument("--by", help="who re-drives, for the mark (default: sts:GetCallerIdentity's Arn)")
    for command in (listed, send):
        command.add_argument("--from", dest="first", type=day, metavar="YYYY-MM-DD",
                             help="first arrival day (UTC)")
        command.add_argument("--to", dest="last", type=day, metavar="YYYY-MM-DD",
                             help="last arrival day (UTC), inclusive")
        command.add_argument("--reason", help="only letters whose reason holds this text (any case)")
    listed.add_argument("--status", choices=("pending", "redriven"), help="only letters in this state")
    listed.add_argument("--max-listed", type=int, default=1000, help="letters named in the output")
    args = parser.parse_args(argv)
    if args.command == "send":
        filtered = args.all or args.first or args.last or args.reason
        if args.keys and filtered:
            parser.error("choose letters by KEY or by --all/--from/--to/--reason, not both")
        if not args.keys and not filtered:
            parser.error("choose letters: KEY..., --from/--to/--reason, or --all")
        if args.data and len(args.keys) != 1:
            parser.error("--data is the fix of one letter: give exactly one KEY")
    return args


def main(argv: Sequence[str] | None = None, clients: RedriveClients | None = None) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv)
    logs.configure(settings.log_level, log_format=settings.log_format, service="redrive")
    try:
        choice = Chosen(*(getattr(args, name, None) for name in ("first", "last", "reason")))
        fix = args.data.read_bytes() if getattr(args, "data", None) else None
    except (ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    clients = clients or service_clients(settings)
    try:
        if args.command == "show":
            return show(settings, clients, args.key)
        letters = chosen(clients.s3, settings, getattr(args, "keys", ()), choice,
                         with_marks=args.command == "list" or args.force)
        if args.command == "list":
            if args.status:
                letters = [listed for listed in letters if listed.marked == (args.status == "redriven")]
            document = listing(letters, args.max_listed)
            print(listing_summary(document), file=sys.stderr)
            print(json.dumps(document), flush=True)
            return 0
        outcomes = redrive(settings, clients, letters, fix=fix, dry_run=args.dry_run, force=args.force,
                           by=args.by)
    except (ValueError, NoSuchLetter) as exc:  # a key that names no letter, a letter that is not one
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # S3, STS or Kinesis failed: nothing half-done is harmful (see redrive())
        log.error("redrive.failed", error=str(exc), error_type=type(exc).__name__)
        return 2
    print(send_summary(outcomes, args.dry_run), file=sys.stderr)
    document = {"dry_run": args.dry_run, **tally(outcomes), "letters": [o.as_dict() for o in outcomes]}
    print(json.dumps(document), flush=True)
    return send_status(outcomes)


def show(settings: Settings, clients: RedriveClients, key: str) -> int:
    """The letter's facts on stderr; on stdout, its record as one JSON line,
    event id filled in: save it, fix it, `send KEY --data FILE`."""
    key = letter_key(key, settings.s3_bucket, settings.s3_dead_letter_prefix)
    [listed] = read_listed(clients.s3, settings.s3_bucket, [key], with_marks=True)
    letter, mark = listed.letter, listed.mark
    status = f"re-driven {mark.get('redriven_at')} by {mark.get('by')}" if mark else "pending"
    facts = [f"dead letter {letter.key}",
             f"  arrived   {letter.arrival.isoformat()} on {letter.shard_id}, "
             f"sequence {letter.sequence_number}, sub-sequence {letter.sub_sequence_number}",
             f"  reason    {letter.reason}", f"  event id  {event_id_of(letter)}", f"  status    {status}"]
    if json_object(letter.data) is None:  # the record below is an empty form: show what came
        facts.append(f"  bytes     {letter.data[:400]!r}{' ...' if len(letter.data) > 400 else ''}")
    print("\n".join(facts), file=sys.stderr)
    print(to_json(editable(letter)).decode(), flush=True)
    return 0
