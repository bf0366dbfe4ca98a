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
    step = repair_step(Stacks(client), stack("UPDATE_IN_PROGRESS", LastUpdatedTime=T0 + timedelta(minutes=5)))
    # The step names the update it was planned for: this stack, the update begun at that time.
    assert step == CancelUpdate(NAME, stack_id=STACK_ID, last_updated=T0 + timedelta(minutes=5))
    assert step.lines() == [f"~ stack {NAME}: cancel the update in progress since 2026-11-01 12:05:00 UTC "
                            "(CloudFormation rolls it back)"]
    stubber.add_response("cancel_update_stack", {}, {"StackName": NAME})
    Stacks(client).cancel_update(NAME)


# --- applying a cancel: only the update that was planned ------------------------------------------
# No lock keeps other runs off the stack while the person reads the plan (the hung run holds it), so
# applying reads the stack again. Why Stubber: ministack cannot end a held update and begin another
# one between planning and applying within one `inv` run.

PLANNED = T0 + timedelta(minutes=5)  # the LastUpdatedTime of the update that was planned
OTHER_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/7c8d9e0f-4e60-11ef-9b2c-12a4b6c8d0e2"


def described(status: str, last_updated: datetime | None = PLANNED, stack_id: str = STACK_ID) -> dict:
    data = {"StackName": NAME, "StackId": stack_id, "StackStatus": status, "CreationTime": T0,
            "Tags": [{"Key": "mvp:cluster", "Value": NAME}]}
    if last_updated is not None:
        data["LastUpdatedTime"] = last_updated
    return {"Stacks": [data]}


def apply_cancel(client, kind: str = "cluster", project: str = ""):
    from types import SimpleNamespace

    from stubs import FakeClock, make_clocked_world
    from test_stacks_stubber import reporter

    from mvp_tasks.apply.guard import Guard
    from mvp_tasks.apply.steps import TargetRun, apply_step
    from mvp_tasks.plan.steps import Action, TargetKind, TargetPlan
    from mvp_tasks.settings import ClusterSettings

    cluster = ClusterSettings(name=NAME, template="cluster.yml", protected=False, promote_from="", tag=NAME)
    settings = SimpleNamespace(wait_timeout=600, poll_interval=5, parallel=1, clusters={NAME: cluster})
    # A deploy history with nothing in it: the step takes no lock (the hung run holds it) and records
    # nothing itself (the executor does).
    world = make_clocked_world(settings, reporter(yes=True), SimpleNamespace(cloudformation=client), clock=FakeClock(),
                               history=SimpleNamespace())
    step = CancelUpdate(NAME, stack_id=STACK_ID, last_updated=PLANNED)
    target = TargetPlan(f"{project}@{NAME}" if project else NAME, kind=TargetKind(kind), project=project,
                        cluster=NAME, action=Action.REPAIR, steps=[step])
    apply_step(TargetRun(world, target, Guard(world, target, cluster), cluster), step)


def test_the_planned_update_still_in_progress_is_cancelled(cfn):
    client, stubber = cfn
    stubber.add_response("describe_stacks", described("UPDATE_IN_PROGRESS"), {"StackName": NAME})
    stubber.add_response("describe_stack_events", {"StackEvents": [event(NAME, "AWS::CloudFormation::Stack",
                         "UPDATE_IN_PROGRESS", "User Initiated", 300)]}, {"StackName": NAME})
    stubber.add_response("cancel_update_stack", {}, {"StackName": NAME})
    stubber.add_response("describe_stacks", described("UPDATE_ROLLBACK_COMPLETE"), {"StackName": NAME})
    stubber.add_response("describe_stack_events", {"StackEvents": [
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE", "", 320),
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated", 310),
        event(NAME, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated", 300)]}, {"StackName": NAME})
    apply_cancel(client)


@pytest.mark.parametrize(("now", "change"), [
    # The hung update ended while the plan waited, and another run began an update of its own.
    (described("UPDATE_IN_PROGRESS", PLANNED + timedelta(seconds=40)),
     "another update is in progress, begun 2026-11-01 12:05:40 UTC"),
    # The hung update ended (the held resource let go), and nothing else began.
    (described("UPDATE_COMPLETE"), "that update is over: the stack is UPDATE_COMPLETE"),
    (described("UPDATE_ROLLBACK_IN_PROGRESS"), "that update is over: the stack is UPDATE_ROLLBACK_IN_PROGRESS"),
    # Deleted and made again under the same name, and being updated.
    (described("UPDATE_IN_PROGRESS", stack_id=OTHER_ID), "it is another stack of that name now (UPDATE_IN_PROGRESS)"),
], ids=["another-update", "over", "rolling-back", "re-created"])
def test_a_stack_no_longer_in_the_planned_update_is_refused_and_nothing_is_cancelled(cfn, now, change):
    from mvp_tasks.errors import MvpError

    client, stubber = cfn
    stubber.add_response("describe_stacks", now, {"StackName": NAME})
    # No other response: a CancelUpdateStack (or any further call) would fail the test.
    with pytest.raises(MvpError) as refused:
        apply_cancel(client)
    assert str(refused.value) == (f"stack {NAME} changed since the cancel was planned ({change}); nothing was "
                                  f"cancelled (look again: `inv cluster.repair {NAME} --check`)")
    assert "\n" not in str(refused.value)


def test_an_app_stack_gone_since_planning_is_refused_naming_app_repair(cfn):
    client, stubber = cfn
    stubber.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
                             expected_params={"StackName": NAME})
    from mvp_tasks.errors import MvpError

    with pytest.raises(MvpError) as refused:
        apply_cancel(client, kind="app", project="museum")
    assert str(refused.value) == (f"stack {NAME} changed since the cancel was planned (it is gone); nothing was "
                                  f"cancelled (look again: `inv app.repair museum --cluster {NAME} --check`)")


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
