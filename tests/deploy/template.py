"""The CloudFormation template as data: loaded with its short-form tags, and
rendered with example values where a linter needs plain JSON (IAM policies);
its Rules checked against a set of parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "retail-stream.yaml"

# Stand-ins for what only a real deployment knows.
ACCOUNT = "123456789012"
REGION = "eu-west-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "retail-stream",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/retail-stream/"
                    "51af3dc0-da77-11e4-872e-1234567db123",
}
NO_VALUE = object()  # what `Ref: AWS::NoValue` renders to: the property is dropped
# The default front door (API Gateway to an internal load balancer over HTTPS) needs a certificate.
EXAMPLE_PARAMETERS = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "WarehouseCidr": "10.0.32.0/20",
    "ImageTag": "0.1.0",
    "WarehouseDsnSecretArn": (
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:retail-stream/warehouse-dsn-AbC123"
    ),
    "BucketName": "retail-raw-example",
    "ApiCertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789",
    "ApiDomainName": "api.retail.example",
}
# The other front doors, passed on top (Renderer(template, LOAD_BALANCER)).
LOAD_BALANCER = {  # the load balancer itself, internal, plain HTTP: callers inside the network
    "ApiFrontDoor": "load-balancer",
    "ApiCertificateArn": "",
    "ApiDomainName": "",
    "ApiIngressCidr": "10.0.0.0/16",
}
PUBLIC_LOAD_BALANCER = {  # the load balancer on the internet, HTTPS only
    "ApiFrontDoor": "load-balancer",
    "ApiLoadBalancerScheme": "internet-facing",
    "ApiIngressCidr": "0.0.0.0/0",
}
OWN_ISSUER = {  # tokens from another OIDC provider instead of the stack's Cognito pool
    "ApiJwtIssuer": "https://login.example.com/tenant",
    "ApiJwtAudience": "retail-api",
    "ApiJwtJwksUrl": "https://login.example.com/tenant/keys",
    "ApiJwtScopePrefix": "",
}


def load() -> dict:
    """The template, with `!Ref`-style tags turned into their long form."""
    template, problems = decode(str(TEMPLATE))
    if problems:
        raise ValueError(f"{TEMPLATE} does not parse: {problems}")
    return template


class Renderer:
    """Evaluates the intrinsic functions the template uses (Ref, GetAtt, Sub,
    Join, Select, Split, If; Equals, Not, And, Or in conditions and rules)
    against example parameters; physical names and ARNs are made up the way
    AWS would make them, so ARN-aware linters see realistic values. A value
    given for a resource's name (or `<name>.<attribute>`) stands for it."""

    def __init__(self, template: dict, parameters: dict | None = None) -> None:
        self.template = template
        values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
        values.update(EXAMPLE_PARAMETERS)
        values.update(parameters or {})
        self.values = {**values, **PSEUDO, "AWS::NoValue": NO_VALUE}

    def render(self, node: Any) -> Any:
        if isinstance(node, list):
            return [value for value in map(self.render, node) if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*arg)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Join":
                return arg[0].join(self.render(arg[1]))
            if key == "Fn::Select":
                return self.render(arg[1])[int(arg[0])]
            if key == "Fn::Split":
                return self.render(arg[1]).split(arg[0])
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.render(when_true if self.condition(name) else when_false)
        rendered = {key: self.render(value) for key, value in node.items()}
        return {key: value for key, value in rendered.items() if value is not NO_VALUE}

    def condition(self, name: str) -> bool:
        return self.holds(self.template["Conditions"][name])

    def holds(self, node: dict) -> bool:
        (key, arg), = node.items()
        if key == "Fn::Not":
            return not self.holds(arg[0])
        if key == "Fn::And":
            return all(map(self.holds, arg))
        if key == "Fn::Or":
            return any(map(self.holds, arg))
        if key == "Fn::Equals":
            left, right = self.render(arg)
            return left == right
        if key == "Condition":
            return self.condition(arg)
        raise ValueError(f"condition function {key} is not rendered")

    def broken_rules(self) -> list[str]:
        """The AssertDescription of every Rules assertion these parameters fail
        (CloudFormation refuses the stack before creating anything)."""
        return [
            assertion["AssertDescription"]
            for rule in self.template.get("Rules", {}).values()
            if "RuleCondition" not in rule or self.holds(rule["RuleCondition"])
            for assertion in rule["Assertions"] if not self.holds(assertion["Assert"])
        ]

    def creates(self, name: str) -> bool:
        """Whether the stack would create resource `name` (its Condition holds)."""
        condition = self.template["Resources"][name].get("Condition")
        return condition is None or self.condition(condition)

    def ref(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        spec = self.template["Resources"][name]
        return {
            "AWS::Kinesis::Stream": lambda: self.values["StreamName"],
            "AWS::DynamoDB::Table": lambda: self.values["TableName"],
            "AWS::S3::Bucket": lambda: self.values["BucketName"],
            "AWS::Logs::LogGroup": lambda: self.render(spec["Properties"]["LogGroupName"]),
            # Ref of a secret is its ARN (with the random 6-character suffix).
            "AWS::SecretsManager::Secret": lambda: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
            f"{self.values['AWS::StackName']}-{name}-Zx9Yw8",
        }.get(spec["Type"], lambda: f"{self.values['AWS::StackName']}-{name}")()

    def get_att(self, name: str, attribute: str) -> str:
        if f"{name}.{attribute}" in self.values:
            return self.values[f"{name}.{attribute}"]
        if attribute != "Arn":
            return f"{name}.{attribute}"
        kind = self.template["Resources"][name]["Type"]
        arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
        return {
            "AWS::Kinesis::Stream": lambda: arn.format("kinesis", f"stream/{self.ref(name)}"),
            "AWS::DynamoDB::Table": lambda: arn.format("dynamodb", f"table/{self.ref(name)}"),
            "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{self.ref(name)}",
            "AWS::Logs::LogGroup": lambda: arn.format("logs", f"log-group:{self.ref(name)}:*"),
            "AWS::APS::Workspace": lambda: arn.format("aps", "workspace/ws-0123abcd-4567-89ef-0123456789ab"),
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{ACCOUNT}:role/{self.ref(name)}",
            "AWS::ECS::Cluster": lambda: arn.format("ecs", f"cluster/{self.ref(name)}"),
            "AWS::ServiceDiscovery::Service": lambda: arn.format("servicediscovery",
                                                                  "service/srv-0123456789abcdef"),
        }[kind]()

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.render(arg[1]))

        def value(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)


def resources_of_type(template: dict, kind: str) -> dict[str, dict]:
    return {name: spec for name, spec in template["Resources"].items() if spec["Type"] == kind}


def identity_policies(template: dict) -> dict[str, dict]:
    """Every permissions policy granted to a role, as `<role>.<policy>` (a
    role's own) or `<policy resource>.<policy>` (an AWS::IAM::Policy attached
    to roles): rendered policy document."""
    renderer = Renderer(template)
    inline = {
        f"{role}.{policy['PolicyName']}": renderer.render(policy["PolicyDocument"])
        for role, spec in resources_of_type(template, "AWS::IAM::Role").items()
        for policy in spec["Properties"].get("Policies", [])
    }
    attached = {
        f"{name}.{spec['Properties']['PolicyName']}": renderer.render(spec["Properties"]["PolicyDocument"])
        for name, spec in resources_of_type(template, "AWS::IAM::Policy").items()
    }
    return {**inline, **attached}


def statements(policy: dict) -> list[dict]:
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
