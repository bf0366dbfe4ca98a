"""ECS rollouts and app stack updates against botocore's Stubber: the paths moto cannot produce.

Deployments that roll out, trip the circuit breaker, vanish or never finish; a service that is
gone; an app stack whose update rolls back or that is busy. Every response is shaped like the
documented DescribeServices / UpdateService / CloudFormation / DynamoDB answers (the Stubber
validates requests and responses against the service models). Each test queues the exact calls
it expects, in order, and ends with `assert_no_pending_responses()`; an unqueued call fails.
"""

from __future__ import annotations

import io
import os
import socket
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from stubs import FakeClock as _FakeClock, isolate_from_aws, make_client, stack_event_data
from botocore.stub import Stubber
from invoke import Exit, MockContext

from mvp_tasks.aws import history as history_module
from mvp_tasks.aws.history import History
from mvp_tasks.aws.services import RolloutFailed, Services, ServiceState
from mvp_tasks.aws.stacks import CAPABILITIES, StackInfo, Stacks
from mvp_tasks.errors import AwsError, StackBusy, StackFailed, WaitTimeout
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.settings import ClusterSettings, ProjectSettings
from mvp_tasks.tasks import converge, deploying
from mvp_tasks.tasks.boundary import Run, mvp_task
from mvp_tasks.tasks.converge import ensure_stack
from mvp_tasks.templates import Template

ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER = "staging"
SERVICE = "web-staging"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
SERVICE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{SERVICE}"
OLD_TASKDEF = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}:7"
NEW_TASKDEF = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}:8"
OLD = "ecs-svc/3920475815523340218"  # the deployment running before ours
NEW = "ecs-svc/8702395846211486052"  # ours
ROLLBACK = "ecs-svc/1187230564839024455"  # the one the circuit breaker starts to go back
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
CIRCUIT_BREAKER = "ECS deployment circuit breaker: tasks failed to start."
DESCRIBE = {"cluster": CLUSTER, "services": [SERVICE]}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- AWS-shaped ECS responses ----------------------------------------------------------------------

NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
                                   "securityGroups": ["sg-0123456789abcdef0"], "assignPublicIp": "ENABLED"}}


def deployment(dep_id: str, status: str, rollout: str, *, desired: int, running: int, pending: int = 0,
               failed: int = 0, taskdef: str = NEW_TASKDEF, reason: str = "", seconds: int = 0) -> dict:
    """One entry of a service's `deployments`, as DescribeServices and UpdateService give it."""
    reasons = {"IN_PROGRESS": f"ECS deployment {dep_id} in progress.",
               "COMPLETED": f"ECS deployment {dep_id} completed."}
    return {
        "id": dep_id,
        "status": status,
        "taskDefinition": taskdef,
        "desiredCount": desired,
        "pendingCount": pending,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": at(seconds),
        "updatedAt": at(seconds + 30),
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "networkConfiguration": NETWORK,
        "rolloutState": rollout,
        "rolloutStateReason": reason or reasons.get(rollout, ""),
    }


def without_rollout_state(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("rolloutState", "rolloutStateReason")}


def old_deployment(*, desired: int = 2, running: int = 2) -> dict:
    return deployment(OLD, "ACTIVE", "COMPLETED", desired=desired, running=running, taskdef=OLD_TASKDEF,
                      seconds=-86400)


