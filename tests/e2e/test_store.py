"""The deploy store against the moto server: made by the first `cluster.up`, found by config, and
the history of clusters made before it (their stack's own `DeployHistoryTable`) kept: read beside
the store's until `cluster.up` copies it in.
"""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import PROJECT, assert_one_line_error, inv_env, run_inv
from tests.support import store

pytestmark = pytest.mark.e2e

TEMPLATE = "infrastructure/fargate_cluster.yml"
LEGACY_RESOURCE = """
  DeployHistory:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}

"""
LEGACY_OUTPUT = """  DeployHistoryTable:
    Value: !Ref DeployHistory
"""


def legacy_template(studio) -> str:
    """Our cluster template as it was before the store: with its own history table and output."""
    body = (studio / TEMPLATE).read_text()
    head, tail = body.split("\nOutputs:\n", 1)
    return head.rstrip() + "\n" + LEGACY_RESOURCE + "Outputs:\n" + LEGACY_OUTPUT + tail


def legacy_record(at: str, action: str, commit: str) -> dict:
    item = {"project": PROJECT, "cluster": "stage", "action": action, "commit": commit, "digest": "sha256:" + "1" * 64,
            "outcome": "succeeded", "by": "arn:aws:iam::123456789012:user/old-tool", "at": at}
    return {"pk": {"S": f"app#{PROJECT}"}, "sk": {"S": f"at#{at}"}, **{k: {"S": v} for k, v in item.items()}}


def make_legacy_cluster(aws, studio) -> str:
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="stage", TemplateBody=legacy_template(studio),
                     Tags=[{"Key": "mvp:cluster", "Value": "stage"}, {"Key": "mvp:managed-by", "Value": "mvp-tasks"}])
    stack = cfn.describe_stacks(StackName="stage")["Stacks"][0]
    table = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["DeployHistoryTable"]
    dynamodb = aws.client("dynamodb")
    dynamodb.put_item(TableName=table, Item=legacy_record("2026-01-01T00:00:00.000000+00:00", "deploy", "a" * 40))
    dynamodb.put_item(TableName=table, Item=legacy_record("2026-02-01T00:00:00.000000+00:00", "promote", "b" * 40))
    dynamodb.put_item(TableName=table, Item={"pk": {"S": f"lock#{PROJECT}"}, "sk": {"S": "lock"},
                                             "owner": {"S": "an old run"}, "token": {"S": "t"},
                                             "expires_at": {"N": "1"}})
    return table


def history(studio, aws) -> list[dict]:
    result = run_inv(studio, "app.history", PROJECT, "--cluster", "stage", "--json", env=inv_env(aws.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_cluster_made_before_the_store_keeps_its_history_read_beside_then_copied_in(aws, studio):
    env = inv_env(aws.endpoint)
    legacy = make_legacy_cluster(aws, studio)

    # No store yet: one line saying how to make it.
    refused = run_inv(studio, "app.history", PROJECT, "--cluster", "stage", env=env)
    assert_one_line_error(refused, "there is no deploy store in this account and region yet",
                          "inv cluster.up stage")

    # A store made for another cluster: stage's old records are read beside the store's.
    cfn, dynamodb = aws.client("cloudformation"), aws.client("dynamodb")
    table = store.create_store(cfn)
    dynamodb.put_item(TableName=table, Item={
        "pk": {"S": store.app_pk("stage", PROJECT)}, "sk": {"S": "at#2026-03-01T00:00:00.000000+00:00"},
        "project": {"S": PROJECT}, "cluster": {"S": "stage"}, "action": {"S": "rollback"}, "commit": {"S": "a" * 40},
        "outcome": {"S": "succeeded"}, "at": {"S": "2026-03-01T00:00:00.000000+00:00"}})
    assert [(e["action"], e["cluster"]) for e in history(studio, aws)] == [
        ("rollback", "stage"), ("promote", "stage"), ("deploy", "stage")]

    # cluster.up: the plan says the history is copied, before the stack update that drops the table.
    up = run_inv(studio, "cluster.up", "stage", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    plan = up.stdout
    assert f"~ copy the deploy history of stage from {legacy} into the deploy store" in plan, plan
    assert plan.index("~ copy the deploy history") < plan.index("~ stack stage"), plan
    assert "copied 2 history record(s) of stage" in plan, plan
    assert "deploy store:" not in plan  # the store was there already

    items = store.history_items(dynamodb, cfn, "stage", PROJECT)
    assert [(i["action"], i["commit"][:1]) for i in items] == [("deploy", "a"), ("promote", "b"), ("rollback", "a")]
    assert store.lock_item(dynamodb, cfn, "stage", PROJECT) is None  # an old run's lock is not carried over
    # The update drops the old table from the stack (retained in AWS). The emulator keeps listing
    # the old output after the update, so the copy is marked in the store and not read twice.
    assert "DeployHistory" in plan[plan.index("~ stack stage"):], plan
    assert [e["action"] for e in history(studio, aws)] == ["rollback", "promote", "deploy"]  # no twice-read records

    again = run_inv(studio, "cluster.up", "stage", env=env)
    assert again.returncode == 0 and "copy the deploy history" not in again.stdout, again.stdout


def test_a_table_named_in_config_is_used_as_it_is_or_made_by_cluster_up(aws, studio):
    config = yaml.safe_load((studio / "invoke.yaml").read_text())
    config["mvp"]["state"] = {"table": "studio-deploys"}
    (studio / "invoke.yaml").write_text(yaml.safe_dump(config))
    env = inv_env(aws.endpoint)

    up = run_inv(studio, "cluster.up", "stage", env=env)

    assert up.returncode == 0, up.stdout + up.stderr
    dynamodb = aws.client("dynamodb")
    assert "studio-deploys" in dynamodb.list_tables()["TableNames"]
    stack = aws.client("cloudformation").describe_stacks(StackName="mvp-deploy-state")["Stacks"][0]
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Table"] == "studio-deploys"

    # A table the studio made itself (no store stack): used as it is, nothing created.
    aws.reset()
    dynamodb.create_table(TableName="studio-deploys", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    up = run_inv(studio, "cluster.up", "stage", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "deploy store" not in up.stdout
    stacks = {s["StackName"] for s in aws.client("cloudformation").describe_stacks()["Stacks"]}
    assert "mvp-deploy-state" not in stacks
    assert history(studio, aws) == []


@pytest.mark.parametrize("key, value, fragment", [
    ("table", "x", "config mvp.state.table"),
    ("lease", 1, "config mvp.state.lease"),
    ("stack", "9-lives", "config mvp.state.stack"),
])
def test_bad_store_settings_are_one_line(aws, studio, key, value, fragment):
    config = yaml.safe_load((studio / "invoke.yaml").read_text())
    config["mvp"]["state"] = {key: value}
    (studio / "invoke.yaml").write_text(yaml.safe_dump(config))
    result = run_inv(studio, "cluster.up", "stage", env=inv_env(aws.endpoint))
    assert_one_line_error(result, fragment)
    assert aws.client("cloudformation").describe_stacks()["Stacks"] == []
