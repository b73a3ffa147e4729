"""The CloudFormation template, checked without AWS: three linters (cfn-lint,
checkov, parliament), the IAM policies' content, and the template against
what the code expects (key design, settings, ports, job names)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from consumer.daemon import DEFAULT_METRICS_PORT, SHUTDOWN_GRACE_MS
from consumer.sinks.dynamodb import CUSTOMER_INDEX
from local_stack.provision import CUSTOMER_INDEX_KEY, KEY_ATTRIBUTES, TABLE_KEY
from retail_stream.settings import ENVIRONMENT, Settings
from tests.deploy.template import (
    EXAMPLE_PARAMETERS,
    TEMPLATE,
    Renderer,
    as_list,
    identity_policies,
    load,
    resources_of_type,
    statements,
)

BIN = Path(sys.executable).parent
REPO = TEMPLATE.parents[2]

# Actions that take no resource ARN, so only `Resource: "*"` can grant them.
RESOURCE_STAR_ACTIONS = {"ecr:GetAuthorizationToken"}

# Each role's every action: a new permission has to be added here on purpose.
EXPECTED_ACTIONS = {
    "ConsumerExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    },
    "ProducerExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
    },
    "ConsumerTaskRole": {
        "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
        "kinesis:GetShardIterator", "kinesis:ListShards",
        "dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:Scan",
        "dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem", "s3:PutObject", "aps:RemoteWrite",
    },
    "ProducerTaskRole": {"kinesis:PutRecords", "aps:RemoteWrite"},
    "RedshiftCopyRole": {"s3:GetObject", "s3:ListBucket"},
}

# parliament findings we accept, each with the reason: (issue, the actions it names).
ACCEPTED_FINDINGS = {
    # The ECS agent logs in to ECR with the task's execution role to pull the image;
    # the token lets it pull only what the role's other statements allow (one repository).
    ("CREDENTIALS_EXPOSURE", ("ecr:getauthorizationtoken",)),
}


def run(*command: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, cwd=REPO,
    )


def checkov_bin() -> Path:
    """checkov pins its own boto3 and networkx, so it lives in a venv of its own
    (.venv/tools/checkov; `CHECKOV` overrides)."""
    own_venv = Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov"
    candidates = [os.environ.get("CHECKOV"), own_venv, BIN / "checkov"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    pytest.fail("checkov not found: python3 -m venv .venv/tools/checkov && "
                ".venv/tools/checkov/bin/pip install 'checkov>=3.2,<4' (or set CHECKOV)")


@pytest.fixture(scope="module")
def template() -> dict:
    return load()


@pytest.fixture(scope="module")
def rendered(template) -> dict:
    return Renderer(template).render(template["Resources"])


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """One checkov run for the module: its CLI takes seconds to start."""
    # --skip-download: no call home to Prisma Cloud (there is no network here anyway).
    result = run(checkov_bin(), "-f", TEMPLATE, "--framework", "cloudformation", "--skip-download",
                 "-o", "json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def container(rendered: dict, task_definition: str, name: str) -> dict:
    containers = rendered[task_definition]["Properties"]["ContainerDefinitions"]
    return next(c for c in containers if c["Name"] == name)


def environment(definition: dict) -> dict[str, str]:
    return {item["Name"]: str(item["Value"]) for item in definition.get("Environment", [])}


# --- linters ----------------------------------------------------------------------


def test_cfn_lint_finds_nothing_not_even_informational():
    result = run(BIN / "cfn-lint", TEMPLATE, "--format", "parseable", "--include-checks", "I")
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_checkov_fails_no_check(checkov_report):
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 50  # it really scanned the resources


def test_every_checkov_skip_is_justified_in_the_template_and_still_needed(template, checkov_report):
    declared = {
        (f"{spec['Type']}.{name}", skip["id"]): skip.get("comment", "")
        for name, spec in template["Resources"].items()
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert all(len(comment) > 40 for comment in declared.values()), declared
    skipped = {(c["resource"], c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    assert skipped == set(declared)


def test_parliament_finds_nothing_beyond_the_accepted(template, tmp_path):
    policies = identity_policies(template)
    policies["Bucket.policy"] = Renderer(template).render(
        template["Resources"]["BucketPolicy"]["Properties"]["PolicyDocument"]
    )
    files = []
    for name, policy in policies.items():
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(policy))
    result = run(BIN / "parliament", "--include-community-auditors", "--json",
                 "--files", ",".join(map(str, files)))
    findings = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.stderr == ""
    seen = {(f["issue"], tuple(sorted(f["location"].get("actions", [])))) for f in findings}
    assert seen - ACCEPTED_FINDINGS == set(), findings
    assert ACCEPTED_FINDINGS <= seen, "an accepted finding no longer occurs: drop it from the list"


# --- IAM policy content -------------------------------------------------------------


def test_no_action_wildcards_and_no_not_action(template):
    for name, policy in identity_policies(template).items():
        for statement in statements(policy):
            assert "NotAction" not in statement and "NotResource" not in statement, name
            for action in as_list(statement["Action"]):
                assert "*" not in action, (name, action)


def test_resource_star_only_for_actions_that_take_no_resource(template):
    for name, policy in identity_policies(template).items():
        for statement in statements(policy):
            if "*" in as_list(statement["Resource"]):
                assert set(as_list(statement["Action"])) <= RESOURCE_STAR_ACTIONS, name


def test_each_role_holds_exactly_its_actions(template):
    granted: dict[str, set[str]] = {}
    for name, policy in identity_policies(template).items():
        role = name.split(".")[0]
        for statement in statements(policy):
            assert statement["Effect"] == "Allow"
            granted.setdefault(role, set()).update(as_list(statement["Action"]))
    assert granted == EXPECTED_ACTIONS


def test_roles_trust_only_their_service(rendered):
    trusted = {
        name: [s["Principal"]["Service"] for s in statements(spec["Properties"]["AssumeRolePolicyDocument"])]
        for name, spec in rendered.items() if spec["Type"] == "AWS::IAM::Role"
    }
    assert trusted.pop("RedshiftCopyRole") == ["redshift.amazonaws.com"]
    assert all(services == ["ecs-tasks.amazonaws.com"] for services in trusted.values()), trusted


def test_s3_access_stays_inside_the_prefixes(template):
    policies = identity_policies(template)
    consumer = {r for s in statements(policies["ConsumerTaskRole.consume"]) if s["Action"] == "s3:PutObject"
                for r in as_list(s["Resource"])}
    assert consumer == {"arn:aws:s3:::retail-raw-example/raw/transactions/*",
                        "arn:aws:s3:::retail-raw-example/dead-letter/transactions/*"}
    copy = {s["Sid"]: s for s in statements(policies["RedshiftCopyRole.copy-raw-zone"])}
    assert copy["ReadRawZoneAndJsonPaths"]["Resource"] == [
        "arn:aws:s3:::retail-raw-example/raw/transactions/*",
        "arn:aws:s3:::retail-raw-example/jsonpaths/transactions.jsonpaths",
    ]
    assert copy["ListRawZone"]["Condition"]["StringLike"]["s3:prefix"] == [
        "raw/transactions/*", "jsonpaths/transactions.jsonpaths",
    ]


def test_bucket_refuses_plain_http(rendered):
    (statement,) = rendered["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == ["arn:aws:s3:::retail-raw-example", "arn:aws:s3:::retail-raw-example/*"]


# --- the template against the code -----------------------------------------------------


def test_table_has_the_key_design_the_consumer_writes(template):
    table = template["Resources"]["Table"]["Properties"]
    assert table["KeySchema"] == TABLE_KEY
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(KEY_ATTRIBUTES, key=str)
    (index,) = table["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["KeySchema"]) == (CUSTOMER_INDEX, CUSTOMER_INDEX_KEY)
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True


@pytest.mark.parametrize(
    ("parameter", "setting"),
    [("StreamName", "stream_name"), ("TableName", "dynamodb_table"), ("RawPrefix", "s3_raw_prefix"),
     ("DeadLetterPrefix", "s3_dead_letter_prefix"), ("KclApplicationName", "kcl_application_name"),
     ("WarehouseSchema", "warehouse_schema"), ("WarehouseTable", "warehouse_table"),
     ("FlushMaxRecords", "flush_max_records"), ("FlushMaxBytes", "flush_max_bytes"),
     ("KclInitialPosition", "kcl_initial_position")],
)
def test_parameter_defaults_are_the_settings_defaults(template, parameter, setting):
    assert template["Parameters"][parameter]["Default"] == getattr(Settings, setting)


@pytest.mark.parametrize(("task_definition", "name"), [("ConsumerTaskDefinition", "consumer"),
                                                      ("ProducerTaskDefinition", "producer")])
def test_service_environment_is_valid_settings(rendered, task_definition, name):
    definition = container(rendered, task_definition, name)
    env = environment(definition)
    assert set(env) <= set(ENVIRONMENT.values()), "a variable the services do not read"
    secrets = {s["Name"] for s in definition.get("Secrets", [])}
    settings = Settings.from_env({**env, **{s: "postgresql://example" for s in secrets}})
    assert settings.region == "eu-west-1"
    assert settings.stream_name == "retail-transactions"


def test_consumer_loads_redshift_with_the_copy_role_and_a_secret_dsn(rendered):
    consumer = container(rendered, "ConsumerTaskDefinition", "consumer")
    env = environment(consumer)
    assert env["WAREHOUSE_DIALECT"] == "redshift"
    assert env["REDSHIFT_IAM_ROLE"].endswith(":role/retail-stream-RedshiftCopyRole")
    assert env["REDSHIFT_JSONPATHS_URI"] == "s3://retail-raw-example/jsonpaths/transactions.jsonpaths"
    assert "KCL_WORKER_ID" not in env  # the ECS task id, found by the consumer itself
    secret = EXAMPLE_PARAMETERS["WarehouseDsnSecretArn"]
    assert consumer["Secrets"] == [{"Name": "WAREHOUSE_DSN", "ValueFrom": secret}]
    assert "WAREHOUSE_DSN" not in env


def test_consumer_health_and_stop_timeout_fit_the_daemon(rendered):
    consumer = container(rendered, "ConsumerTaskDefinition", "consumer")
    port = int(environment(consumer)["METRICS_PORT"])
    assert port == DEFAULT_METRICS_PORT
    assert f"http://127.0.0.1:{port}/readyz" in consumer["HealthCheck"]["Command"][-1]
    # The daemon's own grace for every shard's flush, plus room for the JVM to exit; Fargate allows 120 s.
    assert SHUTDOWN_GRACE_MS / 1000 + 30 <= consumer["StopTimeout"] <= 120


@pytest.mark.parametrize(("task_definition", "service"), [("ConsumerTaskDefinition", "consumer"),
                                                         ("ProducerTaskDefinition", "producer")])
def test_collector_scrapes_its_service_as_the_local_prometheus_does(rendered, task_definition, service):
    port = environment(container(rendered, task_definition, service))["METRICS_PORT"]
    collector = container(rendered, task_definition, "metrics-collector")
    config = yaml.safe_load(environment(collector)["AOT_CONFIG_CONTENT"])
    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}]
    local = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert scrape["job_name"] == f"retail-{service}"
    # The alerts and the dashboard select on these job names.
    assert scrape["job_name"] in {job["job_name"] for job in local["scrape_configs"]}
    exporter = config["exporters"]["prometheusremotewrite"]
    assert exporter["endpoint"] == "PrometheusWorkspace.PrometheusEndpointapi/v1/remote_write"
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheusremotewrite"]
    assert collector["Essential"] is False


def test_every_container_runs_read_only(rendered):
    for spec in (spec for spec in rendered.values() if spec["Type"] == "AWS::ECS::TaskDefinition"):
        for definition in spec["Properties"]["ContainerDefinitions"]:
            assert definition["ReadonlyRootFilesystem"] is True, definition["Name"]


def test_image_gives_the_read_only_containers_a_writable_tmp():
    """Fargate mounts the task's /tmp volume root-owned 0755 unless the image
    declares the path a VOLUME (then it copies the image's 1777 /tmp)."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    runtime = dockerfile.split("AS runtime", 1)[1].split("\nFROM ", 1)[0]
    declared = re.search(r'^VOLUME \[?"?/tmp"?\]?$', runtime, re.MULTILINE)
    assert declared, 'add VOLUME ["/tmp"] to the runtime stage of docker/Dockerfile'


def test_consumer_scales_on_stream_lag_up_to_one_task_per_shard(template):
    resources = template["Resources"]
    target = resources["ConsumerScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, {"Ref": "ShardCount"})
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        props = alarm["Properties"]
        metric = (props["Namespace"], props["MetricName"])
        assert metric == ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")
        assert props["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "Stream"}}]
    actions = {alarm["Properties"]["AlarmActions"][0]["Ref"] for alarm in alarms.values()}
    assert actions == {"ConsumerScaleOutPolicy", "ConsumerScaleInPolicy"}
