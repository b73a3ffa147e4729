"""The CloudFormation template, checked without AWS: three linters (cfn-lint,
checkov, parliament), the IAM policies' content, and the template against
what the code expects (key design, settings, ports, job names, the AWS calls
the API makes)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore import xform_name
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.metrics import ApiMetrics
from api.server import GRACEFUL_SHUTDOWN_SECONDS
from consumer.sinks.dynamodb import CUSTOMER_INDEX
from local_stack.provision import CUSTOMER_INDEX_KEY, KEY_ATTRIBUTES, TABLE_KEY
from retail_stream.settings import ENVIRONMENT, Settings
from tests.deploy.template import (
    EXAMPLE_PARAMETERS,
    TEMPLATE,
    WITH_CERTIFICATE,
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
    "ApiExecutionRole": {
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer", "logs:CreateLogStream", "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
    },
    "ProducerTaskRole": {"kinesis:PutRecords", "kinesis:ListShards", "aps:RemoteWrite"},
    # What the code calls (test_api_role_grants_exactly_the_calls_the_code_makes) and the collector's write.
    "ApiTaskRole": {"kinesis:PutRecords", "dynamodb:Query", "aps:RemoteWrite"},
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
     ("KclInitialPosition", "kcl_initial_position"), ("ApiMaxBodyBytes", "api_max_body_bytes"),
     ("ApiMaxItems", "api_max_items")],
)
def test_parameter_defaults_are_the_settings_defaults(template, parameter, setting):
    assert template["Parameters"][parameter]["Default"] == getattr(Settings, setting)


@pytest.mark.parametrize(("task_definition", "name"), [("ConsumerTaskDefinition", "consumer"),
                                                      ("ProducerTaskDefinition", "producer"),
                                                      ("ApiTaskDefinition", "api")])
def test_service_environment_is_valid_settings(rendered, task_definition, name):
    definition = container(rendered, task_definition, name)
    env = environment(definition)
    assert set(env) <= set(ENVIRONMENT.values()), "a variable the services do not read"
    secrets = {s["Name"] for s in definition.get("Secrets", [])}
    settings = Settings.from_env({**env, **{s: "postgresql://example" for s in secrets}})
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
    port = env.get("METRICS_PORT") or env["API_PORT"]  # the API serves /metrics on its own port
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


def test_every_service_container_runs_as_the_images_non_root_user(rendered):
    services = {
        name: [d for d in spec["Properties"]["ContainerDefinitions"] if d["Name"] != "metrics-collector"]
        for name, spec in rendered.items() if spec["Type"] == "AWS::ECS::TaskDefinition"
    }
    assert {name: [d["User"] for d in found] for name, found in services.items()} == {
        "ConsumerTaskDefinition": ["10001"], "ProducerTaskDefinition": ["10001"],
        "ApiTaskDefinition": ["10001"],
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
    for alarm in alarms.values():
        props = alarm["Properties"]
        metric = (props["Namespace"], props["MetricName"])
        assert metric == ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")
        assert props["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "Stream"}}]
    actions = {alarm["Properties"]["AlarmActions"][0]["Ref"] for alarm in alarms.values()}
    assert actions == {"ConsumerScaleOutPolicy", "ConsumerScaleInPolicy"}


# --- the HTTP API ---------------------------------------------------------------------

API_CODE = [*sorted((REPO / "api").glob("*.py")), REPO / "producer" / "kinesis_writer.py"]
PRODUCER_CODE = sorted((REPO / "producer").glob("*.py"))


def aws_operations_called(paths: list[Path]) -> set[str]:
    """The boto3 operations the code calls: `<…client>.<operation>(…)`, and
    `self._call("<operation>", …)` (api/lookups.py goes through one helper)."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if "client" in owner_name.lower():
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
    assert services == {"kinesis", "dynamodb"}
    session = botocore.session.get_session()
    operations = {
        service: {xform_name(op): op for op in session.get_service_model(service).operation_names}
        for service in services
    }
    called = set()
    for operation in aws_operations_called(API_CODE):
        (action,) = [f"{service}:{ops[operation]}" for service, ops in operations.items() if operation in ops]
        called.add(action)  # IAM actions of Kinesis and DynamoDB are named as their API operations
    assert called == {"kinesis:PutRecords", "dynamodb:Query"}  # no DescribeStream, ListShards, GetItem, …
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


