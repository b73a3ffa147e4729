"""A scripted fake of a boto3 Kinesis client's put_records, a recording
sleep, and entries to send through them."""

from __future__ import annotations

from producer.batching import Entry


class FakeKinesis:
    """A stand-in for a boto3 Kinesis client's put_records.

    `script` holds one plan per call, in order: a dict {position in the call:
    error code} of entries to refuse, or an exception to raise. Calls beyond
    the script accept everything. Accepted records are kept in `stored`.
    """

    def __init__(self, script=()):
        self.script = list(script)
        self.calls: list[list[tuple[bytes, str]]] = []
        self.stored: list[tuple[bytes, str]] = []
        self.streams: list[str] = []

    def put_records(self, *, StreamName, Records):
        self.streams.append(StreamName)
        sent = [(r["Data"], r["PartitionKey"]) for r in Records]
        self.calls.append(sent)
        plan = self.script.pop(0) if self.script else {}
        if isinstance(plan, BaseException):
            raise plan
        results = []
        for position, record in enumerate(sent):
            code = plan.get(position)
            if code:
                results.append({"ErrorCode": code, "ErrorMessage": f"{code} (scripted)"})
            else:
                self.stored.append(record)
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": len(plan), "Records": results}


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def entries(n: int) -> list[Entry]:
    return [Entry(f"record-{i}".encode(), f"c{i % 3}") for i in range(n)]
