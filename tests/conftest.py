"""Shared fixtures: a real local stack (AWS emulator over the network and a
PostgreSQL server), started by the tests themselves on free ports."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from retail_stream.settings import Settings
from tests.support.ports import free_ports


def start_stack(state_dir: Path):
    from local_stack.stack import LocalStack

    emulator, postgres, prometheus = free_ports(3)
    stack = LocalStack(state_dir=state_dir, emulator_port=emulator, postgres_port=postgres, prometheus_port=prometheus)
    stack.up()
    return stack


@contextlib.contextmanager
def running_stack(state_dir: Path):
    """A started stack whose variables are set in os.environ, so boto3 and
    Settings.from_env() find it as a deployed service would; stopped after."""
    stack = start_stack(state_dir)
    saved = dict(os.environ)
    os.environ.update(stack.environment())
    try:
        yield stack
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stack.down(purge=True)


@contextlib.contextmanager
def throwaway_stream(settings: Settings, prefix: str, shards: int):
    """(a Kinesis client, the name of a new stream of `shards` shards), deleted after."""
    import uuid

    from retail_stream import aws

    kinesis = aws.client("kinesis", settings)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    try:
        yield kinesis, name
    finally:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """One stack for all the integration tests."""
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def settings(local_stack) -> Settings:
    return Settings.from_env()
