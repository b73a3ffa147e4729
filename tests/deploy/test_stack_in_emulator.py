"""The template deployed into the emulator's CloudFormation: the stack comes
up, and every resource is there with what the services read from it.

moto (5.2) skips resource types it does not model, and then fails on any
reference to them, so the types of NOT_IN_MOTO are taken out and references
to them replaced by placeholders; everything else is created and checked.
moto also creates some supported types only in part (noted where it matters).
API Gateway v2 and Cognito are among the types left out, but moto has those
services' own APIs: the gateway and the user pool are made through them
instead, with the template's properties as rendered for the created stack
(botocore checks each name and type against the service's model).

The main stack is the default front door (API Gateway to an internal load
balancer over HTTPS, with a certificate from the emulator's ACM); a second
one is the load balancer on the internet, HTTPS only."""

from __future__ import annotations

import ast
import json
import re
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from moto.cloudformation.parsing import get_model_map

from consumer.sinks.dynamodb import CUSTOMER_INDEX
from local_stack.provision import CUSTOMER_INDEX_KEY, TABLE_KEY
from tests.deploy.template import Renderer, load

pytestmark = pytest.mark.integration

# Resource types moto's CloudFormation (get_model_map) has no model for, and why that is acceptable.
NOT_IN_MOTO = {
    "AWS::S3::BucketPolicy": "checked on the template (test_bucket_refuses_plain_http)",
    "AWS::ApplicationAutoScaling::ScalableTarget": "checked on the template (the scaling tests)",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "checked on the template (the scaling tests)",
    "AWS::CloudWatch::Alarm": "checked on the template (the consumer's scaling test)",
    "AWS::APS::Workspace": "checked on the template (the collectors' remote-write endpoint)",
    "AWS::SecretsManager::Secret": "checked on the template (the API's secrets test)",
    # moto has these services' APIs: test_gateway_and_user_pool_through_the_services_apis makes them.
    "AWS::ApiGatewayV2::Api": "made through moto's API Gateway v2 API",
    "AWS::ApiGatewayV2::Authorizer": "made through moto's API Gateway v2 API",
    "AWS::ApiGatewayV2::VpcLink": "made through moto's API Gateway v2 API",
    "AWS::ApiGatewayV2::Integration": "made through moto's API Gateway v2 API",
    "AWS::ApiGatewayV2::Route": "made through moto's API Gateway v2 API",
    "AWS::ApiGatewayV2::Stage": "made through moto's API Gateway v2 API",
    "AWS::Cognito::UserPool": "made through moto's Cognito user pools API",
    "AWS::Cognito::UserPoolResourceServer": "made through moto's Cognito user pools API",
    "AWS::Cognito::UserPoolDomain": "made through moto's Cognito user pools API",
    "AWS::Cognito::UserPoolClient": "made through moto's Cognito user pools API",
    "AWS::ServiceDiscovery::PrivateDnsNamespace": "checked on the template (the Pushgateway's address test)",
    "AWS::ServiceDiscovery::Service": "checked on the template (the Pushgateway's address test)",
}
STACK = "retail-deploy-smoke"
# Other names than the local stack's own, so nothing clashes.
PARAMETERS = {
    "StreamName": "retail-deploy-smoke",
    "ShardCount": "3",
    "TableName": "retail-deploy-smoke",
    "BucketName": "retail-deploy-smoke-raw",
    "KclApplicationName": "retail-deploy-smoke-consumer",
    "ImageTag": "smoke",
    "WarehouseCidr": "10.0.32.0/20",
    "ApiDomainName": "api.retail.example",  # the name on the certificate the gateway verifies
}


def without(template: dict, types: set[str]) -> dict:
    """`template` minus the resources of `types`; a Ref, GetAtt or Sub
    variable naming one of them becomes the string `removed:<name>`."""
    removed = {name for name, spec in template["Resources"].items() if spec["Type"] in types}

    def replace(node: Any) -> Any:
        if isinstance(node, list):
            return [replace(item) for item in node]
        if not isinstance(node, dict):
            return node
        if node.keys() == {"Ref"} and node["Ref"] in removed:
            return f"removed:{node['Ref']}"
        if node.keys() == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in removed:
            return f"removed:{'.'.join(node['Fn::GetAtt'])}"
        if node.keys() == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            pattern = r"\$\{((%s)(\.[A-Za-z]+)?)\}" % "|".join(map(re.escape, removed))
            return {"Fn::Sub": re.sub(pattern, r"removed:\1", node["Fn::Sub"])}
        return {key: replace(value) for key, value in node.items()}

    kept = {name: spec for name, spec in template["Resources"].items() if name not in removed}
    return {**replace({**template, "Resources": kept}), "Resources": replace(kept)}


