"""The policy checker of tests/support/iam.py, fed the shipped policies (docs/deploy-role.md) and
deliberately bad ones: it must refuse a role that can grant itself more (a wildcard PassRole, an
unconditioned AttachRolePolicy, deletes on everything) and requests on resources or under
conditions the policy does not allow, not only actions it does not name."""

from __future__ import annotations

import copy

import pytest

from tests.support import iam
from tests.support.iam import Call

ROLE = f"arn:aws:iam::{iam.ACCOUNT}:role/mvp-cloudformation"
EXECUTION_ROLE = f"arn:aws:iam::{iam.ACCOUNT}:role/museum-adventure-stage-ExecutionRole-1A2B3C"
BOUNDARY = f"arn:aws:iam::{iam.ACCOUNT}:policy/mvp-app-boundary"
DEPLOY = iam.load(iam.POLICY)
CFN = iam.load(iam.CFN_POLICY)


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*", **condition) -> dict:
    statement = {"Sid": "Bad", "Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


# --- problems: the shipped policies have none, bad ones are refused -------------------------------


@pytest.mark.parametrize("path", [iam.POLICY, iam.CFN_POLICY, iam.BOUNDARY_POLICY], ids=lambda p: p.name)
def test_the_shipped_policies_let_no_role_grant_itself_more(path):
    assert iam.problems(iam.load(path)) == []


@pytest.mark.parametrize("statement, problem", [
    (allow("iam:PassRole", StringEquals={"iam:PassedToService": "cloudformation.amazonaws.com"}),
     "Bad: allows iam:PassRole of any role (*)"),
    (allow("iam:PassRole", "arn:aws:iam::*:role/*", StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"}),
     "Bad: allows iam:PassRole of any role (arn:aws:iam::*:role/*)"),
    (allow("iam:PassRole", "arn:aws:iam::*:role/mvp-cloudformation"),
     "Bad: allows iam:PassRole without a condition on iam:PassedToService"),
    (allow("iam:PassRole", "arn:aws:iam::*:role/mvp-cloudformation",
           StringNotEquals={"iam:PassedToService": "lambda.amazonaws.com"}),
     "Bad: allows iam:PassRole without a condition on iam:PassedToService"),
    (allow("iam:PassRole", "arn:aws:iam::*:role/mvp-cloudformation",
           StringEqualsIfExists={"iam:PassedToService": "cloudformation.amazonaws.com"}),
     "Bad: allows iam:PassRole without a condition on iam:PassedToService"),
    (allow("iam:AttachRolePolicy", "arn:aws:iam::*:role/*-ExecutionRole-*"),
     "Bad: allows iam:AttachRolePolicy without a condition on iam:PolicyARN or iam:PermissionsBoundary"),
    (allow("iam:Attach*", "arn:aws:iam::*:role/*-ExecutionRole-*", StringEquals={"aws:RequestedRegion": "us-east-1"}),
     "Bad: allows iam:AttachRolePolicy without a condition on iam:PolicyARN or iam:PermissionsBoundary"),
    (allow("iam:CreateRole", "arn:aws:iam::*:role/*-ExecutionRole-*"),
     "Bad: allows iam:CreateRole without a condition on iam:PermissionsBoundary"),
    (allow("iam:PutRolePolicy", "arn:aws:iam::*:role/*-ExecutionRole-*"),
     "Bad: allows iam:PutRolePolicy without a condition on iam:PermissionsBoundary"),
    (allow("iam:DeleteRolePermissionsBoundary", "arn:aws:iam::*:role/*-ExecutionRole-*"),
     "Bad: allows iam:DeleteRolePermissionsBoundary"),
    (allow("iam:CreatePolicyVersion", "arn:aws:iam::*:policy/mvp-app-boundary"),
     "Bad: allows iam:CreatePolicyVersion"),
    (allow("iam:UpdateAssumeRolePolicy", "arn:aws:iam::*:role/*-ExecutionRole-*"),
     "Bad: allows iam:UpdateAssumeRolePolicy"),
    (allow("dynamodb:DeleteTable"), "Bad: allows dynamodb:DeleteTable on every resource (*) without a condition"),
    (allow(["ec2:CreateVpc", "ec2:DeleteVpc"]), "Bad: allows ec2:DeleteVpc on every resource (*) without a condition"),
    (allow("elasticloadbalancing:*"),
     "Bad: allows elasticloadbalancing:* on every resource (*) without a condition"),
    (allow("cloudformation:DeleteStack"),
     "Bad: allows cloudformation:DeleteStack on every resource (*) without a condition"),
    ({"Sid": "Bad", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
     "Bad: NotAction is not allowed (this check cannot reason about it)"),
])
def test_a_policy_that_lets_a_role_grant_itself_more_is_refused(statement, problem):
    assert problem in iam.problems(policy(statement))


def test_full_wildcards_are_refused_for_every_reason():
    found = iam.problems(policy(allow("*")))
    assert "Bad: allows iam:CreatePolicyVersion" in found
    assert "Bad: allows iam:PassRole of any role (*)" in found
    assert any(line.startswith("Bad: allows * on every resource") for line in found)
    assert "Bad: allows iam:CreateUser" in iam.problems(policy(allow("iam:*")))


def test_the_deploy_role_policy_before_issue_18_is_refused():
    # Its last statement: IAM on the apps' execution roles, for CloudFormation, on the deploy role.
    old = policy(allow(["iam:AttachRolePolicy", "iam:CreateRole", "iam:PassRole", "iam:PutRolePolicy"],
                       "arn:aws:iam::*:role/*-ExecutionRole-*"),
                 allow(["ec2:DeleteVpc", "logs:DeleteLogGroup", "dynamodb:DeleteTable"]))
    found = iam.problems(old)
    assert {"Bad: allows iam:AttachRolePolicy without a condition on iam:PolicyARN or iam:PermissionsBoundary",
            "Bad: allows iam:CreateRole without a condition on iam:PermissionsBoundary",
            "Bad: allows iam:PutRolePolicy without a condition on iam:PermissionsBoundary",
            "Bad: allows iam:PassRole without a condition on iam:PassedToService"} <= set(found)
    assert any("DeleteVpc" in line for line in found)


# --- requests: resources and conditions, not only action names ------------------------------------


def create_stack(stack: str = "stage", role: str | None = ROLE, action: str = "CreateStack") -> Call:
    params = {"StackName": stack, **({"RoleARN": role} if role else {})}
    return Call(f"cloudformation:{action}", params)


@pytest.mark.parametrize("action", ["CreateStack", "CreateChangeSet", "DeleteStack"])
def test_a_stack_change_through_the_cloudformation_role_is_allowed(action):
    for stack in ("stage", "prod", "museum-adventure-stage", "museum-adventure-prod", "mvp-deploy-state"):
        assert iam.refusals([create_stack(stack, action=action)], DEPLOY) == []


@pytest.mark.parametrize("action", ["CreateStack", "CreateChangeSet", "DeleteStack"])
def test_a_stack_change_without_the_role_or_with_another_is_refused(action):
    # Without a role CloudFormation would act with the deploy role's own permissions.
    assert iam.denied([create_stack(role=None, action=action)], DEPLOY) == [f"cloudformation:{action}"]
    admin = f"arn:aws:iam::{iam.ACCOUNT}:role/Admin"
    assert iam.refusals([create_stack(role=admin, action=action)], DEPLOY) == [
        f"cloudformation:{action}: cloudformation:{action} on arn:aws:cloudformation:us-east-1:{iam.ACCOUNT}:"
        f"stack/stage/id (cloudformation:RoleArn={admin})",
        f"cloudformation:{action}: iam:PassRole on {admin} (iam:PassedToService=cloudformation.amazonaws.com)",
    ]


def test_a_stack_that_is_not_the_studios_is_refused():
    assert iam.denied([create_stack("payroll", action="DeleteStack")], DEPLOY) == ["cloudformation:DeleteStack"]
    assert iam.denied([Call("cloudformation:DescribeStackEvents", {"StackName": "payroll"})], DEPLOY) \
        == ["cloudformation:DescribeStackEvents"]
    # Naming no stack, a read needs `*`: allowed for DescribeStacks and ListStacks only.
    assert iam.refusals([Call("cloudformation:DescribeStacks"), Call("cloudformation:ListStacks")], DEPLOY) == []


def test_a_wildcard_pass_role_would_let_the_checker_pass_so_problems_refuses_it():
    # With a wildcard PassRole, handing CloudFormation an admin role passes the request check...
    bad = copy.deepcopy(DEPLOY)
    for statement in bad["Statement"]:
        if statement["Action"] == "iam:PassRole":
            statement["Resource"] = "*"
    admin = f"arn:aws:iam::{iam.ACCOUNT}:role/Admin"
    assert "iam:PassRole on" not in " ".join(iam.refusals([create_stack(role=admin)], bad))
    # ...and the policy check refuses the policy itself.
    assert iam.problems(bad) == ["ToolHandsCloudFormationItsRoleAndNoOther: allows iam:PassRole of any role (*)"]


def test_the_store_table_parameters_and_log_groups_are_checked_by_name():
    assert iam.refusals([Call("dynamodb:PutItem", {"TableName": "mvp-deploy-state-Table-1"}),
                         Call("ssm:PutParameter", {"Name": "/mvp/stage/museum-adventure/API_KEY"}),
                         Call("logs:FilterLogEvents", {"logGroupName": "/ecs/museum-adventure-stage"})], DEPLOY) == []
    assert iam.denied([Call("dynamodb:PutItem", {"TableName": "payroll"}),
                       Call("ssm:PutParameter", {"Name": "/payroll/db-password"}),
                       Call("logs:FilterLogEvents", {"logGroupName": "/aws/lambda/payroll"})], DEPLOY) \
        == ["dynamodb:PutItem", "logs:FilterLogEvents", "ssm:PutParameter"]


def test_a_transaction_is_authorized_as_each_of_its_writes_on_its_table():
    ours = {"TransactItems": [{"Put": {"TableName": "mvp-deploy-state-Table-1"}},
                              {"Delete": {"TableName": "mvp-deploy-state-Table-1"}}]}
    assert iam.refusals([Call("dynamodb:TransactWriteItems", ours)], DEPLOY) == []
    theirs = {"TransactItems": [{"Put": {"TableName": "mvp-deploy-state-Table-1"}}, {"Delete": {"TableName": "x"}}]}
    assert iam.refusals([Call("dynamodb:TransactWriteItems", theirs)], DEPLOY) == [
        f"dynamodb:TransactWriteItems: dynamodb:DeleteItem on arn:aws:dynamodb:us-east-1:{iam.ACCOUNT}:table/x"]


def test_a_deny_statement_wins():
    denying = copy.deepcopy(DEPLOY)
    denying["Statement"].append({"Effect": "Deny", "Action": "cloudformation:DeleteStack",
                                 "Resource": "arn:aws:cloudformation:*:*:stack/prod/*"})
    assert iam.denied([create_stack("prod", action="DeleteStack")], denying) == ["cloudformation:DeleteStack"]
    assert iam.denied([create_stack("stage", action="DeleteStack")], denying) == []


# --- the CloudFormation role: what a template can make it do -------------------------------------


def test_the_cloudformation_role_hands_app_roles_to_ecs_tasks_only():
    assert iam.is_allowed(CFN, "iam:PassRole", EXECUTION_ROLE, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert not iam.is_allowed(CFN, "iam:PassRole", EXECUTION_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not iam.is_allowed(CFN, "iam:PassRole", ROLE, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})


def test_the_cloudformation_role_makes_roles_only_within_the_boundary():
    assert iam.is_allowed(CFN, "iam:CreateRole", EXECUTION_ROLE, {"iam:PermissionsBoundary": BOUNDARY})
    assert iam.is_allowed(CFN, "iam:PutRolePolicy", EXECUTION_ROLE, {"iam:PermissionsBoundary": BOUNDARY})
    assert not iam.is_allowed(CFN, "iam:CreateRole", EXECUTION_ROLE, {})
    assert not iam.is_allowed(CFN, "iam:PutRolePolicy", EXECUTION_ROLE,
                              {"iam:PermissionsBoundary": f"arn:aws:iam::{iam.ACCOUNT}:policy/Anything"})
    execution_policy = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    assert iam.is_allowed(CFN, "iam:AttachRolePolicy", EXECUTION_ROLE,
                          {"iam:PolicyARN": execution_policy, "iam:PermissionsBoundary": BOUNDARY})
    assert not iam.is_allowed(CFN, "iam:AttachRolePolicy", EXECUTION_ROLE,
                              {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess",
                               "iam:PermissionsBoundary": BOUNDARY})
    assert not iam.is_allowed(CFN, "iam:CreateRole", f"arn:aws:iam::{iam.ACCOUNT}:role/Admin",
                              {"iam:PermissionsBoundary": BOUNDARY})


def test_the_cloudformation_role_deletes_only_what_the_tools_stacks_made():
    vpc = f"arn:aws:ec2:us-east-1:{iam.ACCOUNT}:vpc/vpc-1"
    assert iam.is_allowed(CFN, "ec2:DeleteVpc", vpc, {"aws:ResourceTag/mvp:managed-by": "mvp-tasks"})
    assert not iam.is_allowed(CFN, "ec2:DeleteVpc", vpc, {})
    assert iam.is_allowed(CFN, "logs:DeleteLogGroup", f"arn:aws:logs:us-east-1:{iam.ACCOUNT}:log-group:/ecs/x:*")
    assert not iam.is_allowed(CFN, "logs:DeleteLogGroup",
                              f"arn:aws:logs:us-east-1:{iam.ACCOUNT}:log-group:/aws/lambda/x:*")
    assert not iam.is_allowed(CFN, "dynamodb:DeleteTable", f"arn:aws:dynamodb:us-east-1:{iam.ACCOUNT}:table/payroll")
