"""boto3 clients, made one way for every service.

Endpoints and credentials come from boto3's own configuration chain
(`AWS_ENDPOINT_URL`, `AWS_PROFILE`, instance and task roles), never from code.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from retail_stream.settings import Settings

# botocore retries throttling and 5xx itself ("standard" mode, with backoff),
# AWS_MAX_ATTEMPTS tries in all; how that adds up with our own retry loops
# is told in retail_stream/retries.py.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=16,
    tcp_keepalive=True,
)


def client(service: str, settings: Settings, *, validate: bool = True):
    """A boto3 client for `service` in the configured region. `validate=False`
    skips botocore's client-side parameter validation: for the hot paths whose
    requests our own pure functions build (PutRecords entries, DynamoDB
    items), where that check of every nested value costs about a quarter of a
    request's CPU; the service still validates."""
    config = _CLIENT_CONFIG.merge(Config(
        retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
        parameter_validation=validate,
    ))
    return boto3.session.Session().client(service, region_name=settings.region, config=config)
