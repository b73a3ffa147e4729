"""KinesisWriter against a scripted fake Kinesis client: partial failures,
retries of only the refused entries in their order, bounded backoff."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from producer.kinesis_writer import THROTTLED, DeliveryError, KinesisWriter
from retail_stream.retries import Backoff
from tests.support.kinesis_fakes import FakeKinesis, Sleeps, entries


def writer(fake, *, max_attempts=5, rng=lambda: 0.5, base_delay=0.1, max_delay=1.0, sleep=None):
    return KinesisWriter(
        fake, "retail", backoff=Backoff(base=base_delay, cap=max_delay, attempts=max_attempts, rng=rng),
        sleep=sleep if sleep is not None else Sleeps(),
    )


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} for the whole call"}}, "PutRecords")


def test_a_fully_accepted_batch_is_one_call():
    fake, batch = FakeKinesis(), entries(4)
    w = writer(fake)
    result = w.put_batch(batch)
    assert fake.calls == [[(e.data, e.partition_key) for e in batch]]
    assert fake.streams == ["retail"]
    assert result.records == 4 and result.attempts == 1
    assert result.sequence_numbers == ("1", "2", "3", "4")
    assert w.stats.as_dict() == {
        "calls": 1, "records_sent": 4, "bytes_sent": sum(e.size for e in batch),
        "retried": 0, "throttled": 0, "failed": 0, "rerouted": 0,
    }


def test_only_refused_entries_are_retried_in_their_original_order():
    batch = entries(6)
    fake = FakeKinesis([{1: THROTTLED, 3: "InternalFailure", 4: THROTTLED}, {1: THROTTLED}])
    sleeps = Sleeps()
    w = writer(fake, sleep=sleeps)
    result = w.put_batch(batch)
    assert fake.calls[1] == [(batch[i].data, batch[i].partition_key) for i in (1, 3, 4)]
    assert fake.calls[2] == [(batch[3].data, batch[3].partition_key)]
    assert sorted(fake.stored) == sorted((e.data, e.partition_key) for e in batch)  # each once
    assert result.attempts == 3
    # Sequence numbers follow the entries, not the order Kinesis accepted them in.
    assert result.sequence_numbers == ("1", "4", "2", "6", "5", "3")
    assert w.stats.retried == 3 + 1
    assert w.stats.throttled == 2 + 1
    assert w.stats.calls == 3 and w.stats.records_sent == 6
    assert sleeps == [pytest.approx(0.5 * 0.1), pytest.approx(0.5 * 0.2)]


def test_delivery_error_after_the_last_attempt_names_what_failed():
    batch = entries(3)
    fake = FakeKinesis([{0: THROTTLED, 2: "InternalFailure"}] + [{0: THROTTLED, 1: "InternalFailure"}] * 10)
    sleeps = Sleeps()
    w = writer(fake, max_attempts=4, sleep=sleeps, rng=lambda: 0.999)
    with pytest.raises(DeliveryError) as info:
        w.put_batch(batch)
    error = info.value
    assert error.attempts == 4 and len(fake.calls) == 4
    assert [f.entry for f in error.failed] == [batch[0], batch[2]]
    assert [f.error_code for f in error.failed] == [THROTTLED, "InternalFailure"]
    assert "2 entries not written" in str(error) and THROTTLED in str(error)
    assert len(sleeps) == 3 and max(sleeps) <= 1.0
    assert fake.stored == [(batch[1].data, batch[1].partition_key)]
    assert w.stats.failed == 2 and w.stats.records_sent == 1


def test_a_single_attempt_writer_never_sleeps():
    sleeps = Sleeps()
    w = writer(FakeKinesis([{0: THROTTLED}]), max_attempts=1, sleep=sleeps)
    with pytest.raises(DeliveryError):
        w.put_batch(entries(1))
    assert sleeps == []


def test_a_retryable_whole_call_error_retries_the_whole_batch():
    batch = entries(2)
    fake = FakeKinesis([client_error(THROTTLED), EndpointConnectionError(endpoint_url="http://127.0.0.1:1")])
    w = writer(fake)
    assert w.put_batch(batch).attempts == 3
    assert fake.calls[0] == fake.calls[1] == fake.calls[2]
    assert w.stats.throttled == 2 and w.stats.retried == 4


def test_a_call_error_no_retry_can_fix_fails_at_once():
    fake = FakeKinesis([client_error("ResourceNotFoundException")])
    sleeps = Sleeps()
    w = writer(fake, sleep=sleeps)
    with pytest.raises(DeliveryError, match="ResourceNotFoundException") as info:
        w.put_batch(entries(2))
    assert len(fake.calls) == 1 and sleeps == []
    assert len(info.value.failed) == 2


def test_a_response_that_does_not_match_the_request_is_an_error():
    class Short(FakeKinesis):
        def put_records(self, **kwargs):
            response = super().put_records(**kwargs)
            return {**response, "Records": response["Records"][:-1]}

    with pytest.raises(DeliveryError, match="1 results for 2 records"):
        writer(Short()).put_batch(entries(2))


def test_the_writer_refuses_a_zero_attempt_budget():
    with pytest.raises(ValueError):
        writer(FakeKinesis(), max_attempts=0)
