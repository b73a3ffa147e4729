"""WAREHOUSE_LOAD_MODE=grouped against the real emulator and PostgreSQL: the
shard's sinks queue each batch's raw-zone object, the group loader loads
everything queued in one transaction, and no crash point loses or doubles a row."""

from __future__ import annotations

import dataclasses
import uuid

import psycopg2
import pytest

from consumer.loader import Load, attribute, manifest
from consumer.wiring import build_group_loader, build_sinks, service_clients
from tests.support.consumer_fakes import make_batch, transaction

pytestmark = pytest.mark.integration


@pytest.fixture
def grouped(settings):
    """Settings with a queue of the test's own, so other tests' markers are not ours."""
    return dataclasses.replace(settings, warehouse_load_mode="grouped",
                               s3_load_queue_prefix=f"load-queue/test-{uuid.uuid4().hex[:8]}")


def rows(settings, invoice: str) -> tuple[int, int]:
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT event_id) FROM retail.transactions WHERE invoice_no = %s",
                    (invoice,))
        found = cur.fetchone()
    conn.close()
    return found


def queue_keys(settings) -> list[str]:
    s3 = service_clients(settings).s3
    page = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=settings.s3_load_queue_prefix + "/")
    return [item["Key"] for item in page.get("Contents", [])]


def write(sinks, batch) -> None:
    """What a shard's pipeline does with a batch before it checkpoints, in grouped mode."""
    for sink in sinks.in_order():
        sink.write(batch)


def test_batches_of_many_shards_load_in_one_transaction(grouped):
    sinks = build_sinks(grouped, service_clients(grouped))
    loader = build_group_loader(grouped, service_clients(grouped))
    invoice = str(uuid.uuid4().int % 10**9)
    records = [transaction(i, invoice=invoice) for i in range(1, 31)]
    for shard in range(3):
        write(sinks, make_batch(records[shard * 10:(shard + 1) * 10], "1", "10", shard=f"shardId-{invoice}-{shard}"))
    assert len(queue_keys(grouped)) == 3 and rows(grouped, invoice) == (0, 0)  # queued, not loaded yet

    outcome = loader.load()

    assert (outcome.loaded, outcome.skipped, outcome.inserted) == (3, 0, 30)
    assert rows(grouped, invoice) == (30, 30)
    assert queue_keys(grouped) == []
    assert loader.load() == Load(0, 0, 0, 0.0, None)  # nothing queued: no transaction at all


def test_a_replayed_or_recut_batch_queued_again_adds_nothing(grouped):
    sinks = build_sinks(grouped, service_clients(grouped))
    loader = build_group_loader(grouped, service_clients(grouped))
    invoice = str(uuid.uuid4().int % 10**9)
    records = [transaction(i, invoice=invoice) for i in range(1, 11)]
    shard = f"shardId-{invoice}"
    first = make_batch(records[:6], "1", "6", shard=shard)
    write(sinks, first)
    loader.load()
    # The shard re-read after a crash: the same batch (its marker made again) and a re-cut one.
    write(sinks, first)
    write(sinks, make_batch(records[3:], "4", "10", shard=shard))
    outcome = loader.load()
    assert (outcome.loaded, outcome.skipped, outcome.inserted) == (1, 1, 4)
    assert rows(grouped, invoice) == (10, 10)


def test_a_crash_after_the_commit_leaves_markers_the_next_load_skips(grouped):
    clients = service_clients(grouped)
    sinks = build_sinks(grouped, clients)
    invoice = str(uuid.uuid4().int % 10**9)
    write(sinks, make_batch([transaction(i, invoice=invoice) for i in range(1, 6)], "1", "5",
                            shard=f"shardId-{invoice}"))

    class DeleteFails:
        def __getattr__(self, name):
            return getattr(clients.s3, name)

        def delete_objects(self, **_):
            raise SystemExit("killed between the commit and the delete")

    crashing = build_group_loader(grouped, dataclasses.replace(clients, s3=DeleteFails()))
    with pytest.raises(SystemExit):
        crashing.load()
    assert rows(grouped, invoice) == (5, 5) and len(queue_keys(grouped)) == 1

    outcome = build_group_loader(grouped, clients).load()
    assert (outcome.loaded, outcome.skipped, outcome.inserted) == (0, 1, 0)
    assert rows(grouped, invoice) == (5, 5) and queue_keys(grouped) == []


def test_a_crash_during_the_copy_commits_nothing_and_keeps_the_markers(grouped):
    clients = service_clients(grouped)
    sinks = build_sinks(grouped, clients)
    invoice = str(uuid.uuid4().int % 10**9)
    for shard in range(2):
        write(sinks, make_batch([transaction(i, invoice=invoice) for i in range(shard * 5 + 1, shard * 5 + 6)],
                                "1", "5", shard=f"shardId-{invoice}-{shard}"))
    reads = []

    class SecondReadFails:
        def __getattr__(self, name):
            return getattr(clients.s3, name)

        def get_object(self, **kwargs):
            if kwargs["Key"].endswith(".ndjson.gz"):
                reads.append(kwargs["Key"])
                if len(reads) == 2:
                    raise SystemExit("killed in the middle of the COPY")
            return clients.s3.get_object(**kwargs)

    with pytest.raises(SystemExit):
        build_group_loader(grouped, dataclasses.replace(clients, s3=SecondReadFails())).load()
    assert rows(grouped, invoice) == (0, 0) and len(queue_keys(grouped)) == 2

    outcome = build_group_loader(grouped, clients).load()
    assert (outcome.loaded, outcome.inserted) == (2, 10) and rows(grouped, invoice) == (10, 10)


def test_the_manifest_names_every_object_as_mandatory():
    assert manifest("b", ["raw/a.ndjson.gz", "raw/b.ndjson.gz"]) == (
        b'{"entries": [{"url": "s3://b/raw/a.ndjson.gz", "mandatory": true}, '
        b'{"url": "s3://b/raw/b.ndjson.gz", "mandatory": true}]}')
    assert attribute(7, [5, 5, 5]) == [5, 2, 0] and attribute(15, [5, 5, 5]) == [5, 5, 5]
