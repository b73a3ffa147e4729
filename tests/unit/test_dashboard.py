"""The dashboard and the alert rules only ask for series the services export."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import ConsumerMetrics

ROOT = Path(__file__).resolve().parents[2]
SERIES = re.compile(r"\bretail_[a-z_]+")
QUOTED = re.compile(r'"[^"]*"')  # a label's value (job="retail_reconcile") names no series


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    ConsumerMetrics(registry)
    from producer.metrics import ProducerMetrics

    ProducerMetrics(registry)
    from reconcile.metrics import ReconcileMetrics

    families = [*registry.collect(), *ReconcileMetrics().registry.collect()]  # pushed, never scraped
    names = set()
    for family in families:
        names.update(sample.name for sample in family.samples)
        names.update({family.name, f"{family.name}_total", f"{family.name}_bucket"})
    return names


def test_dashboard_queries_name_exported_series():
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/retail-stream.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in SERIES.findall(expr)}
    assert used and used <= exported_names()


def test_alert_rules_name_exported_series():
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    exprs = [QUOTED.sub('""', rule["expr"]) for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in SERIES.findall(expr)}
    assert used and used <= exported_names()
