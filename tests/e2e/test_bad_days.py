"""Bad days end to end: `inv` as a subprocess against the sandbox's ECS (moto extended by
mvp_tasks/sandbox_ecs.py, the session's server), a real OCI registry and Docker engine, in a real git
studio. Rollouts progress and settle at their desired counts; `inv sandbox.fail` makes the next ones
fail as ECS's do; the tool must fail fast, name AWS's reason, roll back and leave nothing behind.
Every assertion reads the state back with boto3 (ECS, the deploy store) and the registry's API."""

from __future__ import annotations

import pytest
import yaml

from conftest import PROJECT, ROOT
from test_lifecycle import BUILD_TIMEOUT, clusters_up, index_change, new_lab, records

pytestmark = pytest.mark.e2e

SERVICE = f"{PROJECT}-stage"


def per_cluster_files() -> dict[str, str]:
    """The README's per-cluster example: three tasks in one cluster (stage here: one cluster is enough)."""
    data = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    data["mvp"]["projects"][PROJECT]["per_cluster"] = {"stage": {"parameters": {"DesiredCount": 3}}}
    return {"invoke.yaml": yaml.safe_dump(data, sort_keys=False)}


@pytest.fixture(scope="class")
def lab(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("baddays"), git_env, image_services, moto_server, files=per_cluster_files())
    clusters_up(lab, prod=False)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    lab.deployed = lab.ok("app.deploy", PROJECT)
    yield lab
    lab.inv("sandbox.fail", PROJECT, "--cluster", "stage", "--clear")


def ecs_cluster(lab) -> str:
    return lab.outputs("stage")["ClusterName"]


def service(lab) -> dict:
    return lab.service(ecs_cluster(lab), SERVICE)


def primary(svc: dict) -> dict:
    return next(d for d in svc["deployments"] if d["status"] == "PRIMARY")


