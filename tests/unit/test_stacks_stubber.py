"""Planning and applying one CloudFormation stack against botocore's Stubber: the paths moto cannot
produce, through `plan.stacks.plan_stack` (what would change) and `apply.steps.apply_ensure_stack`
(doing it), and the engine that shows, confirms and applies.

Failed and rolled-back stacks, no-op change sets, per-resource events, busy stacks and expired
credentials, each answered with responses shaped like AWS's documented ones (the Stubber
validates every response and every request against the service model). Each test queues the
exact calls it expects, in order, and ends with `assert_no_pending_responses()`; a call that was
not queued fails the test.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import botocore.exceptions
import pytest
from stubs import FakeClock, isolate_from_aws, log_calls, make_client, make_clocked_world, stack_event_data
from botocore.stub import Stubber
from invoke import Exit, MockContext

from mvp_tasks.apply import executor
from mvp_tasks.apply.executor import Engine
from mvp_tasks.tasks.boundary import carry_out, finish, run_plan
from mvp_tasks.apply.guard import Guard
from mvp_tasks.apply.steps import TargetRun, apply_step
from mvp_tasks.aws.clients import translate
from mvp_tasks.aws.stacks import CAPABILITIES, StackEvent, Stacks, failure_summary
from mvp_tasks.errors import (AwsError, CredentialsError, NotConfirmed, StackBusy, StackFailed, TemplateError,
                              WaitTimeout)
from mvp_tasks.plan import stacks as plan_stacks
from mvp_tasks.plan.stacks import plan_stack
from mvp_tasks.plan.steps import EnsureStack, Plan, TargetPlan
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.settings import ClusterSettings
from mvp_tasks.tasks.boundary import mvp_task
from mvp_tasks.templates import Template
from mvp_tasks.world import ChangeSets

ACCOUNT = "123456789012"
NAME = "mvp-cluster"
STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4b"
# A stack re-created under the same name gets a new id.
NEW_STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/7c8d9e0f-4e60-11ef-9b2c-12a4b6c8d0e2"
# The planner names change sets mvp-<UTC time>-<6 random hex digits>; both are pinned below.
CHANGE_SET = "mvp-20261101120000-3f2e1d"
CHANGE_SET_ID = (f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:changeSet/{CHANGE_SET}/"
                 "3f2e1d0c-b9a8-4765-8432-10fedcba9876")
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)

BODY = """\
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Environment:
    Type: String
  VpcCidr:
    Type: String
    Default: 10.0.0.0/16
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: !Ref VpcCidr
  PrivateSubnet:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: 10.0.9.0/24
  LogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub '/mvp/${Environment}'
"""
# What the stack was last deployed with: the subnet had another range.
DEPLOYED_BODY = BODY.replace("10.0.9.0/24", "10.0.1.0/24")
TEMPLATE = Template(
    path=Path("t.yml"),
    label="t.yml",
    body=BODY,
    parameters={"Environment": {"Type": "String"}, "VpcCidr": {"Type": "String", "Default": "10.0.0.0/16"}},
    resources={"Vpc": "AWS::EC2::VPC", "PrivateSubnet": "AWS::EC2::Subnet", "LogGroup": "AWS::Logs::LogGroup"},
)
PARAMETERS = {"Environment": "staging"}
TAGS = {"team": "platform", "cost-center": "cc-42"}
# DescribeStacks lists every parameter, defaults included, and every tag, the tool's own included.
DEPLOYED_PARAMETERS = {"Environment": "staging", "VpcCidr": "10.0.0.0/16"}
DEPLOYED_TAGS = {"team": "platform", "mvp:managed-by": "mvp-tasks", "cost-center": "cc-42"}

CIDR_CONFLICT = ("Resource handler returned message: \"The CIDR '10.0.9.0/24' conflicts with another subnet\" "
                 "(RequestToken: 6a1f0c2e-8d5b-4c8e-9f1a-2b3c4d5e6f70, HandlerErrorCode: AlreadyExists)")
NO_CHANGES = "The submitted information didn't contain changes. Submit different information to create a change set."


# --- AWS-shaped responses --------------------------------------------------------------------------


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stack(status: str, *, stack_id: str = STACK_ID, reason: str = "", protected: bool = False,
          parameters: dict | None = None, tags: dict | None = None) -> dict:
    """One entry of DescribeStacks' `Stacks`."""
    data = {
        "StackId": stack_id,
        "StackName": NAME,
        "Description": "mvp cluster",
        "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                       for k, v in (DEPLOYED_PARAMETERS if parameters is None else parameters).items()],
        "CreationTime": at(-86400),
        "LastUpdatedTime": at(-3600),
        "RollbackConfiguration": {},
        "StackStatus": status,
        "DisableRollback": False,
        "NotificationARNs": [],
        "Capabilities": ["CAPABILITY_IAM"],
        "Outputs": [{"OutputKey": "VpcId", "OutputValue": "vpc-0abc1234def567890", "ExportName": f"{NAME}-VpcId"}],
        "Tags": [{"Key": k, "Value": v} for k, v in (DEPLOYED_TAGS if tags is None else tags).items()],
        "EnableTerminationProtection": protected,
        "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
    }
    if reason:
        data["StackStatusReason"] = reason
    return data


def describe_stacks(status: str, **kwargs) -> dict:
    return {"Stacks": [stack(status, **kwargs)]}


