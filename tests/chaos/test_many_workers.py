"""Workers sharing the shards through KCL leases: joining and leaving while
data flows, and a zombie that wakes up after its lease has moved on.

KCL 3 facts these tests lean on (measured here, see the issue notes): only
the leader assigns leases, and a dead leader's lock lasts two minutes, so the
workers stopped or frozen here are the ones that do not hold the lock; a
stopped worker's leases move once its lease expired and its worker metrics
are two intervals old (KCL_WORKER_METRICS_INTERVAL_MS, 2 s locally)."""

from __future__ import annotations

import datetime
import time

import pytest

from local_stack import census
from retail_stream import aws
from tests.chaos.harness import Rule, expected_ids, scaled, source_ids, summary
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# The rig (tests/chaos/conftest.py): w1 started, and holding every lease, before the first test.
RIG_OPTIONS = {"folder": "chaos-many", "first_worker_holds_every_lease": True}


def owners_seen(rig, seen: list, predicate, timeout: float, what: str):
    """Wait for the lease owners to satisfy `predicate`, noting each distinct assignment."""
    def check():
        owners = rig.lease_owners()
        if not seen or seen[-1] != owners:
            seen.append(owners)
        return predicate(owners)
    return wait_until(check, timeout, what, every=0.5)


def lease_of_a_worker_but_the_leader(rig) -> tuple[str, str] | None:
    """(a shard, its owner) of a lease held by a worker that is not the leader, or None."""
    leader, owners = rig.leader(), rig.lease_owners()
    return next(((shard, owner) for shard, owner in owners.items() if owner not in (leader, None)), None)


def test_workers_join_and_leave_while_data_flows(rig):
    source, passes = "chaos-rebalance", scaled(15, 60)
    seen: list[dict] = []
    producer = rig.producer(source, passes, "--rate", "200")
    started = time.monotonic()
    rig.worker("w2")
    owners_seen(rig, seen, lambda o: set(o.values()) == {"w1", "w2"}, 90, "w2 to be given a lease")
    rig.worker("w3")
    # Three workers, two shards: one of them waits. w3 has joined once the
    # leader can count it (its worker metrics reported) and every lease is held.
    wait_until(lambda: "w3" in rig.workers_reporting() and None not in rig.lease_owners().values(), 60,
               "w3 to report its worker metrics, every lease held")
    leader = rig.leader()
    # Stop every worker but the leader, while the producer still writes.
    for name in ("w2", "w3"):
        if name != leader:
            code, seconds = rig.workers[name].stop()
            assert code == 0 and seconds < 30
    owners_seen(rig, seen, lambda o: set(o.values()) == {leader}, 90, "the leader to take the stopped workers' leases")
    assert producer.poll() is None, "the producer should still be writing: make the replay longer"
    summary(producer)
    outcome = rig.judge("workers_join_and_leave", "w2 and w3 joined, then stopped (SIGTERM), during the replay",
                        source_ids(source, passes), expected_ids(source, passes), rig.wait_drained(),
                        lease_assignments=len(seen), seconds_under_change=round(time.monotonic() - started, 1))
    outcome.assert_clean()
    assert len(seen) >= 3  # w1 alone, shared with w2, back to one worker


def test_a_frozen_worker_wakes_as_a_zombie(rig):
    source, passes = "chaos-zombie", scaled(10, 40)
    # The leader spreads leases by throughput: data must flow for w2 to get one.
    producer = rig.producer(source, passes, "--rate", "200")
    rig.worker("w1")
    rig.worker("w2")
    owners_seen(rig, [], lambda o: set(o.values()) == {"w1", "w2"}, 120, "w1 and w2 to hold one lease each")
    # The leader moves leases about by throughput; freeze a worker that is not
    # the leader while it holds a lease, trying again if the lease moved first.
    for _ in range(10):
        shard, owner = wait_until(lambda: lease_of_a_worker_but_the_leader(rig), 30,
                                  "a worker but the leader to hold a lease")
        zombie = rig.workers[owner]
        zombie.freeze()  # supervisor, JVM and record processors
        frozen = time.monotonic()
        frozen_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as logged
        if rig.lease_owners()[shard] == zombie.name:
            break
        zombie.thaw()
    else:
        raise AssertionError("the lease moved each time its worker was frozen")
    try:
        wait_until(lambda: rig.lease_owners()[shard] not in (zombie.name, None), 90,
                   "another worker to take the frozen worker's lease")
        taken_after = round(time.monotonic() - frozen, 1)
    finally:
        zombie.thaw()
    summary(producer)
    outcome = rig.judge("zombie_worker", "a worker frozen (SIGSTOP) past its lease, then resumed (SIGCONT)",
                        source_ids(source, passes), expected_ids(source, passes), rig.wait_drained(),
                        lease_taken_after_seconds=taken_after)
    outcome.assert_clean()
    # Awake, it may finish the batch it was in, but its checkpoint is refused
    # (until the leader, balancing again, gives it the shard anew).
    regained = min((e["timestamp"] for e in zombie.events("shard_initialized")
                    if e["shard_id"] == shard and e["timestamp"] > frozen_at), default="9999")
    late = [e for e in zombie.events("checkpointed")
            if e["shard_id"] == shard and frozen_at < e["timestamp"] < regained]
    assert late == []
    # And once it has found the lease lost, it writes nothing more of the shard.
    refused = min((e["timestamp"] for e in zombie.events("lease_lost")
                   if e["shard_id"] == shard and e["timestamp"] > frozen_at), default=regained)
    written_after = [e for e in zombie.events("batch_written")
                     if e["shard_id"] == shard and refused < e["timestamp"] < regained]
    assert written_after == []


