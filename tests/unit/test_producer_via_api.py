"""`producer --via-api` against the real app (Litestar's TestClient as the
httpx client) over a Kinesis fake: the key goes with every request, a key
made with --producer-ids keeps the producer's own event ids, and a replay
without a usable key is refused before anything is sent."""

from __future__ import annotations

import io
import json

from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.cursor import CursorCodec
from producer.cli import build_parser, run
from producer.kinesis_writer import KinesisWriter
from retail_stream.retries import Backoff
from retail_stream.schema import decode, event_id
from retail_stream.settings import Settings
from tests.support.api_fakes import FakeDynamoDB, door_with_keys
from tests.support.kinesis_fakes import FakeKinesis

CSV = ("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
       "536365,85123A,HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
       "536365,71053,LANTERN,six,12/1/2010 8:26,3.39,17850,United Kingdom\n"
       "536366,22633,WARMER,6,12/1/2010 8:28,1.85,17850,United Kingdom\n")


def replay(tmp_path, key_name, *extra, environment=None):
    """Replay the CSV through the app with the named key, in a file (or, given
    `environment` (monkeypatch), as $RETAIL_API_KEY); (status, stored, stdout, stderr)."""
    csv = tmp_path / "shop.csv"
    csv.write_text(CSV)
    kinesis = FakeKinesis()
    door, keys = door_with_keys(CollectorRegistry())
    writer = KinesisWriter(kinesis, "retail", backoff=Backoff(0, 0, attempts=2), sleep=lambda s: None)
    app = create_app(Settings(), writer, FakeDynamoDB(), door, cursors=CursorCodec("t"))
    arguments = [str(csv), "--via-api", "http://testserver", "--rejects", str(tmp_path / "rejects.jsonl"), *extra]
    if key_name and environment is not None:
        environment.setenv("RETAIL_API_KEY", keys[key_name])
    elif key_name:
        (tmp_path / "key").write_text(keys[key_name] + "\n")
        arguments += ["--api-key-file", str(tmp_path / "key")]
    stdout, stderr = io.StringIO(), io.StringIO()
    with TestClient(app) as client:
        status = run(build_parser().parse_args(arguments), None, "unused", stdout=stdout, stderr=stderr,
                     http_client=client)
    stored = [decode(data) for data, _ in kinesis.stored]
    return status, stored, stdout.getvalue(), stderr.getvalue()


def test_a_producer_ids_key_gives_the_rows_the_ids_a_direct_replay_would(tmp_path):
    status, stored, out, _ = replay(tmp_path, "replay")
    assert status == 0 and json.loads(out.splitlines()[-1])["sent"] == 2
    assert [(r.source, r.event_id) for r in stored] == [("shop.csv", event_id("shop.csv", 2)),
                                                        ("shop.csv", event_id("shop.csv", 4))]


def test_any_other_key_writes_in_its_clients_namespace(tmp_path):
    status, stored, _, _ = replay(tmp_path, "writer")
    assert status == 0 and {r.source for r in stored} == {"writer/shop.csv"}
    assert stored[0].event_id == event_id("writer/shop.csv", 2)


def test_a_key_the_api_refuses_stops_the_replay_with_nothing_sent(tmp_path):
    status, stored, _, err = replay(tmp_path, "reader")  # read only: 403
    assert status == 1 and stored == [] and "403" in err


def test_without_a_key_the_replay_is_refused_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("RETAIL_API_KEY", raising=False)
    status, stored, out, err = replay(tmp_path, None)
    assert status == 2 and stored == [] and out == ""
    assert "--via-api needs an API key" in err


def test_the_key_can_come_from_the_environment(tmp_path, monkeypatch):
    status, stored, _, _ = replay(tmp_path, "replay", environment=monkeypatch)
    assert status == 0 and len(stored) == 2


def test_a_revoked_or_unknown_key_is_a_401_and_nothing_is_sent(tmp_path, monkeypatch):
    monkeypatch.setenv("RETAIL_API_KEY", "rsk_" + "x" * 43)
    status, stored, _, err = replay(tmp_path, None)
    assert status == 1 and stored == [] and "401" in err