def service(*deployments: dict, desired: int = 2, running: int, pending: int = 0, events: tuple = (),
            status: str = "ACTIVE") -> dict:
    """One entry of DescribeServices' `services`; `events` newest first, as ECS lists them."""
    primary = next((d for d in deployments if d["status"] == "PRIMARY"), None)
    return {
        "serviceArn": SERVICE_ARN,
        "serviceName": SERVICE,
        "clusterArn": CLUSTER_ARN,
        "loadBalancers": [{"targetGroupArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:"
                                             "targetgroup/web-staging/0123456789abcdef",
                           "containerName": "web", "containerPort": 80}],
        "serviceRegistries": [],
        "status": status,
        "desiredCount": desired,
        "runningCount": running,
        "pendingCount": pending,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "platformFamily": "Linux",
        "taskDefinition": primary["taskDefinition"] if primary else OLD_TASKDEF,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                    "maximumPercent": 200, "minimumHealthyPercent": 100},
        "deployments": list(deployments),
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
        "events": [{"id": f"3f6a1c2e-0b4d-4e8f-9a7b-{n:012d}", "createdAt": at(100 - n), "message": m}
                   for n, m in enumerate(events)],
        "createdAt": at(-86400 * 30),
        "placementConstraints": [],
        "placementStrategy": [],
        "networkConfiguration": NETWORK,
        "healthCheckGracePeriodSeconds": 60,
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "createdBy": f"arn:aws:iam::{ACCOUNT}:role/cfn-exec",
        "enableECSManagedTags": False,
        "propagateTags": "NONE",
        "enableExecuteCommand": False,
    }


def describe_services(*services: dict, failures: tuple = ()) -> dict:
    return {"services": list(services), "failures": list(failures)}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch):
    isolate_from_aws(monkeypatch)


@pytest.fixture
def ecs():
    return make_client("ecs")


@pytest.fixture
def ecs_stub(ecs):
    with Stubber(ecs) as stubber:
        yield stubber


class FakeClock(_FakeClock):
    def __init__(self) -> None:
        super().__init__(5000.0)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def services(ecs, ecs_stub, clock):
    return Services(ecs, sleep=clock.sleep, clock=clock)


def reporter(*, check: bool = False) -> Reporter:
    return Reporter(stream=io.StringIO(), interactive=False, check=check, yes=True)


# --- 1. a rollout that completes -------------------------------------------------------------------


def test_rollout_that_completes_returns_the_final_state_and_reports_only_changes(ecs_stub, services, clock):
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
    assert clock.slept == [15, 15, 15]
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
    assert clock.slept == [10, 10]
    assert state.primary.id == NEW and len(state.deployments) == 1
    assert state.rollout == "COMPLETED"


# --- 2. the deployment circuit breaker -------------------------------------------------------------


def add_circuit_breaker_rollback(stub: Stubber) -> None:
    stub.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, pending=1, failed=2),
        old_deployment(), running=2, pending=1,
        events=(f"(service {SERVICE}) has started 1 tasks: (task 5e0a4f3b2c1d4e6f8a9b0c1d2e3f4a5b).",))), DESCRIBE)
    # ECS marks ours FAILED and starts a new PRIMARY deployment with the old task definition.
    stub.add_response("describe_services", describe_services(service(
        deployment(ROLLBACK, "PRIMARY", "IN_PROGRESS", desired=2, running=2, taskdef=OLD_TASKDEF, seconds=300),
        deployment(NEW, "ACTIVE", "FAILED", desired=0, running=0, failed=3, reason=CIRCUIT_BREAKER),
        running=2,
        events=(f"(service {SERVICE}) rolling back to deployment {ROLLBACK}.",
                f"(service {SERVICE}) (deployment {NEW}) deployment failed: tasks failed to start."))), DESCRIBE)


def test_circuit_breaker_rollback_is_a_rollout_failure_with_the_reason(ecs_stub, services, clock):
    add_circuit_breaker_rollback(ecs_stub)
    seen: list[str] = []

    with pytest.raises(RolloutFailed) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=600, poll=15,
                                  on_progress=lambda s: seen.append(s.progress()))

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [15]
    error = raised.value
    assert isinstance(error, AwsError)
    assert error.message == (f"deployment {NEW} of service {SERVICE} was rolled back by the deployment "
                             f"circuit breaker: {CIRCUIT_BREAKER}")
    assert "inv app.logs" in error.hint
    assert seen == [
        f"running 2/2, pending 1; deployment {NEW} IN_PROGRESS, 2 failed task(s); 1 older deployment(s) draining",
        f"running 2/2, pending 0; deployment {ROLLBACK} IN_PROGRESS; 1 older deployment(s) draining",
    ]


