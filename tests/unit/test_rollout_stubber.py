"""ECS rollouts and app targets against botocore's Stubber: the paths moto cannot produce.

Deployments that roll out, trip the circuit breaker, vanish or never finish; a service that is
gone; rollouts of one cluster read together; an app stack whose update rolls back or that is
busy; the deploy lock, the history record and the undo of a moved tag around an app target, as
`plan.planner` plans it and `apply.executor.Engine` applies it. Every response is shaped like the
documented DescribeServices / UpdateService / CloudFormation / DynamoDB answers (the Stubber
validates requests and responses against the service models). Each test queues the exact calls
it expects, in order, and ends with `assert_no_pending_responses()`; an unqueued call fails.
"""

from __future__ import annotations

import io
import os
import socket
import textwrap
from types import SimpleNamespace

import botocore.exceptions
from botocore.stub import ANY
import pytest
from stubs import (  # noqa: F401 - fixtures
    ACCOUNT, CLUSTER, CLUSTER_ARN, DESCRIBE, NEW, NEW_TASKDEF, OLD, OLD_TASKDEF, REGION, SERVICE, at, clock, deployment,
    describe_services, ecs, ecs_stub, log_calls, make_client, make_clocked_world, no_aws_environment, old_deployment,
    service, services, stack_event_data,
)
from botocore.stub import ANY, Stubber
from invoke import Exit, MockContext

from mvp_tasks.settings import RolloutSettings, StateSettings
from mvp_tasks.apply import guard as guard_module
from mvp_tasks.apply.executor import Engine
from mvp_tasks.tasks.boundary import carry_out, finish, offer_rollbacks
from mvp_tasks.apply.guard import Guard
from mvp_tasks.apply.steps import TargetRun, apply_step
from mvp_tasks.state import store as history_module
from mvp_tasks.aws.services import RolloutFailed, ServiceReader, Services, ServiceState
from mvp_tasks.aws.stacks import CAPABILITIES
from mvp_tasks.errors import AwsError, MvpError, StackBusy, WaitTimeout
from mvp_tasks.plan import stacks as plan_stacks
from mvp_tasks.plan.planner import plan_deploy, plan_promote, plan_update
from mvp_tasks.plan.steps import MoveTag, Plan, RollService, TargetPlan
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.settings import ClusterSettings, ProjectSettings
from mvp_tasks.tasks.boundary import mvp_task

SERVICE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}"
ROLLBACK = "ecs-svc/1187230564839024455"  # the one the circuit breaker starts to go back
CIRCUIT_BREAKER = "ECS deployment circuit breaker: tasks failed to start."


def without_rollout_state(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("rolloutState", "rolloutStateReason")}


def reporter(*, check: bool = False) -> Reporter:
    return Reporter(stream=io.StringIO(), interactive=False, check=check, yes=True)


def output(rep: Reporter) -> str:
    return rep.stream.getvalue()


# --- 1. a rollout that completes -------------------------------------------------------------------


def test_rollout_that_completes_returns_the_final_state_and_reports_only_changes(ecs_stub, services, clock):
    # Stubber only: each DescribeServices answer and every sleep between them exactly; a live sandbox's timing varies.
    starting = describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, pending=2),
        old_deployment(), running=2, pending=2))
    draining = describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=2),
        old_deployment(desired=0, running=1), running=3))
    done = describe_services(service(
        deployment(NEW, "PRIMARY", "COMPLETED", desired=2, running=2), running=2,
        events=(f"(service {SERVICE}) has reached a steady state.",
                f"(service {SERVICE}) (deployment {NEW}) deployment completed.")))
    for response in (starting, starting, draining, done):
        ecs_stub.add_response("describe_services", response, DESCRIBE)
    seen: list[str] = []

    state = services.wait_for_rollout(CLUSTER, SERVICE, timeout=600, poll=15,
                                      on_progress=lambda s: seen.append(s.progress()))

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5, 1.0, 2.0]  # soon after the start, then less and less often up to `poll`
    assert isinstance(state, ServiceState)
    assert (state.name, state.cluster, state.running, state.desired) == (SERVICE, CLUSTER, 2, 2)
    assert state.task_definition == NEW_TASKDEF
    assert [d.id for d in state.deployments] == [NEW]
    assert state.primary.rollout_state == "COMPLETED" and state.rollout == "COMPLETED"
    assert state.events[0] == f"(service {SERVICE}) has reached a steady state."
    # The second, identical poll is not reported again.
    assert seen == [
        f"running 2/2, pending 2; deployment {NEW} IN_PROGRESS; 1 older deployment(s) draining",
        f"running 3/2, pending 0; deployment {NEW} IN_PROGRESS; 1 older deployment(s) draining",
        f"running 2/2, pending 0; deployment {NEW} COMPLETED",
    ]


def test_without_rollout_state_the_rollout_waits_for_the_old_deployment_to_go(ecs_stub, services, clock):
    # Stubber only: ECS without rolloutState (older accounts, other controllers); the sandbox always sets it.
    # ECS gives no `rolloutState` for some services (e.g. ones created before it existed); then
    # the rollout is done only once ours is the only deployment left, all tasks running.
    ecs_stub.add_response("describe_services", describe_services(service(
        without_rollout_state(deployment(NEW, "PRIMARY", "", desired=2, running=2)),
        without_rollout_state(old_deployment(desired=0, running=1)), running=3)), DESCRIBE)
    ecs_stub.add_response("describe_services", describe_services(service(
        without_rollout_state(deployment(NEW, "PRIMARY", "", desired=2, running=1)), running=1)), DESCRIBE)
    ecs_stub.add_response("describe_services", describe_services(service(
        without_rollout_state(deployment(NEW, "PRIMARY", "", desired=2, running=2)), running=2)), DESCRIBE)

    state = services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=600, poll=10)

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5, 1.0]
    assert state.primary.id == NEW and len(state.deployments) == 1
    assert state.rollout == "COMPLETED"


# --- 2. the deployment circuit breaker -------------------------------------------------------------


TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/5e0a4f3b2c1d4e6f8a9b0c1d2e3f4a5b"
PULL_ERROR = ("CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref "
              f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/web:staging: not found")
STOPPED_TEXT = f"task 5e0a4f3b2c1d4e6f8a9b0c1d2e3f4a5b stopped: {PULL_ERROR}"


def add_stopped_task(stub: Stubber, deployment_id: str = NEW) -> None:
    """The explanation's reads: the deployment's stopped tasks (one that could not pull its image)."""
    stub.add_response("list_tasks", {"taskArns": [TASK_ARN]}, {
        "cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "STOPPED", "startedBy": deployment_id})
    stub.add_response("describe_tasks", {"tasks": [{
        "taskArn": TASK_ARN, "clusterArn": CLUSTER_ARN, "taskDefinitionArn": NEW_TASKDEF, "startedBy": deployment_id,
        "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "TaskFailedToStart",
        "stoppedReason": PULL_ERROR, "stoppedAt": at(60),
        "containers": [{"name": "web", "lastStatus": "STOPPED", "reason": PULL_ERROR}]}], "failures": []},
        {"cluster": CLUSTER, "tasks": [TASK_ARN]})


def add_circuit_breaker_rollback(stub: Stubber) -> None:
    # One failed task, fewer than the watcher's two: ECS's circuit breaker is first here (Stubber
    # only: ECS's rollback starts a NEW deployment of the old task definition; the sandbox's
    # returns to the previous one).
    stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, pending=1, failed=1),
        old_deployment(), running=2, pending=1,
        events=(f"(service {SERVICE}) has started 1 tasks: (task 5e0a4f3b2c1d4e6f8a9b0c1d2e3f4a5b).",))), DESCRIBE)
    # ECS marks ours FAILED and starts a new PRIMARY deployment with the old task definition.
    stub.add_response("describe_services", describe_services(service(
        deployment(ROLLBACK, "PRIMARY", "IN_PROGRESS", desired=2, running=2, taskdef=OLD_TASKDEF, seconds=300),
        deployment(NEW, "ACTIVE", "FAILED", desired=0, running=0, failed=3, reason=CIRCUIT_BREAKER),
        running=2,
        events=(f"(service {SERVICE}) rolling back to deployment {ROLLBACK}.",
                f"(service {SERVICE}) (deployment {NEW}) deployment failed: tasks failed to start."))), DESCRIBE)
    add_stopped_task(stub)


