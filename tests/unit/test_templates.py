"""Static checks of the CloudFormation templates in the repo.

Every `infrastructure/*.yml` and every `projects/*/deploy.yml` must pass cfn-lint
with no error; the shared cluster template must also keep the outputs and exports
that app stacks and the tool rely on (`<cluster>-VpcId`, `<cluster>-PublicSubnets`, ...)
and a task security group reachable only from the load balancers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cfn_flip import load_yaml
from cfnlint.api import ManualArgs, lint_file

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_TEMPLATE = REPO_ROOT / "infrastructure" / "fargate_cluster.yml"

TEMPLATES = sorted(
    [*REPO_ROOT.glob("infrastructure/*.yml"), *REPO_ROOT.glob("projects/*/deploy.yml")]
)

# Outputs of the cluster stack, each exported as "<stack name>-<output name>".
REQUIRED_CLUSTER_OUTPUTS = (
    "ClusterName",
    "ClusterArn",
    "VpcId",
    "PublicSubnets",
    "PublicSubnet1",
    "PublicSubnet2",
    "LoadBalancerSecurityGroup",
    "TaskSecurityGroup",
)

# Keys of a security group rule that open it to a source other than a security group.
NON_GROUP_SOURCES = ("CidrIp", "CidrIpv6", "SourcePrefixListId", "SourceSecurityGroupName")


def lint(path: Path) -> tuple[list[str], list[str]]:
    """cfn-lint `path`; return (errors, warnings) as printable lines."""
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    warnings = [str(m) for m in matches if m.rule.id.startswith("W")]
    return errors, warnings


def refers_to(value: object, logical_id: str) -> bool:
    """True when `value` is `!Ref logical_id` or `!GetAtt logical_id.GroupId`."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    if "Ref" in value:
        return value["Ref"] == logical_id
    get_att = value.get("Fn::GetAtt")
    if isinstance(get_att, str):
        get_att = get_att.split(".", 1)
    return list(get_att or []) == [logical_id, "GroupId"]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_yaml(CLUSTER_TEMPLATE.read_text(encoding="utf-8"))


def test_templates_are_found():
    assert CLUSTER_TEMPLATE in TEMPLATES, f"{CLUSTER_TEMPLATE} is missing"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_template_passes_cfn_lint(path: Path):
    errors, _ = lint(path)
    assert not errors, "cfn-lint errors:\n" + "\n".join(errors)


def test_cluster_template_has_no_cfn_lint_warnings():
    _, warnings = lint(CLUSTER_TEMPLATE)
    assert not warnings, "cfn-lint warnings:\n" + "\n".join(warnings)


def test_lint_helper_reports_errors(tmp_path: Path):
    # Guards the checks above against a cfn-lint API that silently finds nothing.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Resources:\n"
        "  Bucket:\n"
        "    Type: AWS::S3::Bucket\n"
        "    Properties:\n"
        "      NotAProperty: 1\n",
        encoding="utf-8",
    )
    errors, _ = lint(broken)
    assert any("E3002" in e for e in errors), errors


@pytest.mark.parametrize("name", REQUIRED_CLUSTER_OUTPUTS)
def test_cluster_output_is_described_and_exported(cluster: dict, name: str):
    outputs = cluster.get("Outputs") or {}
    assert name in outputs, f"output {name} is missing"
    output = outputs[name]
    assert output.get("Description"), f"output {name} has no Description"
    assert "Value" in output, f"output {name} has no Value"
    assert output.get("Export", {}).get("Name") == {"Fn::Sub": "${AWS::StackName}-" + name}


def test_public_subnets_output_joins_both_subnets(cluster: dict):
    value = cluster["Outputs"]["PublicSubnets"]["Value"]
    assert value == {"Fn::Join": [",", [{"Ref": "PublicSubnet1"}, {"Ref": "PublicSubnet2"}]]}


def test_cluster_is_named_after_the_stack(cluster: dict):
    resource = cluster["Resources"]["Cluster"]
    assert resource["Type"] == "AWS::ECS::Cluster"
    assert resource["Properties"]["ClusterName"] == {"Ref": "AWS::StackName"}


