"""A protected stack whose delete fails is protected again: `_delete` turns termination protection
off to delete, and registers an undo that turns it back on when the delete is refused or ends in
DELETE_FAILED. Against botocore's Stubber, reading the calls made: moto cannot fail a delete this
way (it implements no UpdateTerminationProtection and never ends a stack in DELETE_FAILED)."""

from __future__ import annotations

import pytest
from test_stacks_stubber import (  # noqa: F401 - fixtures
    NAME, NEW_STACK_ID, STACK_ID, add_rollback_complete, by, calls, client, clock, cluster_target, create_stack_params,
    describe_stacks, engine_for, event, new_world, output, stack_event, stack_events, stub, world,
)

from mvp_tasks.plan.steps import Plan
from mvp_tasks.report import Outcome
from mvp_tasks.tasks.boundary import carry_out

DELETE_FAILED_REASON = "The following resource(s) failed to delete: [Vpc]. "
VPC_IN_USE = ("Resource handler returned message: \"The vpc 'vpc-0abc1234def567890' has dependencies and cannot "
              "be deleted.\" (HandlerErrorCode: GeneralServiceException)")


def protection_calls(calls: list) -> list[tuple[str, bool]]:
    return [(params["StackName"], params["EnableTerminationProtection"])
            for name, params in calls if name == "UpdateTerminationProtection"]


def unprotect_then_delete(stub) -> None:
    """The plan (a protected stack left in ROLLBACK_COMPLETE: re-create it), then the delete's start."""
    add_rollback_complete(stub, protected=True, ref=STACK_ID)
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": NAME, "EnableTerminationProtection": False})
    stub.add_response("describe_stack_events", stack_events(stack_event("ROLLBACK_COMPLETE", seconds=-60)),
                      by(STACK_ID))


def recreate_target(stub, world):
    add_rollback_complete(stub, protected=True)
    return cluster_target(world, protect=True)


def test_a_delete_ending_in_delete_failed_turns_protection_back_on(stub, world, calls):
    target = recreate_target(stub, world)
    unprotect_then_delete(stub)
    stub.add_response("delete_stack", {}, by())
    stub.add_response("describe_stacks", describe_stacks("DELETE_FAILED", reason=DELETE_FAILED_REASON), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(
        stack_event("ROLLBACK_COMPLETE", seconds=-60),
        stack_event("DELETE_IN_PROGRESS", "User Initiated", seconds=1),
        event("Vpc", "AWS::EC2::VPC", "DELETE_FAILED", VPC_IN_USE, seconds=8),
        stack_event("DELETE_FAILED", DELETE_FAILED_REASON, seconds=9)), by(STACK_ID))
    # The undo: the stack is still there (DELETE_FAILED), so it is protected again, by its id.
    stub.add_response("describe_stacks", describe_stacks("DELETE_FAILED", reason=DELETE_FAILED_REASON), by(STACK_ID))
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": STACK_ID, "EnableTerminationProtection": True})

    results = carry_out(engine_for(world), Plan("cluster.up", [target]))

    stub.assert_no_pending_responses()
    assert protection_calls(calls) == [(NAME, False), (STACK_ID, True)]
    assert [r.outcome for r in results.results] == [Outcome.FAILED]
    assert "DELETE_FAILED" in results.results[0].message and "has dependencies" in results.results[0].message
    assert f"warning: {NAME}: termination protection of stack {NAME} turned back on" in output(world.reporter)
    assert not any(name == "CreateStack" for name, _ in calls)


def test_a_refused_delete_turns_protection_back_on(stub, world, calls):
    target = recreate_target(stub, world)
    unprotect_then_delete(stub)
    stub.add_client_error("delete_stack", "AccessDenied", "User: arn:aws:sts::123456789012:assumed-role/deploy/ci "
                          "is not authorized to perform: cloudformation:DeleteStack", 403, expected_params=by())
    stub.add_response("describe_stacks", describe_stacks("ROLLBACK_COMPLETE"), by(STACK_ID))
    stub.add_response("update_termination_protection", {"StackId": STACK_ID},
                      {"StackName": STACK_ID, "EnableTerminationProtection": True})

    results = carry_out(engine_for(world), Plan("cluster.up", [target]))

    stub.assert_no_pending_responses()
    assert protection_calls(calls) == [(NAME, False), (STACK_ID, True)]
    assert results.results[0].outcome is Outcome.FAILED


def test_a_stack_that_was_deleted_is_not_protected_again_when_a_later_step_fails(stub, world, calls):
    target = recreate_target(stub, world)
    unprotect_then_delete(stub)
    stub.add_response("delete_stack", {}, by())
    stub.add_response("describe_stacks", describe_stacks("DELETE_COMPLETE"), by(STACK_ID))
    stub.add_response("describe_stack_events", stack_events(stack_event("DELETE_COMPLETE", seconds=9)), by(STACK_ID))
    stub.add_client_error("create_stack", "InsufficientCapabilitiesException", "Requires capabilities : "
                          "[CAPABILITY_NAMED_IAM]", 400, expected_params=create_stack_params(protect=True))

    results = carry_out(engine_for(world), Plan("cluster.up", [target]))

    stub.assert_no_pending_responses()  # no DescribeStacks, no UpdateTerminationProtection after the delete
    assert protection_calls(calls) == [(NAME, False)]
    assert results.results[0].outcome is Outcome.FAILED
    assert "turned back on" not in output(world.reporter)
