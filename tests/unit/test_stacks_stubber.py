"""`Stacks` and `ensure_stack` against botocore's Stubber: the CloudFormation paths moto cannot produce.

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
from stubs import FakeClock, isolate_from_aws, make_client, stack_event_data
from botocore.stub import Stubber
from invoke import Exit, MockContext

from mvp_tasks.aws.clients import translate
from mvp_tasks.aws.stacks import CAPABILITIES, StackEvent, Stacks, failure_summary
from mvp_tasks.errors import (AwsError, CredentialsError, NotConfirmed, StackBusy, StackFailed, TemplateError,
                              WaitTimeout)
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.tasks import converge
from mvp_tasks.tasks.boundary import mvp_task
from mvp_tasks.tasks.converge import ensure_stack
from mvp_tasks.templates import Template

ACCOUNT = "123456789012"
NAME = "mvp-cluster"
STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4b"
# A stack re-created under the same name gets a new id.
NEW_STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/7c8d9e0f-4e60-11ef-9b2c-12a4b6c8d0e2"
CHANGE_SET = "mvp-20261101120000"
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


@pytest.fixture
def client(monkeypatch):
    isolate_from_aws(monkeypatch)
    return make_client("cloudformation")


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber


@pytest.fixture
def stacks(client, stub):
    return Stacks(client, sleep=lambda s: None)


@pytest.fixture(autouse=True)
def fixed_change_set_name(monkeypatch):
    # The change set name comes from the wall clock; pin it so requests can be matched exactly.
    monkeypatch.setattr(converge, "time", SimpleNamespace(strftime=lambda fmt: "20261101120000"))


def reporter(*, check: bool = False, yes: bool = False) -> Reporter:
    return Reporter(stream=io.StringIO(), interactive=False, check=check, yes=yes)


def output(rep: Reporter) -> str:
    return rep.stream.getvalue()


def ensure(stacks: Stacks, rep: Reporter, **overrides) -> Outcome:
    kwargs = dict(name=NAME, template=TEMPLATE, parameters=PARAMETERS, tags=TAGS, protect=False,
                  timeout=600, poll=5)
    kwargs.update(overrides)
    return ensure_stack(stacks, rep, **kwargs)


# --- 1. no-op change set ---------------------------------------------------------------------------


def test_change_set_without_changes_is_ok_and_deleted(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("CREATE_PENDING"), CHANGE_SET_REF)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=NO_CHANGES), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)
    rep = reporter()

    assert ensure(stacks, rep) is Outcome.OK

    stub.assert_no_pending_responses()
    assert "ok: mvp-cluster  no changes (UPDATE_COMPLETE)" in output(rep)
    assert [r.outcome for r in rep.recap.results] == [Outcome.OK]


def test_change_set_failed_for_another_reason_is_deleted_and_reported(stub, stacks):
    reason = "Template error: instance of Fn::GetAtt references undefined resource Vpcc"
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=reason), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)

    with pytest.raises(TemplateError) as raised:
        ensure(stacks, reporter())

    stub.assert_no_pending_responses()
    assert "rejected the change" in str(raised.value) and "Vpcc" in str(raised.value)


# --- 2. fast path ----------------------------------------------------------------------------------


def test_unchanged_stack_needs_no_change_set(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    # CloudFormation hands the body back as stored; only surrounding whitespace may differ.
    stub.add_response("get_template", get_template(BODY + "\n"), {"StackName": NAME, "TemplateStage": "Original"})
    rep = reporter()

    assert ensure(stacks, rep) is Outcome.OK

    stub.assert_no_pending_responses()  # and no CreateChangeSet: it was never queued
    assert "ok: mvp-cluster  up to date (UPDATE_COMPLETE)" in output(rep)


@pytest.mark.parametrize("deployed", [
    pytest.param({"parameters": {"Environment": "staging", "VpcCidr": "10.1.0.0/16"}}, id="default-changed"),
    pytest.param({"parameters": {"Environment": "production", "VpcCidr": "10.0.0.0/16"}}, id="value-changed"),
    pytest.param({"tags": {**DEPLOYED_TAGS, "team": "data"}}, id="tag-changed"),
])
def test_changed_parameters_or_tags_go_to_a_change_set_without_reading_the_template(stub, stacks, deployed):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE", **deployed), by())
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", describe_change_set("FAILED", reason=NO_CHANGES), CHANGE_SET_REF)
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)

    assert ensure(stacks, reporter()) is Outcome.OK

    stub.assert_no_pending_responses()


def test_unchanged_stack_gets_termination_protection_turned_on(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE", protected=False), by())
    stub.add_response("get_template", get_template(BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": NAME, "EnableTerminationProtection": True})
    rep = reporter()

    assert ensure(stacks, rep, protect=True) is Outcome.CHANGED

    stub.assert_no_pending_responses()
    assert "~ termination protection on" in output(rep)
    assert "changed: mvp-cluster  termination protection turned on" in output(rep)


# --- 3. ROLLBACK_COMPLETE --------------------------------------------------------------------------

FAILED_CREATE_REASON = "The following resource(s) failed to create: [PrivateSubnet]. Rollback requested by user."


def add_rollback_complete(stub: Stubber, protected: bool = False) -> None:
    stub.add_response("describe_stacks",
                      describe_stacks("ROLLBACK_COMPLETE", reason=FAILED_CREATE_REASON, protected=protected), by())


def test_rollback_complete_stack_is_deleted_and_created_again(stub, stacks):
    rolled_back = stack_event("ROLLBACK_COMPLETE", seconds=-60)
    add_rollback_complete(stub)
    stub.add_response("describe_stack_events", stack_events(rolled_back), by())
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
    rep = reporter(yes=True)

    assert ensure(stacks, rep) is Outcome.CHANGED

    stub.assert_no_pending_responses()
    out = output(rep)
    assert "- delete stack mvp-cluster (ROLLBACK_COMPLETE: its first create failed)" in out
    # Each event is shown once, and the one from before the delete not at all.
    assert out.count("DELETE_IN_PROGRESS") == 1 and out.count("DELETE_COMPLETE") == 1
    assert "11:59:00 ROLLBACK_COMPLETE" not in out
    assert "changed: mvp-cluster  stack created (CREATE_COMPLETE)" in out


def test_rollback_complete_stack_with_termination_protection_is_unprotected_first(stub, stacks):
    # A protected cluster whose first create failed keeps its protection, and DeleteStack refuses it.
    add_rollback_complete(stub, protected=True)
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": NAME, "EnableTerminationProtection": False})
    stub.add_response("describe_stack_events", stack_events(stack_event("ROLLBACK_COMPLETE", seconds=-60)), by())
    stub.add_response("delete_stack", {}, by())
    stub.add_response("describe_stacks", describe_stacks("DELETE_COMPLETE"), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(stack_event("DELETE_COMPLETE", seconds=9)), by(STACK_ID))
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params(protect=True))
    stub.add_response("describe_stacks", describe_stacks("CREATE_COMPLETE", stack_id=NEW_STACK_ID, protected=True),
                      by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_COMPLETE", seconds=30, stack_id=NEW_STACK_ID)), by(NEW_STACK_ID))

    assert ensure(stacks, reporter(yes=True), protect=True) is Outcome.CHANGED

    stub.assert_no_pending_responses()


def test_rollback_complete_stack_without_yes_and_terminal_is_not_deleted(stub, stacks):
    add_rollback_complete(stub)
    rep = reporter(yes=False)

    with pytest.raises(NotConfirmed) as raised:
        ensure(stacks, rep)

    stub.assert_no_pending_responses()  # and no DeleteStack: it was never queued
    assert "no terminal" in str(raised.value) and "--yes" in str(raised.value)
    assert "- delete stack mvp-cluster" in output(rep)


def test_rollback_complete_stack_in_check_mode_is_left_alone(stub, stacks):
    add_rollback_complete(stub)
    rep = reporter(check=True)

    assert ensure(stacks, rep) is Outcome.CHANGED

    stub.assert_no_pending_responses()
    out = output(rep)
    assert "mvp-cluster: would:" in out
    assert "would delete and re-create" in out and "(check: nothing was changed)" in out


# --- 4. failed update ------------------------------------------------------------------------------


def add_failed_update(stub: Stubber) -> None:
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


def test_failed_update_names_the_resource_and_the_reason(stub, stacks):
    add_failed_update(stub)
    rep = reporter()

    with pytest.raises(StackFailed) as raised:
        ensure(stacks, rep)

    stub.assert_no_pending_responses()
    message = str(raised.value)
    assert message.startswith("update of stack mvp-cluster ended in UPDATE_ROLLBACK_COMPLETE: ")
    assert "PrivateSubnet (AWS::EC2::Subnet) UPDATE_FAILED" in message
    assert "The CIDR '10.0.9.0/24' conflicts with another subnet" in message
    out = output(rep)
    assert "~ AWS::EC2::Subnet PrivateSubnet (replacement: True)" in out
    assert out.count("UPDATE_FAILED") == 1 and "UPDATE_ROLLBACK_COMPLETE" in out
    assert "changed:" not in out


def test_failed_update_through_the_task_boundary_exits_1_with_the_reason(stub, stacks):
    add_failed_update(stub)

    @mvp_task
    def up(c):
        ensure(stacks, reporter())

    with pytest.raises(Exit) as raised:
        up(MockContext())

    stub.assert_no_pending_responses()
    assert raised.value.code == 1
    assert raised.value.message.startswith("error: update of stack mvp-cluster ended in UPDATE_ROLLBACK_COMPLETE")
    assert "PrivateSubnet" in raised.value.message
    assert "conflicts with another subnet" in raised.value.message
    assert "\n" not in raised.value.message


def test_successful_update_of_outputs_only_reports_stack_updated(stub, stacks):
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

    assert ensure(stacks, rep) is Outcome.CHANGED

    stub.assert_no_pending_responses()
    out = output(rep)
    assert "~ stack settings (parameters, tags or outputs)" in out
    assert "changed: mvp-cluster  stack updated" in out


# --- 5. busy stack ---------------------------------------------------------------------------------


def test_stack_already_updating_is_busy_and_gets_no_change_set(stub, stacks):
    stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())

    with pytest.raises(StackBusy) as raised:
        ensure(stacks, reporter())

    stub.assert_no_pending_responses()
    assert str(raised.value) == (
        "stack mvp-cluster is UPDATE_IN_PROGRESS: another operation is running "
        "(wait for it to finish (watch `inv cluster.status` or `inv app.status`), then re-run)"
    )


def test_change_set_refused_because_the_stack_became_busy_is_stack_busy(stub, stacks):
    busy = f"Stack:{STACK_ID} is in UPDATE_IN_PROGRESS state and can not be updated."
    stub.add_response("describe_stacks", describe_stacks("UPDATE_COMPLETE"), by())
    stub.add_response("get_template", get_template(DEPLOYED_BODY), {"StackName": NAME, "TemplateStage": "Original"})
    stub.add_client_error("create_change_set", service_error_code="ValidationError", service_message=busy,
                          http_status_code=400, expected_params=CREATE_CHANGE_SET)

    with pytest.raises(StackBusy) as raised:
        ensure(stacks, reporter())

    stub.assert_no_pending_responses()
    assert "stack mvp-cluster is busy with another operation" in str(raised.value)
    assert busy in str(raised.value)
    assert "then re-run" in str(raised.value)


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
        ensure(stacks, reporter())

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


def test_failed_create_names_the_resource_without_the_cancelled_noise(stub, stacks):
    events = failed_create_events()
    add_missing_stack(stub)
    stub.add_response("create_stack", {"StackId": NEW_STACK_ID}, create_stack_params())
    stub.add_response("describe_stacks", describe_stacks("CREATE_IN_PROGRESS", stack_id=NEW_STACK_ID),
                      by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(*events[:3]), by(NEW_STACK_ID))
    stub.add_response("describe_stacks", describe_stacks(
        "ROLLBACK_COMPLETE", stack_id=NEW_STACK_ID,
        reason="The following resource(s) failed to create: [LogGroup, PrivateSubnet]. Rollback requested by user."),
        by(NEW_STACK_ID))
    stub.add_response("describe_stack_events", stack_events(*events), by(NEW_STACK_ID))
    rep = reporter()

    with pytest.raises(StackFailed) as raised:
        ensure(stacks, rep)

    stub.assert_no_pending_responses()
    message = str(raised.value)
    assert message.startswith("create of stack mvp-cluster ended in ROLLBACK_COMPLETE: "
                              "PrivateSubnet (AWS::EC2::Subnet) CREATE_FAILED: Resource handler returned message")
    assert "10.0.300.0/24" in message
    assert "LogGroup" not in message and "cancelled" not in message
    out = output(rep)
    assert "+ stack mvp-cluster from t.yml" in out and "+ AWS::EC2::Subnet PrivateSubnet" in out
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


# --- 8. bounded wait -------------------------------------------------------------------------------


def test_wait_for_stack_times_out_saying_cloudformation_keeps_going(client, stub):
    clock = FakeClock()
    stacks = Stacks(client, sleep=clock.sleep, clock=clock)
    started = stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=0)
    for _ in range(4):  # at t = 0, 10, 20 and 30 s
        stub.add_response("describe_stacks", describe_stacks("UPDATE_IN_PROGRESS"), by())
        stub.add_response("describe_stack_events", stack_events(started), by())
    seen = []

    with pytest.raises(WaitTimeout) as raised:
        stacks.wait_for_stack(NAME, timeout=30, poll=10, on_event=seen.append)

    stub.assert_no_pending_responses()
    assert clock.slept == [10, 10, 10]
    assert [e.status for e in seen] == ["UPDATE_IN_PROGRESS"]  # shown once, not once per poll
    message = str(raised.value)
    assert "stack mvp-cluster is still UPDATE_IN_PROGRESS after 30 s" in message
    assert "keeps going on its own" in message and "inv cluster.status" in message


# --- 9. check mode ---------------------------------------------------------------------------------


def test_check_mode_shows_the_change_set_then_deletes_it(stub, stacks):
    add_changed_update_up_to_change_set(stub, (
        resource_change("Add", "LogGroup", "AWS::Logs::LogGroup"),
        SUBNET_REPLACED,
    ))
    stub.add_response("delete_change_set", {}, CHANGE_SET_REF)
    rep = reporter(check=True)

    assert ensure(stacks, rep) is Outcome.CHANGED

    stub.assert_no_pending_responses()  # and no ExecuteChangeSet: it was never queued
    out = output(rep)
    assert "mvp-cluster: would:" in out
    assert "+ AWS::Logs::LogGroup LogGroup" in out
    assert "~ AWS::EC2::Subnet PrivateSubnet (replacement: True)" in out
    assert "changed: mvp-cluster  would update 2 resource(s) (check: nothing was changed)" in out