def event(logical_id: str, resource_type: str, status: str, reason: str = "", *, seconds: int,
          stack_id: str = STACK_ID) -> dict:
    """One entry of DescribeStackEvents' `StackEvents`."""
    return stack_event_data(NAME, stack_id, logical_id, resource_type, status, reason, at(seconds))


def stack_event(status: str, reason: str = "", *, seconds: int, stack_id: str = STACK_ID) -> dict:
    return event(NAME, "AWS::CloudFormation::Stack", status, reason, seconds=seconds, stack_id=stack_id)


def stack_events(*events: dict) -> dict:
    """A DescribeStackEvents page; takes events oldest first, answers newest first as AWS does."""
    return {"StackEvents": list(reversed(events))}


def resource_change(action: str, logical_id: str, resource_type: str, replacement: str = "") -> dict:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource_type,
              "Scope": ["Properties"] if action == "Modify" else [], "Details": []}
    if action == "Modify":
        change["PhysicalResourceId"] = "subnet-0123456789abcdef0"
        change["Replacement"] = replacement
    return {"Type": "Resource", "ResourceChange": change}


def describe_change_set(status: str, *, reason: str = "", changes: tuple = ()) -> dict:
    data = {
        "ChangeSetName": CHANGE_SET,
        "ChangeSetId": CHANGE_SET_ID,
        "StackId": STACK_ID,
        "StackName": NAME,
        "Description": "mvp-tasks preview",
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in DEPLOYED_PARAMETERS.items()],
        "CreationTime": at(0),
        "ExecutionStatus": "AVAILABLE" if status == "CREATE_COMPLETE" else "UNAVAILABLE",
        "Status": status,
        "NotificationARNs": [],
        "RollbackConfiguration": {},
        "Capabilities": CAPABILITIES,
        "Tags": [{"Key": k, "Value": v} for k, v in DEPLOYED_TAGS.items()],
        "Changes": list(changes),
        "IncludeNestedStacks": False,
    }
    if reason:
        data["StatusReason"] = reason
    return data


def get_template(body: str) -> dict:
    return {"TemplateBody": body, "StagesAvailable": ["Original", "Processed"]}


# --- expected requests -----------------------------------------------------------------------------


def by(ref: str = NAME) -> dict:
    return {"StackName": ref}


# Sorted by key, so an unchanged stack always sends an identical list.
SENT_TAGS = [{"Key": "cost-center", "Value": "cc-42"}, {"Key": "mvp:managed-by", "Value": "mvp-tasks"},
             {"Key": "team", "Value": "platform"}]
CHANGE_SET_REF = {"StackName": NAME, "ChangeSetName": CHANGE_SET}
CREATE_CHANGE_SET = {
    "StackName": NAME,
    "ChangeSetName": CHANGE_SET,
    "ChangeSetType": "UPDATE",
    "TemplateBody": BODY,
    "Parameters": [{"ParameterKey": "Environment", "ParameterValue": "staging"}],
    "Tags": SENT_TAGS,
    "Capabilities": CAPABILITIES,
    "Description": "mvp-tasks preview",
}


def create_stack_params(protect: bool = False) -> dict:
    return {
        "StackName": NAME,
        "TemplateBody": BODY,
        "Parameters": [{"ParameterKey": "Environment", "ParameterValue": "staging"}],
        "Tags": SENT_TAGS,
        "Capabilities": CAPABILITIES,
        "EnableTerminationProtection": protect,
        "OnFailure": "ROLLBACK",
    }


def add_missing_stack(stub: Stubber, ref: str = NAME) -> None:
    # CloudFormation has no NotFound code: a missing stack is a ValidationError.
    stub.add_client_error("describe_stacks", service_error_code="ValidationError",
                          service_message=f"Stack with id {ref} does not exist", http_status_code=400,
                          expected_params=by(ref))


def add_changed_update_up_to_change_set(stub: Stubber, changes: tuple) -> None:
    """DescribeStacks, GetTemplate (a different body), CreateChangeSet, DescribeChangeSet (with changes)."""
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("CREATE_COMPLETE", changes=changes), CHANGE_SET_REF)


SUBNET_REPLACED = resource_change("Modify", "PrivateSubnet", "AWS::EC2::Subnet", replacement="True")


# --- fixtures --------------------------------------------------------------------------------------

CLUSTER = ClusterSettings(name=NAME, template="cluster.yml", protected=False, promote_from="", tag="stage")
SETTINGS = SimpleNamespace(wait_timeout=600, poll_interval=5, parallel=1, clusters={NAME: CLUSTER})


@pytest.fixture
def client(monkeypatch):
    isolate_from_aws(monkeypatch)
    return make_client("cloudformation")


@pytest.fixture
def calls(client) -> list:
    log: list = []
    log_calls(client, log)
    return log


@pytest.fixture
def stub(client, calls):
    with Stubber(client) as stubber:
        yield stubber


@pytest.fixture
def stacks(client, stub):
    return Stacks(client, sleep=lambda s: None)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def new_world(client, stub, clock):
    """A run's world on the stubbed client (its waits move a fake clock), with its own reporter."""
    def make(rep: Reporter | None = None):
        return make_clocked_world(SETTINGS, rep or reporter(yes=True), SimpleNamespace(cloudformation=client),
                                  clock=clock)

    return make


@pytest.fixture
def world(new_world):
    return new_world()


@pytest.fixture
def clocked_engine(monkeypatch, client, stub, clock):
    """A world for `run_plan` and `Engine` on the stubbed client and the fake clock."""

    def run(rep: Reporter):
        return make_clocked_world(SETTINGS, rep, SimpleNamespace(cloudformation=client), clock=clock)

    return run


@pytest.fixture(autouse=True)
def fixed_change_set_name(monkeypatch):
    # The change set name comes from the wall clock and uuid4; pin both so requests can be matched exactly.
    monkeypatch.setattr(plan_stacks, "time", SimpleNamespace(strftime=lambda fmt: "20261101120000"))
    monkeypatch.setattr(plan_stacks, "uuid",
                        SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="3f2e1d0cb9a84765843210fedcba9876")))


def reporter(*, check: bool = False, yes: bool = False) -> Reporter:
    return Reporter(stream=io.StringIO(), interactive=False, check=check, yes=yes)


def output(rep: Reporter) -> str:
    return rep.stream.getvalue()


def plan(stacks: Stacks, **overrides):
    """`plan_stack` for the test's stack: (its step or None, the stack as it is)."""
    kwargs = dict(name=NAME, template=TEMPLATE, parameters=PARAMETERS, tags=TAGS, protect=False, poll=5)
    kwargs.update(overrides)
    return plan_stack(stacks, **kwargs)


def cluster_target(world, **overrides) -> TargetPlan:
    """What a cluster's planner makes of `plan_stack`'s answer (as `plan_cluster` does)."""
    step, stack = plan(world.stacks(), change_sets=world.change_sets, **overrides)
    target = TargetPlan(NAME, kind="cluster", cluster=NAME, action="cluster.up")
    if step is None:
        target.note = f"stack {NAME} up to date ({stack.status})"
    else:
        target.steps.append(step)
        target.done = {"create": "stack created", "recreate": "stack re-created", "update": "stack updated",
                       "protect": "termination protection turned on"}[step.action]
    return target


def apply(world, step: EnsureStack) -> TargetRun:
    """Apply one step of the cluster target as the executor does (its guard, its run)."""
    target = TargetPlan(NAME, kind="cluster", cluster=NAME, action="cluster.up", steps=[step])
    run = TargetRun(world, target, Guard(world, target, CLUSTER), CLUSTER)
    apply_step(run, step)
    return run


def engine_for(world) -> Engine:
    return Engine(world)


def one_target(rep: Reporter, clocked_engine, **overrides) -> None:
    stub_target = TargetPlan(NAME, kind="cluster", cluster=NAME)
    run_plan(clocked_engine(rep), "cluster.up", [(stub_target, lambda world: cluster_target(world, **overrides))])


# --- 1. no-op change set ---------------------------------------------------------------------------


def test_change_set_without_changes_is_deleted_and_gives_no_step(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("CREATE_PENDING"), CHANGE_SET_REF)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=NO_CHANGES), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)
    change_sets = ChangeSets()

    step, current = plan(stacks, change_sets=change_sets)

    stub.assert_no_pending_responses()
    assert step is None
    assert (current.name, current.stack_id, current.status) == (NAME, STACK_ID, "UPDATE_COMPLETE")
    assert change_sets.pending() == []  # CloudFormation's answer deleted it: nothing is left to discard


def test_change_set_without_changes_through_the_engine_is_ok(stub, clocked_engine):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=NO_CHANGES), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)
    rep = reporter()

    one_target(rep, clocked_engine)

    stub.assert_no_pending_responses()
    assert "ok: mvp-cluster  stack mvp-cluster up to date (UPDATE_COMPLETE)" in output(rep)
    assert [r.outcome for r in rep.recap.results] == [Outcome.OK]


def test_change_set_failed_for_another_reason_is_deleted_and_is_a_template_error(stub, stacks):
    reason = "Template error: instance of Fn::GetAtt references undefined resource Vpcc"
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=reason), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)

    with pytest.raises(TemplateError) as raised:
        plan(stacks)

    stub.assert_no_pending_responses()
    assert "rejected the change" in str(raised.value) and "Vpcc" in str(raised.value)


# --- 2. fast path ----------------------------------------------------------------------------------


def test_unchanged_stack_needs_no_change_set(stub, stacks, calls):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    # CloudFormation hands the body back as stored; only surrounding whitespace may differ.
    stub.add_response("get_template", get_template(BODY + "\n"), {"StackName": NAME, "TemplateStage": "Original"})

    step, current = plan(stacks)

    stub.assert_no_pending_responses()
    assert step is None and current.status == "UPDATE_COMPLETE"
    assert [name for name, _ in calls] == ["DescribeStacks", "GetTemplate"]  # no CreateChangeSet


@pytest.mark.parametrize("deployed", [
    pytest.param({"parameters": {"Environment": "staging", "VpcCidr": "10.1.0.0/16"}}, id="default-changed"),
    pytest.param({"parameters": {"Environment": "production", "VpcCidr": "10.0.0.0/16"}}, id="value-changed"),
    pytest.param({"tags": {**DEPLOYED_TAGS, "team": "data"}}, id="tag-changed"),
])
def test_changed_parameters_or_tags_go_to_a_change_set_without_reading_the_template(stub, stacks, calls, deployed):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE", **deployed), by())
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=NO_CHANGES), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)

    step, _ = plan(stacks)

    stub.assert_no_pending_responses()
    assert step is None
    assert "GetTemplate" not in [name for name, _ in calls]


def test_changed_default_with_an_empty_change_set_is_an_update_naming_the_parameter(stub, stacks):
    # The deployed stack still runs an old default; the change set holds no resource change.
    stub.add_response("describe_stacks", describe_stacks(
        "UPDATE_COMPLETE", parameters={"Environment": "staging", "VpcCidr": "10.1.0.0/16"}), by())
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("CREATE_COMPLETE"), CHANGE_SET_REF)

    step, _ = plan(stacks)

    stub.assert_no_pending_responses()
    assert (step.action, step.change_set, step.changes) == ("update", CHANGE_SET, ())
    assert step.parameter_changes == (("VpcCidr", "10.1.0.0/16", "10.0.0.0/16"),)
    assert step.lines() == ["~ stack mvp-cluster", "  ~ stack settings (parameters, tags or outputs)",
                            "  ~ parameter VpcCidr: 10.1.0.0/16 -> 10.0.0.0/16"]
    assert not step.needs_confirmation


def test_unchanged_protected_stack_gets_a_protect_step_that_turns_protection_on(stub, world):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE", protected=False), by())
    stub.add_response("get_template", get_template(BODY), {"StackName": NAME, "TemplateStage": "Original"})

    target = cluster_target(world, protect=True, protected=True)

    step = target.steps[0]
    assert (step.action, step.protect, step.change_set) == ("protect", True, "")
    assert step.lines() == ["~ stack mvp-cluster: termination protection on"]
    assert target.would() == "turn termination protection on"
    # It deletes nothing, but it changes a protected cluster: the plan asks.
    assert not step.destructive and step.needs_confirmation
    assert Plan("cluster.up", [target]).question() == "apply this plan to 1 target(s) (change protected cluster mvp-cluster)"

    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": NAME, "EnableTerminationProtection": True})
    apply(world, step)

    stub.assert_no_pending_responses()


def test_already_protected_unchanged_stack_needs_no_step(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE", protected=True), by())
    stub.add_response("get_template", get_template(BODY), {"StackName": NAME, "TemplateStage": "Original"})

    step, _ = plan(stacks, protect=True)

    stub.assert_no_pending_responses()
    assert step is None


# --- 3. ROLLBACK_COMPLETE --------------------------------------------------------------------------

FAILED_CREATE_REASON = "The following resource(s) failed to create: [PrivateSubnet]. Rollback requested by user."


def add_rollback_complete(stub: Stubber, protected: bool = False, ref: str = NAME) -> None:
    stub.add_response("describe_stacks",
                      describe_stacks("ROLLBACK_COMPLETE", reason=FAILED_CREATE_REASON, protected=protected), by(ref))


def test_rollback_complete_stack_plans_a_destructive_recreate(stub, stacks):
    add_rollback_complete(stub)

    step, current = plan(stacks)

    stub.assert_no_pending_responses()  # no change set: a ROLLBACK_COMPLETE stack cannot be updated
    assert (step.action, step.old_stack_id, step.change_set) == ("recreate", STACK_ID, "")
    assert current.status == "ROLLBACK_COMPLETE"
    assert step.destructive and step.needs_confirmation
    assert step.lines() == [
        "- delete stack mvp-cluster (ROLLBACK_COMPLETE: its first create failed)",
        "+ stack mvp-cluster from t.yml",
        "+ AWS::EC2::VPC Vpc", "+ AWS::EC2::Subnet PrivateSubnet", "+ AWS::Logs::LogGroup LogGroup",
    ]
    target = TargetPlan(NAME, kind="cluster", cluster=NAME, steps=[step])
    assert Plan("cluster.up", [target]).question() == "apply this plan to 1 target(s) (delete what the plan marks with -)"


def test_rollback_complete_stack_is_deleted_and_created_again(stub, world):
    rolled_back = stack_event("ROLLBACK_COMPLETE", seconds=-60)
    add_rollback_complete(stub)
    step = cluster_target(world).steps[0]
    # Applying reads the old stack again, by its id: it may have gone since the plan.
    add_rollback_complete(stub, ref=STACK_ID)
    stub.add_response("describe_stack_events", stack_events(rolled_back), by(STACK_ID))
    stub.add_response("delete_stack", {}, by())
    # Deleted stacks are only found by their id.
    stub.add_response("describe_stacks", describe_stacks("DELETE_IN_PROGRESS"), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        rolled_back, stack_event("DELETE_IN_PROGRESS", "User Initiated", seconds=1)), by(STACK_ID))
    stub.add_response("describe_stacks", describe_stacks("DELETE_COMPLETE"), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        rolled_back, stack_event("DELETE_IN_PROGRESS", "User Initiated", seconds=1),
        stack_event("DELETE_COMPLETE", seconds=9)), by(STACK_ID))
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params())
    stub.add_response("describe_stacks", describe_stacks("CREATE_COMPLETE", stack_id=NEW_STACK_ID), by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_IN_PROGRESS", "User Initiated", seconds=10, stack_id=NEW_STACK_ID),
        event("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", seconds=20, stack_id=NEW_STACK_ID),
        stack_event("CREATE_COMPLETE", seconds=30, stack_id=NEW_STACK_ID)), by(NEW_STACK_ID))

    run = apply(world, step)

    stub.assert_no_pending_responses()
    out = output(world.reporter)
    # Each event is shown once, and the one from before the delete not at all.
    assert out.count("DELETE_IN_PROGRESS") == 1 and out.count("DELETE_COMPLETE") == 1
    assert "11:59:00 ROLLBACK_COMPLETE" not in out
    assert "12:00:30 CREATE_COMPLETE" in out
    assert run.guard.running == {}  # both waits settled


def test_rollback_complete_stack_with_termination_protection_is_unprotected_first(stub, world):
    # A protected cluster whose first create failed keeps its protection, and DeleteStack refuses it.
    add_rollback_complete(stub, protected=True)
    step = cluster_target(world, protect=True).steps[0]
    add_rollback_complete(stub, protected=True, ref=STACK_ID)
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": NAME, "EnableTerminationProtection": False})
    stub.add_response("describe_stack_events", stack_events(stack_event("ROLLBACK_COMPLETE", seconds=-60)),
                      by(STACK_ID))
    stub.add_response("delete_stack", {}, by())
    stub.add_response("describe_stacks", describe_stacks("DELETE_COMPLETE"), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(stack_event("DELETE_COMPLETE", seconds=9)), by(STACK_ID))
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params(protect=True))
    stub.add_response("describe_stacks", describe_stacks("CREATE_COMPLETE", stack_id=NEW_STACK_ID, protected=True),
                      by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_COMPLETE", seconds=30, stack_id=NEW_STACK_ID)), by(NEW_STACK_ID))

    apply(world, step)

    stub.assert_no_pending_responses()


def test_rollback_complete_stack_without_yes_and_terminal_is_not_deleted(stub, new_world):
    add_rollback_complete(stub)
    world = new_world(reporter(yes=False))
    engine = engine_for(world)
    target = cluster_target(world)

    with pytest.raises(NotConfirmed) as raised:
        carry_out(engine, Plan("cluster.up", [target]))

    stub.assert_no_pending_responses()  # and no DeleteStack: it was never queued
    assert "no terminal" in str(raised.value) and "--yes" in str(raised.value)
    assert "delete what the plan marks with -" in str(raised.value)
    out = output(world.reporter)
    assert "mvp-cluster: will:" in out and "- delete stack mvp-cluster" in out
    assert world.reporter.recap.results == []


def test_rollback_complete_stack_in_check_mode_is_left_alone(stub, clocked_engine):
    add_rollback_complete(stub)
    rep = reporter(check=True)

    one_target(rep, clocked_engine)

    stub.assert_no_pending_responses()
    out = output(rep)
    assert "mvp-cluster: would:" in out and "- delete stack mvp-cluster" in out
    assert ("would change: mvp-cluster  delete and re-create the stack left by a failed create "
            "(check: nothing was changed)") in out


# --- 3b. REVIEW_IN_PROGRESS ------------------------------------------------------------------------


def test_review_in_progress_stack_is_created_after_its_empty_stack_is_deleted(stub, world):
    # Only an unexecuted CREATE change set exists under this name: it holds no resources.
    empty = {"parameters": {}, "tags": {}}
    stub.add_response("describe_stacks", describe_stacks("REVIEW_IN_PROGRESS", **empty), by())
    target = cluster_target(world)
    step = target.steps[0]
    assert (step.action, step.old_stack_id) == ("create", STACK_ID)
    assert not step.destructive and not target.needs_confirmation
    review = stack_event("REVIEW_IN_PROGRESS", "User Initiated", seconds=-60)
    stub.add_response("describe_stacks", describe_stacks("REVIEW_IN_PROGRESS", **empty), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(review), by(STACK_ID))
    stub.add_response("delete_stack", {}, by())
    stub.add_response("describe_stacks", describe_stacks("DELETE_COMPLETE", **empty), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(review, stack_event("DELETE_COMPLETE", seconds=2)),
                      by(STACK_ID))
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params())
    stub.add_response("describe_stacks", describe_stacks("CREATE_COMPLETE", stack_id=NEW_STACK_ID), by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_COMPLETE", seconds=30, stack_id=NEW_STACK_ID)), by(NEW_STACK_ID))

    apply(world, step)

    stub.assert_no_pending_responses()


# --- 4. failed update ------------------------------------------------------------------------------


def add_failed_update(stub: Stubber) -> None:
    """The plan's calls (up to a change set replacing the subnet), then the update's, which rolls back."""
    before = stack_event("UPDATE_COMPLETE", seconds=-3600)
    add_changed_update_up_to_change_set(stub, (SUBNET_REPLACED,))
    stub.add_response("describe_stack_events", stack_events(before), by())
    stub.add_response("execute_change_set", {}, CHANGE_SET_REF)
    first = (
        before,
        stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=1),
        event("PrivateSubnet", "AWS::EC2::Subnet", "UPDATE_IN_PROGRESS",
              "Requested update requires the creation of a new physical resource; hence creating one.", seconds=3),
    )
    stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
    stub.add_response("describe_stack_events", stack_events(*first), by())
    stub.add_response("describe_stacks", describe_stacks("UPDATE_ROLLBACK_COMPLETE"), by())
    stub.add_response("describe_stack_events", stack_events(
        *first,
        event("PrivateSubnet", "AWS::EC2::Subnet", "UPDATE_FAILED", CIDR_CONFLICT, seconds=5),
        stack_event("UPDATE_ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to update: [PrivateSubnet]. ", seconds=6),
        stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", seconds=8),
        stack_event("UPDATE_ROLLBACK_COMPLETE", seconds=9),
    ), by())


def test_failed_update_names_the_resource_and_the_reason(stub, world):
    add_failed_update(stub)
    step = cluster_target(world).steps[0]
    assert step.lines() == ["~ stack mvp-cluster", "  ~ AWS::EC2::Subnet PrivateSubnet (replacement: True)"]
    assert world.change_sets.pending() == [(NAME, CHANGE_SET)]

    with pytest.raises(StackFailed) as raised:
        apply(world, step)

    stub.assert_no_pending_responses()
    message = str(raised.value)
    assert message.startswith("update of stack mvp-cluster ended in UPDATE_ROLLBACK_COMPLETE: ")
    assert "PrivateSubnet (AWS::EC2::Subnet) UPDATE_FAILED" in message
    assert "The CIDR '10.0.9.0/24' conflicts with another subnet" in message
    out = output(world.reporter)
    assert out.count("UPDATE_FAILED") == 1 and "UPDATE_ROLLBACK_COMPLETE" in out
    assert "changed:" not in out
    assert world.change_sets.pending() == []  # executed: nothing left to discard


def test_failed_update_through_run_plan_exits_1_with_the_reason_on_one_line(stub, clocked_engine, capsys):
    add_failed_update(stub)
    rep = reporter()

    @mvp_task
    def up(c):
        one_target(rep, clocked_engine)

    with pytest.raises(Exit) as raised:
        up(MockContext())

    stub.assert_no_pending_responses()
    assert raised.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1
    assert errors[0].startswith("error: mvp-cluster: update of stack mvp-cluster ended in UPDATE_ROLLBACK_COMPLETE")
    assert "PrivateSubnet" in errors[0] and "conflicts with another subnet" in errors[0]
    out = output(rep)
    assert "~ AWS::EC2::Subnet PrivateSubnet (replacement: True)" in out  # the plan, shown before
    assert "failed: mvp-cluster  update of stack mvp-cluster ended in UPDATE_ROLLBACK_COMPLETE" in out


def test_successful_update_of_outputs_only_reports_stack_updated(stub, clocked_engine):
    # Changing only outputs gives a change set with no resource changes that still has to run.
    before = stack_event("UPDATE_COMPLETE", seconds=-3600)
    add_changed_update_up_to_change_set(stub, ())
    stub.add_response("describe_stack_events", stack_events(before), by())
    stub.add_response("execute_change_set", {}, CHANGE_SET_REF)
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("describe_stack_events", stack_events(
        before, stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=1),
        stack_event("UPDATE_COMPLETE", seconds=4)), by())
    rep = reporter()

    one_target(rep, clocked_engine)

    stub.assert_no_pending_responses()  # and no DeleteChangeSet afterwards: it was executed
    out = output(rep)
    assert "~ stack settings (parameters, tags or outputs)" in out
    assert "changed: mvp-cluster  stack updated" in out


def test_interrupt_while_following_an_update_says_cloudformation_keeps_going_and_exits_130(stub, client, world):
    before = stack_event("UPDATE_COMPLETE", seconds=-3600)
    add_changed_update_up_to_change_set(stub, (SUBNET_REPLACED,))
    target = cluster_target(world)
    stub.add_response("describe_stack_events", stack_events(before), by())
    stub.add_response("execute_change_set", {}, CHANGE_SET_REF)
    stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
    stub.add_response("describe_stack_events", stack_events(
        before, stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=1)), by())
    # Ctrl-C while the first poll is in flight: the wait after it refuses to sleep.
    client.meta.events.register("before-parameter-build.cloudformation.DescribeStacks",
                                lambda **kw: world.stop.set())
    engine = engine_for(world)

    outcomes = carry_out(engine, Plan("cluster.up", [target]))
    with pytest.raises(Exit) as raised:
        finish(world, outcomes)

    stub.assert_no_pending_responses()  # no DeleteChangeSet: it was executed
    assert raised.value.code == 130
    out = output(world.reporter)
    assert "failed: mvp-cluster  interrupted" in out
    assert "warning: still running in AWS on its own:" in out
    assert "stack mvp-cluster: update; follow it with `inv cluster.status mvp-cluster`" in out


# --- 5. busy stack ---------------------------------------------------------------------------------


def test_stack_already_updating_is_busy_and_gets_no_change_set(stub, stacks, calls):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
    change_sets = ChangeSets()

    with pytest.raises(StackBusy) as raised:
        plan(stacks, change_sets=change_sets)

    stub.assert_no_pending_responses()
    assert [name for name, _ in calls] == ["DescribeStacks"]
    assert change_sets.pending() == []
    assert str(raised.value) == (
        "stack mvp-cluster is UPDATE_IN_PROGRESS: another operation is running "
        "(wait for it to finish (watch `inv cluster.status` or `inv app.status`), then re-run)"
    )


def test_change_set_refused_because_the_stack_became_busy_is_stack_busy(stub, world):
    busy = f"Stack:{STACK_ID} is in UPDATE_IN_PROGRESS state and can not be updated."
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_client_error("create_change_set", service_error_code="ValidationError", service_message=busy,
                          http_status_code=400, expected_params=CREATE_CHANGE_SET)

    with pytest.raises(StackBusy) as raised:
        cluster_target(world)

    assert "stack mvp-cluster is busy with another operation" in str(raised.value)
    assert busy in str(raised.value)
    assert "then re-run" in str(raised.value)
    # Noted before CloudFormation answered (it may have made one): the run's end deletes it, and a
    # change set that was never made is no reason to warn.
    assert world.change_sets.pending() == [(NAME, CHANGE_SET)]
    stub.add_client_error("delete_change_set", service_error_code="ChangeSetNotFound",
                          service_message=f"ChangeSet [{CHANGE_SET}] does not exist", http_status_code=404,
                          expected_params=CHANGE_SET_REF)
    world.discard_change_sets()
    stub.assert_no_pending_responses()
    assert world.change_sets.pending() == []
    assert "warning" not in output(world.reporter)


def test_other_validation_errors_from_create_change_set_are_not_busy(stub, stacks):
    stub.add_client_error("create_change_set", service_error_code="ValidationError",
                          service_message="Parameters: [Environment] must have values", http_status_code=400)

    with pytest.raises(AwsError) as raised:
        stacks.create_change_set(NAME, BODY, {}, {}, CHANGE_SET)

    stub.assert_no_pending_responses()
    assert type(raised.value) is AwsError
    assert str(raised.value) == "ValidationError: Parameters: [Environment] must have values"


# --- 6. credentials --------------------------------------------------------------------------------


def test_expired_token_is_a_credentials_error_with_a_hint(stub, stacks):
    stub.add_client_error("describe_stacks", service_error_code="ExpiredToken",
                          service_message="The security token included in the request is expired",
                          http_status_code=403, expected_params=by())

    with pytest.raises(CredentialsError) as raised:
        plan(stacks)

    stub.assert_no_pending_responses()
    message = str(raised.value)
    assert "ExpiredToken" in message and "expired" in message
    assert "aws sso login" in message and "AWS_PROFILE" in message


def test_missing_credentials_translate_to_a_credentials_error_with_a_hint():
    error = translate(botocore.exceptions.NoCredentialsError())

    assert isinstance(error, CredentialsError)
    assert "no AWS credentials found" in str(error)
    assert "aws sso login" in str(error) and "AWS_PROFILE" in str(error)


def test_missing_credentials_through_the_task_boundary_exit_1_with_the_hint():
    @mvp_task
    def up(c):
        raise botocore.exceptions.NoCredentialsError()

    with pytest.raises(Exit) as raised:
        up(MockContext())

    assert raised.value.code == 1
    assert raised.value.message.startswith("error: no AWS credentials found")
    assert "aws sso login" in raised.value.message


# --- 7. failed create ------------------------------------------------------------------------------

SUBNET_INVALID = ("Resource handler returned message: \"Value (10.0.300.0/24) for parameter cidrBlock is invalid. "
                  "This is not a valid CIDR block. (Service: Ec2, Status Code: 400, "
                  "Request ID: 5b1c7a0e-2f3d-4e5f-8a9b-0c1d2e3f4a5b)\" "
                  "(RequestToken: 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0, HandlerErrorCode: InvalidRequest)")


def failed_create_events() -> list[dict]:
    kw = {"stack_id": NEW_STACK_ID}
    return [
        stack_event("CREATE_IN_PROGRESS", "User Initiated", seconds=0, **kw),
        event("Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS", seconds=2, **kw),
        event("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE", seconds=14, **kw),
        event("LogGroup", "AWS::Logs::LogGroup", "CREATE_IN_PROGRESS", seconds=15, **kw),
        event("PrivateSubnet", "AWS::EC2::Subnet", "CREATE_IN_PROGRESS", seconds=15, **kw),
        event("PrivateSubnet", "AWS::EC2::Subnet", "CREATE_FAILED", SUBNET_INVALID, seconds=16, **kw),
        event("LogGroup", "AWS::Logs::LogGroup", "CREATE_FAILED", "Resource creation cancelled", seconds=17, **kw),
        stack_event("ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [LogGroup, PrivateSubnet]. "
                    "Rollback requested by user.", seconds=17, **kw),
        event("Vpc", "AWS::EC2::VPC", "DELETE_COMPLETE", seconds=25, **kw),
        stack_event("ROLLBACK_COMPLETE", seconds=26, **kw),
    ]


def test_failed_create_names_the_resource_without_the_cancelled_noise(stub, world):
    events = failed_create_events()
    add_missing_stack(stub)
    step = cluster_target(world).steps[0]
    assert (step.action, step.old_stack_id) == ("create", "")
    assert step.lines()[:3] == ["+ stack mvp-cluster from t.yml", "+ AWS::EC2::VPC Vpc", "+ AWS::EC2::Subnet PrivateSubnet"]
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params())
    stub.add_response("describe_stacks", describe_stacks("CREATE_IN_PROGRESS", stack_id=NEW_STACK_ID),
                      by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(*events[:3]), by(NEW_STACK_ID))
    stub.add_response("describe_stacks", describe_stacks(
        "ROLLBACK_COMPLETE", stack_id=NEW_STACK_ID,
        reason="The following resource(s) failed to create: [LogGroup, PrivateSubnet]. Rollback requested by user."),
        by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(*events), by(NEW_STACK_ID))

    with pytest.raises(StackFailed) as raised:
        apply(world, step)

    stub.assert_no_pending_responses()
    message = str(raised.value)
    assert message.startswith("create of stack mvp-cluster ended in ROLLBACK_COMPLETE: "
                              "PrivateSubnet (AWS::EC2::Subnet) CREATE_FAILED: Resource handler returned message")
    assert "10.0.300.0/24" in message
    assert "LogGroup" not in message and "cancelled" not in message
    out = output(world.reporter)
    # Every event is shown once, the cancelled one included.
    assert out.count("CREATE_COMPLETE") == 1 and "Resource creation cancelled" in out


def test_failure_summary_keeps_causes_oldest_first_and_falls_back_to_noise():
    def ev(logical_id: str, status: str, reason: str, seconds: int) -> StackEvent:
        return StackEvent(f"{logical_id}-{seconds}", at(seconds), logical_id, "AWS::EC2::Subnet", status, reason)

    cancelled = ev("LogGroup", "CREATE_FAILED", "Resource creation cancelled", 3)
    late = ev("RouteTable", "CREATE_FAILED", "Resource handler returned message: \"quota\"", 4)
    early = ev("PrivateSubnet", "CREATE_FAILED", "Resource handler returned message: \"bad cidr\"", 2)
    no_reason = ev("Vpc", "CREATE_FAILED", "", 1)
    progress = ev("Vpc", "CREATE_IN_PROGRESS", "Resource creation Initiated", 0)

    assert failure_summary([late, cancelled, early, no_reason, progress]) == [early, late]
    assert failure_summary([progress, cancelled]) == [cancelled]
    assert failure_summary([progress]) == []


