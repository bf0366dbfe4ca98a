"""Shared pieces of the Stubber tests: offline boto3 clients and a clock that moves only on sleep."""

from __future__ import annotations

import boto3

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