def role_policy(iam, role: str, name: str) -> dict:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    # boto3 decodes AWS's document; moto keeps a stack's inline policy as the Python repr of it.
    return document if isinstance(document, dict) else ast.literal_eval(unquote(document))


def physical_ids(local_stack, stack: str = STACK) -> dict[str, str | None]:
    """The stack's resources: logical id to physical id (moto gives some types none)."""
    resources = aws(local_stack, "cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId")
            for r in resources if "LogicalResourceId" in r}


def aws(stack, service: str):
    env = stack.environment()
    return boto3.client(
        service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def create_stack(local_stack, name: str, parameters: dict, cidr: str, balancer_subnets: bool = False) -> dict:
    """Stack `name` in a new VPC (`cidr`, a /16) with two subnets for the tasks
    (and two more for the API's load balancer), and a certificate for
    ApiDomainName from the emulator's ACM (moto checks that it exists); its
    outputs by key."""
    ec2 = aws(local_stack, "ec2")
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    prefix = cidr.rsplit(".", 2)[0]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.{i}.0/24")["Subnet"]["SubnetId"]
               for i in range(1, 5 if balancer_subnets else 3)]
    secret = aws(local_stack, "secretsmanager").create_secret(
        Name=f"{name}/warehouse-dsn",
        SecretString="postgresql://retail@redshift.example:5439/retail",
    )["ARN"]
    certificate = aws(local_stack, "acm").request_certificate(DomainName=parameters["ApiDomainName"])
    parameters = {**parameters, "VpcId": vpc, "SubnetIds": ",".join(subnets[:2]),
                  "WarehouseDsnSecretArn": secret, "ApiCertificateArn": certificate["CertificateArn"]}
    if balancer_subnets:
        parameters["ApiLoadBalancerSubnetIds"] = ",".join(subnets[2:])
    cloudformation = aws(local_stack, "cloudformation")
    cloudformation.create_stack(
        StackName=name, TemplateBody=json.dumps(without(load(), NOT_IN_MOTO)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {
        "status": stack["StackStatus"], "secret": secret, "certificate": parameters["ApiCertificateArn"],
        "subnets": subnets[:2], "balancer_subnets": subnets[2:] if balancer_subnets else subnets[:2],
        **{output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])},
    }


@pytest.fixture(scope="module")
def deployed(local_stack) -> dict:
    """The stack, created once for the module; its outputs by key."""
    return create_stack(local_stack, STACK, PARAMETERS, "10.0.0.0/16")


# The other front door: the load balancer itself on the internet (HTTPS only), in subnets of its own.
PUBLIC_STACK = "retail-deploy-smoke-public"
PUBLIC_PARAMETERS = {
    **{key: value.replace("retail-deploy-smoke", PUBLIC_STACK) for key, value in PARAMETERS.items()},
    "ApiFrontDoor": "load-balancer",
    "ApiLoadBalancerScheme": "internet-facing",
    "ApiIngressCidr": "0.0.0.0/0",
    # And the KCL's other choices: enhanced fan-out under a consumer name of its own, PITR on its lease table.
    "KclRetrievalMode": "fanout",
    "KclConsumerName": "retail-efo",
    "KclLeaseTablePitr": "true",
}


@pytest.fixture(scope="module")
def deployed_public(local_stack) -> dict:
    return create_stack(local_stack, PUBLIC_STACK, PUBLIC_PARAMETERS, "10.1.0.0/16", balancer_subnets=True)


def test_the_types_left_out_are_exactly_those_moto_lacks():
    """Fails once moto models one of them: then deploy it and check it here too."""
    types = {spec["Type"] for spec in load()["Resources"].values()}
    assert {kind for kind in types if kind not in get_model_map()} == set(NOT_IN_MOTO)


