"""The rollout watcher's fail-fast rules and its rollback, against botocore's Stubber where the
sandbox cannot show them (tests/integration/test_sandbox_ecs.py and tests/e2e/test_bad_days.py
cover the paths it can: failed tasks, stopped reasons, exit codes, target health, logs,
StopServiceDeployment)."""

from __future__ import annotations

import pytest
from stubs import (  # noqa: F401 - fixtures
    CLUSTER, DESCRIBE, NEW, NEW_TASKDEF, OLD, OLD_TASKDEF, SERVICE, clock, deployment, describe_services, ecs,
    ecs_stub, no_aws_environment, old_deployment, service, services,
)

from mvp_tasks.aws.services import NotRolledBack, RolloutFailed
from mvp_tasks.errors import AwsError, WaitTimeout

NO_STOPPED_TASKS = {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "STOPPED", "startedBy": NEW}


def test_a_deployment_of_another_task_definition_than_registered_fails_at_once(ecs_stub, services):
    # Stubber only: a deployment started by someone else between our update and our read; the
    # sandbox starts exactly what it is asked to.
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, taskdef=OLD_TASKDEF), old_deployment(),
        running=2)), DESCRIBE)
    ecs_stub.add_response("list_tasks", {"taskArns": []}, NO_STOPPED_TASKS)

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, task_definition=NEW_TASKDEF, timeout=60, poll=5)

    ecs_stub.assert_no_pending_responses()
    assert raised.value.message == (f"deployment {NEW} of service {SERVICE} runs {SERVICE}:7, not {SERVICE}:8 "
                                    "that this run registered")
    assert not raised.value.left


def test_an_unable_event_after_the_deployment_started_fails_it_and_an_older_one_does_not(ecs_stub, services, clock):
    # Stubber only: ECS's placement failures (no capacity, a missing subnet) with AWS's wording;
    # the sandbox places every task it is asked to.
    unable = (f"(service {SERVICE}) was unable to place a task because no container instance met all of its "
              "requirements. Reason: No Container Instances were found in your cluster.")
    stale = service(deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, seconds=200), old_deployment(),
                    running=2, events=(unable,))  # the event is from before ours (at 100 s)
    fresh = service(deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, seconds=50), old_deployment(),
                    running=2, events=(unable,))
    ecs_stub.add_response("describe_services", describe_services(stale), DESCRIBE)
    ecs_stub.add_response("describe_services", describe_services(fresh), DESCRIBE)
    ecs_stub.add_response("list_tasks", {"taskArns": []}, NO_STOPPED_TASKS)

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=60, poll=5)

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5]
    assert raised.value.message == f"deployment {NEW} of service {SERVICE} failed: ECS cannot start its tasks: {unable}"


def test_failed_tasks_below_the_threshold_wait_and_at_it_fail(ecs_stub, services):
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, failed=2), old_deployment(),
        running=2)), DESCRIBE)
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, failed=3), old_deployment(),
        running=2)), DESCRIBE)
    ecs_stub.add_response("list_tasks", {"taskArns": []}, NO_STOPPED_TASKS)

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=60, poll=5, failed_tasks=3)

    ecs_stub.assert_no_pending_responses()
    assert raised.value.message == f"deployment {NEW} of service {SERVICE} failed: 3 of its tasks stopped"


def test_a_quiet_wait_says_so_every_quiet_period(ecs_stub, services, clock):
    # Stubber only: a minute without change; the sandbox never stalls.
    stuck = describe_services(service(deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=1, pending=1),
                                      old_deployment(), running=3, pending=1))
    for _ in range(9):  # at t = 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 61.5 and 70 s
        ecs_stub.add_response("describe_services", stuck, DESCRIBE)
    quiet: list[float] = []

    with pytest.raises(WaitTimeout):
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=70, poll=30, quiet=60,
                                  on_progress=lambda state: None, on_quiet=lambda state, seconds: quiet.append(seconds))

    ecs_stub.assert_no_pending_responses()
    assert quiet == [61.5]