def test_a_worker_killed_inside_an_aggregate_and_another_finishes_the_shard(rig):
    """KPL aggregates (our producer's --aggregate), a worker that flushes
    every 29 user records, so its checkpoints fall inside aggregates; it is
    killed mid-flush with its checkpoint inside an aggregate (not at its last
    user record), and the leader takes the shard over from the next user
    record of that same aggregate."""
    source, passes = "chaos-kpl", scaled(8, 30)
    for name, worker in rig.workers.items():
        if name != "w1" and worker.running():
            worker.stop()  # the earlier scenarios' workers: two workers for two shards here
    producer = rig.producer(source, passes, "--aggregate", "--aggregate-bytes", "20000", "--rate", "150")
    rig.worker("w1")
    victim = rig.worker("kpl", FLUSH_MAX_RECORDS="29")
    owners_seen(rig, [], lambda o: set(o.values()) == {"w1", "kpl"}, 120, "w1 and kpl to hold one lease each")
    # w1 has run since the module began, so it holds the leader lock: the victim's shard moves in seconds.
    assert rig.leader() == "w1"
    for attempt in range(10):
        shard = next(s for s, owner in rig.lease_owners().items() if owner == "kpl")
        # Hold the victim's next raw-zone write: it dies with a batch half written.
        rig.proxy.inject(Rule(f"mid-aggregate-{attempt}", "hold", "s3", "PutObject", target=shard))
        rig.proxy.wait_fired(f"mid-aggregate-{attempt}")
        at_kill = census.checkpoints(rig.settings)[shard]
        if at_kill[1] + 1 < user_records_at(rig.settings, shard, at_kill[0]) and rig.lease_owners()[shard] == "kpl":
            break
        rig.proxy.clear()  # checkpointed at an aggregate's edge (or moved): try the next flush
    else:
        raise AssertionError("the victim never held a checkpoint inside an aggregate")
    victim.kill()
    killed = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rig.proxy.clear()  # the held write lands late, after its sender died
    wait_until(lambda: rig.lease_owners()[shard] == "w1", 120, "w1 to take the killed worker's shard")
    summary(producer)
    outcome = rig.judge("kpl_worker_killed_mid_aggregate",
                        "KPL aggregates; a worker killed mid-flush with its checkpoint inside an aggregate, "
                        "the shard finished by another worker", source_ids(source, passes),
                        expected_ids(source, passes), rig.wait_drained(), checkpoint_at_kill=list(at_kill))
    outcome.assert_clean()
    # The new owner starts right after the checkpoint: the next user record of the same aggregate.
    taken = [e for e in rig.workers["w1"].events("batch_written") if e["shard_id"] == shard and e["timestamp"] > killed]
    assert taken, "w1 wrote nothing of the shard it took over"
    assert (taken[0]["first_sequence"], taken[0]["first_sub_sequence"]) == (at_kill[0], at_kill[1] + 1)


def user_records_at(settings, shard_id: str, sequence: str) -> int:
    """How many user records the KCL delivers from the Kinesis record at `sequence`."""
    kinesis = aws.client("kinesis", settings)
    shard = next(s for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"] if s["ShardId"] == shard_id)
    record = next(r for r in census.stream_records(settings)[shard_id] if r["SequenceNumber"] == sequence)
    return len(census.delivered_positions(record, shard))