def test_circuit_breaker_rollback_through_the_task_boundary_exits_1_with_one_line(ecs_stub, services):
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
    assert message.endswith("(look at the tasks' logs (`inv app.logs`) and stopped-task reasons in the ECS console)")
    assert "\n" not in message


def test_failed_deployment_without_rollback_says_failed_not_rolled_back(ecs_stub, services):
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
    assert clock.slept == [15]
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
    for _ in range(4):  # at t = 0, 10, 20 and 30 s
        ecs_stub.add_response("describe_services", STUCK, DESCRIBE)
    seen: list[str] = []

    with pytest.raises(WaitTimeout) as raised:
        services.wait_for_rollout(CLUSTER, SERVICE, deployment_id=NEW, timeout=30, poll=10,
                                  on_progress=lambda s: seen.append(s.progress()))

    ecs_stub.assert_no_pending_responses()
    assert clock.slept == [10, 10, 10]
    assert seen == [STUCK_TEXT]  # shown once, not once per poll
    assert raised.value.message == (f"service {SERVICE} in cluster {CLUSTER} has not finished deployment {NEW} "
                                    f"after 30 s ({STUCK_TEXT})")
    assert raised.value.hint == "ECS keeps going on its own; check it with `inv app.status`"


# --- the app target: hand-built, on stubbed clients ------------------------------------------------

PROJECT = "web"
STACK = f"{PROJECT}-{CLUSTER}"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5d2b8e10-4f71-11ef-a0c3-0a9b8c7d6e5f"
CLUSTER_STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{CLUSTER}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4b"
TABLE = "staging-DeployHistoryTable-1Q2W3E4R5T6Y"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{PROJECT}:stage"
COMMIT = "4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"
DEPLOYED_COMMIT = "0b9a8f7e6d5c4b3a4f1c2a9e8d7b6c5a4f3e2d1c"
DIGEST = "sha256:" + "ab" * 32
CALLER = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/dana"
NOW = 1793534400  # 2026-11-01 12:00:00 UTC
TOKEN = "5f0e1d2c3b4a59687766554433221100"
ACQUIRED_AT = "2026-11-01T12:00:00.000000+00:00"
CHANGE_SET = "mvp-20261101120000"
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
LOCK_KEY = {"pk": {"S": f"lock#{PROJECT}"}, "sk": {"S": "lock"}}


class FakeRegistry:
    def ref(self, repository: str, tag: str) -> str:
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}:{tag}"

    def get_digest(self, repository: str, tag: str) -> str:
        raise AssertionError("deploy_stack was given the digest; it must not look it up")


@pytest.fixture
def app(tmp_path, monkeypatch, clock):
    """An `AppTarget` for web@staging with stubbed CloudFormation, ECS and DynamoDB clients.

    Every call of the three clients is logged (by operation name) in `app.calls`, so tests can
    see the order across clients: the lock's PutItem against the first CloudFormation mutation.
    """
    (tmp_path / "projects" / PROJECT).mkdir(parents=True)
    (tmp_path / "projects" / PROJECT / "deploy.yml").write_text(APP_TEMPLATE)
    # Pin what would come from the wall clock, uuid4 and STS, so requests can be matched exactly.
    monkeypatch.setattr(converge, "time", SimpleNamespace(strftime=lambda fmt: "20261101120000"))
    monkeypatch.setattr(history_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=TOKEN)))
    monkeypatch.setattr(history_module, "now_iso", lambda: ACQUIRED_AT)

    calls: list[str] = []
    clients = {name: make_client(name) for name in ("cloudformation", "ecs", "dynamodb")}
    for client in clients.values():
        client.meta.events.register("before-parameter-build",
                                    lambda model, **kw: calls.append(model.name))
    stubs = {name: Stubber(client) for name, client in clients.items()}
    for stub in stubs.values():
        stub.activate()

    def make(*, check: bool = False) -> deploying.AppTarget:
        settings = SimpleNamespace(root=tmp_path, wait_timeout=600, poll_interval=5)
        run = Run(settings, reporter(check=check), _clients=SimpleNamespace(get_caller=lambda: CALLER))
        project = ProjectSettings(name=PROJECT, clusters=(CLUSTER,), template="deploy.yml", parameters={},
                                  build_args={}, repository=PROJECT)
        cluster = ClusterSettings(name=CLUSTER, template="cluster.yml", protected=False, promote_from="",
                                  tag="stage")
        cluster_stack = StackInfo(name=CLUSTER, stack_id=CLUSTER_STACK_ID, status="UPDATE_COMPLETE",
                                  outputs={"ClusterName": CLUSTER, "VpcId": "vpc-0abc1234def567890",
                                           "DeployHistoryTable": TABLE})
        return deploying.AppTarget(
            run, project, cluster, cluster_stack,
            Stacks(clients["cloudformation"], sleep=lambda s: None),
            Services(clients["ecs"], sleep=clock.sleep, clock=clock),
            History(clients["dynamodb"], TABLE, CLUSTER, clock=lambda: NOW),
            FakeRegistry(),
        )

    yield SimpleNamespace(make=make, calls=calls, cfn=stubs["cloudformation"], ecs=stubs["ecs"],
                          ddb=stubs["dynamodb"])
    for stub in stubs.values():
        stub.deactivate()