def test_roll_back_stops_the_one_deployment_in_progress(ecs_stub, services):
    arn = f"arn:aws:ecs:us-east-1:123456789012:service-deployment/{CLUSTER}/{SERVICE}/ejGvqq2ilnbKT9qj0vLJe"
    ecs_stub.add_response("list_service_deployments", {"serviceDeployments": [{"serviceDeploymentArn": arn,
                                                                           "status": "IN_PROGRESS"}]},
                      {"cluster": CLUSTER, "service": SERVICE, "status": ["PENDING", "IN_PROGRESS"]})
    ecs_stub.add_response("stop_service_deployment", {"serviceDeploymentArn": arn},
                      {"serviceDeploymentArn": arn, "stopType": "ROLLBACK"})

    said = services.roll_back(CLUSTER, SERVICE, OLD_TASKDEF, NEW_TASKDEF)

    ecs_stub.assert_no_pending_responses()
    assert said == f"rolling back: ECS returns service {SERVICE} to its previous deployment"


def test_without_stop_service_deployment_the_service_gets_its_previous_task_definition(ecs_stub, services):
    # Stubber only: a region or endpoint without the service-deployment API; the sandbox answers it.
    ecs_stub.add_client_error("list_service_deployments", "InvalidRequestException", "Unknown operation")
    ecs_stub.add_response("update_service", {"service": service(
        deployment(OLD, "PRIMARY", "IN_PROGRESS", desired=2, running=0, taskdef=OLD_TASKDEF), running=2)},
        {"cluster": CLUSTER, "service": SERVICE, "taskDefinition": OLD_TASKDEF})

    said = services.roll_back(CLUSTER, SERVICE, OLD_TASKDEF, NEW_TASKDEF)

    ecs_stub.assert_no_pending_responses()
    assert said == f"rolled back: service {SERVICE} runs {SERVICE}:7 again"


def test_without_stop_service_deployment_a_forced_deployment_of_the_same_definition_is_left_to_ecs(ecs_stub, services):
    # Stubber only: as above. A force of the same definition would pull the failed image again
    # before the tag is pointed back, so nothing is done and the caller says so.
    ecs_stub.add_client_error("list_service_deployments", "InvalidRequestException", "Unknown operation")

    assert services.roll_back(CLUSTER, SERVICE, NEW_TASKDEF, NEW_TASKDEF) == ""
    ecs_stub.assert_no_pending_responses()


def test_a_rollback_of_a_named_deployment_reads_it_again_and_leaves_another_runs_alone(ecs_stub, services):
    # Stubber only: another run's deployment started while the person sat at the offered rollback's
    # prompt; the sandbox cannot place a second run between two calls of this one.
    newer = "ecs-svc/1111111111111111111"
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(newer, "PRIMARY", "IN_PROGRESS", desired=2, running=0), deployment(NEW, "ACTIVE", "IN_PROGRESS",
                                                                                      desired=2, running=0),
        running=2)), DESCRIBE)

    with pytest.raises(NotRolledBack) as raised:
        services.roll_back(CLUSTER, SERVICE, OLD_TASKDEF, NEW_TASKDEF, deployment_id=NEW)

    ecs_stub.assert_no_pending_responses()  # nothing stopped, nothing updated
    assert raised.value.message == f"deployment {NEW} is not service {SERVICE}'s any more: nothing rolled back"


def test_a_rollback_of_a_deployment_that_completed_meanwhile_does_nothing(ecs_stub, services):
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "COMPLETED", desired=2, running=2), running=2)), DESCRIBE)

    with pytest.raises(NotRolledBack, match="completed: nothing rolled back"):
        services.roll_back(CLUSTER, SERVICE, OLD_TASKDEF, NEW_TASKDEF, deployment_id=NEW)
    ecs_stub.assert_no_pending_responses()


def test_a_rollback_the_policy_denies_is_said_not_taken_for_a_missing_api(ecs_stub, services):
    # Stubber only: the sandbox allows every call; IAM's answer for a role without the action.
    ecs_stub.add_client_error("list_service_deployments", "AccessDeniedException",
                              "User is not authorized to perform: ecs:ListServiceDeployments")

    with pytest.raises(AwsError, match="access denied: User is not authorized to perform: ecs:ListServiceDeployments"):
        services.roll_back(CLUSTER, SERVICE, NEW_TASKDEF, NEW_TASKDEF)
    ecs_stub.assert_no_pending_responses()
