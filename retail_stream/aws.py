"""boto3 clients, made one way for every service.

Endpoints and credentials come from boto3's own configuration chain
(`AWS_ENDPOINT_URL`, `AWS_PROFILE`, instance and task roles), never from code.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from retail_stream.settings import Settings

# botocore retries throttling and 5xx itself ("standard" mode, with backoff);
# our own retry loops sit above it for what botocore cannot see.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=16,
    tcp_keepalive=True,
)


# For the hot paths whose requests our own pure functions build (PutRecords
# entries, DynamoDB items): botocore's client-side check of every nested value
# costs about a quarter of a request's CPU; the service still validates.
_UNCHECKED_CONFIG = _CLIENT_CONFIG.merge(Config(parameter_validation=False))


def client(service: str, settings: Settings, *, validate: bool = True):
    """A boto3 client for `service` in the configured region; `validate=False`
    skips botocore's client-side parameter validation."""
    config = _CLIENT_CONFIG if validate else _UNCHECKED_CONFIG
    return boto3.session.Session().client(service, region_name=settings.region, config=config)