def test_circuit_breaker_rollback_is_a_rollout_failure_with_the_reason(ecs_stub, services, clock):
    # Stubber only: ECS's rollback starts a NEW deployment of the old task definition; the sandbox reactivates the old one.
    add_circuit_breaker_rollback(ecs_stub)
    seen: list[str] = []

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=600, poll=15,
                                  on_progress=lambda s: seen.append(s.progress()))

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5]
    error = raised.value
    assert isinstance(error, AwsError)
    assert error.message == (f"deployment {NEW} of service {SERVICE} was rolled back by the deployment "
                             f"circuit breaker: {CIRCUIT_BREAKER}; {STOPPED_TEXT}")
    assert error.left and error.deployment_id == NEW  # ECS rolled back already: nothing for us to undo
    assert "inv app.logs" in error.hint
    assert seen == [
        f"running 2/2, pending 1; deployment {NEW} IN_PROGRESS, 1 failed task(s); 1 older deployment(s) draining",
        f"running 2/2, pending 0; deployment {ROLLBACK} IN_PROGRESS; 1 older deployment(s) draining",
    ]


def test_circuit_breaker_rollback_through_the_task_boundary_exits_1_with_one_line(ecs_stub, services):
    # Stubber only: as above, ECS's own rollback deployment, through the task boundary.
    add_circuit_breaker_rollback(ecs_stub)

    @mvp_task
    def update(c):
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=600, poll=15)

    with pytest.raises(Exit) as raised:
        update(MockContext())

    ecs_stub.assert_no_pending_responses()
    assert raised.value.code == 1
    message = raised.value.message
    assert message.startswith(f"error: deployment {NEW} of service {SERVICE} was rolled back by the deployment "
                              "circuit breaker: ECS deployment circuit breaker: tasks failed to start.")
    assert f"; {STOPPED_TEXT} (" in message
    assert message.endswith("(fix the cause named above, then deploy again; `inv app.logs` shows the app's output)")
    assert "\n" not in message


def test_failed_deployment_without_rollback_says_failed_not_rolled_back(ecs_stub, services):
    # Also against the sandbox (tests/integration/test_sandbox_ecs.py); here the message for AWS's documented shape.
    # Circuit breaker on, rollback off: ours stays PRIMARY and is marked FAILED.
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "FAILED", desired=2, running=0, failed=4, reason=CIRCUIT_BREAKER),
        old_deployment(), running=2)), DESCRIBE)

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, timeout=600, poll=15)

    ecs_stub.assert_no_pending_responses()
    assert raised.value.message == f"deployment {NEW} of service {SERVICE} failed: {CIRCUIT_BREAKER}"
    assert "rolled back" not in str(raised.value)


# --- 3. our deployment disappears ------------------------------------------------------------------


def test_deployment_that_disappears_under_another_primary_is_rolled_back(ecs_stub, services, clock):
    # Stubber only: ECS dropping ours within one poll; the sandbox keeps a failed deployment listed a few ticks.
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, pending=2), old_deployment(),
        running=2, pending=2)), DESCRIBE)
    # By the next poll ECS has already dropped ours; the newest service event says why.
    ecs_stub.add_response("describe_services", describe_services(service(
        deployment(ROLLBACK, "PRIMARY", "COMPLETED", desired=2, running=2, taskdef=OLD_TASKDEF, seconds=300),
        running=2,
        events=(f"(service {SERVICE}) (deployment {NEW}) deployment failed: tasks failed to start.",
                f"(service {SERVICE}) rolling back to deployment {ROLLBACK}."))), DESCRIBE)

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=600, poll=15)

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5]
    assert raised.value.message == (
        f"deployment {NEW} of service {SERVICE} is gone: the deployment circuit breaker rolled it back, "
        f"or a newer deployment replaced it: "
        f"(service {SERVICE}) (deployment {NEW}) deployment failed: tasks failed to start.")


# --- 4. a wait that times out ----------------------------------------------------------------------

STUCK = describe_services(service(
    deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=1, pending=1), old_deployment(),
    running=3, pending=1))
STUCK_TEXT = f"running 3/2, pending 1; deployment {NEW} IN_PROGRESS; 1 older deployment(s) draining"


def test_wait_that_times_out_names_service_deployment_and_counts(ecs_stub, services, clock):
    # Stubber only: a rollout stuck for the whole wait; the sandbox always settles or fails within seconds.
    for _ in range(8):  # at t = 0, 0.5, 1.5, 3.5, 7.5, 15.5, 25.5 and 30 s
        ecs_stub.add_response("describe_services", STUCK, DESCRIBE)
    seen: list[str] = []

    with pytest.raises(WaitTimeout) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=30, poll=10,
                                  on_progress=lambda s: seen.append(s.progress()))

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 10, 4.5]
    assert seen == [STUCK_TEXT]  # shown once, not once per poll
    assert raised.value.message == (f"service {SERVICE} in cluster {CLUSTER} has not finished deployment {NEW} "
                                    f"after 30 s ({STUCK_TEXT})")
    assert raised.value.hint == "ECS keeps going on its own; check it with `inv app.status`"


# --- 5. the service is missing ---------------------------------------------------------------------


@pytest.mark.parametrize("response", [
    pytest.param(describe_services(failures=({"arn": SERVICE_ARN, "reason": "MISSING"},)), id="missing"),
    # A deleted service is still listed for a while, as INACTIVE.
    pytest.param(describe_services(service(old_deployment(desired=0, running=0), desired=0, running=0,
                                           status="INACTIVE")), id="inactive"),
])
def test_missing_service_is_a_rollout_failure_naming_service_and_cluster(ecs_stub, services, response):
    ecs_stub.add_response("describe_services", response, DESCRIBE)
    seen = []

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, timeout=600, poll=15, on_progress=seen.append)

    ecs_stub.assert_no_pending_responses()
    assert str(raised.value) == f"service {SERVICE} is not running in cluster {CLUSTER}"
    assert seen == []


def test_missing_cluster_is_an_aws_error(ecs_stub, services):
    ecs_stub.add_client_error("describe_services", service_error_code="ClusterNotFoundException",
                              service_message="Cluster not found.", http_status_code=400, expected_params=DESCRIBE)

    with pytest.raises(AwsError) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, timeout=600, poll=15)

    ecs_stub.assert_no_pending_responses()
    assert str(raised.value) == "ClusterNotFoundException: Cluster not found."


# --- 6. force_new_deployment -----------------------------------------------------------------------


def test_force_new_deployment_returns_the_primary_deployment_id(ecs_stub, services):
    # UpdateService answers with the service as it is right after the call: ours PRIMARY, the
    # running one ACTIVE.
    updated = service(old_deployment(), deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0,
                                                   taskdef=OLD_TASKDEF, seconds=60), running=2)
    ecs_stub.add_response("update_service", {"service": updated},
                          {"cluster": CLUSTER, "service": SERVICE, "forceNewDeployment": True})

    assert services.force_new_deployment(CLUSTER, SERVICE) == NEW

    ecs_stub.assert_no_pending_responses()


def test_force_new_deployment_of_a_missing_service_is_an_aws_error(ecs_stub, services):
    ecs_stub.add_client_error("update_service", service_error_code="ServiceNotFoundException",
                              service_message="Service not found.", http_status_code=400,
                              expected_params={"cluster": CLUSTER, "service": SERVICE, "forceNewDeployment": True})

    with pytest.raises(AwsError) as raised:
        services.force_new_deployment(CLUSTER, SERVICE)

    ecs_stub.assert_no_pending_responses()
    assert str(raised.value) == "ServiceNotFoundException: Service not found."


# --- 7. rollouts of one cluster, read together (ServiceReader) -------------------------------------


def steady(name: str) -> dict:
    return service(deployment(NEW, "PRIMARY", "COMPLETED", desired=2, running=2), running=2, name=name)


def add_read(stub: Stubber, names: list[str], cluster: str = CLUSTER) -> None:
    """The DescribeServices calls that read `names` (in order), at most ten a call."""
    for start in range(0, len(names), 10):
        chunk = names[start:start + 10]
        stub.add_response("describe_services", describe_services(*[steady(n) for n in chunk]),
                          {"cluster": cluster, "services": chunk})


