"""`inv cluster.*` as a subprocess against a real moto server over HTTP; state read back with boto3."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error, inv_env, run_inv

pytestmark = pytest.mark.e2e


def test_cluster_up_creates_stack_and_ecs_cluster_then_is_idempotent(aws, studio):
    env = inv_env(aws.endpoint)
    first = run_inv(studio, "cluster.up", "--name", "stage", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed: stage" in first.stdout
    assert "recap: ok=0 changed=1 skipped=0 failed=0" in first.stdout

    cfn = aws.client("cloudformation")
    stack = cfn.describe_stacks(StackName="stage")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {t["Key"]: t["Value"] for t in stack["Tags"]}["mvp:cluster"] == "stage"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["ClusterName"] == "stage"
    exports = {e["Name"] for e in cfn.list_exports()["Exports"]}
    assert {"stage-ClusterName", "stage-VpcId", "stage-PublicSubnets", "stage-TaskSecurityGroup"} <= exports
    clusters = aws.client("ecs").describe_clusters(clusters=["stage"])["clusters"]
    assert [c["status"] for c in clusters] == ["ACTIVE"]
    assert stack.get("EnableTerminationProtection") is not True

    second = run_inv(studio, "cluster.up", "--name", "stage", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ok: stage" in second.stdout
    assert "recap: ok=1 changed=0" in second.stdout
    again = cfn.describe_stacks(StackName="stage")["Stacks"][0]
    assert again.get("LastUpdatedTime") == stack.get("LastUpdatedTime")
    # Nothing new means no mutating call at all, not even a preview change set.
    assert cfn.list_change_sets(StackName="stage")["Summaries"] == []


def test_default_cluster_comes_from_config(aws, studio):
    result = run_inv(studio, "cluster.up", env=inv_env(aws.endpoint))
    assert result.returncode == 0, result.stderr
    names = [s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]]
    assert sorted(names) == ["mvp-deploy-state", "stage"]  # the first cluster makes the deploy store too


def test_check_mode_creates_nothing(aws, studio):
    result = run_inv(studio, "cluster.up", "--name", "stage", "--check", env=inv_env(aws.endpoint))
    assert result.returncode == 0, result.stderr
    assert "would" in result.stdout
    assert "+ AWS::ECS::Cluster" in result.stdout
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []
    assert aws.client("ecs").list_clusters()["clusterArns"] == []


def test_check_mode_on_changed_template_shows_change_and_changes_nothing(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    cfn = aws.client("cloudformation")
    before = cfn.describe_stacks(StackName="stage")["Stacks"][0]
    (studio / "extra.yaml").write_text(
        "mvp:\n  clusters:\n    stage:\n      parameters:\n        ContainerInsights: enabled\n"
    )
    result = run_inv(studio, "-f", "extra.yaml", "cluster.up", "--name", "stage", "--check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would" in result.stdout
    after = cfn.describe_stacks(StackName="stage")["Stacks"][0]
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")
    params = {p["ParameterKey"]: p["ParameterValue"] for p in after["Parameters"]}
    assert params["ContainerInsights"] == "disabled"
    assert cfn.list_change_sets(StackName="stage")["Summaries"] == []


def test_update_through_change_set_applies_config_parameter(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    (studio / "extra.yaml").write_text(
        "mvp:\n  clusters:\n    stage:\n      parameters:\n        ContainerInsights: enabled\n"
    )
    result = run_inv(studio, "-f", "extra.yaml", "cluster.up", "--name", "stage", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed: stage" in result.stdout
    stack = aws.client("cloudformation").describe_stacks(StackName="stage")["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["ContainerInsights"] == "enabled"
    exports = {e["Name"] for e in aws.client("cloudformation").list_exports()["Exports"]}
    assert "stage-ClusterName" in exports


def test_protected_cluster_needs_yes_without_terminal_and_gets_termination_protection(aws, studio):
    env = inv_env(aws.endpoint)
    refused = run_inv(studio, "cluster.up", "--name", "prod", env=env)
    assert_one_line_error(refused, "--yes")
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []

    done = run_inv(studio, "cluster.up", "--name", "prod", "--yes", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    stack = aws.client("cloudformation").describe_stacks(StackName="prod")["Stacks"][0]
    assert stack["EnableTerminationProtection"] is True


def test_cluster_down_without_yes_and_without_terminal_refuses(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    result = run_inv(studio, "cluster.down", "--name", "stage", env=env)
    assert_one_line_error(result, "--yes", "stage")
    stack = aws.client("cloudformation").describe_stacks(StackName="stage")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def test_cluster_down_refuses_while_app_stacks_exist(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName="museum-adventure-stage",
        TemplateBody='{"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}}',
    )
    result = run_inv(studio, "cluster.down", "--name", "stage", "--yes", env=env)
    assert_one_line_error(result, "museum-adventure-stage", "app.destroy")
    assert cfn.describe_stacks(StackName="stage")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_cluster_down_refuses_while_a_tagged_stack_of_an_unconfigured_app_exists(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName="old-app-stage",
        TemplateBody='{"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}}',
        Tags=[{"Key": "mvp:cluster", "Value": "stage"}],
    )
    result = run_inv(studio, "cluster.down", "--name", "stage", "--yes", env=env)
    assert_one_line_error(result, "old-app-stage")
    assert cfn.describe_stacks(StackName="stage")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_cluster_down_check_deletes_nothing(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    result = run_inv(studio, "cluster.down", "--name", "stage", "--check", env=env)
    assert result.returncode == 0, result.stderr
    assert "would change: stage  delete stack stage (check: nothing was changed)" in result.stdout
    assert "changed: stage" not in result.stdout.replace("would change: stage", "")
    assert aws.client("cloudformation").describe_stacks(StackName="stage")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_cluster_down_of_missing_stack_is_ok(aws, studio):
    result = run_inv(studio, "cluster.down", "--name", "stage", "--yes", env=inv_env(aws.endpoint))
    assert result.returncode == 0, result.stderr
    assert "ok: stage" in result.stdout


def test_cluster_status_json_lists_every_cluster_with_outputs(aws, studio):
    env = inv_env(aws.endpoint)
    assert run_inv(studio, "cluster.up", "--name", "stage", env=env).returncode == 0
    result = run_inv(studio, "cluster.status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = {c["cluster"]: c for c in json.loads(result.stdout)}
    assert data["stage"]["status"] == "CREATE_COMPLETE"
    assert data["stage"]["outputs"]["ClusterName"] == "stage"
    assert data["prod"]["status"] == "NOT_DEPLOYED"
    assert data["prod"]["protected"] is True


# --- bad input: one clear line, non-zero exit, no traceback, nothing changed -------------------


def test_unknown_cluster_name(aws, studio):
    result = run_inv(studio, "cluster.up", "--name", "qa", env=inv_env(aws.endpoint))
    assert_one_line_error(result, "unknown cluster 'qa'", "stage")


@pytest.mark.parametrize("name", ["Stage_1", "a/b", "../x", "st age", "x;rm -rf /"])
def test_invalid_cluster_name(aws, studio, name):
    result = run_inv(studio, "cluster.up", "--name", name, env=inv_env(aws.endpoint))
    assert_one_line_error(result, "not a valid cluster name")


def test_missing_template_file(aws, studio):
    env = inv_env(aws.endpoint, INVOKE_MVP_CLUSTERS_STAGE_TEMPLATE="infrastructure/nope.yml")
    result = run_inv(studio, "cluster.up", "--name", "stage", env=env)
    assert_one_line_error(result, "infrastructure/nope.yml", "not found", "mvp.clusters.stage.template")
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []


def test_yaml_error_in_template_names_its_line(aws, studio):
    bad = studio / "infrastructure" / "broken.yml"
    bad.write_text("Resources:\n  Vpc:\n    Type: AWS::EC2::VPC\n    Properties: [unclosed\n")
    env = inv_env(aws.endpoint, INVOKE_MVP_CLUSTERS_STAGE_TEMPLATE="infrastructure/broken.yml")
    result = run_inv(studio, "cluster.up", "--name", "stage", env=env)
    assert_one_line_error(result, "infrastructure/broken.yml", "line ", "YAML error")
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []


def test_unreachable_endpoint(studio):
    env = inv_env("http://127.0.0.1:9")
    result = run_inv(studio, "cluster.up", "--name", "stage", env=env)
    assert_one_line_error(result, "cannot reach", "127.0.0.1:9")


def test_bad_config_value_from_environment(aws, studio):
    env = inv_env(aws.endpoint, INVOKE_MVP_REGION="mars-1")
    result = run_inv(studio, "cluster.status", env=env)
    assert_one_line_error(result, "mvp.region", "mars-1")


def test_unknown_config_key_in_file(aws, studio):
    (studio / "extra.yaml").write_text("mvp:\n  clusters:\n    stage:\n      protectd: true\n")
    result = run_inv(studio, "-f", "extra.yaml", "cluster.status", env=inv_env(aws.endpoint))
    assert_one_line_error(result, "mvp.clusters.stage.protectd", "unknown key", "protected")