def test_public_subnets_are_in_two_availability_zones(cluster: dict):
    zones = []
    for logical_id in ("PublicSubnet1", "PublicSubnet2"):
        resource = cluster["Resources"][logical_id]
        assert resource["Type"] == "AWS::EC2::Subnet"
        assert resource["Properties"]["MapPublicIpOnLaunch"] is True
        zones.append(resource["Properties"]["AvailabilityZone"])
    assert zones == [
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
    ]


def test_default_route_waits_for_the_gateway_attachment(cluster: dict):
    routes = [r for r in cluster["Resources"].values() if r["Type"] == "AWS::EC2::Route"]
    assert routes, "no route"
    for route in routes:
        depends_on = route.get("DependsOn")
        depends_on = [depends_on] if isinstance(depends_on, str) else list(depends_on or [])
        assert "InternetGatewayAttachment" in depends_on
    assert any(r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0" for r in routes)


def test_load_balancer_security_group_opens_http_and_https(cluster: dict):
    group = cluster["Resources"]["LoadBalancerSecurityGroup"]
    rules = group["Properties"]["SecurityGroupIngress"]
    open_ports = {
        (rule["FromPort"], rule["ToPort"])
        for rule in rules
        if rule.get("IpProtocol") == "tcp" and rule.get("CidrIp") == "0.0.0.0/0"
    }
    assert open_ports == {(80, 80), (443, 443)}


def test_task_security_group_admits_only_the_load_balancer_group(cluster: dict):
    resources = cluster["Resources"]
    task_group = resources["TaskSecurityGroup"]
    assert task_group["Type"] == "AWS::EC2::SecurityGroup"

    rules = list(task_group["Properties"].get("SecurityGroupIngress") or [])
    rules += [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::EC2::SecurityGroupIngress"
        and refers_to(resource["Properties"].get("GroupId"), "TaskSecurityGroup")
    ]
    assert rules, "TaskSecurityGroup has no ingress rule"
    for rule in rules:
        opened_to = [key for key in NON_GROUP_SOURCES if key in rule]
        assert not opened_to, f"TaskSecurityGroup ingress opened to {opened_to}: {dict(rule)}"
        assert refers_to(rule.get("SourceSecurityGroupId"), "LoadBalancerSecurityGroup"), dict(rule)
        assert rule.get("IpProtocol") == "tcp", dict(rule)


# --- the example app template's hardening ------------------------------------------------------

APP_TEMPLATE = REPO_ROOT / "projects" / "museum-adventure" / "deploy.yml"


@pytest.fixture(scope="module")
def app() -> dict:
    return load_yaml(APP_TEMPLATE.read_text())


def balancer_attributes(app: dict) -> dict:
    attributes = app["Resources"]["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    return {a["Key"]: a["Value"] for a in attributes}


def test_the_load_balancer_drops_invalid_header_fields(app: dict):
    assert balancer_attributes(app)["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_access_logs_are_on_exactly_when_a_bucket_is_given(app: dict):
    attributes = balancer_attributes(app)
    assert app["Parameters"]["AccessLogsBucket"]["Default"] == ""
    assert app["Conditions"]["HasAccessLogs"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AccessLogsBucket"}, ""]}]}
    assert attributes["access_logs.s3.enabled"] == {"Fn::If": ["HasAccessLogs", "true", "false"]}
    assert attributes["access_logs.s3.bucket"] == {"Ref": "AccessLogsBucket"}


def test_the_execution_role_reads_only_its_own_apps_secrets(app: dict):
    role = app["Resources"]["ExecutionRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [{
        "Effect": "Allow", "Action": "ssm:GetParameters",
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
                                "/mvp/${EnvironmentName}/${ProjectName}/*"}}]


def test_container_insights_is_a_cluster_parameter(cluster: dict):
    assert cluster["Parameters"]["ContainerInsights"]["AllowedValues"] == ["enabled", "disabled"] or \
        set(cluster["Parameters"]["ContainerInsights"]["AllowedValues"]) >= {"enabled", "disabled"}