def test_service_reader_reads_every_followed_service_of_a_cluster_ten_per_call(ecs, ecs_stub, clock):
    calls: list = []
    log_calls(ecs, calls)
    reader = ServiceReader(clock=clock)
    apps = [f"app{n:02d}-staging" for n in range(12)]
    # One Services per waiter, as `World.services()` makes one per thread, all on the run's reader.
    waiters = [Services(ecs, sleep=clock.sleep, clock=clock, reader=reader) for _ in apps]
    # The first poll: a waiter that has never been read reads its own service, not again the
    # others read a moment ago (none of them is past half its max_age).
    for name in apps:
        add_read(ecs_stub, [name])
    first = [w.get_service(CLUSTER, name, max_age=8) for w, name in zip(waiters, apps)]
    ecs_stub.assert_no_pending_responses()
    assert [s.name for s in first] == apps

    # A poll later, the first waiter to find its read too old reads all twelve for everyone, in
    # two calls of 10 and 2; the eleven others are answered from that read.
    clock.sleep(10)
    before = len(calls)
    add_read(ecs_stub, apps)
    second = [w.get_service(CLUSTER, name, max_age=8) for w, name in zip(waiters, apps)]
    ecs_stub.assert_no_pending_responses()
    assert [params["services"] for _, params in calls[before:]] == [apps[:10], apps[10:]]
    assert [s.name for s in second] == apps and all(s.cluster == CLUSTER for s in second)

    # Within max_age nobody reads again.
    clock.sleep(5)
    before = len(calls)
    assert waiters[3].get_service(CLUSTER, apps[3], max_age=8).name == apps[3]
    assert len(calls) == before

    # A waiter that is done is no longer read for the others; another cluster is read on its own.
    reader.forget(CLUSTER, apps[0])
    clock.sleep(5)
    add_read(ecs_stub, apps[1:])
    add_read(ecs_stub, ["web-prod"], cluster="prod")
    assert waiters[5].get_service(CLUSTER, apps[5], max_age=8).name == apps[5]
    assert Services(ecs, reader=reader).get_service("prod", "web-prod", max_age=8).cluster == "prod"
    ecs_stub.assert_no_pending_responses()


def test_a_rollout_reads_the_other_followed_services_and_forgets_its_own_when_done(ecs, ecs_stub, clock):
    reader = ServiceReader(clock=clock)
    waiter = Services(ecs, sleep=clock.sleep, clock=clock, reader=reader)
    other = "api-staging"
    add_read(ecs_stub, [other])
    waiter.get_service(CLUSTER, other, max_age=8)
    # Half a poll later, the rollout's one read covers the service another waiter follows too
    # (it would be due before the next poll).
    clock.sleep(5)
    add_read(ecs_stub, [other, SERVICE])

    state = waiter.wait_for_rollout(CLUSTER, SERVICE, timeout=600, poll=10)

    assert state.primary.id == NEW
    clock.sleep(10)
    add_read(ecs_stub, [other])  # not web-staging any more
    assert waiter.get_service(CLUSTER, other, max_age=8).name == other
    ecs_stub.assert_no_pending_responses()


def test_service_reader_holds_no_lock_across_a_read_and_its_waiters_share_the_read_in_flight():
    import threading

    calls: list = []
    in_flight = threading.Event()
    answer = threading.Event()

    class SlowEcs:
        def describe_services(self, cluster, services):
            calls.append(list(services))
            in_flight.set()
            assert answer.wait(10)
            return {"services": [{"serviceName": name, "status": "ACTIVE", "desiredCount": 1, "runningCount": 1}
                                 for name in services]}

    reader = ServiceReader()
    got: list = []
    first = threading.Thread(target=lambda: got.append(reader.get(SlowEcs(), CLUSTER, SERVICE, max_age=8)))
    first.start()
    assert in_flight.wait(10)
    # While DescribeServices is in flight: forgetting another service does not wait for it, and
    # a second waiter on the same service waits for that read's answer instead of reading again.
    forgot = threading.Thread(target=reader.forget, args=(CLUSTER, "api-staging"))
    forgot.start()
    forgot.join(5)
    assert not forgot.is_alive()
    second = threading.Thread(target=lambda: got.append(reader.get(SlowEcs(), CLUSTER, SERVICE, max_age=8)))
    second.start()
    answer.set()
    first.join(10)
    second.join(10)

    assert calls == [[SERVICE]]
    assert [state.name for state in got] == [SERVICE, SERVICE]


def test_without_a_reader_or_max_age_a_service_is_read_alone(ecs_stub, ecs):
    reader = ServiceReader()
    ecs_stub.add_response("describe_services", describe_services(steady(SERVICE)), DESCRIBE)

    # max_age 0 (a status read, the running note of a plan) never takes a shared read.
    assert Services(ecs, reader=reader).get_service(CLUSTER, SERVICE).name == SERVICE

    ecs_stub.assert_no_pending_responses()


# --- the app target: planned and applied on stubbed CloudFormation, ECS and DynamoDB ---------------

PROJECT = "web"
STACK = f"{PROJECT}-{CLUSTER}"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5d2b8e10-4f71-11ef-a0c3-0a9b8c7d6e5f"
CLUSTER_STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{CLUSTER}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4b"
TABLE = "mvp-deploy-state-Table-1Q2W3E4R5T6Y"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PROJECT}:stage"
COMMIT = "4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"
DEPLOYED_COMMIT = "0b9a8f7e6d5c4b3a4f1c2a9e8d7b6c5a4f3e2d1c"
DIGEST = "sha256:" + "ab" * 32
CALLER = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/dana"
NOW = 1793534400  # 2026-11-01 12:00:00 UTC
TOKEN = "5f0e1d2c3b4a59687766554433221100"
ACQUIRED_AT = "2026-11-01T12:00:00.000000+00:00"
CHANGE_SET = "mvp-20261101120000-3f2e1d"
CHANGE_SET_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{CHANGE_SET}/3f2e1d0c-b9a8-4765-8432-10fedcba9876"
CHANGE_SET_REF = {"StackName": STACK, "ChangeSetName": CHANGE_SET}

APP_TEMPLATE = textwrap.dedent("""\
    AWSTemplateFormatVersion: '2010-09-09'
    Parameters:
      ClusterName:
        Type: String
      Image:
        Type: String
      Commit:
        Type: String
        Default: ''
      DesiredCount:
        Type: Number
        Default: 2
    Resources:
      TaskDefinition:
        Type: AWS::ECS::TaskDefinition
        Properties:
          Family: !Ref AWS::StackName
          RequiresCompatibilities: [FARGATE]
          NetworkMode: awsvpc
          Cpu: '256'
          Memory: '512'
          ContainerDefinitions:
            - Name: web
              Image: !Ref Image
              Environment:
                - Name: COMMIT
                  Value: !Ref Commit
      Service:
        Type: AWS::ECS::Service
        Properties:
          Cluster: !Ref ClusterName
          LaunchType: FARGATE
          DesiredCount: !Ref DesiredCount
          TaskDefinition: !Ref TaskDefinition
    Outputs:
      ServiceName:
        Value: !GetAtt Service.Name
      ClusterName:
        Value: !Ref ClusterName
    """)
# What `deploy_stack` fills in (by name, from the cluster's outputs and the image), sorted.
SENT_PARAMETERS = [{"ParameterKey": "ClusterName", "ParameterValue": CLUSTER},
                   {"ParameterKey": "Commit", "ParameterValue": COMMIT},
                   {"ParameterKey": "Image", "ParameterValue": IMAGE}]
SENT_TAGS = [{"Key": "mvp:cluster", "Value": CLUSTER}, {"Key": "mvp:managed-by", "Value": "mvp-tasks"},
             {"Key": "mvp:project", "Value": PROJECT}]
LOCK_KEY = {"pk": {"S": f"lock#{CLUSTER}#{PROJECT}"}, "sk": {"S": "lock"}}


