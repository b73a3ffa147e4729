"""The reconciliation's gauges, pushed to a Prometheus Pushgateway: a run
is a batch job, gone before any scrape. The alert rules on them are in
deploy/prometheus/alerts.yml."""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

from reconcile.compare import STORES, Report

JOB = "retail_reconcile"


class ReconcileMetrics:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        # Do the stores agree? Events missing, doubled or differing per store at the last run.
        self.drift = Gauge("retail_reconcile_drift", "Events out of agreement at the last reconciliation",
                           ["store"], registry=self.registry)
        self.rows = Gauge("retail_reconcile_rows", "Rows the last reconciliation found, per store",
                          ["store"], registry=self.registry)
        # Is it running at all? (an alert fires when the last success grows old)
        self.last_run = Gauge("retail_reconcile_last_run_timestamp_seconds",
                              "When the last reconciliation ended, succeeded or not", registry=self.registry)
        self.last_success = Gauge("retail_reconcile_last_success_timestamp_seconds",
                                  "When a reconciliation last ran to the end (whatever it found)",
                                  registry=self.registry)

    def record(self, report: Report) -> None:
        for store in STORES:
            self.drift.labels(store).set(report.drift_by_store[store])
            self.rows.labels(store).set(report.figures[store]["rows"])
        self.last_success.set(self._clock())
        self.last_run.set(self._clock())

    def push(self, gateway: str, succeeded: bool) -> None:
        """A success replaces the job's whole group; a failure only updates
        `last_run`, leaving the last success's figures in place."""
        if succeeded:
            push_to_gateway(gateway, job=JOB, registry=self.registry)
        else:
            self.last_run.set(self._clock())
            failed = CollectorRegistry()
            failed.register(self.last_run)
            pushadd_to_gateway(gateway, job=JOB, registry=failed)
