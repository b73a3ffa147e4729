"""The processor benchmark's harness (bench/processor.py) drives the real
processor in memory: every record reaches every sink, and every flush is
checkpointed, so what `make bench` times is the whole job."""

from __future__ import annotations

import dataclasses

import pytest

from bench.processor import run_processor
from retail_stream.schema import encode
from retail_stream.settings import Settings
from tests.support.consumer_fakes import transaction


@pytest.mark.parametrize("dialect", ["redshift", "postgres"])
@pytest.mark.parametrize("streamed", [False, True])
def test_every_record_reaches_every_sink_and_every_flush_is_checkpointed(dialect, streamed):
    settings = dataclasses.replace(Settings(), flush_max_records=1000)
    payloads = [encode(transaction(i)) for i in range(1, 2501)]
    run = run_processor(payloads, settings, dialect, streamed=streamed)
    assert run.records == 2500
    assert run.dynamodb_calls == 100  # 25 items a call
    assert run.s3_objects == run.copies == 3  # 1000 + 1000 + the rest at shutdown
    assert run.checkpoints == 3
    assert run.us_per_record > 0