def app_stack(status: str, *, commit: str = DEPLOYED_COMMIT, reason: str = "", task_definition: str = "") -> dict:
    """The app stack as DescribeStacks gives it; `task_definition`: its TaskDefinitionArn output (the
    studio's template has one), else it has none."""
    data = {
        "StackId": STACK_ID,
        "StackName": STACK,
        "Parameters": [{"ParameterKey": "ClusterName", "ParameterValue": CLUSTER},
                       {"ParameterKey": "Commit", "ParameterValue": commit},
                       {"ParameterKey": "DesiredCount", "ParameterValue": "2"},
                       {"ParameterKey": "Image", "ParameterValue": IMAGE}],
        "CreationTime": at(-86400),
        "LastUpdatedTime": at(-3600),
        "RollbackConfiguration": {},
        "StackStatus": status,
        "DisableRollback": False,
        "NotificationARNs": [],
        "Capabilities": ["CAPABILITY_IAM"],
        "Outputs": [{"OutputKey": "ServiceName", "OutputValue": SERVICE},
                    {"OutputKey": "ClusterName", "OutputValue": CLUSTER}],
        "Tags": [{"Key": "mvp:project", "Value": PROJECT}, {"Key": "mvp:managed-by", "Value": "mvp-tasks"},
                 {"Key": "mvp:cluster", "Value": CLUSTER}],
        "EnableTerminationProtection": False,
        "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
    }
    if reason:
        data["StackStatusReason"] = reason
    if task_definition:
        data["Outputs"].append({"OutputKey": "TaskDefinitionArn", "OutputValue": task_definition})
    return {"Stacks": [data]}


def cfn_event(logical_id: str, resource_type: str, status: str, reason: str = "", *, seconds: int) -> dict:
    return stack_event_data(STACK, STACK_ID, logical_id, resource_type, status, reason, at(seconds))


def stack_event(status: str, reason: str = "", *, seconds: int) -> dict:
    return cfn_event(STACK, "AWS::CloudFormation::Stack", status, reason, seconds=seconds)


def stack_events(*events: dict) -> dict:
    """A DescribeStackEvents page; takes events oldest first, answers newest first as AWS does."""
    return {"StackEvents": list(reversed(events))}


CREATE_CHANGE_SET = {
    "StackName": STACK, "ChangeSetName": CHANGE_SET, "ChangeSetType": "UPDATE", "TemplateBody": APP_TEMPLATE,
    "Parameters": SENT_PARAMETERS, "Tags": SENT_TAGS, "Capabilities": CAPABILITIES,
    "Description": "mvp-tasks preview",
}


def change_set_with_changes() -> dict:
    def modify(logical_id: str, resource_type: str, replacement: str) -> dict:
        return {"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": logical_id, "PhysicalResourceId": f"{SERVICE}-{logical_id}",
            "ResourceType": resource_type, "Replacement": replacement, "Scope": ["Properties"], "Details": []}}

    return {
        "ChangeSetName": CHANGE_SET, "ChangeSetId": CHANGE_SET_ID, "StackId": STACK_ID, "StackName": STACK,
        "Description": "mvp-tasks preview",
        "Parameters": [{"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
                       for p in SENT_PARAMETERS] + [{"ParameterKey": "DesiredCount", "ParameterValue": "2"}],
        "CreationTime": at(0), "ExecutionStatus": "AVAILABLE", "Status": "CREATE_COMPLETE",
        "NotificationARNs": [], "RollbackConfiguration": {}, "Capabilities": CAPABILITIES,
        "Tags": SENT_TAGS,
        "Changes": [modify("TaskDefinition", "AWS::ECS::TaskDefinition", "True"),
                    modify("Service", "AWS::ECS::Service", "False")],
        "IncludeNestedStacks": False,
    }


SERVICE_FAILED = ("Resource handler returned message: \"Error occurred during operation 'ECS Deployment Circuit "
                  "Breaker was triggered'.\" (RequestToken: 9c8b7a6f-5e4d-3c2b-1a09-f8e7d6c5b4a3, "
                  "HandlerErrorCode: GeneralServiceException)")


def add_change_set_up_to_preview(stub: Stubber) -> None:
    stub.add_response("describe_stacks", app_stack("UPDATE_COMPLETE"), {"StackName": STACK})
    # The Commit parameter differs from the deployed one, so no GetTemplate: a change set is needed.
    stub.add_response("create_change_set", {"Id": CHANGE_SET_ID, "StackId": STACK_ID}, CREATE_CHANGE_SET)
    stub.add_response("describe_change_set", change_set_with_changes(), CHANGE_SET_REF)


def add_failed_app_update(stub: Stubber) -> None:
    before = stack_event("UPDATE_COMPLETE", seconds=-3600)
    add_change_set_up_to_preview(stub)
    stub.add_response("describe_stack_events", stack_events(before), {"StackName": STACK})
    stub.add_response("execute_change_set", {}, CHANGE_SET_REF)
    stub.add_response("describe_stacks", app_stack("UPDATE_ROLLBACK_COMPLETE"), {"StackName": STACK})
    stub.add_response("describe_stack_events", stack_events(
        before,
        stack_event("UPDATE_IN_PROGRESS", "User Initiated", seconds=1),
        cfn_event("TaskDefinition", "AWS::ECS::TaskDefinition", "UPDATE_COMPLETE", seconds=4),
        cfn_event("Service", "AWS::ECS::Service", "UPDATE_IN_PROGRESS", seconds=5),
        cfn_event("Service", "AWS::ECS::Service", "UPDATE_FAILED", SERVICE_FAILED, seconds=190),
        stack_event("UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Service]. ",
                    seconds=191),
        cfn_event("Service", "AWS::ECS::Service", "UPDATE_COMPLETE", seconds=250),
        stack_event("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", seconds=251),
        stack_event("UPDATE_ROLLBACK_COMPLETE", seconds=260),
    ), {"StackName": STACK})


KEY = f"{PROJECT}@{CLUSTER}"
OLD_DIGEST = "sha256:" + "cd" * 32  # what the cluster's tag named before a promote
OTHER = f"arn:aws:sts::{ACCOUNT}:assumed-role/ci/github-actions on runner-3 (pid 917)"
FORCE = {"cluster": CLUSTER, "service": SERVICE, "forceNewDeployment": True}
LOCK_DELETE = {"TableName": TABLE, "Key": LOCK_KEY, "ConditionExpression": "#t = :token",
               "ExpressionAttributeNames": {"#t": "token"}, "ExpressionAttributeValues": {":token": {"S": TOKEN}}}
HISTORY_QUERY = {"TableName": TABLE, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :at)",
                 "ExpressionAttributeValues": {":pk": {"S": f"app#{CLUSTER}#{PROJECT}"}, ":at": {"S": "at#"}},
                 "ScanIndexForward": False, "Limit": 50}


class FakeRegistry:
    """The image registry, in memory: tags naming digests, and the commit each image was built
    from. Every retag is logged with the AWS clients' calls, to be seen against the lock."""

    def __init__(self, calls: list, tags: dict[str, str]):
        self.calls = calls
        self.tags = dict(tags)

    def describe(self) -> str:
        return "registry (fake)"

    def ref(self, repository: str, tag: str) -> str:
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:{tag}"

    def get_digest(self, repository: str, tag: str) -> str:
        return self.tags.get(tag, "")

    def get_commit(self, repository: str, tag: str) -> str:
        return {DIGEST: COMMIT, OLD_DIGEST: DEPLOYED_COMMIT}.get(self.tags.get(tag, ""), "")

    def list_tags(self, repository: str) -> list[str]:
        return sorted(self.tags)

    def retag(self, repository: str, source: str, tag: str) -> None:
        self.calls.append(("retag", {"source": source, "tag": tag}))
        self.tags[tag] = source if source.startswith("sha256:") else self.tags[source]