def assert_all_answered(app) -> None:
    for stub in (app.cfn, app.ecs, app.ddb):
        stub.assert_no_pending_responses()


def app_stack_info() -> StackInfo:
    return StackInfo(name=STACK, stack_id=STACK_ID, status="UPDATE_COMPLETE",
                     outputs={"ServiceName": SERVICE, "ClusterName": CLUSTER})


# --- 4b. the timeout through `wait_for_service`: how to resume -------------------------------------


def test_wait_for_service_timeout_says_how_to_resume_with_app_wait(app, clock):
    target = app.make()
    target.run.settings.wait_timeout = 20
    target.run.settings.poll_interval = 10
    for _ in range(3):  # at t = 0, 10 and 20 s
        app.ecs.add_response("describe_services", STUCK, DESCRIBE)

    @mvp_task
    def wait(c):
        deploying.wait_for_service(target, app_stack_info())

    with pytest.raises(Exit) as raised:
        wait(MockContext())

    assert_all_answered(app)
    assert clock.slept == [10, 10]
    assert raised.value.code == 1
    assert raised.value.message == (
        f"error: service {SERVICE} in cluster {CLUSTER} has not finished deployment {NEW} after 20 s "
        f"({STUCK_TEXT}) (ECS keeps going on its own; wait again with `inv app.wait {PROJECT} --cluster {CLUSTER}`)")
    out = target.run.reporter.stream.getvalue()
    assert f"waiting for service {SERVICE} to roll out" in out
    assert out.count(STUCK_TEXT) == 1


def test_wait_for_service_timeout_hint_is_on_the_error(app):
    target = app.make()
    target.run.settings.wait_timeout = 0
    app.ecs.add_response("describe_services", STUCK, DESCRIBE)

    with pytest.raises(WaitTimeout) as raised:
        deploying.wait_for_service(target, app_stack_info())

    assert_all_answered(app)
    assert f"not finished deployment {NEW}" in raised.value.message
    assert raised.value.hint == (f"ECS keeps going on its own; wait again with "
                                 f"`inv app.wait {PROJECT} --cluster {CLUSTER}`")


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


def test_roll_service_locks_forces_and_follows_our_deployment(app, clock):
    target = app.make()
    app.ddb.add_response("put_item", {}, lock_put())
    app.ecs.add_response("update_service", {"service": service(
        old_deployment(), deployment(NEW, "PRIMARY", "IN_PROGRESS", desired=2, running=0, taskdef=OLD_TASKDEF),
        running=2)}, {"cluster": CLUSTER, "service": SERVICE, "forceNewDeployment": True})
    app.ecs.add_response("describe_services", describe_services(service(
        deployment(NEW, "PRIMARY", "COMPLETED", desired=2, running=2, taskdef=OLD_TASKDEF), running=2)), DESCRIBE)

    state = deploying.roll_service(target, app_stack_info())

    assert_all_answered(app)
    assert app.calls == ["PutItem", "UpdateService", "DescribeServices"]
    assert target.locked and state.primary.id == NEW
    assert f"new deployment {NEW} of service {SERVICE}" in target.run.reporter.stream.getvalue()


