"""The alert rules and their unit tests, read as YAML (promtool's checks of
them are in tests/tools/test_alert_rules.py)."""

from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_every_alert_has_a_unit_test():
    import yaml

    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    tests = yaml.safe_load((CONFIG / "alerts_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested
