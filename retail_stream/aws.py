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


def client(service: str, settings: Settings):
    """A boto3 client for `service` in the configured region."""
    return boto3.session.Session().client(service, region_name=settings.region, config=_CLIENT_CONFIG)
