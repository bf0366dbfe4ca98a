"""CloudFormation's bad days against botocore's Stubber, for what ministack cannot produce (each test
says why in one line); everything it can produce is end to end in tests/e2e/test_cfn_bad_days.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.stub import Stubber
from stubs import isolate_from_aws, make_client, stack_event_data

from mvp_tasks.aws.stacks import Stacks, StackInfo
from mvp_tasks.errors import StackFailed
from mvp_tasks.plan.planner import repair_step
from mvp_tasks.plan.steps import CancelUpdate, ContinueRollback

ACCOUNT = "123456789012"
NAME = "stage"
STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4b"
OPERATION = "5b0d3a8e-1f2c-4e6a-9b7d-2c4e6f8a0b1c"
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def cfn(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("cloudformation")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def stack(status: str, **extra) -> StackInfo:
    return StackInfo.from_api({"StackName": NAME, "StackId": STACK_ID, "StackStatus": status, "CreationTime": T0,
                               "Tags": [{"Key": "mvp:cluster", "Value": NAME}], **extra})


def event(logical: str, rtype: str, status: str, reason: str, seconds: int, operation: str = OPERATION):
    data = stack_event_data(NAME, STACK_ID, logical, rtype, status, reason, T0 + timedelta(seconds=seconds))
    data["OperationId"] = operation
    return data


def test_failed_update_names_every_failing_resource_of_its_operation_from_describe_events(cfn):
    # Why Stubber: ministack's stack events carry no OperationId, and its DescribeEvents lists only validation failures.
    client, stubber = cfn
    stubber.add_response("describe_events", {"OperationEvents": [
        {"EventId": "e1", "StackId": STACK_ID, "OperationId": OPERATION, "OperationType": "UPDATE_STACK",
         "OperationStatus": "FAILED", "EventType": "PROVISIONING_ERROR", "LogicalResourceId": "Service",
         "ResourceType": "AWS::ECS::Service", "Timestamp": T0 + timedelta(seconds=5), "ResourceStatus": "UPDATE_FAILED",
         "ResourceStatusReason": "Resource handler returned message: \"Invalid request provided: TaskDefinition "
                                 "is inactive\"\n(RequestToken: 1f2e)"},
        {"EventId": "e2", "StackId": STACK_ID, "OperationId": OPERATION, "OperationType": "UPDATE_STACK",
         "OperationStatus": "FAILED", "EventType": "PROVISIONING_ERROR", "LogicalResourceId": "Listener",
         "ResourceType": "AWS::ElasticLoadBalancingV2::Listener", "Timestamp": T0 + timedelta(seconds=6),
         "ResourceStatus": "UPDATE_FAILED", "ResourceStatusReason": "Resource update cancelled"},
        {"EventId": "e3", "StackId": STACK_ID, "OperationId": OPERATION, "OperationType": "UPDATE_STACK",
         "OperationStatus": "FAILED", "EventType": "VALIDATION_ERROR", "LogicalResourceId": "Bucket",
         "ResourceType": "AWS::S3::Bucket", "Timestamp": T0 + timedelta(seconds=1),
         "ValidationFailureMode": "FAIL", "ValidationName": "NAME_CONFLICT_VALIDATION",
         "ValidationStatus": "FAILED", "ValidationStatusReason": "Bucket studio-assets already exists",
         "ValidationPath": "/Resources/Bucket"},
    ]}, {"StackName": STACK_ID, "OperationId": OPERATION, "Filters": {"FailedEvents": True}})
    # The events the wait saw: only the stack's own, the resource events scrolled by before it looked.
    from mvp_tasks.aws.stacks import _event

    events = [_event(event(NAME, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated", 0)),
              _event(event(NAME, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", "", 30))]
    with pytest.raises(StackFailed) as failed:
        Stacks(client).check_settled(stack("UPDATE_ROLLBACK_COMPLETE"), events, {"UPDATE_COMPLETE"}, "update")
    message = str(failed.value)
    assert "\n" not in message
    parts = message.split(" ended in UPDATE_ROLLBACK_COMPLETE: ", 1)[1].split("; ")
    # One part per failing resource, root causes only (the cancelled listener only echoes them), oldest first.
    assert parts == [
        "Bucket (AWS::S3::Bucket) VALIDATION_FAILED: Bucket studio-assets already exists (at /Resources/Bucket)",
        "Service (AWS::ECS::Service) UPDATE_FAILED: Resource handler returned message: \"Invalid request provided: "
        "TaskDefinition is inactive\" (RequestToken: 1f2e)",
    ], message


def test_update_in_progress_is_cancelled(cfn):
    # Why Stubber: the request's exact shape (the e2e test cancels an update ministack holds in progress).
    client, stubber = cfn
    step = repair_step(Stacks(client), stack("UPDATE_IN_PROGRESS"))
    assert step == CancelUpdate(NAME)
    stubber.add_response("cancel_update_stack", {}, {"StackName": NAME})
    Stacks(client).cancel_update(NAME)


def test_continue_rollback_offers_the_blocking_resources_and_sends_the_chosen_skip(cfn):
    # Why Stubber: the e2e test repairs one blocking resource; this one has two and asks for the AWS-shaped request.
    client, stubber = cfn
    history = [
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated", 0),
        event("Service", "AWS::ECS::Service", "UPDATE_COMPLETE", "", 5),
        event("Queue", "AWS::SQS::Queue", "UPDATE_FAILED", "Queue busy", 6),
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed", 7),
        event("Service", "AWS::ECS::Service", "UPDATE_FAILED", "Service mvp-svc did not stabilize", 9),
        event("Table", "AWS::DynamoDB::Table", "UPDATE_FAILED", "Table in use", 10),
        event("Queue", "AWS::SQS::Queue", "UPDATE_COMPLETE", "", 11),
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_FAILED", "The following resource(s) failed", 12),
    ]
    stubber.add_response("describe_stack_events", {"StackEvents": list(reversed(history))}, {"StackName": STACK_ID})
    step = repair_step(Stacks(client), stack("UPDATE_ROLLBACK_FAILED"), ("Service",))
    assert isinstance(step, ContinueRollback)
    assert step.skip == ("Service",)
    assert [b[0] for b in step.blocked] == ["Service", "Table"]  # Queue rolled back in the end
    assert "  - skip AWS::ECS::Service Service: Service mvp-svc did not stabilize" in step.lines()
    assert "  ~ retry AWS::DynamoDB::Table Table: Table in use" in step.lines()
    stubber.add_response("continue_update_rollback", {}, {"StackName": NAME, "ResourcesToSkip": ["Service"]})
    Stacks(client).continue_update_rollback(NAME, step.skip)


def test_stuck_states_name_their_repair_in_planning():
    from mvp_tasks.aws.stacks import repair_command
    from mvp_tasks.plan.stacks import _stuck_hint

    assert repair_command({"mvp:cluster": "stage"}) == "inv cluster.repair stage"
    assert repair_command({"mvp:cluster": "stage", "mvp:project": "museum"}) == "inv app.repair museum --cluster stage"
    assert "inv app.repair museum --cluster stage" in _stuck_hint("UPDATE_ROLLBACK_FAILED",
                                                                  "inv app.repair museum --cluster stage")
    assert "RetainResources" not in _stuck_hint("DELETE_FAILED", "inv cluster.repair stage")


def test_a_cancelled_update_says_why_its_stack_rolled_back():
    # No AWS call at all: the line of a rollback no resource failed in (ministack's cancel lets the
    # resource in flight finish); tests/e2e/test_cfn_bad_days.py sees it end to end.
    from mvp_tasks.aws.stacks import StackEvent

    def stack_event(status: str, reason: str = "") -> StackEvent:
        return StackEvent(status, None, NAME, "AWS::CloudFormation::Stack", status, reason)

    events = [stack_event("UPDATE_IN_PROGRESS", "User Initiated"),
              StackEvent("gate", None, "Gate", "Custom::Gate", "UPDATE_COMPLETE"),
              stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated"),
              stack_event("UPDATE_ROLLBACK_COMPLETE")]
    with pytest.raises(StackFailed) as failed:
        Stacks(None).check_settled(stack("UPDATE_ROLLBACK_COMPLETE"), events, {"UPDATE_COMPLETE"}, "update")
    assert str(failed.value) == ("update of stack stage ended in UPDATE_ROLLBACK_COMPLETE: "
                                 "its rollback began: User Initiated")