def test_stack_is_created_with_every_other_resource(local_stack, deployed):
    assert deployed["status"] == "CREATE_COMPLETE"
    resources = aws(local_stack, "cloudformation").describe_stack_resources(StackName=STACK)["StackResources"]
    template = load()
    renderer = Renderer(template, {**PARAMETERS, "ApiCertificateArn": deployed["certificate"]})
    assert renderer.broken_rules() == []  # moto does not evaluate Rules: the test does
    kept = {name for name, spec in template["Resources"].items() if spec["Type"] not in NOT_IN_MOTO}
    expected = {name for name in kept if renderer.creates(name)}
    # No ApiIngressCidr: the gateway's link only; WarehouseLoadMode batch: no grouped-load policy;
    # KclRetrievalMode polling: no fan-out policy; KclLeaseTablePitr false: no PITR policy.
    assert kept - expected == {"ApiLoadBalancerHttpsIngress", "ConsumerGroupedLoadPolicy", "ConsumerFanOutPolicy",
                               "ConsumerLeaseTablePitrPolicy"}
    listed = [resource.get("LogicalResourceId") for resource in resources]
    # moto lists each resource whose Condition is false as an entry without an id.
    assert listed.count(None) == len(kept - expected)
    assert set(listed) - {None} == expected


def test_stream_has_the_shard_count(local_stack, deployed):
    summary = aws(local_stack, "kinesis").describe_stream_summary(StreamName="retail-deploy-smoke")
    summary = summary["StreamDescriptionSummary"]
    assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("ACTIVE", 3)
    assert deployed["StreamArn"] == summary["StreamARN"]
    assert deployed["StreamName"] == "retail-deploy-smoke"


def test_table_has_the_key_design(local_stack, deployed):
    table = aws(local_stack, "dynamodb").describe_table(TableName=deployed["TableName"])["Table"]
    assert table["KeySchema"] == TABLE_KEY
    (index,) = table["GlobalSecondaryIndexes"]
    assert (index["IndexName"], index["KeySchema"]) == (CUSTOMER_INDEX, CUSTOMER_INDEX_KEY)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # moto drops SSESpecification and PointInTimeRecoverySpecification: the template test covers them.