def test_api_role_reaches_the_stream_the_table_and_its_index_only(template):
    by_action = {}
    for statement in statements(identity_policies(template)["ApiTaskRole.serve"]):
        assert "Condition" not in statement
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, set()).update(as_list(statement["Resource"]))
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/retail-transactions"
    assert by_action == {
        "kinesis:PutRecords": {"arn:aws:kinesis:eu-west-1:123456789012:stream/retail-transactions"},
        "dynamodb:Query": {table, f"{table}/index/{CUSTOMER_INDEX}"},
        "aps:RemoteWrite": {
            "arn:aws:aps:eu-west-1:123456789012:workspace/ws-0123abcd-4567-89ef-0123456789ab"},
    }


def test_api_cursor_key_is_a_generated_secret_only_the_api_reads(template, rendered):
    secret = template["Resources"]["ApiCursorSecret"]["Properties"]
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    assert "SecretString" not in secret  # generated by Secrets Manager, never in the template
    api = container(rendered, "ApiTaskDefinition", "api")
    arn = Renderer(template).ref("ApiCursorSecret")
    assert api["Secrets"] == [{"Name": "API_CURSOR_SECRET", "ValueFrom": arn}]
    assert "API_CURSOR_SECRET" not in environment(api)
    readers = {
        name.split(".")[0]: set(as_list(s["Resource"]))
        for name, policy in identity_policies(template).items() for s in statements(policy)
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
    }
    assert readers == {"ApiExecutionRole": {arn},
                       "ConsumerExecutionRole": {EXAMPLE_PARAMETERS["WarehouseDsnSecretArn"]}}


def test_api_port_health_check_and_stop_timeout_fit_the_server(template, rendered):
    app = create_app(Settings(), None, None, metrics=ApiMetrics(CollectorRegistry()))
    assert {"/healthz", "/metrics", "/schema/openapi.json"} <= set(app.route_handler_method_map)
    api = container(rendered, "ApiTaskDefinition", "api")
    port = int(environment(api)["API_PORT"])
    assert port == Settings.api_port
    assert api["PortMappings"] == [{"ContainerPort": port, "Protocol": "tcp"}]
    assert f"http://127.0.0.1:{port}/healthz" in api["HealthCheck"]["Command"][-1]
    target_group = rendered["ApiTargetGroup"]["Properties"]
    checked = (target_group["Port"], target_group["HealthCheckPath"], target_group["TargetType"])
    assert checked == (port, "/healthz", "ip")
    assert target_group["Matcher"] == {"HttpCode": "200"}
    (balanced,) = rendered["ApiService"]["Properties"]["LoadBalancers"]
    assert balanced == {"ContainerName": "api", "ContainerPort": port,
                        "TargetGroupArn": "retail-stream-ApiTargetGroup"}
    # uvicorn's graceful shutdown, plus room to exit; Fargate allows 120 s.
    assert GRACEFUL_SHUTDOWN_SECONDS + 5 <= api["StopTimeout"] <= 120


