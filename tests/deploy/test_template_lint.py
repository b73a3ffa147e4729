"""The CloudFormation template, checked without AWS: three linters (cfn-lint,
checkov, parliament), the IAM policies' content, the Rules, and the template
against what the code expects (key design, settings, ports, job names, the
AWS calls the API makes, the routes and scopes the API guards)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore import xform_name
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.server import GRACEFUL_SHUTDOWN_SECONDS
from consumer.sinks.dynamodb import CUSTOMER_INDEX
from local_stack.provision import CUSTOMER_INDEX_KEY, KEY_ATTRIBUTES, TABLE_KEY
from retail_stream.settings import ENVIRONMENT, Settings
from tests.deploy.template import (
    EXAMPLE_PARAMETERS,
    LOAD_BALANCER,
    OWN_ISSUER,
    PUBLIC_LOAD_BALANCER,
    TEMPLATE,
    Renderer,
    as_list,
    identity_policies,
    load,
    resources_of_type,
    statements,
)
from tests.support.api_fakes import door_with_keys

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
    # WarehouseLoadMode=grouped only: the load queue (consumer/loader.py).
    "ConsumerGroupedLoadPolicy": {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"},
    # KclRetrievalMode=fanout only: the KCL registers its stream consumer and subscribes as it.
    "ConsumerFanOutPolicy": {"kinesis:RegisterStreamConsumer", "kinesis:DescribeStreamConsumer",
                             "kinesis:SubscribeToShard"},
    # KclLeaseTablePitr=true only: the KCL turns point-in-time recovery on.
    "ConsumerLeaseTablePitrPolicy": {"dynamodb:UpdateContinuousBackups"},
    # The scheduled reconciliation: read-only on the data, writes its reports.
    "ReconcileTaskRole": {"s3:GetObject", "s3:ListBucket", "dynamodb:BatchGetItem", "s3:PutObject"},
    "ReconcileExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    },
    "ReconcileScheduleRole": {"ecs:RunTask", "iam:PassRole"},
    # python -m rebuild and python -m redrive, run once by hand.
    "OperationsTaskRole": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "dynamodb:BatchWriteItem",
                           "dynamodb:BatchGetItem", "kinesis:PutRecords"},
    "OperationsExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    },
    "PushgatewayTaskRole": {"aps:RemoteWrite"},
    "PushgatewayExecutionRole": {"logs:CreateLogStream", "logs:PutLogEvents"},
    "ApiExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    },
    "ProducerTaskRole": {"kinesis:PutRecords", "kinesis:ListShards", "aps:RemoteWrite"},
    # What the code calls (test_api_role_grants_exactly_the_calls_the_code_makes) and the collector's write.
    "ApiTaskRole": {"kinesis:PutRecords", "dynamodb:Query", "secretsmanager:GetSecretValue",
                    "aps:RemoteWrite"},
    "RedshiftCopyRole": {"s3:GetObject", "s3:ListBucket"},
}

# parliament findings we accept, each with the reason: (issue, the actions it names).
ACCEPTED_FINDINGS = {
    # The ECS agent logs in to ECR with the task's execution role to pull the image;
    # the token lets it pull only what the role's other statements allow (one repository).
    ("CREDENTIALS_EXPOSURE", ("ecr:getauthorizationtoken",)),
    # EventBridge hands the reconciliation's two roles to ECS when it starts a scheduled run:
    # those two roles only, to ECS tasks only (test_reconcile_runs_on_a_schedule_with_least_privilege).
    ("PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:passrole",)),
}

FANOUT = {"KclRetrievalMode": "fanout"}  # the consumer on enhanced fan-out


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


@pytest.mark.tools  # runs an external linter
def test_cfn_lint_finds_nothing_not_even_informational():
    result = run(BIN / "cfn-lint", TEMPLATE, "--format", "parseable", "--include-checks", "I")
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


@pytest.mark.tools  # runs an external linter
def test_checkov_fails_no_check(checkov_report):
    results = checkov_report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 50  # it really scanned the resources


@pytest.mark.tools  # runs an external linter
def test_every_checkov_skip_is_justified_in_the_template_and_still_needed(template, checkov_report):
    declared = {
        (f"{spec['Type']}.{name}", skip["id"]): skip.get("comment", "")
        for name, spec in template["Resources"].items()
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert all(len(comment) > 40 for comment in declared.values()), declared
    skipped = {(c["resource"], c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    assert skipped == set(declared)


@pytest.mark.tools  # runs an external linter
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
    assert trusted.pop("ReconcileScheduleRole") == ["events.amazonaws.com"]
    assert all(services == ["ecs-tasks.amazonaws.com"] for services in trusted.values()), trusted


def test_task_and_copy_roles_trust_only_this_account(rendered):
    """No other account's task or cluster can use the roles with data access (the confused
    deputy); the execution roles (pull, log, one secret) carry no condition."""
    for name, spec in rendered.items():
        if spec["Type"] != "AWS::IAM::Role":
            continue
        (statement,) = statements(spec["Properties"]["AssumeRolePolicyDocument"])
        if name == "RedshiftCopyRole":
            # Redshift passes the database user's ARN as the external id: this account's users only.
            assert statement["Condition"] == {"StringLike": {
                "sts:ExternalId": "arn:aws:redshift:eu-west-1:123456789012:dbuser:*/*"}}
        elif name.endswith(("TaskRole", "ScheduleRole")):
            assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}, name
    one_cluster = Renderer(load(), {"WarehouseClusterIdentifier": "my-cluster"}).render(
        load()["Resources"]["RedshiftCopyRole"]["Properties"]["AssumeRolePolicyDocument"])
    (statement,) = statements(one_cluster)
    assert statement["Condition"]["StringLike"]["sts:ExternalId"].endswith(":dbuser:my-cluster/*")


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
        "arn:aws:s3:::retail-raw-example/load-manifests/transactions/*",
    ]
    assert copy["ListRawZone"]["Condition"]["StringLike"]["s3:prefix"] == [
        "raw/transactions/*", "jsonpaths/transactions.jsonpaths",
    ]
    grouped = {s["Sid"]: s for s in statements(policies["ConsumerGroupedLoadPolicy.grouped-loads"])}
    assert grouped["GroupedLoadQueue"]["Resource"] == ["arn:aws:s3:::retail-raw-example/load-queue/transactions/*",
                                                       "arn:aws:s3:::retail-raw-example/load-manifests/transactions/*"]
    assert grouped["ListGroupedLoadQueue"]["Condition"]["StringLike"]["s3:prefix"] == ["load-queue/transactions/*"]


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
     ("KclInitialPosition", "kcl_initial_position"), ("ApiMaxBodyBytes", "api_max_body_bytes"),
     ("ApiMaxItems", "api_max_items"), ("ApiRateLimitPerSecond", "api_rate_limit_per_second"),
     ("ApiRateLimitBurst", "api_rate_limit_burst"), ("ApiCursorTtlSeconds", "api_cursor_ttl_seconds"),
     ("KclInitialTimestamp", "kcl_initial_timestamp"), ("KclRetrievalMode", "kcl_retrieval_mode"),
     ("KclConsumerName", "kcl_consumer_name"), ("ReportsPrefix", "s3_reports_prefix")],
)
def test_parameter_defaults_are_the_settings_defaults(template, parameter, setting):
    assert template["Parameters"][parameter]["Default"] == getattr(Settings, setting)


@pytest.mark.parametrize(("task_definition", "name"), [("ConsumerTaskDefinition", "consumer"),
                                                      ("ProducerTaskDefinition", "producer"),
                                                      ("ApiTaskDefinition", "api"),
                                                      ("ReconcileTaskDefinition", "reconcile"),
                                                      ("OperationsTaskDefinition", "operations")])
def test_service_environment_is_valid_settings(rendered, task_definition, name):
    definition = container(rendered, task_definition, name)
    assert_valid_settings(definition)
    # And with the other front doors and another issuer.
    for parameters in (LOAD_BALANCER, PUBLIC_LOAD_BALANCER, OWN_ISSUER):
        template = load()
        other = Renderer(template, parameters).render(template["Resources"][task_definition])
        assert_valid_settings(
            next(c for c in other["Properties"]["ContainerDefinitions"] if c["Name"] == name))


def assert_valid_settings(definition: dict) -> None:
    """Settings.from_env takes the container's environment (its secrets as
    stand-ins of the length the template generates: 64 characters)."""
    env = environment(definition)
    assert set(env) <= set(ENVIRONMENT.values()), "a variable the services do not read"
    secrets = {s["Name"] for s in definition.get("Secrets", [])}
    settings = Settings.from_env({**env, **{s: "postgresql://example/" + "x" * 43 for s in secrets}})
    assert settings.region == "eu-west-1"
    assert settings.stream_name == "retail-transactions"
    assert settings.dynamodb_table == "retail-transactions"


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
    assert port == Settings().consumer_metrics_port
    assert f"http://127.0.0.1:{port}/readyz" in consumer["HealthCheck"]["Command"][-1]
    # The daemon's own grace for every shard's flush, plus room for the JVM to exit; Fargate allows 120 s.
    assert Settings().kcl_shutdown_grace_ms / 1000 + 30 <= consumer["StopTimeout"] <= 120


@pytest.mark.parametrize(("task_definition", "service"), [("ConsumerTaskDefinition", "consumer"),
                                                         ("ProducerTaskDefinition", "producer"),
                                                         ("ApiTaskDefinition", "api")])
def test_collector_scrapes_its_service_as_the_local_prometheus_does(rendered, task_definition, service):
    env = environment(container(rendered, task_definition, service))
    port = env.get("METRICS_PORT") or env["API_METRICS_PORT"]  # the API's: a port of its own
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


def test_every_container_runs_as_a_non_root_user_without_capabilities(rendered):
    """The services as the image's user 10001, the collectors as the ADOT image's (10001 too);
    every Linux capability dropped, none added."""
    users = {
        (name, d["Name"]): (d["User"], d["LinuxParameters"]["Capabilities"])
        for name, spec in rendered.items() if spec["Type"] == "AWS::ECS::TaskDefinition"
        for d in spec["Properties"]["ContainerDefinitions"]
    }
    assert users == {
        **{(task, name): ("10001", {"Drop": ["ALL"]})
           for task, service in (("ConsumerTaskDefinition", "consumer"), ("ProducerTaskDefinition", "producer"),
                                 ("ApiTaskDefinition", "api"))
           for name in (service, "metrics-collector")},
        ("ReconcileTaskDefinition", "reconcile"): ("10001", {"Drop": ["ALL"]}),
        ("OperationsTaskDefinition", "operations"): ("10001", {"Drop": ["ALL"]}),
        # The Pushgateway image's own user, nobody.
        ("PushgatewayTaskDefinition", "pushgateway"): ("65534", {"Drop": ["ALL"]}),
        ("PushgatewayTaskDefinition", "metrics-collector"): ("10001", {"Drop": ["ALL"]}),
    }


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
    stream = [{"Name": "StreamName", "Value": "retail-transactions"}]
    # Polling: the stream's GetRecords age. Fan-out calls no GetRecords: its consumer's own lag.
    for parameters, metric, dimensions in (
        ({}, "GetRecords.IteratorAgeMilliseconds", stream),
        (FANOUT, "SubscribeToShardEvent.MillisBehindLatest",
         [*stream, {"Name": "ConsumerName", "Value": "retail-consumer"}]),
        ({**FANOUT, "KclConsumerName": "retail-efo"}, "SubscribeToShardEvent.MillisBehindLatest",
         [*stream, {"Name": "ConsumerName", "Value": "retail-efo"}]),
    ):
        for alarm in alarms.values():
            props = Renderer(template, parameters).render(alarm["Properties"])
            assert (props["Namespace"], props["MetricName"]) == ("AWS/Kinesis", metric)
            assert props["Dimensions"] == dimensions
        output = Renderer(template, parameters).render(template["Outputs"]["ConsumerLagMetric"]["Value"])
        assert output.startswith(f"AWS/Kinesis {metric} StreamName=retail-transactions")
    actions = {alarm["Properties"]["AlarmActions"][0]["Ref"] for alarm in alarms.values()}
    assert actions == {"ConsumerScaleOutPolicy", "ConsumerScaleInPolicy"}


# --- the HTTP API ---------------------------------------------------------------------

# api/keys_cli.py is the operators' tool, run with their own credentials, not the task's code.
API_CODE = [*sorted(path for path in (REPO / "api").glob("*.py") if path.name != "keys_cli.py"),
            REPO / "producer" / "kinesis_writer.py"]
PRODUCER_CODE = sorted((REPO / "producer").glob("*.py"))
GATEWAY_TYPES = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Authorizer", "AWS::ApiGatewayV2::VpcLink",
                 "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Stage"}
USER_POOL_TYPES = {"AWS::Cognito::UserPool", "AWS::Cognito::UserPoolResourceServer",
                   "AWS::Cognito::UserPoolDomain", "AWS::Cognito::UserPoolClient"}


def created(template: dict, parameters: dict | None = None) -> dict[str, dict]:
    """The resources a stack with `parameters` creates, rendered."""
    renderer = Renderer(template, parameters)
    return {name: renderer.render(spec) for name, spec in template["Resources"].items()
            if renderer.creates(name)}


def aws_operations_called(paths: list[Path], services: set[str] = frozenset()) -> set[str]:
    """The boto3 operations the code calls: `<…client>.<operation>(…)` or
    `<service>.<operation>(…)` (a client named for its service, as
    api/credentials.py's `secretsmanager`), and `self._call("<operation>", …)`
    (api/lookups.py goes through one helper)."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if owner_name.isupper():  # a constant (CLIENT_PATTERN.match), not a client
                continue
            if "client" in owner_name.lower() or owner_name in services:
                found.add(node.func.attr)
            elif node.func.attr == "_call" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


def clients_made(path: Path) -> set[str]:
    """The services of the `aws.client("<service>", …)` calls in `path`."""
    return {
        node.args[0].value for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "client"
        and node.args and isinstance(node.args[0], ast.Constant)
    }


def test_api_role_grants_exactly_the_calls_the_code_makes(template):
    services = clients_made(REPO / "api" / "server.py")
    assert services == {"kinesis", "dynamodb", "secretsmanager"}
    session = botocore.session.get_session()
    operations = {
        service: {xform_name(op): op for op in session.get_service_model(service).operation_names}
        for service in services
    }
    called = set()
    for operation in aws_operations_called(API_CODE, services):
        (action,) = [f"{service}:{ops[operation]}" for service, ops in operations.items() if operation in ops]
        called.add(action)  # these services' IAM actions are named as their API operations
    # No DescribeStream, ListShards, GetItem, DescribeSecret, …
    assert called == {"kinesis:PutRecords", "dynamodb:Query", "secretsmanager:GetSecretValue"}
    policy = identity_policies(template)["ApiTaskRole.serve"]
    granted = {action for s in statements(policy) for action in as_list(s["Action"])}
    assert granted - {"aps:RemoteWrite"} == called


def test_producer_role_grants_exactly_the_calls_the_code_makes(template):
    """PutRecords always, ListShards for --aggregate's shard map: nothing more."""
    assert clients_made(REPO / "producer" / "cli.py") == {"kinesis"}
    kinesis = {xform_name(op): op for op in botocore.session.get_session().get_service_model("kinesis").operation_names}
    # httpx's client (--via-api) has calls too: the Kinesis client's are the ones Kinesis names.
    called = {f"kinesis:{kinesis[op]}" for op in aws_operations_called(PRODUCER_CODE) if op in kinesis}
    assert called == {"kinesis:PutRecords", "kinesis:ListShards"}
    (policy,) = [p for name, p in identity_policies(template).items() if name.startswith("ProducerTaskRole.")]
    granted = {action for s in statements(policy) for action in as_list(s["Action"])}
    assert granted - {"aps:RemoteWrite"} == called


def test_api_role_reaches_the_stream_the_table_its_index_and_the_keys_only(template):
    by_action = {}
    for statement in statements(identity_policies(template)["ApiTaskRole.serve"]):
        assert "Condition" not in statement
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, set()).update(as_list(statement["Resource"]))
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/retail-transactions"
    assert by_action == {
        "kinesis:PutRecords": {"arn:aws:kinesis:eu-west-1:123456789012:stream/retail-transactions"},
        "dynamodb:Query": {table, f"{table}/index/{CUSTOMER_INDEX}"},
        "secretsmanager:GetSecretValue": {Renderer(template).ref("ApiKeysSecret")},
        "aps:RemoteWrite": {
            "arn:aws:aps:eu-west-1:123456789012:workspace/ws-0123abcd-4567-89ef-0123456789ab"},
    }


