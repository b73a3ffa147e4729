"""replay: CSV file -> rejects file and records in a (fake) stream, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.csv_source import SourceError
from producer.kinesis_writer import THROTTLED, DeliveryError, KinesisWriter
from retail_stream.retries import Backoff
from producer.pacing import RateLimiter, TimelinePacer
from producer.replay import Replay, RejectsFile, Source, default_rejects_path, pass_source_id
from retail_stream.schema import CSV_COLUMNS, decode, event_id
from tests.support.clocks import FakeClock
from tests.support.kinesis_fakes import FakeKinesis

HEADER = ",".join(CSV_COLUMNS)
GOOD = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom"
CSV_TEXT = (
    f"\ufeff{HEADER}\r\n"
    f"{GOOD}\r\n"  # 2
    f"{GOOD}\r\n"  # 3: identical to line 2, still its own record
    "536366,22633,HAND WARMER UNION JACK,3.5,12/1/2010 8:28,1.85,17850.0,United Kingdom\r\n"  # 4: bad quantity
    '536367,23403,"12"" PINK HEART,\r\nSCALLOPED EDGE",2,12/1/2010 8:34,1.25,,RÉUNION\r\n'  # 5-6
    "536368,22960,JAM MAKING SET WITH JARS,6,12/1/2010 8:35,abc,13047.0,United Kingdom\r\n"  # 7: bad price
    "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527.0,United Kingdom\r\n"  # 8
)


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    path = tmp_path / "sample.csv"
    path.write_bytes(CSV_TEXT.encode())
    return path


def replay(csv_path, fake, rejects_path, **options):
    writer = options.pop("writer", None) or KinesisWriter(fake, "retail", sleep=lambda s: None)
    with RejectsFile(rejects_path) as rejects:
        run = Replay([Source(csv_path, options.pop("source_id", csv_path.name), rejects)], writer, **options)
        return run.run()


def sent_records(fake):
    return [decode(data) for data, _ in fake.stored]


def test_valid_rows_are_sent_and_bad_rows_rejected_with_line_and_reason(csv_path, tmp_path):
    fake, rejects = FakeKinesis(), tmp_path / "out" / "rejects.jsonl"
    summary = replay(csv_path, fake, rejects)
    records = sent_records(fake)
    assert [r.line for r in records] == [2, 3, 5, 8]
    assert [r.event_id for r in records] == [event_id("sample.csv", line) for line in (2, 3, 5, 8)]
    assert [key for _, key in fake.stored] == ["c17850", "c17850", "i536367", "c14527"]
    assert records[2].description == '12" PINK HEART,\r\nSCALLOPED EDGE' and records[2].country == "RÉUNION"
    lines = rejects.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"source": "sample.csv", "line": 4, "reason": "Quantity is not an integer: '3.5'",
         "fields": ["536366", "22633", "HAND WARMER UNION JACK", "3.5", "12/1/2010 8:28", "1.85", "17850.0", "United Kingdom"]},
        {"source": "sample.csv", "line": 7, "reason": "UnitPrice is not a number: 'abc'",
         "fields": ["536368", "22960", "JAM MAKING SET WITH JARS", "6", "12/1/2010 8:35", "abc", "13047.0", "United Kingdom"]},
    ]
    assert (summary.rows, summary.sent, summary.rejected, summary.retried, summary.calls) == (6, 4, 2, 0, 1)
    assert summary.as_dict()["rejects_file"] == str(rejects)


def test_identical_lines_stay_two_records(csv_path, tmp_path):
    fake = FakeKinesis()
    replay(csv_path, fake, tmp_path / "r.jsonl")
    first, second = sent_records(fake)[:2]
    assert first.event_id != second.event_id
    assert {f: getattr(first, f) for f in first.__struct_fields__ if f not in ("event_id", "line")} == {
        f: getattr(second, f) for f in second.__struct_fields__ if f not in ("event_id", "line")
    }


def test_a_second_run_sends_the_same_event_ids_and_rewrites_the_rejects_file(csv_path, tmp_path):
    rejects = tmp_path / "r.jsonl"
    one, two = FakeKinesis(), FakeKinesis()
    replay(csv_path, one, rejects)
    first_rejects = rejects.read_text(encoding="utf-8")
    replay(csv_path, two, rejects)
    assert [r.event_id for r in sent_records(one)] == [r.event_id for r in sent_records(two)]
    assert one.stored == two.stored
    assert rejects.read_text(encoding="utf-8") == first_rejects  # rewritten, not appended
    assert len(first_rejects.splitlines()) == 2


def test_loop_passes_after_the_first_use_new_source_ids(csv_path, tmp_path):
    fake, rejects = FakeKinesis(), tmp_path / "r.jsonl"
    summary = replay(csv_path, fake, rejects, loops=3)
    sources = [r.source for r in sent_records(fake)]
    assert sources == ["sample.csv"] * 4 + ["sample.csv~1"] * 4 + ["sample.csv~2"] * 4
    assert len({r.event_id for r in sent_records(fake)}) == 12
    assert [json.loads(line)["source"] for line in rejects.read_text().splitlines()] == [
        "sample.csv", "sample.csv", "sample.csv~1", "sample.csv~1", "sample.csv~2", "sample.csv~2"
    ]
    assert (summary.passes, summary.rows, summary.sent, summary.rejected) == (3, 18, 12, 6)


def test_pass_source_ids():
    assert [pass_source_id("a.csv", i) for i in (0, 1, 12)] == ["a.csv", "a.csv~1", "a.csv~12"]


def test_loop_forever_ends_at_the_limit(csv_path, tmp_path):
    fake = FakeKinesis()
    summary = replay(csv_path, fake, tmp_path / "r.jsonl", loops=0, limit=20)
    assert summary.rows == 20 and summary.passes == 4
    assert summary.sent + summary.rejected == 20


def test_loop_forever_over_a_file_without_rows_stops(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER + "\n")
    summary = replay(empty, FakeKinesis(), tmp_path / "r.jsonl", loops=0)
    assert (summary.rows, summary.passes) == (0, 1)


def test_the_limit_counts_rows_valid_or_not(csv_path, tmp_path):
    fake = FakeKinesis()
    summary = replay(csv_path, fake, tmp_path / "r.jsonl", limit=3)
    assert (summary.rows, summary.sent, summary.rejected) == (3, 2, 1)


def test_retries_show_in_the_summary(csv_path, tmp_path):
    fake = FakeKinesis([{0: THROTTLED, 2: "InternalFailure"}])
    summary = replay(csv_path, fake, tmp_path / "r.jsonl")
    assert (summary.sent, summary.retried, summary.throttled, summary.calls) == (4, 2, 1, 2)
    assert sorted(r.line for r in sent_records(fake)) == [2, 3, 5, 8]


def test_a_delivery_error_stops_the_replay_with_the_summary_so_far(csv_path, tmp_path):
    fake = FakeKinesis([{}] + [{0: THROTTLED}] * 5)
    writer = KinesisWriter(fake, "retail", backoff=Backoff(0, 0, attempts=3), sleep=lambda s: None)
    with RejectsFile(tmp_path / "r.jsonl") as rejects:
        run = Replay([Source(csv_path, "sample.csv", rejects)], writer, rate=RateLimiter(
            20, burst=2, clock=FakeClock(), sleep=lambda s: None))
        with pytest.raises(DeliveryError):
            run.run()
    assert run.summary.sent == 2 + 1  # the first batch of two, then one of the second
    assert run.summary.retried == 2


def test_a_rate_limit_sends_batches_of_one_burst(csv_path, tmp_path):
    clock, fake = FakeClock(), FakeKinesis()
    rate = RateLimiter(2, burst=1, clock=clock, sleep=clock.sleep)
    summary = replay(csv_path, fake, tmp_path / "r.jsonl", rate=rate, clock=clock)
    assert [len(call) for call in fake.calls] == [1, 1, 1, 1]
    assert summary.seconds == pytest.approx(1.5)  # 4 records at 2/s, the first from the full bucket
    assert summary.records_per_second == pytest.approx(4 / 1.5)


def test_the_timeline_sends_what_is_due_before_it_waits(csv_path, tmp_path):
    clock, fake = FakeClock(), FakeKinesis()
    timeline = TimelinePacer(60, clock=clock, sleep=clock.sleep)
    replay(csv_path, fake, tmp_path / "r.jsonl", timeline=timeline, clock=clock)
    # Lines 2 and 3 share 8:26; 8:34 is due 8 s later, the cancellation at 9:41 67 s after that.
    assert [[decode(d).line for d, _ in call] for call in fake.calls] == [[2, 3], [5], [8]]
    assert clock.sleeps == pytest.approx([8.0, 67.0])


def test_a_stop_request_ends_the_replay_after_sending_what_was_read(csv_path, tmp_path):
    fake, asked = FakeKinesis(), iter([False, False, True])
    summary = replay(csv_path, fake, tmp_path / "r.jsonl", should_stop=lambda: next(asked))
    assert summary.interrupted and summary.rows == 2
    assert [r.line for r in sent_records(fake)] == [2, 3]


def test_a_bad_byte_mid_file_raises_after_sending_the_rows_before_it(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(f"{HEADER}\n{GOOD}\n".encode() + b"536366,\xff\n")
    fake = FakeKinesis()
    with RejectsFile(tmp_path / "r.jsonl") as rejects:
        run = Replay([Source(path, path.name, rejects, "utf-8")], KinesisWriter(fake, "retail"))
        with pytest.raises(SourceError, match="line 3"):
            run.run()
    assert [r.line for r in sent_records(fake)] == [2]
    assert run.summary.sent == 1


def test_several_files_share_one_rejects_file_and_keep_their_own_source_ids(csv_path, tmp_path):
    other = tmp_path / "other.csv"
    other.write_bytes(CSV_TEXT.encode())
    fake, rejects_path = FakeKinesis(), tmp_path / "r.jsonl"
    with RejectsFile(rejects_path) as rejects:
        sources = [Source(csv_path, "sample.csv", rejects), Source(other, "other.csv", rejects)]
        summary = Replay(sources, KinesisWriter(fake, "retail")).run()
    assert [r.source for r in sent_records(fake)] == ["sample.csv"] * 4 + ["other.csv"] * 4
    assert len(rejects_path.read_text().splitlines()) == summary.rejected == 4
    assert summary.as_dict()["rejects_files"] == [str(rejects_path)]


def test_default_rejects_path_is_under_rejects_in_the_current_directory():
    assert default_rejects_path(Path("/data/x/TestSample.csv")) == Path("rejects/TestSample.csv.rejects.jsonl")


def test_the_sample_through_a_real_boto3_client_on_the_in_process_emulator(tmp_path):
    """The request shape botocore validates (Data bytes, key, stream) against moto's mock."""
    moto = pytest.importorskip("moto")
    import boto3

    sample = Path(__file__).resolve().parents[2] / "data" / "TestSample.csv"
    with moto.mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="retail", ShardCount=2)
        summary = replay(sample, None, tmp_path / "r.jsonl", writer=KinesisWriter(client, "retail"))
        count = 0
        for shard in client.list_shards(StreamName="retail")["Shards"]:
            iterator = client.get_shard_iterator(
                StreamName="retail", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            count += len(client.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
    assert (summary.rows, summary.sent, summary.rejected) == (1000, 993, 7)
    assert count == 993
