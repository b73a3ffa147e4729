"""Shared fixtures: a real local stack (AWS emulator over the network and a
PostgreSQL server), started by the tests themselves on free ports."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from retail_stream.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(state_dir: Path):
    from local_stack.stack import LocalStack

    stack = LocalStack(state_dir=state_dir, emulator_port=free_port(), postgres_port=free_port(), prometheus_port=0)
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


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """One stack for all the integration tests."""
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def settings(local_stack) -> Settings:
    return Settings.from_env()
