"""The chaos proxy's own logic: naming calls, choosing faults, splitting and
merging partly failed calls. (The proxy is test-only, but a test rig that
lies would make every chaos test pass.)"""

from __future__ import annotations

import asyncio
import json
import random

from tests.chaos.proxy import Call, FaultInjector, Response, Rule, classify, merge_partial, split_entries


def test_calls_are_named_by_service_operation_and_target():
    kinesis = classify("POST", "/", {"x-amz-target": "Kinesis_20131202.PutRecords"}, b'{"StreamName": "s"}')
    assert kinesis == Call("kinesis", "PutRecords", "s")
    batch = classify("POST", "/", {"x-amz-target": "DynamoDB_20120810.BatchWriteItem"},
                     b'{"RequestItems": {"t": []}}')
    assert batch == Call("dynamodb", "BatchWriteItem", "t")
    assert classify("PUT", "/bucket/raw/a.gz", {}, b"") == Call("s3", "PutObject", "bucket/raw/a.gz")
    assert classify("GET", "/bucket?list-type=2", {}, b"").operation == "ListObjects"


def test_a_rule_skips_then_fires_at_most_its_times():
    rule = Rule("r", "error", "s3", "PutObject", skip=1, times=2)
    rng = random.Random(0)
    call = Call("s3", "PutObject", "b/k")
    assert rule.matches(call, b"") and not rule.matches(Call("s3", "GetObject", "b/k"), b"")
    assert [rule.fires(rng) for _ in range(5)] == [False, True, True, False, False]
    assert (rule.seen, rule.fired) == (5, 2)


def test_a_rule_can_require_a_body_fragment():
    rule = Rule("r", "hold", "dynamodb", "UpdateItem", "leases", contains='"checkpoint":{')
    call = Call("dynamodb", "UpdateItem", "leases")
    assert rule.matches(call, b'{"AttributeUpdates":{"checkpoint":{"Value":{}}}}')
    assert not rule.matches(call, b'{"AttributeUpdates":{"leaseCounter":{"Value":{}}}}')


def test_partial_put_records_forwards_the_rest_and_reports_failures_in_place():
    call = Call("kinesis", "PutRecords", "s")
    body = json.dumps({"StreamName": "s", "Records": [{"Data": str(i), "PartitionKey": "k"} for i in range(6)]})
    forward, failed, total = split_entries(call, body.encode(), 0.5, random.Random(3))
    sent = json.loads(forward)["Records"]
    assert failed and len(sent) + len(failed) == total == 6
    upstream = {"FailedRecordCount": 0, "Records": [{"SequenceNumber": r["Data"], "ShardId": "x"} for r in sent]}
    merged = merge_partial(call, "ProvisionedThroughputExceededException", upstream, failed, total)
    assert merged["FailedRecordCount"] == len(failed)
    assert [i for i, r in enumerate(merged["Records"]) if "ErrorCode" in r] == failed
    assert [r["SequenceNumber"] for r in merged["Records"] if "SequenceNumber" in r] == [r["Data"] for r in sent]


def test_partial_batch_write_returns_the_rest_as_unprocessed_items():
    call = Call("dynamodb", "BatchWriteItem", "t")
    requests = [{"PutRequest": {"Item": {"k": {"S": str(i)}}}} for i in range(10)]
    forward, _, unprocessed = split_entries(call, json.dumps({"RequestItems": {"t": requests}}).encode(), 0.4,
                                            random.Random(5))
    kept = json.loads(forward)["RequestItems"]["t"]
    merged = merge_partial(call, "", {"UnprocessedItems": {}}, [], unprocessed)
    assert sorted(map(json.dumps, kept + merged["UnprocessedItems"]["t"])) == sorted(map(json.dumps, requests))
    assert merged["UnprocessedItems"]["t"]


def test_errors_never_reach_the_emulator_and_holds_wait_for_new_rules():
    forwarded = []

    async def forward(method, path, headers, body):
        forwarded.append(path)
        return Response(200, [], b"{}")

    async def scenario():
        injector = FaultInjector(forward, seed=1)
        injector.set_rules([Rule("boom", "error", "s3", "PutObject", status=503, code="SlowDown"),
                            Rule("wait", "hold", "s3", "GetObject")])
        error = await injector.handle("PUT", "/b/k", {}, b"x")
        held = asyncio.create_task(injector.handle("GET", "/b/k", {}, b""))
        await asyncio.sleep(0.05)
        assert not held.done() and injector.holding == 1
        injector.set_rules([])
        await asyncio.wait_for(held, 1)
        return error

    error = asyncio.run(scenario())
    assert error.status == 503 and b"<Code>SlowDown</Code>" in error.body
    assert forwarded == ["/b/k"]  # only the held GET, once released