def test_bucket_is_encrypted(local_stack, deployed):
    # moto's CloudFormation applies a bucket's encryption and tags only: versioning,
    # lifecycle and the public access block are checked on the template (test_template_lint).
    assert deployed["BucketName"] == "retail-deploy-smoke-raw"
    encryption = aws(local_stack, "s3").get_bucket_encryption(Bucket=deployed["BucketName"])
    (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_cluster_runs_a_consumer_a_producer_and_an_api_service(local_stack, deployed):
    ecs = aws(local_stack, "ecs")
    (cluster,) = ecs.describe_clusters(clusters=[deployed["ClusterName"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    names = [deployed["ConsumerServiceName"], deployed["ProducerServiceName"], deployed["ApiServiceName"]]
    services = ecs.describe_services(cluster=deployed["ClusterName"], services=names)["services"]
    families = {s["serviceName"]: s["taskDefinition"].split("/")[-1].split(":")[0] for s in services}
    assert families == {deployed["ConsumerServiceName"]: f"{STACK}-consumer",
                        deployed["ProducerServiceName"]: f"{STACK}-producer",
                        deployed["ApiServiceName"]: f"{STACK}-api"}


def test_consumer_task_reads_its_settings_from_the_stack(local_stack, deployed):
    ecs, iam = aws(local_stack, "ecs"), aws(local_stack, "iam")
    definition = ecs.describe_task_definition(taskDefinition=f"{STACK}-consumer")["taskDefinition"]
    consumer = next(c for c in definition["containerDefinitions"] if c["name"] == "consumer")
    env = {item["name"]: item["value"] for item in consumer["environment"]}
    copy_role = iam.get_role(RoleName=deployed["RedshiftCopyRoleArn"].split("/")[-1])["Role"]
    assert env["KINESIS_STREAM_NAME"] == "retail-deploy-smoke"
    assert env["DYNAMODB_TABLE"] == "retail-deploy-smoke"
    assert env["S3_BUCKET"] == "retail-deploy-smoke-raw"
    assert env["KCL_APPLICATION_NAME"] == "retail-deploy-smoke-consumer"
    assert env["WAREHOUSE_DIALECT"] == "redshift"
    assert env["REDSHIFT_IAM_ROLE"] == copy_role["Arn"]
    (trust,) = copy_role["AssumeRolePolicyDocument"]["Statement"]
    external_id = trust["Condition"]["StringLike"]["sts:ExternalId"]
    assert external_id == "arn:aws:redshift:us-east-1:123456789012:dbuser:*/*"  # this account's users
    assert consumer["secrets"] == [{"name": "WAREHOUSE_DSN", "valueFrom": deployed["secret"]}]
    assert consumer["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/retail-stream/consumer:smoke"
    assert consumer["stopTimeout"] == 120
    assert "9102/readyz" in consumer["healthCheck"]["command"][-1]
    collector = next(c for c in definition["containerDefinitions"] if c["name"] == "metrics-collector")
    assert "job_name: retail-consumer" in collector["environment"][0]["value"]


def test_roles_point_at_the_created_resources(local_stack, deployed):
    """The policies name the ARNs AWS reports for the stream, table and bucket."""
    iam = aws(local_stack, "iam")
    table = aws(local_stack, "dynamodb").describe_table(TableName=deployed["TableName"])["Table"]
    table_arn = table["TableArn"]
    resources = physical_ids(local_stack)
    policy = role_policy(iam, resources["ConsumerTaskRole"], "consume")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadStream"]["Resource"] == deployed["StreamArn"]
    assert by_sid["WriteRows"]["Resource"] == table_arn
    assert by_sid["WriteRawZoneAndDeadLetters"]["Resource"] == [
        "arn:aws:s3:::retail-deploy-smoke-raw/raw/transactions/*",
        "arn:aws:s3:::retail-deploy-smoke-raw/dead-letter/transactions/*",
    ]
    assert by_sid["KclLeaseTable"]["Resource"][0].endswith(":table/retail-deploy-smoke-consumer")
    producer = role_policy(iam, resources["ProducerTaskRole"], "produce")
    assert producer["Statement"][0]["Resource"] == deployed["StreamArn"]
    api = {s["Sid"]: s for s in role_policy(iam, resources["ApiTaskRole"], "serve")["Statement"]}
    assert api["WriteStream"]["Resource"] == deployed["StreamArn"]
    assert api["QueryTransactions"]["Resource"] == [table_arn, f"{table_arn}/index/{CUSTOMER_INDEX}"]
    assert api["ReadApiKeys"]["Resource"] == "removed:ApiKeysSecret"  # moto has no secret type (above)
    execution = role_policy(iam, resources["ConsumerExecutionRole"], "pull-log-secret")
    secret_statement = next(s for s in execution["Statement"] if s["Sid"] == "ReadWarehouseDsn")
    assert secret_statement["Resource"] == deployed["secret"]


def test_api_task_reads_its_settings_from_the_stack(local_stack, deployed):
    ecs = aws(local_stack, "ecs")
    definition = ecs.describe_task_definition(taskDefinition=f"{STACK}-api")["taskDefinition"]
    api = next(c for c in definition["containerDefinitions"] if c["name"] == "api")
    env = {item["name"]: item["value"] for item in api["environment"]}
    assert env["KINESIS_STREAM_NAME"] == "retail-deploy-smoke"
    assert env["DYNAMODB_TABLE"] == "retail-deploy-smoke"
    assert (env["API_PORT"], env["API_TLS"]) == ("8080", "self-signed")
    assert (env["API_METRICS_PORT"], env["METRICS_HOST"]) == ("9103", "127.0.0.1")
    # The secrets and the user pool are left out (moto has no model for them): their references
    # are the placeholders; test_gateway_and_user_pool_through_the_services_apis has the real ones.
    assert api["secrets"] == [{"name": "API_CURSOR_SECRET", "valueFrom": "removed:ApiCursorSecret"}]
    assert env["API_KEYS_SECRET_ID"] == "removed:ApiKeysSecret"
    assert env["API_JWT_ISSUER"] == "https://removed:ApiUserPool.ProviderURL"
    assert (env["API_JWT_AUDIENCE"], env["API_JWT_SCOPE_PREFIX"]) == ("removed:ApiAppClient", "retail-api/")
    assert api["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/retail-stream/api:smoke"
    assert (api["user"], api["readonlyRootFilesystem"], api["stopTimeout"]) == ("10001", True, 30)
    assert [m["containerPort"] for m in api["portMappings"]] == [8080]
    assert "https://127.0.0.1:8080/healthz" in api["healthCheck"]["command"][-1]
    collector = next(c for c in definition["containerDefinitions"] if c["name"] == "metrics-collector")
    assert "job_name: retail-api" in collector["environment"][0]["value"]
    assert '127.0.0.1:9103' in collector["environment"][0]["value"]
    # Every container of every task: a non-root user, no capability.
    for family in ("api", "consumer", "producer"):
        containers = ecs.describe_task_definition(taskDefinition=f"{STACK}-{family}")["taskDefinition"][
            "containerDefinitions"]
        for c in containers:
            hardened = (c["user"], c["linuxParameters"]["capabilities"])
            assert hardened == ("10001", {"drop": ["ALL"]}), (family, c["name"])


def api_balancer(elbv2, deployed: dict) -> tuple[dict, dict]:
    """The API's load balancer and its HTTPS listener, once both front doors'
    common checks pass: its subnets, HTTPS on 443 with the certificate (TLS
    1.2+), port 80 redirecting to it."""
    (balancer,) = [b for b in elbv2.describe_load_balancers()["LoadBalancers"]
                   if b["DNSName"] == deployed["ApiLoadBalancerDnsName"]]
    zones = balancer["AvailabilityZones"]
    assert sorted(zone["SubnetId"] for zone in zones) == sorted(deployed["balancer_subnets"])
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    listeners = {listener["Port"]: listener for listener in listeners}
    assert sorted(listeners) == [80, 443]
    https, http = listeners[443], listeners[80]
    assert (https["Protocol"], https["SslPolicy"]) == ("HTTPS", "ELBSecurityPolicy-TLS13-1-2-2021-06")
    assert [c["CertificateArn"] for c in https["Certificates"]] == [deployed["certificate"]]
    (redirect,) = http["DefaultActions"]
    assert (redirect["Type"], redirect["RedirectConfig"]["Protocol"]) == ("redirect", "HTTPS")
    return balancer, https


def test_api_is_behind_an_internal_load_balancer_only_the_gateway_reaches(local_stack, deployed):
    elbv2 = aws(local_stack, "elbv2")
    balancer, https = api_balancer(elbv2, deployed)
    assert deployed["ApiUrl"] == "removed:ApiGateway.ApiEndpoint"  # the gateway's, made below
    assert (balancer["Type"], balancer["Scheme"]) == ("application", "internal")
    (forward,) = https["DefaultActions"]
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[forward["TargetGroupArn"]])["TargetGroups"]
    checked = (group["Protocol"], group["Port"], group["TargetType"], group["HealthCheckProtocol"],
               group["HealthCheckPath"])
    assert checked == ("HTTPS", 8080, "ip", "HTTPS", "/healthz")  # encrypted to the tasks too
    rules = elbv2.describe_rules(ListenerArn=https["ListenerArn"])["Rules"]
    (metrics_rule,) = [rule for rule in rules if not rule["IsDefault"]]
    assert metrics_rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/metrics*"]
    assert metrics_rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    # moto's ECS service leaves out LoadBalancers and NetworkConfiguration: test_template_lint checks them.

    # Only the VPC link's interfaces reach the load balancer (HTTPS); only the load balancer the tasks.
    ec2, ids = aws(local_stack, "ec2"), physical_ids(local_stack)
    (balancer_sg,) = balancer["SecurityGroups"]
    assert balancer_sg == ids["ApiLoadBalancerSecurityGroup"]
    link_sg, task_sg = ids["ApiVpcLinkSecurityGroup"], ids["ApiSecurityGroup"]
    groups = ec2.describe_security_groups(GroupIds=[balancer_sg, task_sg, link_sg])["SecurityGroups"]
    groups = {group["GroupId"]: group for group in groups}
    # (moto applies a group's ingress rules only; the egress rules are checked on the template.)
    (from_link,) = groups[balancer_sg]["IpPermissions"]
    assert (from_link["FromPort"], from_link["UserIdGroupPairs"][0]["GroupId"]) == (443, link_sg)
    assert from_link["IpRanges"] == []
    (from_balancer,) = groups[task_sg]["IpPermissions"]
    assert (from_balancer["FromPort"], from_balancer["UserIdGroupPairs"][0]["GroupId"]) == (8080, balancer_sg)
    assert groups[link_sg]["IpPermissions"] == []


def gateway_and_user_pool(local_stack, deployed) -> dict[str, Any]:
    """Makes the left-out API Gateway and Cognito resources through moto's own
    APIs, in dependency order, each with its properties rendered against the
    created stack (its subnets, groups, listener, log group) and what was made
    before it; the answers by logical id."""
    template = load()
    region = local_stack.environment()["AWS_REGION"]
    created = {name: physical for name, physical in physical_ids(local_stack).items() if physical}
    values: dict[str, Any] = {**PARAMETERS, "AWS::Region": region, "SubnetIds": deployed["subnets"],
                              "ApiCertificateArn": deployed["certificate"], **created}
    cognito, gateway = aws(local_stack, "cognito-idp"), aws(local_stack, "apigatewayv2")
    made: dict[str, Any] = {}

    def make(name: str, call, ref, rename: dict[str, str] | None = None) -> None:
        """`ref(answer, properties)`: what a Ref to the resource gives."""
        renderer = Renderer(template, values)
        assert renderer.creates(name), name
        properties = renderer.render(template["Resources"][name]["Properties"])
        for cfn, api in (rename or {}).items():
            properties[api] = properties.pop(cfn)
        made[name] = call(**properties)
        values[name] = ref(made[name], properties)

    make("ApiUserPool", cognito.create_user_pool, lambda r, _: r["UserPool"]["Id"],
         {"UserPoolName": "PoolName"})  # the API's name for it
    # As CloudFormation's GetAtt gives it (moto's answer has no ProviderURL).
    values["ApiUserPool.ProviderURL"] = f"cognito-idp.{region}.amazonaws.com/{values['ApiUserPool']}"
    make("ApiResourceServer", cognito.create_resource_server, lambda r, _: r["ResourceServer"]["Identifier"])
    make("ApiUserPoolDomain", cognito.create_user_pool_domain, lambda _, p: p["Domain"])
    make("ApiAppClient", cognito.create_user_pool_client, lambda r, _: r["UserPoolClient"]["ClientId"])
    make("ApiGateway", gateway.create_api, lambda r, _: r["ApiId"])
    make("ApiGatewayAuthorizer", gateway.create_authorizer, lambda r, _: r["AuthorizerId"])
    make("ApiVpcLink", gateway.create_vpc_link, lambda r, _: r["VpcLinkId"])
    make("ApiGatewayIntegration", gateway.create_integration, lambda r, _: r["IntegrationId"])
    for name, spec in template["Resources"].items():
        if spec["Type"] == "AWS::ApiGatewayV2::Route":
            make(name, gateway.create_route, lambda r, _: r["RouteId"])
    make("ApiGatewayStage", gateway.create_stage, lambda r, _: r["StageName"])
    left_out = {name for name, spec in template["Resources"].items()
                if spec["Type"].startswith(("AWS::ApiGatewayV2::", "AWS::Cognito::"))}
    assert set(made) == left_out  # every one of them made
    return made


def test_gateway_and_user_pool_through_the_services_apis(local_stack, deployed):
    made = gateway_and_user_pool(local_stack, deployed)
    cognito, gateway = aws(local_stack, "cognito-idp"), aws(local_stack, "apigatewayv2")
    pool = made["ApiUserPool"]["UserPool"]["Id"]
    client_id = made["ApiAppClient"]["UserPoolClient"]["ClientId"]
    client = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"]
    assert client["AllowedOAuthFlows"] == ["client_credentials"] and client["ClientSecret"]
    assert sorted(client["AllowedOAuthScopes"]) == ["retail-api/ingest", "retail-api/read"]
    server = cognito.describe_resource_server(UserPoolId=pool, Identifier="retail-api")["ResourceServer"]
    assert sorted(s["ScopeName"] for s in server["Scopes"]) == ["ingest", "read"]

    api = made["ApiGateway"]["ApiId"]
    # (moto has no GetAuthorizers: the one made is asked for by its id.)
    authorizer = gateway.get_authorizer(ApiId=api, AuthorizerId=made["ApiGatewayAuthorizer"]["AuthorizerId"])
    region = local_stack.environment()["AWS_REGION"]
    assert authorizer["JwtConfiguration"] == {
        "Issuer": f"https://cognito-idp.{region}.amazonaws.com/{pool}", "Audience": [client["ClientId"]]}
    ids = physical_ids(local_stack)
    link = gateway.get_vpc_link(VpcLinkId=made["ApiVpcLink"]["VpcLinkId"])
    assert (sorted(link["SubnetIds"]), link["SecurityGroupIds"]) == (
        sorted(deployed["subnets"]), [ids["ApiVpcLinkSecurityGroup"]])
    (integration,) = gateway.get_integrations(ApiId=api)["Items"]
    assert (integration["ConnectionType"], integration["ConnectionId"]) == ("VPC_LINK", link["VpcLinkId"])
    assert integration["IntegrationUri"] == ids["ApiHttpsListener"]  # the created listener's ARN
    assert integration["TlsConfig"] == {"ServerNameToVerify": "api.retail.example"}
    routes = {r["RouteKey"]: r for r in gateway.get_routes(ApiId=api)["Items"]}
    permissions = {key: (route["AuthorizationType"], route.get("AuthorizationScopes") or [])
                   for key, route in routes.items()}
    assert permissions == {
        "POST /transactions": ("JWT", ["retail-api/ingest"]),
        "GET /customers/{customer_id}/transactions": ("JWT", ["retail-api/read"]),
        "GET /invoices/{invoice_no}": ("JWT", ["retail-api/read"]),
        "GET /schema/openapi.json": ("JWT", []),
        "GET /healthz": ("NONE", []),
    }
    assert {r["Target"] for r in routes.values()} == {f"integrations/{integration['IntegrationId']}"}
    assert {r.get("AuthorizerId") for key, r in routes.items() if key != "GET /healthz"} == {
        authorizer["AuthorizerId"]}
    (stage,) = gateway.get_stages(ApiId=api)["Items"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 200
    assert stage["AccessLogSettings"]["DestinationArn"].endswith(
        f":log-group:{ids['ApiGatewayLogGroup']}")
    assert ids["ApiGatewayLogGroup"] == "/apigateway/retail-deploy-smoke/api"  # created by the stack


def test_public_load_balancer_serves_https_and_redirects_http(local_stack, deployed_public):
    deployed = deployed_public
    assert deployed["status"] == "CREATE_COMPLETE"
    created = set(physical_ids(local_stack, PUBLIC_STACK))
    assert {"ApiHttpsListener", "ApiLoadBalancerHttpsIngress"} <= created
    gateway_only = {"ApiVpcLinkSecurityGroup", "ApiLoadBalancerIngressFromGateway", "ApiGatewayLogGroup"}
    assert not gateway_only & created
    assert deployed["ApiUrl"] == "https://api.retail.example"
    elbv2 = aws(local_stack, "elbv2")
    balancer, https = api_balancer(elbv2, deployed)
    assert balancer["Scheme"] == "internet-facing"
    assert https["DefaultActions"][0]["Type"] == "forward"
    rules = elbv2.describe_rules(ListenerArn=https["ListenerArn"])["Rules"]
    paths = [rule["Conditions"][0]["PathPatternConfig"]["Values"] for rule in rules if not rule["IsDefault"]]
    assert paths == [["/metrics*"]]
    ec2 = aws(local_stack, "ec2")
    (group,) = ec2.describe_security_groups(GroupIds=balancer["SecurityGroups"])["SecurityGroups"]
    assert sorted((p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in group["IpPermissions"]) == [
        (80, "0.0.0.0/0"), (443, "0.0.0.0/0")]


def test_reconcile_is_scheduled_hourly_and_daily_on_the_cluster(local_stack, deployed):
    events, ecs = aws(local_stack, "events"), aws(local_stack, "ecs")
    ids = physical_ids(local_stack)
    definition = ecs.describe_task_definition(taskDefinition=f"{STACK}-reconcile")["taskDefinition"]
    assert definition["taskDefinitionArn"] == deployed["ReconcileTaskDefinitionArn"]
    cluster = ecs.describe_clusters(clusters=[deployed["ClusterName"]])["clusters"][0]["clusterArn"]
    role = aws(local_stack, "iam").get_role(RoleName=ids["ReconcileScheduleRole"])["Role"]
    schedules = {}
    for rule in ("ReconcileHourly", "ReconcileDaily"):
        described = events.describe_rule(Name=ids[rule])
        (target,) = events.list_targets_by_rule(Rule=ids[rule])["Targets"]
        assert (target["Arn"], target["RoleArn"]) == (cluster, role["Arn"])
        assert target["EcsParameters"]["TaskDefinitionArn"] == definition["taskDefinitionArn"]
        assert target["EcsParameters"]["LaunchType"] == "FARGATE"
        schedules[rule] = (described["ScheduleExpression"], described["State"], target.get("Input"))
    assert schedules["ReconcileHourly"] == ("cron(10 * * * ? *)", "ENABLED", None)
    expression, state, given = schedules["ReconcileDaily"]
    assert (expression, state) == ("cron(40 0 * * ? *)", "ENABLED")
    assert json.loads(given)["containerOverrides"][0]["command"][-2:] == ["--days", "2"]
    # The schedule's role runs that family on that cluster, passing the reconciliation's two roles.
    policy = {s["Sid"]: s for s in role_policy(aws(local_stack, "iam"), ids["ReconcileScheduleRole"],
                                                "run-reconcile")["Statement"]}
    assert policy["RunReconcile"]["Condition"]["ArnEquals"]["ecs:cluster"] == cluster
    family_arn = definition["taskDefinitionArn"].rsplit(":", 1)[0]
    assert policy["RunReconcile"]["Resource"] == f"{family_arn}:*"


def test_reconcile_task_reads_the_stack_and_writes_only_its_reports(local_stack, deployed):
    ecs, iam = aws(local_stack, "ecs"), aws(local_stack, "iam")
    definition = ecs.describe_task_definition(taskDefinition=f"{STACK}-reconcile")["taskDefinition"]
    (reconcile,) = definition["containerDefinitions"]
    env = {item["name"]: item["value"] for item in reconcile["environment"]}
    assert (env["S3_BUCKET"], env["DYNAMODB_TABLE"]) == ("retail-deploy-smoke-raw", "retail-deploy-smoke")
    pushgateway = f"http://pushgateway.{STACK}.internal:9091"
    assert env["RECONCILE_PUSHGATEWAY_URL"] == deployed["PushgatewayUrl"] == pushgateway
    assert reconcile["secrets"] == [{"name": "WAREHOUSE_DSN", "valueFrom": deployed["secret"]}]
    assert reconcile["command"] == ["python", "-m", "reconcile", "--hours", "1"]
    ids = physical_ids(local_stack)  # (moto keeps no taskRoleArn: the template test checks the role)
    policy = {s["Sid"]: s for s in role_policy(iam, ids["ReconcileTaskRole"], "reconcile")["Statement"]}
    table_arn = aws(local_stack, "dynamodb").describe_table(TableName=deployed["TableName"])["Table"]["TableArn"]
    assert policy["LookUpRows"]["Resource"] == table_arn
    assert policy["ReadRawZone"]["Resource"] == "arn:aws:s3:::retail-deploy-smoke-raw/raw/transactions/*"
    assert policy["WriteReports"]["Resource"] == "arn:aws:s3:::retail-deploy-smoke-raw/reports/reconciliation/*"


def test_pushgateway_runs_as_a_service_and_the_operations_task_is_registered(local_stack, deployed):
    ecs, iam = aws(local_stack, "ecs"), aws(local_stack, "iam")
    ids = physical_ids(local_stack)
    (service,) = ecs.describe_services(cluster=deployed["ClusterName"],
                                       services=[ids["PushgatewayService"]])["services"]
    assert service["taskDefinition"].split("/")[-1].split(":")[0] == f"{STACK}-pushgateway"
    operations = ecs.describe_task_definition(taskDefinition=f"{STACK}-operations")["taskDefinition"]
    assert operations["taskDefinitionArn"] == deployed["OperationsTaskDefinitionArn"]
    env = {item["name"]: item["value"] for item in operations["containerDefinitions"][0]["environment"]}
    assert (env["KINESIS_STREAM_NAME"], env["S3_DEAD_LETTER_PREFIX"]) == ("retail-deploy-smoke",
                                                                          "dead-letter/transactions")
    policy = {s["Sid"]: s for s in role_policy(iam, ids["OperationsTaskRole"], "rebuild-redrive")["Statement"]}
    assert policy["RedriveIntoStream"]["Resource"] == deployed["StreamArn"]
    assert deployed["OperationsSecurityGroupId"] == ids["OperationsSecurityGroup"]


def test_fan_out_and_lease_table_pitr_stack_grants_their_calls(local_stack, deployed_public):
    """The second stack chose enhanced fan-out (consumer retail-efo) and PITR on the lease table."""
    iam, ids = aws(local_stack, "iam"), physical_ids(local_stack, PUBLIC_STACK)
    assert {"ConsumerFanOutPolicy", "ConsumerLeaseTablePitrPolicy"} <= set(ids)
    role = ids["ConsumerTaskRole"]
    fan_out = {s["Sid"]: s for s in role_policy(iam, role, "enhanced-fan-out")["Statement"]}
    assert fan_out["RegisterConsumer"]["Resource"] == deployed_public["StreamArn"]
    assert fan_out["SubscribeAsConsumer"]["Resource"] == f"{deployed_public['StreamArn']}/consumer/retail-efo:*"
    (pitr,) = role_policy(iam, role, "lease-table-pitr")["Statement"]
    assert pitr["Resource"].endswith(f":table/{PUBLIC_STACK}-consumer")
    definition = aws(local_stack, "ecs").describe_task_definition(taskDefinition=f"{PUBLIC_STACK}-consumer")
    consumer = next(c for c in definition["taskDefinition"]["containerDefinitions"] if c["name"] == "consumer")
    env = {item["name"]: item["value"] for item in consumer["environment"]}
    assert (env["KCL_RETRIEVAL_MODE"], env["KCL_CONSUMER_NAME"], env["KCL_LEASE_TABLE_PITR"]) == (
        "fanout", "retail-efo", "true")
