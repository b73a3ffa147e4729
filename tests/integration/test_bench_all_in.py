"""The processor bench's all-in run (bench/transport.py): the service's real
botocore clients answered without a network and psycopg2 on the local
PostgreSQL still take every record to every sink, so what `make bench`
times as `processor_all_in_us_per_record` is the whole job."""

from __future__ import annotations

import dataclasses

import pytest

from bench.processor import run_processor
from bench.steps import STEPS, breakdown
from retail_stream.schema import encode
from tests.support.consumer_fakes import transaction

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("dialect", ["redshift", "postgres"])
def test_every_record_reaches_every_real_client(settings, dialect):
    own = dataclasses.replace(settings, flush_max_records=1000)
    payloads = [encode(transaction(i)) for i in range(1, 2501)]
    run = run_processor(payloads, own, dialect, all_in=True)
    assert run.records == 2500 and run.dynamodb_calls == 100  # 25 items a call, counted from the requests
    assert run.s3_objects == run.copies == 3  # the redshift COPY statements, or the local loads' ledger rows
    assert run.checkpoints == 3
    assert run.us_per_record > 0


def test_the_steps_are_measured_over_the_same_records(settings):
    payloads = [encode(transaction(i)) for i in range(1, 2001)]
    steps = breakdown(payloads, dataclasses.replace(settings, flush_max_records=1000))
    assert set(steps) == set(STEPS) - {"rest"}
    assert all(value >= 0 for value in steps.values()) and steps["dynamodb_signing"] > 0