def test_api_secrets_are_read_each_by_its_one_role(template, rendered):
    """The cursor key is generated and injected by ECS (the execution role reads it); the API
    keys' secret starts empty and the task itself re-reads it (the task role)."""
    secret = template["Resources"]["ApiCursorSecret"]["Properties"]
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    assert "SecretString" not in secret  # generated by Secrets Manager, never in the template
    api = container(rendered, "ApiTaskDefinition", "api")
    cursor, keys = Renderer(template).ref("ApiCursorSecret"), Renderer(template).ref("ApiKeysSecret")
    assert api["Secrets"] == [{"Name": "API_CURSOR_SECRET", "ValueFrom": cursor}]
    assert "API_CURSOR_SECRET" not in environment(api)
    assert json.loads(template["Resources"]["ApiKeysSecret"]["Properties"]["SecretString"]) == {"keys": []}
    assert environment(api)["API_KEYS_SECRET_ID"] == keys  # an ARN: the app reads the value itself
    readers = {
        name.split(".")[0]: set(as_list(s["Resource"]))
        for name, policy in identity_policies(template).items() for s in statements(policy)
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
    }
    dsn = {EXAMPLE_PARAMETERS["WarehouseDsnSecretArn"]}  # the warehouse's, for each task that connects
    assert readers == {"ApiExecutionRole": {cursor}, "ApiTaskRole": {keys}, "ConsumerExecutionRole": dsn,
                       "ReconcileExecutionRole": dsn, "OperationsExecutionRole": dsn}


