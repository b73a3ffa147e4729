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


def test_reconcile_alerts_select_the_job_the_tool_pushes_as_and_point_at_the_runbook():
    import yaml

    from reconcile.metrics import JOB

    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text())
    (group,) = [g for g in rules["groups"] if g["name"] == "retail-reconcile"]
    assert {r["alert"] for r in group["rules"]} == {"ReconciliationDrift", "ReconciliationNotSucceeding"}
    readme = (CONFIG.parents[1] / "README.md").read_text()
    for rule in group["rules"]:
        assert f'job="{JOB}"' in rule["expr"], rule["alert"]  # honor_labels keeps the pushed job
        assert rule["annotations"]["runbook"] == "README.md, section Reconciliation"
        assert {"summary", "description"} <= set(rule["annotations"])
    assert "\n### Reconciliation\n" in readme
