"""A worker killed at every point of a flush, and (grouped loads) in the
middle of a load; each restart loses and doubles nothing. One stack and one
KCL for the module, beside test_one_worker.py's (its own module, so `make
test`'s workers run the two side by side); each scenario replays its own
source, so each is judged on its own rows."""

from __future__ import annotations

import psycopg2
import pytest

from tests.chaos.harness import Rule, expected_ids, scaled, source_ids
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# The rig (tests/chaos/conftest.py): one worker, w1, started for the module.
RIG_OPTIONS = {"folder": "chaos-crash"}


# Where a flush can die, in the order a flush passes them, and what the proxy
# holds (or what the test blocks) to stop the worker exactly there.
CRASH_POINTS = {
    "after_dynamodb": lambda s: Rule("hold", "hold", "s3", "PutObject", target=f"/{s.s3_raw_prefix}/"),
    "after_s3": lambda s: Rule("hold", "hold", "s3", "GetObject", target=f"/{s.s3_raw_prefix}/"),
    "during_copy": None,  # the warehouse's load ledger is locked by the test
    "after_copy": lambda s: Rule("hold", "hold", "s3", "PutObject", target=f"/{s.s3_dead_letter_prefix}/"),
    "before_checkpoint": lambda s: Rule("hold", "hold", "dynamodb", "UpdateItem", s.kcl_application_name,
                                        contains='"checkpoint":{'),
    "during_checkpoint": lambda s: Rule("hold", "hold_response", "dynamodb", "UpdateItem", s.kcl_application_name,
                                        contains='"checkpoint":{'),
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_every_point_of_a_flush(rig, point):
    source, tag = f"chaos-crash-{point}", f"chaos-crash-{point}-poison"
    worker = rig.worker("w1")
    poison = [f"{tag}: one dead letter in the batch".encode()]
    rule = CRASH_POINTS[point]
    if rule is None:
        lock = psycopg2.connect(rig.settings.warehouse_dsn)
        lock.cursor().execute(f"LOCK TABLE {rig.settings.warehouse_schema}.load_ledger IN ACCESS EXCLUSIVE MODE")
    else:
        rig.proxy.inject(rule(rig.settings))
    try:
        rig.put_raw(poison)
        rig.produce(source, 1)
        if rule is None:
            wait_until(lambda: blocked_on_lock(lock), 60, "a load to wait for the ledger lock")
        else:
            rig.proxy.wait_fired("hold")
        checkpoints = rig.checkpoints()
        worker.kill()
    finally:
        if rule is None:
            lock.rollback()
            lock.close()
        else:
            rig.proxy.clear()  # what was held lands late, after its sender died
    rig.worker("w1")
    outcome = rig.judge(f"crash_{point}", f"SIGKILL {point.replace('_', ' ')}", [source], expected_ids(source, 1),
                        rig.wait_drained(), poison=poison, tag=tag.encode(), checkpoints_at_crash=checkpoints)
    outcome.assert_clean()


def blocked_on_lock(conn) -> bool:
    with psycopg2.connect(conn.dsn) as other, other.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        waiting = cur.fetchone()[0]
    other.close()
    return waiting > 0


def test_grouped_loads_survive_a_kill_in_the_middle_of_a_load(rig):
    """WAREHOUSE_LOAD_MODE=grouped: the shards queue their objects and the
    worker's loader loads the queue every 2 s in one transaction. The worker
    is killed while its loader is inside a load (reading the queued objects
    back, the ledger locked, nothing committed), then started again: every
    row reaches the warehouse, once."""
    source, passes = "chaos-grouped", scaled(1, 3)
    grouped = {"WAREHOUSE_LOAD_MODE": "grouped", "WAREHOUSE_LOAD_INTERVAL_SECONDS": "2"}
    earlier = rig.workers.pop("w1", None)  # the module's w1 loads per batch: stopped, then w1 again, grouped
    if earlier is not None and earlier.running():
        earlier.stop()
    worker = rig.worker("w1", **grouped)
    # Only the loader reads the raw zone back in grouped mode: holding those reads stops it mid-load.
    rig.proxy.inject(Rule("mid-load", "hold", "s3", "GetObject", target=f"/{rig.settings.s3_raw_prefix}/"))
    try:
        rig.produce(source, passes)
        rig.proxy.wait_fired("mid-load")
        checkpoints = rig.checkpoints()
        worker.kill()
    finally:
        rig.proxy.clear()
    try:
        rig.worker("w1")
        catch_up = rig.wait_drained()
        sources, expected = source_ids(source, passes), expected_ids(source, passes)
        wait_until(lambda: len(rig._warehouse_ids(sources)) >= len(expected), 120,
                   "the loader to load every queued object", every=1)
        outcome = rig.judge("grouped_kill_mid_load", "grouped loads; SIGKILL while the loader was inside a load",
                            sources, expected, catch_up, checkpoints_at_crash=checkpoints)
    finally:
        rig.workers.pop("w1").stop()  # the tests after this one get a per-batch w1 again
    outcome.assert_clean()
