"""The sandbox's ECS (mvp_tasks/sandbox_ecs.py, the session's moto server) and the rollout watcher
(`Services.wait_for_rollout`) against it over HTTP on loopback: rollouts that progress and settle at
their own desired counts, failures injected on purpose, the circuit breaker, StopServiceDeployment."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from mvp_tasks.aws.services import RolloutFailed, Services
from mvp_tasks.errors import SandboxError
from mvp_tasks.sandbox_ecs import send_mark

CLUSTER = "stage-cluster"
SERVICE = "web-stage"


@pytest.fixture
def world(aws):
    """A VPC, a target group, a log group, a cluster and a task definition with awslogs."""
    ec2, elbv2, logs, ecs = (aws.client(name) for name in ("ec2", "elbv2", "logs", "ecs"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    target_group = elbv2.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc,
                                             TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    logs.create_log_group(logGroupName="/ecs/web-stage")
    ecs.create_cluster(clusterName=CLUSTER)

    def register(image: str = "registry.example/web:stage") -> str:
        return ecs.register_task_definition(
            family="web-stage", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            containerDefinitions=[{"name": "web", "image": image, "essential": True, "logConfiguration": {
                "logDriver": "awslogs", "options": {"awslogs-group": "/ecs/web-stage", "awslogs-region": "us-east-1",
                                                    "awslogs-stream-prefix": "web"}}}],
        )["taskDefinition"]["taskDefinitionArn"]

    def create(desired: int = 1, rollback: bool = True) -> None:
        ecs.create_service(
            cluster=CLUSTER, serviceName=SERVICE, taskDefinition=register(), desiredCount=desired, launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
            loadBalancers=[{"targetGroupArn": target_group, "containerName": "web", "containerPort": 80}],
            deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": rollback}})

    class World:
        pass

    w = World()
    w.ecs, w.elbv2, w.logs, w.register, w.create, w.target_group = ecs, elbv2, logs, register, create, target_group
    w.services = Services(ecs)
    w.fail = lambda reason: send_mark(aws.endpoint, CLUSTER, SERVICE, reason)
    return w


def wait(world, **kwargs):
    kwargs.setdefault("timeout", 20)
    kwargs.setdefault("poll", 0.2)
    return world.services.wait_for_rollout(CLUSTER, SERVICE, elbv2=world.elbv2, logs=world.logs, **kwargs)


def running_tasks(world) -> list[dict]:
    arns = world.ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE, desiredStatus="RUNNING")["taskArns"]
    tasks = world.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def test_a_new_service_settles_at_its_own_desired_count_with_its_tasks_listed(world):
    world.create(desired=3)
    first = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert first["deployments"][0]["rolloutState"] == "IN_PROGRESS" and first["runningCount"] == 0

    state = wait(world)

    svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert (svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == (3, 3, 0)
    assert [(d["status"], d["rolloutState"]) for d in svc["deployments"]] == [("PRIMARY", "COMPLETED")]
    assert state.running == 3
    tasks = running_tasks(world)
    assert len(tasks) == 3
    assert {t["startedBy"] for t in tasks} == {svc["deployments"][0]["id"]}
    health = world.elbv2.describe_target_health(TargetGroupArn=world.target_group)["TargetHealthDescriptions"]
    assert sorted(h["TargetHealth"]["State"] for h in health) == ["healthy"] * 3
    assert any("has reached a steady state." in e["message"] for e in svc["events"])


def test_a_forced_deployment_replaces_the_tasks_and_drains_the_old_deployment(world):
    world.create(desired=2)
    wait(world)
    before = {t["taskArn"] for t in running_tasks(world)}

    new = world.services.force_new_deployment(CLUSTER, SERVICE)
    svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert [(d["id"], d["status"]) for d in svc["deployments"]][0] == (new, "PRIMARY")
    assert [d["status"] for d in svc["deployments"]] == ["PRIMARY", "ACTIVE"]
    state = wait(world, deployment_id=new)

    assert state.primary.id == new and len(state.deployments) == 1
    after = {t["taskArn"] for t in running_tasks(world)}
    assert len(after) == 2 and not after & before


def test_a_scale_up_without_a_new_deployment_reaches_the_new_count(world):
    world.create(desired=1)
    wait(world)
    world.ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(running_tasks(world)) < 3:
        time.sleep(0.1)
    assert len(running_tasks(world)) == 3


def test_an_image_that_cannot_be_pulled_fails_the_rollout_fast_naming_the_pull_error(world):
    world.create(desired=1)
    wait(world)
    before = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["deployments"][0]["id"]
    world.fail("image")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)

    with pytest.raises(RolloutFailed) as raised:
        wait(world, deployment_id=new, poll=0.1)

    error = raised.value
    assert error.deployment_id == new
    assert "CannotPullContainerError: pull image manifest has been retried 1 time(s)" in error.message
    assert "registry.example/web:stage" in error.message
    stopped = world.services.get_stopped_tasks(CLUSTER, SERVICE, new)
    assert stopped and stopped[0]["stopCode"] == "TaskFailedToStart"
    assert stopped[0]["stoppedReason"].startswith("CannotPullContainerError")
    if not error.left:  # the watcher was first (it stops at 2 failed tasks, ECS at 3): it rolls back
        assert world.services.roll_back(CLUSTER, SERVICE, error.previous_task_definition, error.task_definition) \
            .startswith("rolling back: ECS returns service")
    svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    primary = next(d for d in svc["deployments"] if d["status"] == "PRIMARY")
    assert primary["id"] == before
    failed = next(d for d in svc["deployments"] if d["id"] == new)
    assert failed["rolloutState"] == "FAILED"


def test_a_container_that_exits_names_its_exit_code_and_its_last_log_line(world):
    world.create(desired=1)
    wait(world)
    world.fail("exit")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)

    with pytest.raises(RolloutFailed) as raised:
        wait(world, deployment_id=new, poll=0.1)

    message = raised.value.message
    assert "stopped: Essential container in task exited; container web exit code 1" in message
    assert "last log lines: sandbox: the app exited with code 1" in message


def test_failing_health_checks_name_the_target_group_and_the_unhealthy_target(world):
    world.create(desired=1)
    wait(world)
    world.fail("health")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)

    with pytest.raises(RolloutFailed) as raised:
        wait(world, deployment_id=new, poll=0.1)

    message = raised.value.message
    assert f"Task failed ELB health checks in (target-group {world.target_group})" in message
    assert "is unhealthy (Target.ResponseCodeMismatch: Health checks failed with these codes: [502])" in message


def test_the_circuit_breaker_fails_the_deployment_and_rolls_back_to_the_previous_one(world):
    world.create(desired=1)
    wait(world)
    old = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["deployments"][0]["id"]
    world.fail("image")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
        if svc["deployments"][0]["id"] == old:
            break
        time.sleep(0.1)

    deployments = {d["id"]: d for d in svc["deployments"]}
    assert deployments[old]["status"] == "PRIMARY"
    assert deployments[new]["status"] == "ACTIVE" and deployments[new]["rolloutState"] == "FAILED"
    assert deployments[new]["failedTasks"] >= 3
    assert deployments[new]["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    messages = [e["message"] for e in svc["events"]]
    assert f"(service {SERVICE}) deployment {new} deployment failed: tasks failed to start." in messages
    assert f"(service {SERVICE}) rolling back to deployment {old}." in messages
    assert any(m.startswith(f"(service {SERVICE}) has started 1 tasks: (task ") for m in messages)
    # The watcher that comes late says ECS rolled it back, with the reasons.
    with pytest.raises(RolloutFailed) as raised:
        wait(world, deployment_id=new)
    assert raised.value.left
    assert "was rolled back by the deployment circuit breaker" in raised.value.message
    assert "CannotPullContainerError" in raised.value.message


def test_without_rollback_the_circuit_breaker_leaves_the_failed_deployment_primary(world):
    world.create(desired=1, rollback=False)
    wait(world)
    world.fail("exit")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)

    with pytest.raises(RolloutFailed) as raised:  # failed_tasks=0: only ECS's own verdict counts
        wait(world, deployment_id=new, failed_tasks=0)

    assert raised.value.message.startswith(
        f"deployment {new} of service {SERVICE} failed: ECS deployment circuit breaker: tasks failed to start.")
    assert not raised.value.left
    svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert (svc["deployments"][0]["id"], svc["deployments"][0]["status"]) == (new, "PRIMARY")
    assert svc["deployments"][0]["rolloutState"] == "FAILED"


def test_a_cleared_mark_lets_the_next_deployment_complete(world):
    world.create(desired=1)
    wait(world)
    world.fail("image")
    world.fail("")
    new = world.services.force_new_deployment(CLUSTER, SERVICE)
    assert wait(world, deployment_id=new).primary.id == new


def test_stop_service_deployment_rolls_back_an_in_progress_deployment(world):
    world.create(desired=1)
    wait(world)
    old_td = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
    world.fail("health")
    new_td = world.register("registry.example/web:broken")
    world.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new_td)
    listed = world.ecs.list_service_deployments(cluster=CLUSTER, service=SERVICE, status=["IN_PROGRESS"])
    [arn] = [d["serviceDeploymentArn"] for d in listed["serviceDeployments"]]

    world.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")

    svc = world.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert svc["taskDefinition"] == old_td
    assert svc["deployments"][0]["taskDefinition"] == old_td
    described = world.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"]
    assert described[0]["status"] == "ROLLBACK_SUCCESSFUL"
    with pytest.raises(world.ecs.exceptions.ClientError):
        world.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")


def test_the_failure_endpoint_lists_marks_and_refuses_unknown_reasons(aws):
    send_mark(aws.endpoint, CLUSTER, SERVICE, "exit")
    with urllib.request.urlopen(f"{aws.endpoint}/mvp-sandbox/fail", timeout=5) as response:
        assert json.load(response)["marks"] == [{"cluster": CLUSTER, "service": SERVICE, "reason": "exit"}]
    request = urllib.request.Request(f"{aws.endpoint}/mvp-sandbox/fail", method="POST",
                                     data=json.dumps({"cluster": CLUSTER, "service": SERVICE, "reason": "x"}).encode())
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 400
    aws.reset()  # a reset forgets the marks with the rest of the state
    with urllib.request.urlopen(f"{aws.endpoint}/mvp-sandbox/fail", timeout=5) as response:
        assert json.load(response)["marks"] == []


def test_failures_are_sent_to_loopback_only():
    with pytest.raises(SandboxError) as raised:
        send_mark("https://ecs.us-east-1.amazonaws.com", CLUSTER, SERVICE, "image")
    assert "not the local sandbox" in str(raised.value)