# --- 8. bounded wait, backing off ------------------------------------------------------------------


def test_wait_for_stack_times_out_saying_cloudformation_keeps_going(client, stub):
    clock = FakeClock()
    stacks = Stacks(client, sleep=clock.sleep, clock=clock)
    started = stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=0)
    # Polls at t = 0 (a new event: the next in `poll`), 10 (nothing new: 1.5 x 10 s), 25 (nothing
    # new: 1.5 x 15 s would be 22.5 s, but only 5 s are left before the deadline) and 30 s.
    for _ in range(4):
        stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
        stub.add_response("describe_stack_events", stack_events(started), by())
    seen = []

    with pytest.raises(WaitTimeout) as raised:
        stacks.wait_for_stack(NAME, timeout=30, poll=10, on_event=seen.append)

    stub.assert_no_pending_responses()
    assert clock.slept == [10, 15, 5]
    assert clock.now == 1030  # never past the deadline
    assert [e.status for e in seen] == ["UPDATE_IN_PROGRESS"]  # shown once, not once per poll
    message = str(raised.value)
    assert "stack mvp-cluster is still UPDATE_IN_PROGRESS after 30 s" in message
    assert "keeps going on its own" in message and "inv cluster.status" in message


def test_wait_for_stack_backs_off_up_to_four_polls_and_comes_back_to_poll_on_news(client, stub):
    clock = FakeClock()
    stacks = Stacks(client, sleep=clock.sleep, clock=clock)
    started = stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=0)
    subnet = event("PrivateSubnet", "AWS::EC2::Subnet", "UPDATE_IN_PROGRESS", seconds=150)
    done = stack_event("UPDATE_COMPLETE", seconds=180)
    pages = [(started,)] * 6 + [(started, subnet)] * 2
    for page in pages:
        stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
        stub.add_response("describe_stack_events", stack_events(*page), by())
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("describe_stack_events", stack_events(started, subnet, done), by())
    seen = []

    final, events = stacks.wait_for_stack(NAME, timeout=600, poll=10, on_event=seen.append)

    stub.assert_no_pending_responses()
    # News, then x1.5 while nothing happens, capped at 4 x poll; news again: back to poll.
    assert clock.slept == [10, 15, 22.5, 33.75, 40, 40, 10, 15]
    assert final.status == "UPDATE_COMPLETE"
    assert [(e.logical_id, e.status) for e in seen] == [
        (NAME, "UPDATE_IN_PROGRESS"), ("PrivateSubnet", "UPDATE_IN_PROGRESS"), (NAME, "UPDATE_COMPLETE")]
    assert events == seen


# --- 9. check mode: plan only, and its change set deleted ------------------------------------------


def test_check_mode_plan_notes_the_change_set_and_the_world_deletes_it(stub, world, calls):
    add_changed_update_up_to_change_set(stub, (
        resource_change("Add", "LogGroup", "AWS::Logs::LogGroup"),
        SUBNET_REPLACED,
    ))

    target = cluster_target(world)

    assert target.change_sets() == [(NAME, CHANGE_SET)]
    assert world.change_sets.pending() == [(NAME, CHANGE_SET)]
    assert target.lines() == ["~ stack mvp-cluster", "  + AWS::Logs::LogGroup LogGroup",
                              "  ~ AWS::EC2::Subnet PrivateSubnet (replacement: True)"]
    assert target.would() == "update 2 resource(s)"
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)

    world.discard_change_sets()

    stub.assert_no_pending_responses()
    assert world.change_sets.pending() == []
    assert "ExecuteChangeSet" not in [name for name, _ in calls]


def test_check_mode_through_run_plan_shows_the_change_set_then_deletes_it(stub, clocked_engine, calls):
    add_changed_update_up_to_change_set(stub, (
        resource_change("Add", "LogGroup", "AWS::Logs::LogGroup"),
        SUBNET_REPLACED,
    ))
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)
    rep = reporter(check=True)

    one_target(rep, clocked_engine)

    stub.assert_no_pending_responses()  # and no ExecuteChangeSet: it was never queued
    assert [name for name, _ in calls][-1] == "DeleteChangeSet"
    out = output(rep)
    assert "mvp-cluster: would:" in out
    assert "+ AWS::Logs::LogGroup LogGroup" in out
    assert "~ AWS::EC2::Subnet PrivateSubnet (replacement: True)" in out
    assert "would change: mvp-cluster  update 2 resource(s) (check: nothing was changed)" in out


def test_a_change_set_that_cannot_be_deleted_is_a_warning(stub, world):
    world.change_sets.add(NAME, CHANGE_SET)
    stub.add_client_error("delete_change_set", service_error_code="AccessDenied",
                          service_message="not authorized to perform: cloudformation:DeleteChangeSet",
                          http_status_code=403, expected_params=CHANGE_SET_REF)

    world.discard_change_sets()

    stub.assert_no_pending_responses()
    assert world.change_sets.pending() == []
    assert f"warning: could not delete change set {CHANGE_SET} of stack {NAME}: access denied" in output(world.reporter)
