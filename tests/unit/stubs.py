"""Shared pieces of the Stubber tests: offline boto3 clients, a clock that moves only on sleep, and
AWS-shaped ECS answers about one service (SERVICE in CLUSTER) rolling from deployment OLD to NEW."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber

REGION = "us-east-1"
AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS",
                 "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL_DYNAMODB")


def isolate_from_aws(monkeypatch) -> None:
    """Never read the developer's profile, files or endpoint: the Stubber answers every call."""
    for var in AWS_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


def make_client(service_name: str):
    # A fresh session (what boto3.client uses, minus the process-wide cache) so the env above applies.
    return boto3.session.Session().client(service_name, region_name=REGION,
                                          aws_access_key_id="x", aws_secret_access_key="x")


class FakeClock:
    """`time.monotonic` that only moves when the code under test sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def stack_event_data(stack_name: str, stack_id: str, logical_id: str, resource_type: str, status: str,
                     reason: str, when) -> dict:
    """One entry of DescribeStackEvents' `StackEvents`, shaped as AWS documents it: stack events carry
    a UUID as EventId, resource events '<logical id>-<status>-<timestamp>'."""
    import uuid

    is_stack = resource_type == "AWS::CloudFormation::Stack"
    data = {
        "StackId": stack_id,
        "EventId": (str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stack_id}/{status}/{when.isoformat()}")) if is_stack
                    else f"{logical_id}-{status}-{when.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"),
        "StackName": stack_name,
        "LogicalResourceId": logical_id,
        "PhysicalResourceId": stack_id if is_stack else "",
        "ResourceType": resource_type,
        "Timestamp": when,
        "ResourceStatus": status,
    }
    if reason:
        data["ResourceStatusReason"] = reason
    return data


def log_calls(client, calls: list) -> None:
    """Append `(operation name, request parameters)` to `calls` for every call `client` makes, so a
    test can see the order across several stubbed clients (the lock's PutItem against the first
    CloudFormation change). Install it before activating the Stubber: it then also sees a call the
    Stubber refuses (one not queued), which code that swallows errors would otherwise hide."""
    client.meta.events.register_first("before-parameter-build.*.*",
                                      lambda model, params, **kw: calls.append((model.name, dict(params))))


def make_clocked_world(settings, reporter, aws, *, clock: FakeClock | None = None, wall=None, registry=None,
                       history=None):
    """A real `mvp_tasks.world.World` whose waits run on a `FakeClock`: `sleep` moves the clock
    (and still refuses once `stop` is set, as `World.sleep` does), stacks and services read time
    from it, and so does the shared `ServiceReader`. `wall`: the deploy history's clock (the lock's
    expiry); `registry`: stands in for the image registry; `history`: for every cluster's deploy
    history (no cluster stack is read then)."""
    from mvp_tasks.aws.services import ServiceReader, Services
    from mvp_tasks.aws.stacks import Stacks
    from mvp_tasks.world import World

    fake_history = history

    class ClockedWorld(World):
        def __init__(self) -> None:
            super().__init__(settings, reporter, aws)
            self.clock = clock or FakeClock()
            self.reader = ServiceReader(clock=self.clock)

        def sleep(self, seconds: float) -> None:
            self.checkpoint()
            self.clock.sleep(max(seconds, 0))

        def stacks(self):
            return Stacks(self.aws.cloudformation, sleep=self.sleep, clock=self.clock)

        def services(self):
            return Services(self.aws.ecs, sleep=self.sleep, clock=self.clock, reader=self.reader)

        def history(self, cluster):
            if fake_history is not None:
                return fake_history
            history = super().history(cluster)
            if wall is not None:
                history.clock = wall
            return history

        @property
        def registry(self):
            return registry if registry is not None else super().registry

    return ClockedWorld()


# --- AWS-shaped ECS responses: DescribeServices and UpdateService answers ---------------------------

ACCOUNT = "123456789012"
CLUSTER = "staging"
SERVICE = "web-staging"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
OLD_TASKDEF = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}:7"
NEW_TASKDEF = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{SERVICE}:8"
OLD = "ecs-svc/3920475815523340218"  # the deployment running before ours
NEW = "ecs-svc/8702395846211486052"  # ours
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
DESCRIBE = {"cluster": CLUSTER, "services": [SERVICE]}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


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


def old_deployment(*, desired: int = 2, running: int = 2) -> dict:
    return deployment(OLD, "ACTIVE", "COMPLETED", desired=desired, running=running, taskdef=OLD_TASKDEF,
                      seconds=-86400)


def service(*deployments: dict, desired: int = 2, running: int, pending: int = 0, events: tuple = (),
            status: str = "ACTIVE", name: str = SERVICE) -> dict:
    """One entry of DescribeServices' `services`; `events` newest first, as ECS lists them."""
    primary = next((d for d in deployments if d["status"] == "PRIMARY"), None)
    return {
        "serviceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{name}",
        "serviceName": name,
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


# --- fixtures of the ECS Stubber tests (a test module imports the ones it uses by name) --------------


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


@pytest.fixture
def clock():
    return FakeClock(5000.0)


@pytest.fixture
def services(ecs, ecs_stub, clock):
    from mvp_tasks.aws.services import Services

    return Services(ecs, sleep=clock.sleep, clock=clock)