def test_api_load_balancer_admits_the_cidr_and_the_tasks_admit_only_it(template):
    for parameters, ports in (({}, {80}), (WITH_CERTIFICATE, {80, 443})):
        renderer = Renderer(template, parameters)
        resources = {name: renderer.render(spec) for name, spec in template["Resources"].items()
                     if renderer.creates(name)}
        ingress = {name: spec["Properties"] for name, spec in resources.items()
                   if spec["Type"] == "AWS::EC2::SecurityGroupIngress"}
        balancer = resources["ApiLoadBalancerSecurityGroup"]["Properties"]
        balancer_rules = balancer["SecurityGroupIngress"] + [
            rule for rule in ingress.values()
            if rule["GroupId"] == "retail-stream-ApiLoadBalancerSecurityGroup"]
        assert {(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in balancer_rules} == {
            (port, port, "10.0.0.0/16") for port in ports}
        (egress,) = balancer["SecurityGroupEgress"]
        assert (egress["FromPort"], egress["ToPort"], egress["DestinationSecurityGroupId"]) == (
            8080, 8080, "retail-stream-ApiSecurityGroup")
        tasks = [rule for rule in ingress.values() if rule["GroupId"] == "retail-stream-ApiSecurityGroup"]
        assert [(r["FromPort"], r["ToPort"], r["SourceSecurityGroupId"]) for r in tasks] == [
            (8080, 8080, "retail-stream-ApiLoadBalancerSecurityGroup")]
        # No task group takes anything else: the consumer's and producer's none at all.
        for name, spec in resources.items():
            if spec["Type"] == "AWS::EC2::SecurityGroup" and name != "ApiLoadBalancerSecurityGroup":
                assert "SecurityGroupIngress" not in spec["Properties"], name
        service = resources["ApiService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert service["AssignPublicIp"] == "DISABLED"
        assert service["SecurityGroups"] == ["retail-stream-ApiSecurityGroup"]


def test_api_listener_serves_https_with_a_certificate_and_plain_http_without(template):
    resources = template["Resources"]
    forward = [{"Type": "forward", "TargetGroupArn": "retail-stream-ApiTargetGroup"}]
    plain = Renderer(template)
    http = plain.render(resources["ApiHttpListener"])["Properties"]
    assert (http["Port"], http["Protocol"], http["DefaultActions"]) == (80, "HTTP", forward)
    assert not plain.creates("ApiHttpsListener")
    metrics_rule = plain.render(resources["ApiMetricsNotPublic"])["Properties"]
    assert metrics_rule["ListenerArn"] == "retail-stream-ApiHttpListener"

    secure = Renderer(template, WITH_CERTIFICATE)
    assert secure.creates("ApiHttpsListener")
    https = secure.render(resources["ApiHttpsListener"])["Properties"]
    assert (https["Port"], https["Protocol"], https["DefaultActions"]) == (443, "HTTPS", forward)
    assert https["Certificates"] == [{"CertificateArn": WITH_CERTIFICATE["ApiCertificateArn"]}]
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
    http = secure.render(resources["ApiHttpListener"])["Properties"]
    assert (http["Port"], http["Protocol"]) == (80, "HTTP")  # the same port either way: updates never clash
    assert http["DefaultActions"] == [
        {"Type": "redirect",
         "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    metrics_rule = secure.render(resources["ApiMetricsNotPublic"])["Properties"]
    assert metrics_rule["ListenerArn"] == "retail-stream-ApiHttpsListener"
    # The service waits for the forwarding listener (through the rule, which names it).
    assert set(resources["ApiService"]["DependsOn"]) == {"ApiHttpListener", "ApiMetricsNotPublic"}


def test_plain_http_is_refused_for_an_internet_facing_load_balancer(template):
    rule = template["Rules"]["InternetFacingApiServesHttps"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiLoadBalancerScheme"}, "internet-facing"]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ApiCertificateArn"}, ""]}]}
    assert template["Parameters"]["ApiLoadBalancerScheme"]["Default"] == "internal"
    assert "Default" not in template["Parameters"]["ApiIngressCidr"]  # no open default


def test_metrics_are_not_served_through_the_load_balancer(rendered):
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


def test_api_url_output_follows_the_certificate_and_the_domain(template):
    url = template["Outputs"]["ApiUrl"]["Value"]
    assert Renderer(template).render(url) == "http://ApiLoadBalancer.DNSName"
    assert Renderer(template, WITH_CERTIFICATE).render(url) == "https://api.retail.example"