# --- 7. the app stack through deploy_stack / ensure_stack ------------------------------------------


def lock_put() -> dict:
    ttl = 600 * 4 + 900  # AppTarget.lock: four bounded waits plus build and push
    return {
        "TableName": TABLE,
        "Item": {
            **LOCK_KEY,
            "owner": {"S": f"{CALLER} on {socket.gethostname()} (pid {os.getpid()})"},
            "token": {"S": TOKEN},
            "acquired_at": {"S": ACQUIRED_AT},
            "expires_at": {"N": str(NOW + ttl)},
        },
        "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
        "ExpressionAttributeValues": {":now": {"N": str(NOW)}},
    }


def app_stack(status: str, *, commit: str = DEPLOYED_COMMIT, reason: str = "") -> dict:
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


def test_app_stack_update_that_rolls_back_is_stack_failed_naming_the_resource(app):
    target = app.make()
    add_failed_app_update(app.cfn)
    app.ddb.add_response("put_item", {}, lock_put())

    with pytest.raises(StackFailed) as raised:
        deploying.deploy_stack(target, digest=DIGEST, commit=COMMIT)

    assert_all_answered(app)
    assert str(raised.value) == (f"update of stack {STACK} ended in UPDATE_ROLLBACK_COMPLETE: "
                                 f"Service (AWS::ECS::Service) UPDATE_FAILED: {SERVICE_FAILED}")
    # The lock is taken once, right before the first mutating call, and is still held.
    assert app.calls[:3] == ["DescribeStacks", "PutItem", "CreateChangeSet"]
    assert app.calls.count("PutItem") == 1
    assert target.locked
    out = target.run.reporter.stream.getvalue()
    assert "~ AWS::ECS::TaskDefinition TaskDefinition (replacement: True)" in out
    assert out.count("UPDATE_FAILED") == 1 and "changed:" not in out

    # What app.deploy does next: release the lock it took, by its token.
    app.ddb.add_response("delete_item", {}, {
        "TableName": TABLE, "Key": LOCK_KEY, "ConditionExpression": "#t = :token",
        "ExpressionAttributeNames": {"#t": "token"}, "ExpressionAttributeValues": {":token": {"S": TOKEN}}})
    target.unlock()
    app.ddb.assert_no_pending_responses()
    assert not target.locked


def test_app_stack_already_updating_is_busy_and_takes_no_lock(app):
    target = app.make()
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_IN_PROGRESS"), {"StackName": STACK})

    with pytest.raises(StackBusy) as raised:
        deploying.deploy_stack(target, digest=DIGEST, commit=COMMIT)

    assert_all_answered(app)
    assert app.calls == ["DescribeStacks"]  # no PutItem, no change set
    assert not target.locked
    assert raised.value.message == f"stack {STACK} is UPDATE_IN_PROGRESS: another operation is running"


def test_unchanged_app_stack_takes_no_lock(app):
    target = app.make()
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT), {"StackName": STACK})
    app.cfn.add_response("get_template", {"TemplateBody": APP_TEMPLATE, "StagesAvailable": ["Original", "Processed"]},
                         {"StackName": STACK, "TemplateStage": "Original"})

    assert deploying.deploy_stack(target, digest=DIGEST, commit=COMMIT) is Outcome.OK

    assert_all_answered(app)
    assert app.calls == ["DescribeStacks", "GetTemplate"]
    assert not target.locked
    assert f"ok: {STACK}  up to date (UPDATE_COMPLETE)" in target.run.reporter.stream.getvalue()