@pytest.fixture
def app(tmp_path, monkeypatch, clock):
    """web@staging on stubbed CloudFormation, ECS and DynamoDB clients and a fake registry.

    `app.make()` gives a run's world. Every call of the three clients (and every retag) is logged
    in `app.calls`, so tests can see the order across them: the lock's PutItem against the first
    change. Planning uses the real planners, applying the real engine, guard and appliers."""
    (tmp_path / "projects" / PROJECT).mkdir(parents=True)
    (tmp_path / "projects" / PROJECT / "deploy.yml").write_text(APP_TEMPLATE)
    # Pin what would come from the wall clock, uuid4 and STS, so requests can be matched exactly.
    monkeypatch.setattr(plan_stacks, "time", SimpleNamespace(strftime=lambda fmt: "20261101120000"))
    monkeypatch.setattr(plan_stacks, "uuid",
                        SimpleNamespace(uuid4=lambda: SimpleNamespace(hex="3f2e1d0cb9a84765843210fedcba9876")))
    monkeypatch.setattr(guard_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=TOKEN)))
    monkeypatch.setattr(history_module, "now_iso", lambda: ACQUIRED_AT)

    calls: list = []
    clients = {name: make_client(name) for name in ("cloudformation", "ecs", "dynamodb")}
    for client in clients.values():
        log_calls(client, calls)
    stubs = {name: Stubber(client) for name, client in clients.items()}
    for stub in stubs.values():
        stub.activate()
    project = ProjectSettings(name=PROJECT, clusters=(CLUSTER,), template="deploy.yml", parameters={},
                              build_args={}, repository=PROJECT)
    cluster = ClusterSettings(name=CLUSTER, template="cluster.yml", protected=False, promote_from="", tag="stage")

    def make(*, check: bool = False, tags: dict | None = None, **overrides):
        settings = SimpleNamespace(**{"root": tmp_path, "wait_timeout": 600, "poll_interval": 5, "parallel": 1,
                                      "clusters": {CLUSTER: cluster}, "projects": {PROJECT: project},
                                      "state": StateSettings(), "rollout": RolloutSettings(), **overrides})
        aws = SimpleNamespace(get_caller=lambda: CALLER, **clients)
        registry = FakeRegistry(calls, {"stage": DIGEST, COMMIT: DIGEST, DEPLOYED_COMMIT: OLD_DIGEST}
                                if tags is None else tags)
        world = make_clocked_world(settings, reporter(check=check), aws, clock=clock, wall=lambda: NOW,
                                   registry=registry)
        # Where the deploy store's table is was found already (tests/unit/test_store_location.py
        # covers finding it): these tests are about the calls of one target.
        world.memo.get(("deploy store", "table"), lambda: TABLE)
        return world

    yield SimpleNamespace(make=make, calls=calls, clients=clients, project=project, cluster=cluster,
                          cfn=stubs["cloudformation"], ecs=stubs["ecs"], ddb=stubs["dynamodb"])
    for stub in stubs.values():
        stub.deactivate()


def assert_all_answered(app) -> None:
    for stub in (app.cfn, app.ecs, app.ddb):
        stub.assert_no_pending_responses()


def names(app) -> list[str]:
    return [name for name, _ in app.calls]


def records(app) -> list[dict[str, str]]:
    """The history records written (an `app#` item, put alone or in the transaction that also
    releases the lock), as plain strings."""
    items = [params["Item"] for name, params in app.calls if name == "PutItem"]
    items += [t["Put"]["Item"] for name, params in app.calls if name == "TransactWriteItems"
              for t in params["TransactItems"] if "Put" in t]
    return [{k: v["S"] for k, v in item.items()} for item in items if item["pk"]["S"].startswith("app#")]


def lock_put(wait_timeout: int = 600, lease: int = 90) -> dict:
    # The lock is a lease (mvp.state.lease, 90 s by default) whatever the waits: a heartbeat renews it.
    return {
        "TableName": TABLE,
        "Item": {
            **LOCK_KEY,
            "owner": {"S": f"{CALLER} on {socket.gethostname()} (pid {os.getpid()})"},
            "host": {"S": socket.gethostname()},
            "pid": {"N": str(os.getpid())},
            "host_id": {"S": history_module.host_identity()},
            "pid_start": {"S": history_module.process_start(os.getpid()) or ""},
            "token": {"S": TOKEN},
            "rvn": ANY,  # a fresh record version at every write of the lock
            "lease": {"N": str(lease)},
            "acquired_at": {"S": ACQUIRED_AT},
            "expires_at": {"N": str(NOW + lease)},
        },
        "ConditionExpression": "attribute_not_exists(pk)",
    }


def add_renewal(app, lease: int = 90) -> None:
    """The check before a later step of a locked target: the lease renewed, synchronously."""
    app.ddb.add_response("update_item", {}, {
        "TableName": TABLE, "Key": LOCK_KEY, "UpdateExpression": "SET expires_at = :exp, rvn = :rvn, lease = :lease",
        "ConditionExpression": "#t = :token", "ExpressionAttributeNames": {"#t": "token"},
        "ExpressionAttributeValues": {":exp": {"N": ANY}, ":rvn": ANY, ":lease": {"N": str(lease)},
                                      ":token": {"S": TOKEN}}})


def add_cluster_stack(app) -> None:
    """The cluster's stack, read once per run: ready for apps."""
    app.cfn.add_response("describe_stacks", {"Stacks": [{
        "StackId": CLUSTER_STACK_ID, "StackName": CLUSTER, "CreationTime": at(-86400 * 30),
        "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": "ClusterName", "OutputValue": CLUSTER},
                    {"OutputKey": "VpcId", "OutputValue": "vpc-0abc1234def567890"}],
        "Tags": [{"Key": "mvp:cluster", "Value": CLUSTER}, {"Key": "mvp:managed-by", "Value": "mvp-tasks"}],
        "EnableTerminationProtection": False,
    }]}, {"StackName": CLUSTER})


def add_missing_app_stack(app) -> None:
    app.cfn.add_client_error("describe_stacks", service_error_code="ValidationError",
                             service_message=f"Stack with id {STACK} does not exist", http_status_code=400,
                             expected_params={"StackName": STACK})


def add_rolled(app, digest: str) -> None:
    """The history's newest record: a successful deploy that rolled out `digest`."""
    item = {"pk": {"S": f"app#{CLUSTER}#{PROJECT}"}, "sk": {"S": "at#2026-10-31T09:00:00.000000+00:00"},
            "project": {"S": PROJECT}, "cluster": {"S": CLUSTER}, "action": {"S": "deploy"},
            "commit": {"S": COMMIT if digest == DIGEST else DEPLOYED_COMMIT}, "digest": {"S": digest},
            "outcome": {"S": "succeeded"}, "by": {"S": CALLER}, "at": {"S": "2026-10-31T09:00:00.000000+00:00"}}
    app.ddb.add_response("query", {"Items": [item], "Count": 1, "ScannedCount": 1}, HISTORY_QUERY)


def add_lock(app, wait_timeout: int = 600) -> None:
    app.ddb.add_response("put_item", {}, lock_put(wait_timeout))


def add_record(app) -> None:
    app.ddb.add_response("put_item", {})  # its Item is read back from app.calls by `records`


def add_release(app) -> None:
    app.ddb.add_response("delete_item", {}, LOCK_DELETE)


def add_record_and_release(app) -> None:
    """The history record and the lock's release, in one transaction (its Item is read back from
    app.calls by `records`)."""
    app.ddb.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "Item": ANY}}, {"Delete": LOCK_DELETE}]})


def add_force(app) -> None:
    app.ecs.add_response("update_service", {"service": service(
        old_deployment(), deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, taskdef=OLD_TASKDEF),
        running=2)}, FORCE)


def add_rolled_out(app) -> None:
    app.ecs.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "COMPLETED", desired=2, running=2), running=2)), DESCRIBE)


def add_running_before(app, taskdef: str = OLD_TASKDEF) -> None:
    """Planning's one read of the service: deployment OLD, completed, running `taskdef`."""
    app.ecs.add_response("describe_services", describe_services(service(
        deployment(OLD, "PRIMARY", "COMPLETED", desired=2, running=2, taskdef=taskdef, seconds=-86400),
        running=2)), DESCRIBE)


def engine_for(world) -> Engine:
    return Engine(world)


def apply(world, *targets: TargetPlan):
    """Show, confirm and apply the targets as `run_plan` does; the results."""
    return carry_out(engine_for(world), Plan("test", list(targets)))


def roll_target() -> TargetPlan:
    return TargetPlan(KEY, kind="app", project=PROJECT, cluster=CLUSTER, action="update", commit=COMMIT,
                      digest=DIGEST, steps=[RollService(STACK)])


def target_run(world, app, plan: TargetPlan) -> TargetRun:
    return TargetRun(world, plan, Guard(world, plan, app.cluster), app.cluster)


def result_of(world):
    [result] = world.reporter.recap.results
    return result.outcome, result.message


# --- 8. rolling a service: the lock, our deployment, a bounded wait --------------------------------