def running_tasks(lab) -> list[dict]:
    ecs = lab.client("ecs")
    arns = ecs.list_tasks(cluster=ecs_cluster(lab), serviceName=SERVICE, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=ecs_cluster(lab), tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def fail_next(lab, reason: str) -> None:
    result = lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--reason", reason)
    assert f"service {SERVICE}: new deployments fail ({reason})" in result.stdout


def failed_update(lab, *args: str, env: dict | None = None):
    """`inv ARGS`, which must fail, with one `error:` line and no traceback."""
    result = lab.inv(*args, timeout=BUILD_TIMEOUT, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result, result.stdout + result.stderr


@pytest.mark.usefixtures("lab")
class TestBadDays:
    def test_the_per_cluster_example_settles_at_three_running_tasks(self, lab):
        svc = service(lab)
        assert (svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == (3, 3, 0)
        assert [(d["status"], d["rolloutState"]) for d in svc["deployments"]] == [("PRIMARY", "COMPLETED")]
        tasks = running_tasks(lab)
        assert len(tasks) == 3 and {t["startedBy"] for t in tasks} == {primary(svc)["id"]}
        # The live lines told the rollout as it went, each with its elapsed time.
        assert "s] running 3/3" in lab.deployed.stdout + lab.deployed.stderr

    def test_an_image_that_cannot_be_pulled_fails_the_release_rolls_back_and_points_the_tag_back(self, lab):
        before = service(lab)
        digest_before = lab.digest("stage")
        lab.commit(index_change(lab, "a release whose image cannot be pulled"), "bad image")
        fail_next(lab, "image")

        # Build, push, move the cluster tag, roll: the rollout fails.
        result, out = failed_update(lab, "ci.release", "--cluster", "stage")

        assert "CannotPullContainerError: pull image manifest has been retried 1 time(s)" in out
        # The watcher is first as a rule (StopServiceDeployment); on a loaded machine ECS's own circuit
        # breaker may act before its next look: either way the service is back, as read below.
        assert "rolling back: ECS returns service" in out or "circuit breaker" in out, out
        after = service(lab)
        assert after["taskDefinition"] == before["taskDefinition"]
        assert primary(after)["id"] == primary(before)["id"]
        failed = [d for d in after["deployments"] if d["rolloutState"] == "FAILED"]
        assert failed and failed[0]["status"] == "ACTIVE"
        assert lab.digest("stage") == digest_before  # the cluster tag is back
        assert "pointed back at" in out
        assert lab.lock_item("stage") is None
        record = lab.history("stage")[-1]
        assert record["outcome"] == "failed"
        assert "CannotPullContainerError" in record["message"]

    def test_a_container_that_exits_fails_the_update_naming_its_exit_code_and_log_line(self, lab):
        before = service(lab)
        fail_next(lab, "exit")

        result, out = failed_update(lab, "app.update", PROJECT)

        assert "Essential container in task exited; container web exit code 1" in out
        assert "last log lines: sandbox: the app exited with code 1" in out
        after = service(lab)
        assert after["taskDefinition"] == before["taskDefinition"]
        assert primary(after)["id"] == primary(before)["id"]
        assert len(running_tasks(lab)) == 3
        assert lab.lock_item("stage") is None
        [record] = records(lab, "stage", "update")[-1:]
        assert record["outcome"] == "failed" and "exit code 1" in record["message"]

    def test_failing_health_checks_fail_the_update_naming_the_target_group(self, lab):
        before = service(lab)
        fail_next(lab, "health")

        result, out = failed_update(lab, "app.update", PROJECT)

        assert "Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:" in out
        assert "Health checks failed with these codes: [502]" in out
        after = service(lab)
        assert primary(after)["id"] == primary(before)["id"]
        assert lab.lock_item("stage") is None
        [record] = records(lab, "stage", "update")[-1:]
        assert record["outcome"] == "failed" and "ELB health checks" in record["message"]

    def test_once_cleared_the_next_update_rolls_out(self, lab):
        lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--clear")
        lab.ok("app.update", PROJECT)
        svc = service(lab)
        assert [(d["status"], d["rolloutState"]) for d in svc["deployments"]] == [("PRIMARY", "COMPLETED")]
        assert len(running_tasks(lab)) == 3


# --- a rollout stopped half-way: Ctrl-C, SIGTERM, the wait timeout ----------------------------------


def stick(lab) -> None:
    """New deployments of the app hang: their tasks never leave PENDING (the rollout stays IN_PROGRESS)."""
    result = lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--reason", "stuck")
    assert f"service {SERVICE}: new deployments hang (stuck)" in result.stdout


def settled_on(lab, task_definition: str, deployment_id: str = "", timeout: float = 30) -> dict:
    """The service once it runs only `task_definition` again (and, given, deployment `deployment_id`)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        svc = service(lab)
        first = primary(svc)
        if (first["taskDefinition"] == task_definition and (not deployment_id or first["id"] == deployment_id)
                and first["runningCount"] == svc["desiredCount"] and first["rolloutState"] == "COMPLETED"
                and all(d["status"] == "PRIMARY" or d.get("rolloutState") == "FAILED" for d in svc["deployments"])):
            return svc
        assert time.monotonic() < deadline, svc
        time.sleep(0.2)


def environment_change(lab, value: str) -> dict[str, str]:
    """invoke.yaml with an environment value of the app's: its next deploy registers a new task definition."""
    data = yaml.safe_load((lab.work / "invoke.yaml").read_text())
    data["mvp"]["projects"][PROJECT].setdefault("environment", {})["ROLLBACK_TEST"] = value
    return {"invoke.yaml": yaml.safe_dump(data, sort_keys=False)}


@pytest.mark.usefixtures("lab")
class TestStoppedHalfWay:
    """After TestBadDays (same studio): rollouts that hang, stopped by Ctrl-C or the wait timeout.
    A story: each test starts from the state the one before left (the fail mark, a rollout left
    rolling out), so they run in order, as a class."""

    def test_ctrl_c_mid_rollout_with_yes_rolls_back_to_the_previous_task_definition(self, lab):
        import signal

        from conftest import BIN, link_sandbox
        from tests.support.signals import Child

        lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--clear")
        before = service(lab)
        lab.commit(environment_change(lab, "one"), "a release whose tasks hang")
        stick(lab)

        env = link_sandbox(lab.work, dict(lab.env))
        with Child([BIN / "inv", "app.deploy", PROJECT, "--yes"], cwd=lab.work, env=env) as child:
            child.wait_for_output("IN_PROGRESS;", timeout=BUILD_TIMEOUT)  # a live line of the rollout
            child.send(signal.SIGINT)
            code, out, err = child.finish(timeout=60)

        assert code == 130, out + err
        assert "Traceback" not in out + err
        assert f"rolling back: ECS returns service {SERVICE} to its previous deployment" in out, out
        # Read back: the service runs the task definition it ran before, on its previous deployment.
        after = settled_on(lab, before["taskDefinition"], primary(before)["id"])
        assert after["taskDefinition"] == before["taskDefinition"]
        assert {t["taskDefinitionArn"] for t in running_tasks(lab)} == {before["taskDefinition"]}
        assert lab.lock_item("stage") is None
        [record] = records(lab, "stage", "deploy")[-1:]
        assert record["outcome"] == "interrupted"
        assert record["message"].startswith("interrupted (Ctrl-C); rolling back: ECS returns service"), record

    def test_without_yes_the_rollout_stopped_by_ctrl_c_is_named_and_goes_on(self, lab):
        import signal

        from conftest import BIN, link_sandbox
        from tests.support.signals import Child

        before = service(lab)
        env = link_sandbox(lab.work, dict(lab.env))
        with Child([BIN / "inv", "app.update", PROJECT], cwd=lab.work, env=env) as child:
            child.wait_for_output("IN_PROGRESS;", timeout=60)
            child.send(signal.SIGINT)
            code, out, err = child.finish(timeout=60)

        assert code == 130, out + err
        assert "goes on in ECS; a run with --yes or mvp.rollback_on_interrupt: true" in out, out
        # Not rolled back: the stopped deployment is still the service's, still rolling out.
        after = service(lab)
        assert primary(after)["id"] != primary(before)["id"]
        assert primary(after)["rolloutState"] == "IN_PROGRESS"
        assert lab.lock_item("stage") is None

    def test_a_timeout_rolls_back_only_with_rollback_on_interrupt_not_with_yes(self, lab):
        before = service(lab)
        stuck = primary(before)  # left rolling out by the test before
        completed = next(d for d in before["deployments"] if d["rolloutState"] == "COMPLETED")

        # --yes alone: a rollout past the wait timeout may be slow, not failing; it is left to ECS.
        slow = dict(lab.env, INVOKE_MVP_WAIT_TIMEOUT="3")
        result, out = failed_update(lab, "app.update", PROJECT, "--yes", env=slow)
        assert "has not finished deployment" in out and "rolling back" not in out, out
        left = primary(service(lab))
        assert left["id"] != stuck["id"] and left["rolloutState"] == "IN_PROGRESS"

        env = dict(lab.env, INVOKE_MVP_WAIT_TIMEOUT="3", INVOKE_MVP_ROLLBACK_ON_INTERRUPT="true")
        result, out = failed_update(lab, "app.update", PROJECT, env=env)

        assert "has not finished deployment" in out and "after 3 s" in out, out
        assert f"rolling back: ECS returns service {SERVICE} to its previous deployment" in out, out
        # Read back: the deployment that completed before the stuck ones serves again, alone.
        after = settled_on(lab, completed["taskDefinition"], completed["id"])
        assert after["taskDefinition"] == completed["taskDefinition"]
        assert lab.lock_item("stage") is None
        [record] = records(lab, "stage", "update")[-1:]
        assert record["outcome"] == "failed" and "rolling back" in record["message"], record

    def test_on_a_terminal_the_rollback_is_offered_and_once_confirmed_applied(self, lab):
        from conftest import link_sandbox
        from tests.support.terminal import run_on_a_terminal

        before = settled_on(lab, service(lab)["taskDefinition"])  # the timeout's rollback has ended

        code, screen = run_on_a_terminal(
            lab.work, ["app.update", PROJECT], link_sandbox(lab.work, dict(lab.env)), interrupt_at="IN_PROGRESS;",
            answers={"roll back 1 rollout(s) stopped half-way": "y"}, timeout=120)

        assert code == 130, screen
        assert "Traceback" not in screen
        assert f"~ service {SERVICE}: roll deployment" in screen, screen
        assert f"rolled back: service {SERVICE} runs the deployment before it again" in screen, screen
        # Read back: the deployment that ran before is the service's again, and the only one.
        after = settled_on(lab, before["taskDefinition"], primary(before)["id"])
        assert [d["id"] for d in after["deployments"] if d["status"] == "PRIMARY"] == [primary(before)["id"]]
        assert lab.lock_item("stage") is None
        newest = lab.history("stage")[-1]
        assert (newest["action"], newest["outcome"]) == ("service rollback", "succeeded"), newest

    def test_once_cleared_the_release_ships(self, lab):
        # The release of the first test (ROLLBACK_TEST: one) is the stack's; its service was rolled back.
        assert service(lab)["taskDefinition"] != stack_task_definition(lab)
        lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--clear")
        lab.ok("app.deploy", PROJECT)
        svc = settled_on(lab, stack_task_definition(lab))
        assert [(d["status"], d["rolloutState"]) for d in svc["deployments"]] == [("PRIMARY", "COMPLETED")]
        assert {t["taskDefinitionArn"] for t in running_tasks(lab)} == {stack_task_definition(lab)}
        assert len(running_tasks(lab)) == 3



# --- a failed release leaves the service behind its stack -------------------------------------------


def stack_task_definition(lab) -> str:
    """The task definition the app's stack registered: its TaskDefinition resource's physical id."""
    resources = lab.client("cloudformation").list_stack_resources(StackName=SERVICE)["StackResourceSummaries"]
    return next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "TaskDefinition")


def status_json(lab) -> dict:
    import json

    result = lab.ok("app.status", PROJECT, "--json")
    return next(r for r in json.loads(result.stdout) if r["cluster"] == "stage")


@pytest.mark.usefixtures("lab")
class TestServiceBehindItsStack:
    """A release whose rollout fails registers its task definition in the stack, and the rollback
    returns the service to the one before: the next `app.deploy` of that commit (its stack unchanged)
    brings the service to the stack's task definition, and status says the two differ until then."""

    def test_a_failed_release_leaves_the_service_on_the_old_task_definition(self, lab):
        before = service(lab)
        lab.head = lab.commit(environment_change(lab, "behind"), "a release whose containers exit")
        fail_next(lab, "exit")

        result, out = failed_update(lab, "app.deploy", PROJECT)

        assert "exit code 1" in out, out
        after = settled_on(lab, before["taskDefinition"])
        registered = stack_task_definition(lab)
        assert registered != before["taskDefinition"]
        assert registered.rsplit(":", 1)[0] == before["taskDefinition"].rsplit(":", 1)[0]
        assert primary(after)["taskDefinition"] == before["taskDefinition"]
        # The stack's output names the revision its update registered, as its resource does.
        assert lab.outputs(SERVICE)["TaskDefinitionArn"] == registered
        lab.behind = (before["taskDefinition"], registered)

    def test_status_says_the_service_runs_another_task_definition_than_its_stack(self, lab):
        old, new = (arn.rsplit("/", 1)[-1] for arn in lab.behind)

        row = status_json(lab)
        text = lab.ok("app.status", PROJECT).stdout

        assert (row["task_definition"], row["stack_task_definition"]) == (old, new), row
        assert row["service_drift"] == f"service runs {old}, the stack {new}", row
        assert (row["state"], row["action"]) == ("drift", f"inv app.deploy {PROJECT} --cluster stage"), row
        assert f"{PROJECT}@stage: drift: inv app.deploy {PROJECT} --cluster stage" in text, text
        assert f"{PROJECT}@stage: drift: service runs {old}, the stack {new}" in text, text

    def test_once_cleared_the_deploy_of_the_same_commit_brings_the_service_to_the_stacks_task_definition(self, lab):
        old, new = lab.behind
        lab.ok("sandbox.fail", PROJECT, "--cluster", "stage", "--clear")

        result = lab.ok("app.deploy", PROJECT, timeout=BUILD_TIMEOUT)

        out = result.stdout + result.stderr
        short_old, short_new = old.rsplit("/", 1)[-1], new.rsplit("/", 1)[-1]
        assert f"~ service {SERVICE}: runs {short_old}, the stack {short_new} -> {short_new}" in out, out
        assert f"service {SERVICE} runs {short_old}, not {short_new} that its stack registered" in out, out
        assert "recap: ok=0 changed=1 skipped=0 failed=0" in out, out
        # Read back: the primary deployment runs what the stack registered, settled at its desired count.
        svc = service(lab)
        first = primary(svc)
        assert first["taskDefinition"] == stack_task_definition(lab) == new
        assert first["rolloutState"] == "COMPLETED" and first["runningCount"] == svc["desiredCount"] == 3, svc
        assert {t["taskDefinitionArn"] for t in running_tasks(lab)} == {new}
        assert lab.lock_item("stage") is None
        [record] = records(lab, "stage", "deploy")[-1:]
        assert (record["outcome"], record["commit"]) == ("succeeded", lab.head), record
        row = status_json(lab)
        assert (row["state"], row["service_drift"], row["drift"]) == ("up to date", "", []), row

    def test_a_second_deploy_is_ok_and_changes_nothing(self, lab):
        from test_lifecycle import RecordingProxy

        before = service(lab)
        proxy = RecordingProxy(lab.moto.endpoint)
        try:
            result = lab.ok("app.deploy", PROJECT, env=lab.through(proxy))
        finally:
            proxy.close()

        assert f"ok: {PROJECT}@stage  running {lab.head[:12]}, 3/3 tasks" in result.stdout, result.stdout
        assert "recap: ok=1 changed=0 skipped=0 failed=0" in result.stdout, result.stdout
        assert proxy.calls and proxy.mutating() == [], proxy.calls
        assert primary(service(lab))["id"] == primary(before)["id"]
