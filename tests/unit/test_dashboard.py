"""The dashboard and the alert rules only ask for series the services export."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from consumer.metrics import ConsumerMetrics

ROOT = Path(__file__).resolve().parents[2]
SERIES = re.compile(r"\bretail_[a-z_]+")


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    ConsumerMetrics(registry)
    from producer.metrics import ProducerMetrics

    ProducerMetrics(registry)
    names = set()
    for family in registry.collect():
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
    used = {name for group in rules["groups"] for rule in group["rules"] for name in SERIES.findall(rule["expr"])}
    assert used and used <= exported_names()