def test_roll_service_locks_forces_and_follows_our_deployment(app):
    world = app.make()
    add_cluster_stack(app)
    add_lock(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE"), {"StackName": STACK})
    add_force(app)
    # ECS still lists the old deployment as PRIMARY for a moment: ours is followed by its id.
    app.ecs.add_response("describe_services", describe_services(service(
        deployment(OLD, "PRIMARY", "COMPLETED", desired=2, running=2, taskdef=OLD_TASKDEF),
        deployment(NEW, "ACTIVE", "IN_PROGRESS", desired=2, running=0, pending=2), running=2, pending=2)), DESCRIBE)
    add_rolled_out(app)
    run = target_run(world, app, roll_target())

    apply_step(run, run.plan.steps[0])

    assert names(app) == ["DescribeStacks", "PutItem", "DescribeStacks", "UpdateService", "DescribeServices",
                          "DescribeServices"]
    assert run.guard.token == TOKEN and run.guard.running == {}
    assert run.service.primary.id == NEW and len(run.service.deployments) == 1
    assert f"new deployment {NEW} of service {SERVICE}" in output(world.reporter)
    add_release(app)
    run.guard.release()
    assert_all_answered(app)
    assert run.guard.token == ""


def test_roll_service_to_the_stacks_task_definition_updates_the_service_to_it_and_follows_that(app):
    # A rollback left the service on :7 while its stack names :8: UpdateService(taskDefinition), not
    # forceNewDeployment (which would roll :7 again), and the rollout is followed as any other.
    world = app.make()
    add_cluster_stack(app)
    add_lock(app)
    app.ecs.add_response("update_service", {"service": service(
        old_deployment(), deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0), running=2)},
        {"cluster": CLUSTER, "service": SERVICE, "taskDefinition": NEW_TASKDEF})
    add_rolled_out(app)
    plan = roll_target()
    plan.steps = [RollService(STACK, names=(CLUSTER, SERVICE), task_definition=NEW_TASKDEF, running=OLD_TASKDEF)]
    run = target_run(world, app, plan)

    apply_step(run, run.plan.steps[0])

    assert names(app) == ["DescribeStacks", "PutItem", "UpdateService", "DescribeServices"]
    assert run.service.primary.id == NEW and run.service.primary.task_definition == NEW_TASKDEF
    assert f"new deployment {NEW} of service {SERVICE}: {SERVICE}:7 -> {SERVICE}:8" in output(world.reporter)
    add_release(app)
    run.guard.release()
    assert_all_answered(app)


def test_roll_service_planned_with_its_names_reads_no_stack_but_says_when_the_stack_went_away(app):
    world = app.make()
    add_cluster_stack(app)
    add_lock(app)
    app.ecs.add_client_error("update_service", service_error_code="ServiceNotFoundException",
                             service_message="Service not found.", http_status_code=400, expected_params=FORCE)
    add_missing_app_stack(app)
    plan = roll_target()
    plan.steps = [RollService(STACK, names=(CLUSTER, SERVICE))]
    run = target_run(world, app, plan)

    with pytest.raises(MvpError) as raised:
        apply_step(run, run.plan.steps[0])

    # No DescribeStacks before UpdateService: planning named the service; one after, to say why.
    assert names(app) == ["DescribeStacks", "PutItem", "UpdateService", "DescribeStacks"]
    assert str(raised.value) == f"stack {STACK} is gone (deploy it: inv app.deploy {PROJECT} --cluster {CLUSTER})"


def test_rollout_timeout_says_how_to_resume_with_app_wait_and_that_ecs_keeps_going(app, clock):
    # Stubber only: a rollout stuck for the whole wait; the sandbox always settles or fails within seconds.
    world = app.make(wait_timeout=20, poll_interval=10)
    add_cluster_stack(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT, task_definition=OLD_TASKDEF),
                         {"StackName": STACK})
    add_running_before(app)  # planning's one read: the service runs what its stack names
    target = plan_update(world, app.project, app.cluster)
    assert [type(s) for s in target.steps] == [RollService]
    add_lock(app, wait_timeout=20)
    add_force(app)
    for _ in range(7):  # at t = 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 20 s
        app.ecs.add_response("describe_services", STUCK, DESCRIBE)
    add_record_and_release(app)

    outcomes = apply(world, target)

    assert_all_answered(app)
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 4.5]
    assert outcomes.failed and not outcomes.interrupted
    message = (f"service {SERVICE} in cluster {CLUSTER} has not finished deployment {NEW} after 20 s "
               f"({STUCK_TEXT}) (ECS keeps going on its own; wait again with `inv app.wait {PROJECT} --cluster {CLUSTER}`)")
    assert result_of(world) == (Outcome.FAILED, message)
    out = output(world.reporter)
    assert out.count(f"s] {STUCK_TEXT}") == 1  # progress shown once (after the elapsed time), not once per poll
    assert outcomes.still_running == {f"service {SERVICE}: rollout": f"inv app.wait {PROJECT} --cluster {CLUSTER}"}
    with pytest.raises(Exit):
        finish(world, outcomes)
    out = output(world.reporter)
    assert "warning: still running in AWS on its own:" in out
    assert f"service {SERVICE}: rollout; follow it with `inv app.wait {PROJECT} --cluster {CLUSTER}`" in out
    assert [(r["action"], r["outcome"], r["message"]) for r in records(app)] == [("update", "failed", message)]


def test_rollout_timeout_hint_is_on_the_error(app):
    world = app.make(wait_timeout=0)
    add_cluster_stack(app)
    add_lock(app, wait_timeout=0)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE"), {"StackName": STACK})
    add_force(app)
    app.ecs.add_response("describe_services", STUCK, DESCRIBE)
    run = target_run(world, app, roll_target())

    with pytest.raises(WaitTimeout) as raised:
        apply_step(run, run.plan.steps[0])

    assert_all_answered(app)
    assert f"not finished deployment {NEW}" in raised.value.message
    assert raised.value.hint == (f"ECS keeps going on its own; wait again with "
                                 f"`inv app.wait {PROJECT} --cluster {CLUSTER}`")
    assert run.guard.running == {f"service {SERVICE}: rollout": f"inv app.wait {PROJECT} --cluster {CLUSTER}"}


# --- 9. the app stack, planned by plan_deploy and applied by the engine ----------------------------


def test_app_stack_update_that_rolls_back_fails_the_target_naming_the_resource(app):
    world = app.make()
    add_cluster_stack(app)
    add_failed_app_update(app.cfn)
    add_rolled(app, DIGEST)  # the image the tag names is the one last rolled out: no extra rollout
    add_lock(app)
    add_record_and_release(app)

    target = plan_deploy(world, app.project, app.cluster)

    # Planning reads, and makes nothing but the change set; no lock for that.
    assert names(app) == ["DescribeStacks", "DescribeStacks", "CreateChangeSet", "DescribeChangeSet", "Query"]
    assert [s.action for s in target.steps] == ["update"]

    outcomes = apply(world, target)

    assert_all_answered(app)
    # The lock is taken once, right before the first change, and released at the end by its token.
    # DescribeEvents (this operation's failures) has no stubbed answer here: the stack events say it.
    assert names(app)[5:] == ["PutItem", "DescribeStackEvents", "ExecuteChangeSet", "DescribeStacks",
                              "DescribeStackEvents", "DescribeEvents", "TransactWriteItems"]
    message = (f"update of stack {STACK} ended in UPDATE_ROLLBACK_COMPLETE: "
               f"Service (AWS::ECS::Service) UPDATE_FAILED: {SERVICE_FAILED}")
    assert outcomes.failed
    assert result_of(world) == (Outcome.FAILED, message)
    [record] = records(app)
    assert (record["action"], record["outcome"], record["commit"], record["digest"], record["message"]) == (
        "deploy", "failed", COMMIT, DIGEST, message)
    out = output(world.reporter)
    assert "~ AWS::ECS::TaskDefinition TaskDefinition (replacement: True)" in out
    assert len([line for line in out.splitlines() if line.startswith("    ") and "UPDATE_FAILED" in line]) == 1
    assert "changed:" not in out
    assert world.change_sets.pending() == []


def test_app_stack_already_updating_is_busy_and_takes_no_lock(app):
    world = app.make()
    add_cluster_stack(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_IN_PROGRESS"), {"StackName": STACK})

    with pytest.raises(StackBusy) as raised:
        plan_deploy(world, app.project, app.cluster)

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "DescribeStacks"]  # no PutItem, no change set
    assert raised.value.message == f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running"