def test_app_stack_in_check_mode_previews_and_takes_no_lock(app):
    target = app.make(check=True)
    add_change_set_up_to_preview(app.cfn)
    app.cfn.add_response("delete_change_set", {}, CHANGE_SET_REF)

    assert deploying.deploy_stack(target, digest=DIGEST, commit=COMMIT) is Outcome.CHANGED

    assert_all_answered(app)
    assert "PutItem" not in app.calls and "ExecuteChangeSet" not in app.calls
    assert not target.locked
    out = target.run.reporter.stream.getvalue()
    assert f"{STACK}: would:" in out
    assert f"changed: {STACK}  would update 2 resource(s) (check: nothing was changed)" in out


# --- on_act, directly on ensure_stack --------------------------------------------------------------

TEMPLATE = Template(path=Path("deploy.yml"), label="projects/web/deploy.yml",
                    body=APP_TEMPLATE,
                    parameters={"ClusterName": {"Type": "String"}, "Image": {"Type": "String"},
                                "Commit": {"Type": "String", "Default": ""},
                                "DesiredCount": {"Type": "Number", "Default": 2}},
                    resources={"TaskDefinition": "AWS::ECS::TaskDefinition", "Service": "AWS::ECS::Service"})
PARAMETERS = {"ClusterName": CLUSTER, "Image": IMAGE, "Commit": COMMIT}
TAGS = {"mvp:cluster": CLUSTER, "mvp:project": PROJECT}


def ensure(app, rep: Reporter, on_act) -> Outcome:
    cfn = app.make().stacks
    return ensure_stack(cfn, rep, name=STACK, template=TEMPLATE, parameters=PARAMETERS, tags=TAGS, protect=False,
                        timeout=600, poll=5, on_act=on_act)


def test_on_act_runs_once_right_before_creating_a_stack(app):
    app.cfn.add_client_error("describe_stacks", service_error_code="ValidationError",
                             service_message=f"Stack with id {STACK} does not exist", http_status_code=400,
                             expected_params={"StackName": STACK})
    app.cfn.add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": STACK, "TemplateBody": APP_TEMPLATE, "Parameters": SENT_PARAMETERS, "Tags": SENT_TAGS,
        "Capabilities": CAPABILITIES, "EnableTerminationProtection": False, "OnFailure": "ROLLBACK"})
    app.cfn.add_response("describe_stacks", app_stack("CREATE_COMPLETE", commit=COMMIT), {"StackName": STACK_ID})
    app.cfn.add_response("describe_stack_events", stack_events(
        stack_event("CREATE_IN_PROGRESS", "User Initiated", seconds=0),
        stack_event("CREATE_COMPLETE", seconds=120)), {"StackName": STACK_ID})

    assert ensure(app, reporter(), lambda: app.calls.append("on_act")) is Outcome.CHANGED

    assert_all_answered(app)
    assert app.calls[:3] == ["DescribeStacks", "on_act", "CreateStack"]
    assert app.calls.count("on_act") == 1


def test_on_act_is_not_called_when_nothing_changes(app):
    app.cfn.add_response("describe_stacks", app_stack("UPDATE_COMPLETE", commit=COMMIT), {"StackName": STACK})
    app.cfn.add_response("get_template", {"TemplateBody": APP_TEMPLATE},
                         {"StackName": STACK, "TemplateStage": "Original"})
    acts = []

    assert ensure(app, reporter(), lambda: acts.append(1)) is Outcome.OK

    assert_all_answered(app)
    assert acts == []


def test_on_act_is_not_called_when_checking_a_create(app):
    app.cfn.add_client_error("describe_stacks", service_error_code="ValidationError",
                             service_message=f"Stack with id {STACK} does not exist", http_status_code=400,
                             expected_params={"StackName": STACK})
    acts = []
    rep = reporter(check=True)

    assert ensure(app, rep, lambda: acts.append(1)) is Outcome.CHANGED

    assert_all_answered(app)
    assert acts == []
    assert f"changed: {STACK}  would create stack (2 resources) (check: nothing was changed)" in rep.stream.getvalue()
