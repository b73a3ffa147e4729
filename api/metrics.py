"""The API's metrics, declared once, each named for the question it answers.

Requests by route template and status, and their latency, come from
Litestar's Prometheus middleware under the same prefix
(`retail_api_requests_total{method,path,status_code}`,
`retail_api_request_duration_seconds`, `retail_api_requests_in_progress`,
`retail_api_requests_error_total`); these are what the items carried.
"""

from __future__ import annotations

from typing import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from api.publish import Outcome
from producer.metrics import reject_kind

PREFIX = "retail_api"


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        # How many items got into the stream, and how many did not?
        self.items_total = Counter(
            f"{PREFIX}_items", "Items of POST /transactions bodies, by outcome (accepted, rejected, failed)",
            ["status"], registry=self.registry)
        # How much bad input, and of which kind? (the producer's reject kinds)
        self.items_rejected = Counter(
            f"{PREFIX}_items_rejected", "Items rejected as invalid, by the column at fault", ["reason"],
            registry=self.registry)
        # Who is knocking without a valid credential, and how? (missing, unknown_key, invalid_token, ...)
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures", "Requests refused 401, by reason", ["reason"], registry=self.registry)
        # Which callers send faster than their limit?
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited", "Requests refused 429, by credential kind (key, token)", ["kind"],
            registry=self.registry)

    def items(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self.items_total.labels(outcome.status).inc()
            if outcome.status == "rejected":
                self.items_rejected.labels(reject_kind(outcome.reason or "")).inc()