def test_unchanged_app_stack_takes_no_lock(app):
    world = app.make()
    add_cluster_stack(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT, task_definition=NEW_TASKDEF),
                         {"StackName": STACK})
    app.cfn.add_response("get_template", {"TemplateBody": APP_TEMPLATE, "StagesAvailable": ["Original", "Processed"]},
                         {"StackName": STACK, "TemplateStage": "Original"})
    add_rolled(app, DIGEST)
    # One read of the service: it runs the task definition its stack names (its output: no other
    # call), and the running note says its tasks.
    add_rolled_out(app)

    target = plan_deploy(world, app.project, app.cluster)
    outcomes = apply(world, target)

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "DescribeStacks", "GetTemplate", "DescribeServices", "Query"]
    assert target.steps == [] and not outcomes.failed
    assert result_of(world) == (Outcome.OK, f"running {COMMIT[:12]}, 2/2 tasks")
    assert f"ok: {KEY}  running {COMMIT[:12]}, 2/2 tasks" in output(world.reporter)


def test_unchanged_app_stack_whose_tag_moved_since_its_last_rollout_gets_a_rollout(app):
    world = app.make()
    add_cluster_stack(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT, task_definition=OLD_TASKDEF),
                         {"StackName": STACK})
    app.cfn.add_response("get_template", {"TemplateBody": APP_TEMPLATE},
                         {"StackName": STACK, "TemplateStage": "Original"})
    add_rolled(app, OLD_DIGEST)  # `app.push` moved the tag: tasks still run the image before
    add_running_before(app)  # the task definition its stack names: a new deployment of it

    target = plan_deploy(world, app.project, app.cluster)

    assert_all_answered(app)
    assert target.steps == [RollService(STACK, f"{COMMIT[:12]}: its tag stage names another image than it "
                                               "last rolled out")]


def test_app_stack_in_check_mode_previews_takes_no_lock_and_deletes_its_change_set(app):
    world = app.make(check=True)
    add_cluster_stack(app)
    add_change_set_up_to_preview(app.cfn)
    add_rolled(app, DIGEST)

    outcomes = apply(world, plan_deploy(world, app.project, app.cluster))

    assert "PutItem" not in names(app) and "ExecuteChangeSet" not in names(app)
    assert not outcomes.failed
    out = output(world.reporter)
    assert f"{KEY}: would:" in out
    assert f"would change: {KEY}  update 2 resource(s) (check: nothing was changed)" in out
    app.cfn.add_response("delete_change_set", {}, CHANGE_SET_REF)
    world.discard_change_sets()  # what the engine's end does
    assert_all_answered(app)


def test_new_app_stack_is_locked_once_right_before_it_is_created_and_its_service_waited_for(app):
    world = app.make()
    add_cluster_stack(app)
    add_missing_app_stack(app)
    add_lock(app)
    app.cfn.add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": STACK, "TemplateBody": APP_TEMPLATE, "Parameters": SENT_PARAMETERS, "Tags": SENT_TAGS,
        "Capabilities": CAPABILITIES, "EnableTerminationProtection": False, "OnFailure": "ROLLBACK"})
    app.cfn.add_response("describe_stacks", app_stack("CREATE_COMPLETE", commit=COMMIT), {"StackName": STACK_ID})
    app.cfn.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_IN_PROGRESS", "User Initiated", seconds=0),
        stack_event("CREATE_COMPLETE", seconds=120)), {"StackName": STACK_ID})
    app.cfn.add_response("describe_stacks", app_stack("CREATE_COMPLETE", commit=COMMIT), {"StackName": STACK})
    add_rolled_out(app)
    add_record_and_release(app)

    target = plan_deploy(world, app.project, app.cluster)
    assert [s.action for s in target.steps] == ["create"]  # no rollout: a new service starts on the tag's image
    apply(world, target)

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "DescribeStacks", "PutItem", "CreateStack", "DescribeStacks",
                          "DescribeStackEvents", "DescribeStacks", "DescribeServices", "TransactWriteItems"]
    assert result_of(world) == (Outcome.CHANGED, f"{COMMIT[:12]} deployed; service {SERVICE} running 2/2")
    assert [(r["action"], r["outcome"], r["commit"], r["digest"]) for r in records(app)] == [
        ("deploy", "succeeded", COMMIT, DIGEST)]


def test_new_app_stack_in_check_mode_takes_no_lock(app):
    world = app.make(check=True)
    add_cluster_stack(app)
    add_missing_app_stack(app)

    apply(world, plan_deploy(world, app.project, app.cluster))

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "DescribeStacks"]
    assert (f"would change: {KEY}  create stack (2 resources) (check: nothing was changed)"
            in output(world.reporter))


# --- 10. a promote: the tag moves, and moves back when the rollout fails ---------------------------


def add_promote(app) -> None:
    """plan_promote's reads of the cluster (ready for apps, its history table), of the app stack
    and of what it last rolled out (the image before), then the lock, and the rollout's new
    deployment (of the service planning read from the app stack's outputs)."""
    add_cluster_stack(app)
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT, task_definition=OLD_TASKDEF),
                         {"StackName": STACK})
    add_rolled(app, OLD_DIGEST)
    # The target's stack rendered from the promoted release, compared with the stack (issue 17).
    app.cfn.add_response("get_template", {"TemplateBody": APP_TEMPLATE},
                         {"StackName": STACK, "TemplateStage": "Original"})
    add_running_before(app)  # the stack unchanged: does its service run what it names? (it does)
    add_lock(app)
    add_renewal(app)  # before the rollout, the second step
    add_force(app)


def promote_world(app):
    world = app.make(tags={"stage": OLD_DIGEST, COMMIT: DIGEST, DEPLOYED_COMMIT: OLD_DIGEST})
    target = plan_promote(world, app.project, app.cluster, source_tag=COMMIT)
    assert target.steps == [MoveTag(PROJECT, "stage", COMMIT, OLD_DIGEST, DIGEST, label=COMMIT[:12]),
                            RollService(STACK)]
    return world, target


def test_failed_rollout_after_a_promote_points_the_tag_back_and_records_the_failure(app, clock):
    # Stubber only: ECS's own circuit-breaker rollback deployment (a new one), seen by the step, the guard and the store.
    add_promote(app)
    add_circuit_breaker_rollback(app.ecs)
    add_renewal(app)  # before the undo: the lease is still ours
    add_record_and_release(app)
    world, target = promote_world(app)

    outcomes = apply(world, target)

    assert_all_answered(app)
    assert clock.slept == [0.5]
    assert names(app) == ["DescribeStacks", "DescribeStacks", "Query", "GetTemplate", "DescribeServices", "PutItem",
                          "retag", "UpdateItem",
                          "UpdateService", "DescribeServices", "DescribeServices", "ListTasks", "DescribeTasks",
                          "UpdateItem", "retag", "TransactWriteItems"]
    retags = [params for name, params in app.calls if name == "retag"]
    assert retags == [{"source": COMMIT, "tag": "stage"}, {"source": OLD_DIGEST, "tag": "stage"}]
    assert world.registry.tags["stage"] == OLD_DIGEST
    assert outcomes.failed
    outcome, message = result_of(world)
    assert outcome is Outcome.FAILED
    assert message.startswith(f"deployment {NEW} of service {SERVICE} was rolled back by the deployment circuit breaker")
    [record] = records(app)
    assert (record["action"], record["outcome"], record["commit"], record["digest"]) == (
        "promote", "failed", COMMIT, DIGEST)
    assert record["message"] == message
    assert (f"warning: {KEY}: {PROJECT}:stage pointed back at {OLD_DIGEST[:19]}, the image it named before"
            in output(world.reporter))


def test_successful_promote_keeps_the_new_tag(app):
    add_promote(app)
    add_rolled_out(app)
    add_record_and_release(app)
    world, target = promote_world(app)

    apply(world, target)

    assert_all_answered(app)
    assert [params for name, params in app.calls if name == "retag"] == [{"source": COMMIT, "tag": "stage"}]
    assert world.registry.tags["stage"] == DIGEST
    assert result_of(world) == (Outcome.CHANGED, f"{COMMIT[:12]} promoted; service {SERVICE} running 2/2")
    assert [(r["action"], r["outcome"], r["digest"]) for r in records(app)] == [("promote", "succeeded", DIGEST)]
    assert "pointed back" not in output(world.reporter)