def test_api_serves_https_on_its_port_and_metrics_on_localhost_only(template, rendered):
    door, _ = door_with_keys(CollectorRegistry())
    app = create_app(Settings(), None, None, door)
    assert {"/healthz", "/schema/openapi.json"} <= set(app.route_handler_method_map)
    assert "/metrics" not in app.route_handler_method_map  # its own port, below
    api = container(rendered, "ApiTaskDefinition", "api")
    env = environment(api)
    port = int(env["API_PORT"])
    assert port == Settings.api_port
    assert env["API_TLS"] == "self-signed"  # a certificate made at start: the last hop is encrypted
    assert api["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]  # not the metrics port
    assert (int(env["API_METRICS_PORT"]), env["METRICS_HOST"]) == (Settings.api_metrics_port, "127.0.0.1")
    check = api["HealthCheck"]["Command"][-1]
    assert f"https://127.0.0.1:{port}/healthz" in check and "ssl._create_unverified_context()" in check
    target_group = rendered["ApiTargetGroup"]["Properties"]
    checked = (target_group["Protocol"], target_group["Port"], target_group["HealthCheckProtocol"],
               target_group["HealthCheckPath"], target_group["TargetType"])
    assert checked == ("HTTPS", port, "HTTPS", "/healthz", "ip")
    assert target_group["Matcher"] == {"HttpCode": "200"}
    (balanced,) = rendered["ApiService"]["Properties"]["LoadBalancers"]
    assert balanced == {"ContainerName": "api", "ContainerPort": port,
                        "TargetGroupArn": "retail-stream-ApiTargetGroup"}
    # uvicorn's graceful shutdown, plus room to exit; Fargate allows 120 s.
    assert GRACEFUL_SHUTDOWN_SECONDS + 5 <= api["StopTimeout"] <= 120


def test_api_settings_follow_the_parameters(template):
    for parameters in ({}, OWN_ISSUER):
        renderer = Renderer(template, parameters)
        env = environment(container(created(template, parameters), "ApiTaskDefinition", "api"))
        for parameter, variable in (
            ("ApiRateLimitPerSecond", "API_RATE_LIMIT_PER_SECOND"),
            ("ApiRateLimitBurst", "API_RATE_LIMIT_BURST"),
            ("ApiCursorTtlSeconds", "API_CURSOR_TTL_SECONDS"), ("ApiMaxBodyBytes", "API_MAX_BODY_BYTES"),
            ("ApiMaxItems", "API_MAX_ITEMS"), ("ApiJwtScopePrefix", "API_JWT_SCOPE_PREFIX"),
            ("ApiJwtJwksUrl", "API_JWT_JWKS_URL"),
        ):
            assert env[variable] == str(renderer.values[parameter]), variable


# --- who may call: the same issuer, audience and scopes at the gateway and in the task ---


def test_tokens_are_checked_alike_by_the_gateway_and_the_task(template):
    """The stack's Cognito pool by default, another OIDC provider on request; either way the
    authorizer and the task's verifier take the same issuer and audience."""
    for parameters, issuer, audience in (
        ({}, "https://ApiUserPool.ProviderURL", "retail-stream-ApiAppClient"),
        (OWN_ISSUER, OWN_ISSUER["ApiJwtIssuer"], OWN_ISSUER["ApiJwtAudience"]),
    ):
        resources = created(template, parameters)
        (jwt,) = [spec["Properties"] for spec in resources.values()
                  if spec["Type"] == "AWS::ApiGatewayV2::Authorizer"]
        assert (jwt["AuthorizerType"], jwt["IdentitySource"]) == ("JWT", ["$request.header.Authorization"])
        assert jwt["JwtConfiguration"] == {"Issuer": issuer, "Audience": [audience]}
        env = environment(container(resources, "ApiTaskDefinition", "api"))
        assert (env["API_JWT_ISSUER"], env["API_JWT_AUDIENCE"]) == (issuer, audience)
        pool = {spec["Type"] for spec in resources.values()} & USER_POOL_TYPES
        assert pool == (USER_POOL_TYPES if parameters is not OWN_ISSUER else set())
    issuer = Renderer(template).render(template["Outputs"]["ApiJwtIssuer"]["Value"])
    assert issuer == "https://ApiUserPool.ProviderURL"


def test_the_pools_app_client_gets_exactly_the_routes_scopes_by_client_credentials(template):
    resources = created(template)
    server = resources["ApiResourceServer"]["Properties"]
    assert server["Identifier"] == "retail-api"  # the prefix retail-api/ without its slash
    assert {s["ScopeName"] for s in server["Scopes"]} == {"ingest", "read"}
    client = resources["ApiAppClient"]["Properties"]
    assert client["AllowedOAuthFlows"] == ["client_credentials"] and client["AllowedOAuthFlowsUserPoolClient"]
    assert client["GenerateSecret"] is True
    route_scopes = {scope for spec in resources.values() if spec["Type"] == "AWS::ApiGatewayV2::Route"
                    for scope in spec["Properties"].get("AuthorizationScopes", [])}
    assert set(client["AllowedOAuthScopes"]) == route_scopes == {
        f"{server['Identifier']}/{s['ScopeName']}" for s in server["Scopes"]}
    pool = resources["ApiUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}  # no sign-up
    # The token endpoint's domain: unique to the stack (its id's UUID), no reserved word in it.
    domain = resources["ApiUserPoolDomain"]["Properties"]["Domain"]
    assert domain == "retail-api-51af3dc0-da77-11e4-872e-1234567db123"
    assert not re.search("aws|amazon|cognito", domain) and len(domain) <= 63


def test_gateway_routes_are_the_services_routes_with_its_permissions(template):
    door, _ = door_with_keys(CollectorRegistry())
    app = create_app(Settings(), None, None, door)
    served = {(method, re.sub(r"\{(\w+):\w+\}", r"{\1}", path))
              for path, methods in app.route_handler_method_map.items() for method in methods
              if method not in ("HEAD", "OPTIONS")}
    # Litestar's OpenAPI controller (/schema, /schema/{path}): the gateway routes its JSON document only.
    schema = {route for route in served if route[1].startswith("/schema")}
    assert ("GET", "/schema/{path}") in schema
    served = served - schema | {("GET", "/schema/openapi.json")}
    routes = {spec["Properties"]["RouteKey"]: spec["Properties"] for spec in created(template).values()
              if spec["Type"] == "AWS::ApiGatewayV2::Route"}
    assert {tuple(key.split(" ")) for key in routes} == served  # nothing else reaches the service
    permissions = {key: (route["AuthorizationType"], route.get("AuthorizationScopes"))
                   for key, route in routes.items()}
    assert permissions == {
        "POST /transactions": ("JWT", ["retail-api/ingest"]),
        "GET /customers/{customer_id}/transactions": ("JWT", ["retail-api/read"]),
        "GET /invoices/{invoice_no}": ("JWT", ["retail-api/read"]),
        "GET /schema/openapi.json": ("JWT", None),  # any valid token, as the service asks
        "GET /healthz": ("NONE", None),
    }
    # With bare scope names (another provider's, ApiJwtScopePrefix empty).
    scopes = {spec["Properties"]["RouteKey"]: spec["Properties"].get("AuthorizationScopes")
              for spec in created(template, OWN_ISSUER).values()
              if spec["Type"] == "AWS::ApiGatewayV2::Route"}
    assert scopes["POST /transactions"] == ["ingest"] and scopes["GET /invoices/{invoice_no}"] == ["read"]


def test_gateway_reaches_the_internal_balancer_over_https_through_its_vpc_link(template):
    resources = created(template)
    assert {spec["Type"] for spec in resources.values()} >= GATEWAY_TYPES
    integration = resources["ApiGatewayIntegration"]["Properties"]
    assert (integration["IntegrationType"], integration["ConnectionType"]) == ("HTTP_PROXY", "VPC_LINK")
    assert integration["ConnectionId"] == "retail-stream-ApiVpcLink"
    assert integration["IntegrationUri"] == "retail-stream-ApiHttpsListener"  # the HTTPS listener's ARN
    assert integration["TlsConfig"] == {"ServerNameToVerify": EXAMPLE_PARAMETERS["ApiDomainName"]}
    assert integration["TimeoutInMillis"] <= 30000
    assert resources["ApiLoadBalancer"]["Properties"]["Scheme"] == "internal"
    link = resources["ApiVpcLink"]["Properties"]
    assert link["SubnetIds"] == EXAMPLE_PARAMETERS["SubnetIds"]
    assert link["SecurityGroupIds"] == ["retail-stream-ApiVpcLinkSecurityGroup"]
    route_targets = {spec["Properties"]["Target"] for spec in resources.values()
                     if spec["Type"] == "AWS::ApiGatewayV2::Route"}
    assert route_targets == {"integrations/retail-stream-ApiGatewayIntegration"}
    # The other front doors make no gateway at all.
    for parameters in (LOAD_BALANCER, PUBLIC_LOAD_BALANCER):
        assert not {spec["Type"] for spec in created(template, parameters).values()} & GATEWAY_TYPES


def test_gateway_throttles_all_callers_and_logs_every_request(template):
    stage = created(template)["ApiGatewayStage"]["Properties"]
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    assert stage["DefaultRouteSettings"] == {"ThrottlingRateLimit": 200, "ThrottlingBurstLimit": 400}
    logs = stage["AccessLogSettings"]
    assert logs["DestinationArn"] == (
        "arn:aws:logs:eu-west-1:123456789012:log-group:/apigateway/retail-stream/api")
    line = json.loads(logs["Format"])  # one JSON object a line
    assert {"request_id", "status", "route", "client", "authorizer_error", "integration_error"} <= set(line)
    # Above the service's own limit, which is per credential and per task.
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] > Settings.api_rate_limit_per_second


def test_no_output_holds_a_secret(template):
    outputs = json.dumps(template["Outputs"])
    assert "ClientSecret" not in outputs and "SecretString" not in outputs
    wanted = {"ApiUrl", "ApiTokenEndpoint", "ApiClientId", "ApiKeysSecretArn", "ApiScopes"}
    assert wanted <= set(template["Outputs"])
    renderer = Renderer(template)
    value = lambda name: renderer.render(template["Outputs"][name]["Value"])  # noqa: E731
    assert value("ApiTokenEndpoint") == (
        "https://retail-stream-ApiUserPoolDomain.auth.eu-west-1.amazoncognito.com/oauth2/token")
    assert value("ApiClientId") == "retail-stream-ApiAppClient"  # Ref: the client's id
    assert value("ApiScopes") == "retail-api/ingest retail-api/read"


# --- the load balancer and who reaches it --------------------------------------------


def test_the_rules_refuse_what_would_not_work_or_be_open(template):
    documented = ({}, LOAD_BALANCER, PUBLIC_LOAD_BALANCER, OWN_ISSUER, {"ApiIngressCidr": "10.0.0.0/16"})
    for parameters in documented:
        assert Renderer(template, parameters).broken_rules() == [], parameters
    refused = {
        "ApiFrontDoor=api-gateway needs ApiCertificateArn": {"ApiCertificateArn": ""},
        "needs ApiDomainName": {"ApiDomainName": ""},
        "the load balancer is internal": {"ApiLoadBalancerScheme": "internet-facing"},
        "load-balancer needs ApiIngressCidr": {**LOAD_BALANCER, "ApiIngressCidr": ""},
        "internet-facing API load balancer needs ApiCertificateArn":
            {**PUBLIC_LOAD_BALANCER, "ApiCertificateArn": ""},
        "ApiJwtIssuer needs ApiJwtAudience": {**OWN_ISSUER, "ApiJwtAudience": ""},
        "ApiJwtScopePrefix may not be empty": {"ApiJwtScopePrefix": ""},
    }
    for reason, parameters in refused.items():
        broken = Renderer(template, parameters).broken_rules()
        assert len(broken) == 1 and reason in broken[0], (parameters, broken)
    parameters = template["Parameters"]
    assert parameters["ApiFrontDoor"]["Default"] == "api-gateway"
    assert parameters["ApiLoadBalancerScheme"]["Default"] == "internal"
    assert parameters["ApiIngressCidr"]["Default"] == ""  # no open default: nobody but the gateway


def test_load_balancer_admits_the_gateway_or_the_cidr_and_the_tasks_admit_only_it(template):
    gateway_link = ("retail-stream-ApiVpcLinkSecurityGroup", "SourceSecurityGroupId")
    for parameters, admitted in (
        ({}, {(443, gateway_link)}),
        ({"ApiIngressCidr": "10.0.0.0/16"}, {(443, gateway_link), (80, "10.0.0.0/16"), (443, "10.0.0.0/16")}),
        (LOAD_BALANCER, {(80, "10.0.0.0/16")}),
        (PUBLIC_LOAD_BALANCER, {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}),
    ):
        resources = created(template, parameters)
        ingress = {name: spec["Properties"] for name, spec in resources.items()
                   if spec["Type"] == "AWS::EC2::SecurityGroupIngress"}
        balancer = resources["ApiLoadBalancerSecurityGroup"]["Properties"]
        balancer_rules = balancer.get("SecurityGroupIngress", []) + [
            rule for rule in ingress.values()
            if rule["GroupId"] == "retail-stream-ApiLoadBalancerSecurityGroup"]
        for rule in balancer_rules:
            assert rule["FromPort"] == rule["ToPort"]
        assert {(r["FromPort"], r.get("CidrIp") or (r["SourceSecurityGroupId"], "SourceSecurityGroupId"))
                for r in balancer_rules} == admitted, parameters
        (egress,) = balancer["SecurityGroupEgress"]
        assert (egress["FromPort"], egress["ToPort"], egress["DestinationSecurityGroupId"]) == (
            8080, 8080, "retail-stream-ApiSecurityGroup")
        if "ApiVpcLinkSecurityGroup" in resources:  # the link may open HTTPS to the balancer, nothing else
            (egress,) = resources["ApiVpcLinkSecurityGroup"]["Properties"]["SecurityGroupEgress"]
            assert (egress["FromPort"], egress["ToPort"], egress["DestinationSecurityGroupId"]) == (
                443, 443, "retail-stream-ApiLoadBalancerSecurityGroup")
        tasks = [rule for rule in ingress.values() if rule["GroupId"] == "retail-stream-ApiSecurityGroup"]
        assert [(r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"]) for r in tasks] == [
            (8080, 8080, "retail-stream-ApiLoadBalancerSecurityGroup")]
        # No other group takes anything: the consumer's, the producer's and the VPC link's none at all.
        for name, spec in resources.items():
            if spec["Type"] == "AWS::EC2::SecurityGroup" and name != "ApiLoadBalancerSecurityGroup":
                assert "SecurityGroupIngress" not in spec["Properties"], name
        # Rules of their own: the API's, its balancer's, the Pushgateway's (test_pushgateway_is_scraped_...).
        assert {rule["GroupId"] for rule in ingress.values()} <= {
            "retail-stream-ApiSecurityGroup", "retail-stream-ApiLoadBalancerSecurityGroup",
            "retail-stream-PushgatewaySecurityGroup"}
        service = resources["ApiService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert service["AssignPublicIp"] == "DISABLED"
        assert service["SecurityGroups"] == ["retail-stream-ApiSecurityGroup"]


def test_api_listener_serves_https_with_a_certificate_and_plain_http_without(template):
    resources = template["Resources"]
    forward = [{"Type": "forward", "TargetGroupArn": "retail-stream-ApiTargetGroup"}]
    plain = Renderer(template, LOAD_BALANCER)
    http = plain.render(resources["ApiHttpListener"])["Properties"]
    assert (http["Port"], http["Protocol"], http["DefaultActions"]) == (80, "HTTP", forward)
    assert not plain.creates("ApiHttpsListener")
    metrics_rule = plain.render(resources["ApiMetricsNotPublic"])["Properties"]
    assert metrics_rule["ListenerArn"] == "retail-stream-ApiHttpListener"

    for parameters in ({}, PUBLIC_LOAD_BALANCER):  # the gateway's internal balancer, a public one
        secure = Renderer(template, parameters)
        assert secure.creates("ApiHttpsListener")
        https = secure.render(resources["ApiHttpsListener"])["Properties"]
        assert (https["Port"], https["Protocol"], https["DefaultActions"]) == (443, "HTTPS", forward)
        assert https["Certificates"] == [{"CertificateArn": EXAMPLE_PARAMETERS["ApiCertificateArn"]}]
        assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
        http = secure.render(resources["ApiHttpListener"])["Properties"]
        # The same port either way: updates never clash.
        assert (http["Port"], http["Protocol"]) == (80, "HTTP")
        assert http["DefaultActions"] == [
            {"Type": "redirect",
             "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
        metrics_rule = secure.render(resources["ApiMetricsNotPublic"])["Properties"]
        assert metrics_rule["ListenerArn"] == "retail-stream-ApiHttpsListener"
    # The service waits for the forwarding listener (through the rule, which names it).
    assert set(resources["ApiService"]["DependsOn"]) == {"ApiHttpListener", "ApiMetricsNotPublic"}


def test_metrics_are_not_served_through_the_load_balancer(rendered):
    """/metrics is on a port of its own now; the rule answers 404 for it should it come back."""
    rule = rendered["ApiMetricsNotPublic"]["Properties"]
    (condition,) = rule["Conditions"]
    assert condition == {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/metrics*"]}}
    (action,) = rule["Actions"]
    assert (action["Type"], action["FixedResponseConfig"]["StatusCode"]) == ("fixed-response", "404")


def test_load_balancer_drops_invalid_headers_and_drains_before_the_stop(rendered):
    balancer = rendered["ApiLoadBalancer"]["Properties"]
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    target_group = {
        a["Key"]: a["Value"] for a in rendered["ApiTargetGroup"]["Properties"]["TargetGroupAttributes"]}
    # ECS deregisters a stopping task and waits this long before SIGTERM: far below the 300 s default.
    assert 0 < int(target_group["deregistration_delay.timeout_seconds"]) <= 60


def test_api_scales_on_cpu_between_its_task_bounds(template):
    resources = template["Resources"]
    target = resources["ApiScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "ApiMinTasks"}, {"Ref": "ApiMaxTasks"})
    assert resources["ApiService"]["Properties"]["DesiredCount"] == {"Ref": "ApiMinTasks"}
    policy = resources["ApiCpuScalingPolicy"]["Properties"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": "ApiScalableTarget"}
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"}


def test_api_url_output_is_the_front_door(template):
    url = template["Outputs"]["ApiUrl"]["Value"]
    assert Renderer(template).render(url) == "ApiGateway.ApiEndpoint"  # https://<id>.execute-api.<region>…
    assert Renderer(template, LOAD_BALANCER).render(url) == "http://ApiLoadBalancer.DNSName"
    assert Renderer(template, PUBLIC_LOAD_BALANCER).render(url) == "https://api.retail.example"


# --- KCL settings, the reconciliation, one-off operations -------------------------------


def rendered_policy(template: dict, name: str, parameters: dict | None = None) -> dict[str, dict]:
    """An AWS::IAM::Policy's statements by Sid, rendered with `parameters`."""
    document = template["Resources"][name]["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in statements(Renderer(template, parameters).render(document))}


def role_statements(template: dict, role: str) -> dict[str, dict]:
    (policy,) = template["Resources"][role]["Properties"]["Policies"]
    return {s["Sid"]: s for s in statements(Renderer(template).render(policy["PolicyDocument"]))}


def consumer_settings(template: dict, parameters: dict) -> Settings:
    task = Renderer(template, parameters).render(template["Resources"]["ConsumerTaskDefinition"])
    consumer = next(c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "consumer")
    return Settings.from_env(environment(consumer))


def test_fan_out_permissions_come_with_fan_out_only(template):
    from consumer.daemon import kcl_properties

    assert not Renderer(template).creates("ConsumerFanOutPolicy")
    assert consumer_settings(template, {}).kcl_retrieval_mode == "polling"
    stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/retail-transactions"
    for parameters, name in ((FANOUT, "retail-consumer"),
                             ({**FANOUT, "KclConsumerName": "retail-efo"}, "retail-efo")):
        assert Renderer(template, parameters).creates("ConsumerFanOutPolicy")
        assert Renderer(template, parameters).broken_rules() == []
        policy = rendered_policy(template, "ConsumerFanOutPolicy", parameters)
        assert (policy["RegisterConsumer"]["Action"], policy["RegisterConsumer"]["Resource"]) == (
            "kinesis:RegisterStreamConsumer", stream)
        assert policy["SubscribeAsConsumer"]["Resource"] == f"{stream}/consumer/{name}:*"
        # The consumer the KCL registers (its name, else the application's) is the one granted.
        props = kcl_properties(consumer_settings(template, parameters), "w", "x", {})
        assert props["retrievalMode"] == "FANOUT"
        assert props.get("fanoutConfig.consumerName", props["applicationName"]) == name
    attached = template["Resources"]["ConsumerFanOutPolicy"]["Properties"]["Roles"]
    assert attached == [{"Ref": "ConsumerTaskRole"}]


def test_lease_table_pitr_permission_comes_with_pitr_only(template):
    assert not Renderer(template).creates("ConsumerLeaseTablePitrPolicy")
    on = {"KclLeaseTablePitr": "true"}
    assert Renderer(template, on).creates("ConsumerLeaseTablePitrPolicy")
    (statement,) = rendered_policy(template, "ConsumerLeaseTablePitrPolicy", on).values()
    assert statement["Resource"] == "arn:aws:dynamodb:eu-west-1:123456789012:table/retail-consumer"
    assert consumer_settings(template, on).kcl_lease_table_pitr is True
    assert consumer_settings(template, {}).kcl_lease_table_pitr is False


def test_the_rules_refuse_the_kcl_combinations_the_consumer_refuses(template):
    at = {"KclInitialPosition": "AT_TIMESTAMP", "KclInitialTimestamp": "2026-12-01T06:30:00Z"}
    assert Renderer(template, at).broken_rules() == []
    assert consumer_settings(template, at).initial_timestamp.isoformat() == "2026-12-01T06:30:00+00:00"
    refused = {
        "KclInitialPosition=AT_TIMESTAMP needs KclInitialTimestamp": {"KclInitialPosition": "AT_TIMESTAMP"},
        "KclInitialTimestamp is read with KclInitialPosition=AT_TIMESTAMP only":
            {"KclInitialTimestamp": "2026-12-01T06:30:00Z"},
        "KclConsumerName names an enhanced fan-out consumer; it needs KclRetrievalMode=fanout":
            {"KclConsumerName": "retail-efo"},
    }
    for description, parameters in refused.items():
        assert Renderer(template, parameters).broken_rules() == [description]
    # What the parameter's pattern lets through, the consumer takes, and the reverse for these.
    pattern = re.compile(template["Parameters"]["KclInitialTimestamp"]["AllowedPattern"])
    for value in ("2026-12-01T06:30:00Z", "2026-12-01T06:30:00.250+00:00"):
        assert pattern.match(value)
        assert consumer_settings(template, {**at, "KclInitialTimestamp": value}).initial_timestamp
    for value in ("2026-12-01T06:30:00", "2026-12-01T06:30:00+01:00", "2026-12-01"):
        assert not pattern.match(value)


def test_reconcile_runs_every_hour_and_closes_each_day(rendered):
    hourly, daily = rendered["ReconcileHourly"]["Properties"], rendered["ReconcileDaily"]["Properties"]
    assert hourly["ScheduleExpression"] == "cron(10 * * * ? *)"  # every hour, at minute 10
    assert daily["ScheduleExpression"] == "cron(40 0 * * ? *)"  # 00:40 UTC
    assert hourly["State"] == daily["State"] == "ENABLED"
    for rule in (hourly, daily):
        (target,) = rule["Targets"]
        assert target["Arn"] == "arn:aws:ecs:eu-west-1:123456789012:cluster/retail-stream-Cluster"
        assert target["RoleArn"] == "arn:aws:iam::123456789012:role/retail-stream-ReconcileScheduleRole"
        ecs = target["EcsParameters"]
        assert (ecs["TaskDefinitionArn"], ecs["TaskCount"], ecs["LaunchType"]) == (
            "retail-stream-ReconcileTaskDefinition", 1, "FARGATE")
        network = ecs["NetworkConfiguration"]["AwsVpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        assert network["SecurityGroups"] == ["retail-stream-OperationsSecurityGroup"]
        assert network["Subnets"] == EXAMPLE_PARAMETERS["SubnetIds"]
    assert "Input" not in hourly["Targets"][0]  # the task definition's own command: the last whole hour
    assert container(rendered, "ReconcileTaskDefinition", "reconcile")["Command"] == [
        "python", "-m", "reconcile", "--hours", "1"]
    (override,) = json.loads(daily["Targets"][0]["Input"])["containerOverrides"]
    assert override == {"name": "reconcile", "command": ["python", "-m", "reconcile", "--days", "2"]}


def test_the_schedule_role_starts_the_reconciliation_and_nothing_else(template):
    role = role_statements(template, "ReconcileScheduleRole")
    assert role["RunReconcile"]["Action"] == "ecs:RunTask"
    assert role["RunReconcile"]["Resource"] == (
        "arn:aws:ecs:eu-west-1:123456789012:task-definition/retail-stream-reconcile:*")
    assert role["RunReconcile"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/retail-stream-Cluster"}}
    assert Renderer(template).render(template["Resources"]["ReconcileTaskDefinition"]["Properties"]["Family"]) == (
        "retail-stream-reconcile")
    assert role["PassReconcileRoles"]["Resource"] == [
        "arn:aws:iam::123456789012:role/retail-stream-ReconcileTaskRole",
        "arn:aws:iam::123456789012:role/retail-stream-ReconcileExecutionRole",
    ]
    assert role["PassReconcileRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_reconcile_reads_the_data_and_writes_only_its_reports(template):
    role = role_statements(template, "ReconcileTaskRole")
    bucket = "arn:aws:s3:::retail-raw-example"
    assert (role["ReadRawZone"]["Action"], role["ReadRawZone"]["Resource"]) == (
        "s3:GetObject", f"{bucket}/raw/transactions/*")
    assert role["ListRawZone"]["Resource"] == bucket
    assert role["ListRawZone"]["Condition"]["StringLike"]["s3:prefix"] == ["raw/transactions/*"]
    assert (role["LookUpRows"]["Action"], role["LookUpRows"]["Resource"]) == (
        "dynamodb:BatchGetItem", "arn:aws:dynamodb:eu-west-1:123456789012:table/retail-transactions")
    # Its one write: the reports prefix, the one S3_REPORTS_PREFIX names.
    writes = [s for s in role.values() if s["Action"] == "s3:PutObject"]
    assert [s["Resource"] for s in writes] == [f"{bucket}/reports/reconciliation/*"]
    assert Settings().s3_reports_prefix == "reports/reconciliation"


def test_reconcile_reaches_the_warehouse_as_the_consumer_does_and_pushes_to_the_gateway(rendered):
    consumer = container(rendered, "ConsumerTaskDefinition", "consumer")
    reconcile = container(rendered, "ReconcileTaskDefinition", "reconcile")
    assert reconcile["Image"] == consumer["Image"]
    assert reconcile["Secrets"] == consumer["Secrets"]  # the same DSN secret
    env, consumer_env = environment(reconcile), environment(consumer)
    for name in ("WAREHOUSE_DIALECT", "WAREHOUSE_SCHEMA", "WAREHOUSE_TABLE", "S3_BUCKET", "S3_RAW_PREFIX",
                 "DYNAMODB_TABLE"):
        assert env[name] == consumer_env[name], name
    assert env["S3_REPORTS_PREFIX"] == "reports/reconciliation"
    # The Pushgateway's Cloud Map name in the stack's namespace, on the port its task serves.
    namespace = rendered["OperationsNamespace"]["Properties"]["Name"]
    service = rendered["PushgatewayDiscovery"]["Properties"]["Name"]
    (port,) = container(rendered, "PushgatewayTaskDefinition", "pushgateway")["PortMappings"]
    assert env["RECONCILE_PUSHGATEWAY_URL"] == f"http://{service}.{namespace}:{port['ContainerPort']}"
    assert Settings.from_env({**env, "WAREHOUSE_DSN": "x"}).reconcile_pushgateway_url == (
        "http://pushgateway.retail-stream.internal:9091")
    # Its own role and log group, not the consumer's.
    spec = rendered["ReconcileTaskDefinition"]["Properties"]
    assert spec["TaskRoleArn"].endswith("role/retail-stream-ReconcileTaskRole")
    assert reconcile["LogConfiguration"]["Options"]["awslogs-group"] == "/ecs/retail-stream/reconcile"


def test_pushgateway_is_scraped_with_the_pushed_labels_and_reached_only_by_the_reconciliation(rendered):
    collector = container(rendered, "PushgatewayTaskDefinition", "metrics-collector")
    config = yaml.safe_load(environment(collector)["AOT_CONFIG_CONTENT"])
    (scrape,) = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert scrape["honor_labels"] is True  # job="retail_reconcile" as pushed, which the alerts select
    assert scrape["static_configs"] == [{"targets": ["127.0.0.1:9091"]}]
    assert config["exporters"]["prometheusremotewrite"]["endpoint"] == (
        "PrometheusWorkspace.PrometheusEndpointapi/v1/remote_write")
    service = rendered["PushgatewayService"]["Properties"]
    assert service["ServiceRegistries"] == [{"RegistryArn": "arn:aws:servicediscovery:eu-west-1:123456789012:"
                                                            "service/srv-0123456789abcdef"}]
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"] == [
        "retail-stream-PushgatewaySecurityGroup"]
    assert "SecurityGroupIngress" not in rendered["PushgatewaySecurityGroup"]["Properties"]
    ingress = [spec["Properties"] for spec in rendered.values() if spec["Type"] == "AWS::EC2::SecurityGroupIngress"
               and spec["Properties"]["GroupId"] == "retail-stream-PushgatewaySecurityGroup"]
    assert [(i["SourceSecurityGroupId"], i["FromPort"], i["ToPort"]) for i in ingress] == [
        ("retail-stream-OperationsSecurityGroup", 9091, 9091)]
    egress = rendered["OperationsSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert {(e["FromPort"], e.get("DestinationSecurityGroupId", e.get("CidrIp"))) for e in egress} == {
        (443, "0.0.0.0/0"), (5439, "10.0.32.0/20"), (9091, "retail-stream-PushgatewaySecurityGroup")}


def test_operations_task_holds_what_rebuild_and_redrive_call(template, rendered):
    role = role_statements(template, "OperationsTaskRole")
    bucket = "arn:aws:s3:::retail-raw-example"
    assert role["ReadRawZone"]["Resource"] == f"{bucket}/raw/transactions/*"
    assert (role["ReadAndMarkDeadLetters"]["Action"], role["ReadAndMarkDeadLetters"]["Resource"]) == (
        ["s3:GetObject", "s3:PutObject"], f"{bucket}/dead-letter/transactions/*")
    assert role["ListRawZoneAndDeadLetters"]["Condition"]["StringLike"]["s3:prefix"] == [
        "raw/transactions/*", "dead-letter/transactions/*"]
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/retail-transactions"
    assert (role["RebuildRows"]["Action"], role["RebuildRows"]["Resource"]) == (
        ["dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"], table)
    assert (role["RedriveIntoStream"]["Action"], role["RedriveIntoStream"]["Resource"]) == (
        "kinesis:PutRecords", "arn:aws:kinesis:eu-west-1:123456789012:stream/retail-transactions")
    # No write to the raw zone, and nothing the scheduled reconciliation holds alone (its reports).
    writes = {r for s in role.values() if "s3:PutObject" in as_list(s["Action"]) for r in as_list(s["Resource"])}
    assert writes == {f"{bucket}/dead-letter/transactions/*"}
    operations = container(rendered, "OperationsTaskDefinition", "operations")
    assert operations["Command"] == ["python", "-m", "rebuild", "--help"]  # without an override: harmless
    assert operations["Image"] == container(rendered, "ConsumerTaskDefinition", "consumer")["Image"]
    assert rendered["OperationsTaskDefinition"]["Properties"]["TaskRoleArn"].endswith(
        "role/retail-stream-OperationsTaskRole")


def test_every_module_a_task_runs_is_in_the_image(rendered):
    """`python -m X` in a task definition needs X copied into the image (the build context and the
    sources stage) and packaged by pyproject, or the task dies at its first line."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    context = (REPO / ".dockerignore").read_text().splitlines()
    packaged = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    modules = {
        definition["Command"][2].split(".")[0]
        for spec in rendered.values() if spec["Type"] == "AWS::ECS::TaskDefinition"
        for definition in spec["Properties"]["ContainerDefinitions"]
        if definition.get("Command", [])[:2] == ["python", "-m"]
    } | {"redrive"}  # the operations task runs it by a command override (deploy/README.md)
    assert modules >= {"reconcile", "rebuild"}
    for module in modules:
        assert f"COPY {module} {module}" in dockerfile, module
        assert f"!{module}/" in context, module
        assert f"{module}*" in packaged["include"], module