def _interrupted_promote(app, yes: bool):
    """A promote whose rollout is interrupted (Ctrl-C while DescribeServices is in flight)."""
    world, target = promote_world(app)
    world.rollback_on_stop = yes  # what --yes sets (boundary.start)
    # Ctrl-C while DescribeServices is in flight: the next wait refuses to sleep.
    ecs_events = app.clients["ecs"].meta.events
    ecs_events.register("before-parameter-build.ecs.DescribeServices", lambda **kw: world.stop.set())
    return world, target


def add_rolling_out(app) -> None:
    app.ecs.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, pending=2), old_deployment(),
        running=2, pending=2)), DESCRIBE)


def test_interrupt_during_the_rollout_points_the_tag_back_offers_the_rollback_and_exits_130(app):
    # Stubber only: the interrupt lands between two exact calls; a live sandbox's timing varies.
    add_promote(app)
    add_rolling_out(app)
    add_renewal(app)  # before the undo: the lease is still ours
    add_record_and_release(app)
    world, target = _interrupted_promote(app, yes=False)
    engine = engine_for(world)

    outcomes = carry_out(engine, Plan("app.promote", [target]))
    offer_rollbacks(world, outcomes)  # no terminal: said, not asked
    with pytest.raises(Exit) as raised:
        finish(world, outcomes)

    assert_all_answered(app)
    assert outcomes.interrupted and raised.value.code == 130
    assert world.registry.tags["stage"] == OLD_DIGEST
    assert [(r["action"], r["outcome"], r["message"]) for r in records(app)] == [
        ("promote", "interrupted", "interrupted (Ctrl-C)")]
    # Not rolled back (no --yes, no mvp.rollback_on_interrupt): the rollback is offered after the run.
    [offer] = outcomes.offers
    assert (offer.names, offer.deployment_id, offer.previous_task_definition) == ((CLUSTER, SERVICE), NEW, OLD_TASKDEF)
    out = output(world.reporter)
    assert "ECS goes on with it unless it is rolled back" in out
    assert "goes on in ECS; a run with --yes or mvp.rollback_on_interrupt: true" in out
    assert names(app)[-1:] == ["TransactWriteItems"]  # the record, and the lock released by its token
    assert f"failed: {KEY}  interrupted" in out
    assert f"service {SERVICE}: rollout; follow it with `inv app.wait {PROJECT} --cluster {CLUSTER}`" in out


def test_interrupt_during_the_rollout_with_yes_rolls_it_back_at_once(app):
    # Stubber only: the interrupt lands between two exact calls; a live sandbox's timing varies.
    add_promote(app)
    add_rolling_out(app)
    add_renewal(app)  # before the rollback: the lease is still ours
    add_renewal(app)  # the undo, first: the tag points back before ECS starts tasks again
    arn = f"arn:aws:ecs:us-east-1:123456789012:service-deployment/{CLUSTER}/{SERVICE}/ejGvqq2ilnbKT9qj0vLJe"
    app.ecs.add_response("list_service_deployments", {"serviceDeployments": [
        {"serviceDeploymentArn": arn, "status": "IN_PROGRESS"}]},
        {"cluster": CLUSTER, "service": SERVICE, "status": ["PENDING", "IN_PROGRESS"]})
    app.ecs.add_response("stop_service_deployment", {"serviceDeploymentArn": arn},
                         {"serviceDeploymentArn": arn, "stopType": "ROLLBACK"})
    add_record_and_release(app)
    world, target = _interrupted_promote(app, yes=True)

    outcomes = carry_out(engine_for(world), Plan("app.promote", [target]))
    with pytest.raises(Exit):
        finish(world, outcomes)

    assert_all_answered(app)
    assert outcomes.interrupted and not outcomes.offers
    assert world.registry.tags["stage"] == OLD_DIGEST
    rolled = f"rolling back: ECS returns service {SERVICE} to its previous deployment"
    assert [(r["action"], r["outcome"], r["message"]) for r in records(app)] == [
        ("promote", "interrupted", f"interrupted (Ctrl-C); {rolled}")]
    assert result_of(world) == (Outcome.FAILED, f"interrupted; {rolled}")
    assert any(what.startswith(f"service {SERVICE}: rollback to ") for what in outcomes.still_running)
    # The tag went back before the rollback: the tasks ECS starts again pull the image from before.
    order = names(app)
    assert order.index("retag", order.index("DescribeServices")) < order.index("StopServiceDeployment"), order
    assert names(app)[-1:] == ["TransactWriteItems"]  # the record, and the lock released by its token
    out = output(world.reporter)
    assert f"failed: {KEY}  interrupted; {rolled}" in out
    assert (f"service {SERVICE}: rollback to {SERVICE}:7; follow it with `inv app.wait {PROJECT} --cluster {CLUSTER}`"
            in out)


# --- 11. the deploy lock: made before the write, released even when the answer was lost ------------


def lose_the_answer(app) -> None:
    """DynamoDB wrote the lock, but its answer never came back (a read timeout)."""
    def raise_timeout(**kwargs):
        raise botocore.exceptions.ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")

    app.clients["dynamodb"].meta.events.register("after-call.dynamodb.PutItem", raise_timeout)
    add_lock(app)


def fail_on_the_server(app) -> None:
    app.ddb.add_client_error("put_item", service_error_code="InternalServerError",
                             service_message="Internal server error", http_status_code=500,
                             expected_params=lock_put())


@pytest.mark.parametrize("failure, error", [
    pytest.param(lose_the_answer, "cannot reach https://dynamodb.us-east-1.amazonaws.com/", id="answer-lost"),
    pytest.param(fail_on_the_server, "InternalServerError: Internal server error", id="server-error"),
])
def test_lock_whose_write_may_have_happened_is_released_by_its_pre_made_token(app, failure, error):
    world = app.make()
    add_cluster_stack(app)
    failure(app)
    add_release(app)  # DeleteItem, on the condition that the lock holds our token

    apply(world, roll_target())

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "PutItem", "DeleteItem"]  # nothing after the lock, no record
    outcome, message = result_of(world)
    assert outcome is Outcome.FAILED and message.startswith(error)
    assert records(app) == []


def test_lock_held_by_another_run_is_not_deleted_and_nothing_is_recorded(app):
    world = app.make()
    add_cluster_stack(app)
    app.ddb.add_client_error("put_item", service_error_code="ConditionalCheckFailedException",
                             service_message="The conditional request failed", http_status_code=400,
                             expected_params=lock_put())
    app.ddb.add_response("get_item", {"Item": {
        **LOCK_KEY, "owner": {"S": OTHER}, "token": {"S": "0a9b8c7d6e5f40312233445566778899"},
        "acquired_at": {"S": "2026-11-01T11:58:00.000000+00:00"}, "expires_at": {"N": str(NOW + 1200)}}},
        {"TableName": TABLE, "Key": LOCK_KEY, "ConsistentRead": True})
    # Another host's run: watched for one lease, and it renews (a new record version): refused.
    app.ddb.add_response("get_item", {"Item": {
        **LOCK_KEY, "owner": {"S": OTHER}, "token": {"S": "0a9b8c7d6e5f40312233445566778899"},
        "rvn": {"S": "renewed"}, "acquired_at": {"S": "2026-11-01T11:58:00.000000+00:00"},
        "expires_at": {"N": str(NOW + 1200)}}}, {"TableName": TABLE, "Key": LOCK_KEY, "ConsistentRead": True})

    apply(world, roll_target())

    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "PutItem", "GetItem", "GetItem"]  # no DeleteItem: the lock is theirs
    outcome, message = result_of(world)
    assert outcome is Outcome.FAILED
    assert message.startswith(f"another deploy of {PROJECT} to {CLUSTER} is running: held by {OTHER} "
                              "since 2026-11-01 11:58:00")
    assert records(app) == []


def test_guard_keeps_its_token_when_acquire_fails_and_drops_it_when_the_lock_is_held(app):
    world = app.make()
    add_cluster_stack(app)
    fail_on_the_server(app)
    guard = Guard(world, roll_target(), app.cluster)

    with pytest.raises(AwsError):
        guard.lock()

    assert guard.token == TOKEN and not guard.acted  # made before the write, kept: it may be in DynamoDB
    add_release(app)
    guard.release()
    assert guard.token == ""
    guard.release()  # once only
    assert_all_answered(app)
    assert names(app) == ["DescribeStacks", "PutItem", "DeleteItem"]
