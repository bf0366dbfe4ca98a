"""CloudFormation's bad days, end to end on ministack (it rolls stacks back for real): `inv` as a
subprocess, the state read back with boto3.

The failures are made the way a studio meets them: a template whose update has a resource that
CloudFormation fails (a log stream in a log group that does not exist), and a custom resource whose
Lambda refuses one kind of request (its rollback, its delete), which is how a real stack gets stuck
in UPDATE_ROLLBACK_FAILED or DELETE_FAILED, or holds an update in UPDATE_IN_PROGRESS until the test
lets it go (a hung update, to cancel).

What ministack (1.5.33) does here, read in its source (`services/cloudformation/`, `lambda_svc.py`):
- A custom resource's Lambda runs in a worker process on this machine; CloudFormation waits for its
  answer on the ResponseURL in a worker thread, so the stack stays UPDATE_IN_PROGRESS meanwhile and
  every other API call is answered. A function's Timeout defaults to 3 s; past it, the worker is
  killed (`create_function` here gives GATE_TIMEOUT, beyond the hold's bound).
- CancelUpdateStack only sets a flag, which the update checks before each next resource: the
  resource in flight finishes first (so the hold is let go once the cancel was answered, and a
  resource follows the gate), then the update rolls back with the stack's reason "User Initiated"
  and ends UPDATE_ROLLBACK_COMPLETE.
- An app stack: ministack's ECS CreateService fails on a `DesiredCount` given by a Number parameter
  (it gets the string, "unsupported operand type(s) for -: 'str' and 'int'") and leaves a half-made
  service behind, so the app template is trimmed to `DesiredCount: 1`; its ECS service deployments
  are a stub that is COMPLETED at once, so the rollout a deploy waits for is exercised only as far
  as reading that state. The studio copy has no git, so `app.deploy` ships the image the cluster's
  tag names (put in ministack's ECR by the test): no build and no push are exercised here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import BIN, inv_env, link_sandbox, run_inv

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support import store  # noqa: E402
from tests.support.aws_proxy import AwsProxy  # noqa: E402

pytestmark = pytest.mark.e2e

TEMPLATE = "infrastructure/fargate_cluster.yml"
PROJECT = "museum-adventure"
APP_TEMPLATE = f"projects/{PROJECT}/deploy.yml"
APP_STACK = f"{PROJECT}-stage"
REPAIR_APP = f"inv app.repair {PROJECT} --cluster stage"
# Short polls, and a bound on every wait: a stack that never settles fails the test, not the session.
FAST = {"INVOKE_MVP_POLL_INTERVAL": "0.5", "INVOKE_MVP_WAIT_TIMEOUT": "60"}

# A Lambda behind a custom resource: it answers FAILED to the request types its `FailOn` property
# names (of the properties it is sent: a rollback sends the old ones), SUCCESS to the others. With a
# `Hold` property (a path) it answers only once that file exists: an update held in
# UPDATE_IN_PROGRESS until the test lets it go, which it always does (in a `finally`). The hold's own
# bound, HOLD_BOUND, only frees ministack's worker after a test that died without letting go: it is
# far beyond what a test does while it holds (several `inv` runs and a proxy, on shared cores), and
# within the function's Timeout, GATE_TIMEOUT (a killed worker would fail the resource instead).
HOLD_BOUND = 600
GATE_TIMEOUT = HOLD_BOUND + 60
GATE = '''
import json, os, time, urllib.request
def handler(event, context):
    props = event.get("ResourceProperties", {})
    deadline = time.monotonic() + HOLD_BOUND
    while props.get("Hold") and not os.path.exists(props["Hold"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    failed = event["RequestType"] in props.get("FailOn", "").split(",")
    body = json.dumps({"Status": "FAILED" if failed else "SUCCESS",
                       "Reason": "the gate refuses " + event["RequestType"],
                       "PhysicalResourceId": event.get("PhysicalResourceId") or "gate-" + event["LogicalResourceId"],
                       "StackId": event["StackId"], "RequestId": event["RequestId"],
                       "LogicalResourceId": event["LogicalResourceId"]}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    urllib.request.urlopen(request).read()
'''.replace("HOLD_BOUND", str(HOLD_BOUND))

BROKEN_STREAM = """  BrokenStream:
    Type: AWS::Logs::LogStream
    DependsOn: Cluster
    Properties:
      LogGroupName: no-such-log-group
"""


def ministack_template(studio) -> None:
    """The cluster template without its one resource type ministack does not know
    (AWS::EC2::SecurityGroupIngress: "Unrecognized resource types")."""
    path = studio / TEMPLATE
    body = path.read_text()
    start = body.index("  TaskSecurityGroupIngressFromLoadBalancer:\n")
    end = body.index("\nOutputs:\n")
    path.write_text(body[:start] + body[end + 1:])


def with_resources(studio, text: str, template: str = TEMPLATE) -> None:
    path = studio / template
    body = path.read_text()
    assert "\nResources:\n" in body
    path.write_text(body.replace("\nResources:\n", "\nResources:\n" + text, 1))


def gate_function(ministack) -> str:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", GATE)
    return ministack.client("lambda").create_function(
        FunctionName="gate", Runtime="python3.11", Role="arn:aws:iam::000000000000:role/gate",
        Handler="index.handler", Timeout=GATE_TIMEOUT, Code={"ZipFile": code.getvalue()})["FunctionArn"]


def gate(arn: str, fail_on: str) -> str:
    return (f"  Gate:\n    Type: Custom::Gate\n    Properties:\n      ServiceToken: {arn}\n"
            f"      FailOn: '{fail_on}'\n")


def status(ministack, name: str = "stage") -> str:
    return ministack.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]


@pytest.fixture(autouse=True)
def _template(studio):
    ministack_template(studio)


def up(studio, env, *args):
    return run_inv(studio, "cluster.up", "stage", "--yes", *args, env=env, timeout=300)


def test_failed_update_names_the_failing_resource_rolls_back_and_the_next_deploy_works(ministack, studio):
    env = inv_env(ministack.endpoint)
    first = up(studio, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert status(ministack) == "CREATE_COMPLETE"

    original = (studio / TEMPLATE).read_text()
    with_resources(studio, BROKEN_STREAM)
    failed = up(studio, env)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    # The one line of the target's failure names the resource and CloudFormation's reason for it.
    line = next(line for line in failed.stdout.splitlines() + failed.stderr.splitlines()
                if "ended in UPDATE_ROLLBACK_COMPLETE" in line)
    assert "BrokenStream (AWS::Logs::LogStream)" in line and "no-such-log-group" in line, line
    assert status(ministack) == "UPDATE_ROLLBACK_COMPLETE"
    resources = {r["LogicalResourceId"] for r in ministack.client("cloudformation").list_stack_resources(
        StackName="stage")["StackResourceSummaries"]}
    assert "BrokenStream" not in resources and "Cluster" in resources

    (studio / TEMPLATE).write_text(original.replace("Resources:\n", "Resources:\n" + BROKEN_STREAM.replace(
        "no-such-log-group", "stage-streams") + "  StreamGroup:\n    Type: AWS::Logs::LogGroup\n"
        "    Properties:\n      LogGroupName: stage-streams\n", 1).replace("DependsOn: Cluster", "DependsOn: StreamGroup"))
    fixed = up(studio, env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert status(ministack) == "UPDATE_COMPLETE"
    assert ministack.client("logs").describe_log_streams(logGroupName="stage-streams")["logStreams"]

    healthy = run_inv(studio, "cluster.repair", "stage", "--yes", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok: stage" in healthy.stdout and "nothing to repair" in healthy.stdout


def test_update_rollback_failed_is_named_refused_by_planning_and_repaired(ministack, studio):
    env = inv_env(ministack.endpoint)
    arn = gate_function(ministack)
    # Created while it refuses only updates to FailOn=Update: the update below (to FailOn='') passes,
    # its rollback (back to FailOn=Update) is refused, so the stack ends UPDATE_ROLLBACK_FAILED.
    with_resources(studio, gate(arn, "Update"))
    assert up(studio, env).returncode == 0
    body = (studio / TEMPLATE).read_text()
    (studio / TEMPLATE).write_text(body.replace("FailOn: 'Update'", "FailOn: ''").replace(
        "\nResources:\n", "\nResources:\n" + BROKEN_STREAM.replace("DependsOn: Cluster", "DependsOn: Gate"), 1))
    failed = up(studio, env)
    assert failed.returncode != 0
    assert status(ministack) == "UPDATE_ROLLBACK_FAILED"
    out = failed.stdout + failed.stderr
    assert "BrokenStream (AWS::Logs::LogStream)" in out and "no-such-log-group" in out, out
    assert "inv cluster.repair stage" in out, out

    refused = up(studio, env)
    assert refused.returncode != 0
    assert "UPDATE_ROLLBACK_FAILED" in refused.stderr and "inv cluster.repair stage" in refused.stderr, refused.stderr

    wrong = run_inv(studio, "cluster.repair", "stage", "--skip", "Cluster", "--yes", env=env)
    assert wrong.returncode != 0 and "Gate" in wrong.stderr, wrong.stderr
    assert status(ministack) == "UPDATE_ROLLBACK_FAILED"

    check = run_inv(studio, "cluster.repair", "stage", "--check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "continue the rollback" in check.stdout and "skip Custom::Gate Gate" in check.stdout, check.stdout
    assert "the gate refuses Update" in check.stdout, check.stdout
    assert status(ministack) == "UPDATE_ROLLBACK_FAILED"

    no = run_inv(studio, "cluster.repair", "stage", env=env)  # no terminal, no --yes: not confirmed
    assert no.returncode != 0
    assert status(ministack) == "UPDATE_ROLLBACK_FAILED"

    repaired = run_inv(studio, "cluster.repair", "stage", "--skip", "Gate", "--yes", env=env, timeout=300)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert status(ministack) == "UPDATE_ROLLBACK_COMPLETE"
    events = ministack.client("cloudformation").describe_stack_events(StackName="stage")["StackEvents"]
    assert any(e["LogicalResourceId"] == "Gate" and "skipped" in e.get("ResourceStatusReason", "") for e in events)

    (studio / TEMPLATE).write_text(body.replace("FailOn: 'Update'", "FailOn: ''"))
    again = up(studio, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status(ministack) == "UPDATE_COMPLETE"


def test_delete_failed_is_repaired_keeping_what_cannot_go(ministack, studio):
    env = inv_env(ministack.endpoint)
    arn = gate_function(ministack)
    with_resources(studio, gate(arn, "Delete"))
    assert up(studio, env).returncode == 0
    cfn = ministack.client("cloudformation")
    stack_id = cfn.describe_stacks(StackName="stage")["Stacks"][0]["StackId"]

    down = run_inv(studio, "cluster.down", "stage", "--yes", env=env, timeout=300)
    assert down.returncode != 0
    out = down.stdout + down.stderr
    assert "Gate (Custom::Gate) DELETE_FAILED" in out and "the gate refuses Delete" in out, out
    assert "inv cluster.repair stage" in out, out
    assert status(ministack) == "DELETE_FAILED"

    repaired = run_inv(studio, "cluster.repair", "stage", "--yes", env=env, timeout=300)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "keep Custom::Gate Gate" in repaired.stdout, repaired.stdout
    assert cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert any(e["LogicalResourceId"] == "Gate" and e["ResourceStatus"] == "DELETE_SKIPPED"
               for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"])


def test_app_repair_of_an_app_without_a_stack_has_nothing_to_repair(ministack, studio):
    project = sorted(p.name for p in (studio / "projects").iterdir() if (p / "Dockerfile").exists())[0]
    result = run_inv(studio, "app.repair", project, "--cluster", "stage", "--yes", env=inv_env(ministack.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to repair" in result.stdout, result.stdout


# --- an app's stack ------------------------------------------------------------------------------

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                  "digest": "sha256:" + "a" * 64},
                       "layers": []})


def app_world(ministack, studio, env) -> None:
    """The cluster `stage` up, and the app's image under the cluster's tag in ministack's ECR (what
    `app.deploy` ships outside git); the app template with a literal DesiredCount (see above)."""
    path = studio / APP_TEMPLATE
    body = path.read_text()
    assert "      DesiredCount: !Ref DesiredCount\n" in body
    path.write_text(body.replace("      DesiredCount: !Ref DesiredCount\n", "      DesiredCount: 1\n"))
    ecr = ministack.client("ecr")
    ecr.create_repository(repositoryName=PROJECT)
    ecr.put_image(repositoryName=PROJECT, imageManifest=MANIFEST, imageManifestMediaType=MANIFEST_TYPE,
                  imageTag="stage")
    cluster = up(studio, env)
    assert cluster.returncode == 0, cluster.stdout + cluster.stderr


def deploy(studio, env, *args):
    return run_inv(studio, "app.deploy", PROJECT, "--cluster", "stage", "--yes", *args, env=env, timeout=120)


def deployments(ministack) -> list[str]:
    """The ids of the app's ECS service deployments: a new one is a new rollout."""
    service = ministack.client("ecs").describe_services(cluster="stage", services=[APP_STACK])["services"][0]
    return sorted(d["id"] for d in service["deployments"])


def untouched(ministack) -> tuple:
    """What a refused run must leave as it was: the app stack's last update and change sets (the
    failed update's stays listed), its service's deployments, its history."""
    cfn = ministack.client("cloudformation")
    return (cfn.describe_stacks(StackName=APP_STACK)["Stacks"][0].get("LastUpdatedTime"),
            sorted(c["ChangeSetName"] for c in cfn.list_change_sets(StackName=APP_STACK)["Summaries"]),
            deployments(ministack), history(ministack))


def history(ministack) -> list[tuple[str, str]]:
    """(action, outcome) of the app's history records in stage, oldest first."""
    items = store.history_items(ministack.client("dynamodb"), ministack.client("cloudformation"), "stage", PROJECT)
    return [(i["action"], i["outcome"]) for i in sorted(items, key=lambda i: i["sk"])]


def test_app_stack_in_update_rollback_failed_is_named_by_planning_and_repaired(ministack, studio):
    """`app.deploy` and `app.update` on an app stack stuck in UPDATE_ROLLBACK_FAILED are refused in
    planning, naming `inv app.repair`, and change nothing (no change set, no new ECS deployment, no
    history record); `app.repair --yes` continues the rollback, skipping the resource whose rollback
    failed (the task's default: every blocking resource), and the next deploy goes through."""
    env = inv_env(ministack.endpoint, **FAST)
    app_world(ministack, studio, env)
    arn = gate_function(ministack)
    # Created while it refuses only updates to FailOn=Update: the update below (to FailOn='') passes,
    # its rollback (back to FailOn=Update) is refused, so the stack ends UPDATE_ROLLBACK_FAILED.
    with_resources(studio, gate(arn, "Update"), APP_TEMPLATE)
    first = deploy(studio, env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert status(ministack, APP_STACK) == "CREATE_COMPLETE"
    body = (studio / APP_TEMPLATE).read_text()
    (studio / APP_TEMPLATE).write_text(body.replace("FailOn: 'Update'", "FailOn: ''").replace(
        "\nResources:\n", "\nResources:\n" + BROKEN_STREAM.replace("DependsOn: Cluster", "DependsOn: Gate"), 1))
    failed = deploy(studio, env)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in out, out
    assert status(ministack, APP_STACK) == "UPDATE_ROLLBACK_FAILED"
    assert "BrokenStream (AWS::Logs::LogStream)" in out and "the gate refuses Update" in out, out
    assert REPAIR_APP in out, out

    cfn = ministack.client("cloudformation")
    before = untouched(ministack)
    for task in ("app.deploy", "app.update"):
        refused = run_inv(studio, task, PROJECT, "--cluster", "stage", "--yes", env=env)
        assert refused.returncode != 0 and "Traceback" not in refused.stdout + refused.stderr, refused.stderr
        assert "UPDATE_ROLLBACK_FAILED" in refused.stderr and REPAIR_APP in refused.stderr, (task, refused.stderr)
    assert status(ministack, APP_STACK) == "UPDATE_ROLLBACK_FAILED"
    assert untouched(ministack) == before

    check = run_inv(studio, "app.repair", PROJECT, "--cluster", "stage", "--check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "continue the rollback" in check.stdout and "skip Custom::Gate Gate" in check.stdout, check.stdout
    assert status(ministack, APP_STACK) == "UPDATE_ROLLBACK_FAILED"

    repaired = run_inv(studio, "app.repair", PROJECT, "--cluster", "stage", "--yes", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "rollback completed (skipped Gate)" in repaired.stdout, repaired.stdout
    assert status(ministack, APP_STACK) == "UPDATE_ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=APP_STACK)["StackEvents"]
    assert any(e["LogicalResourceId"] == "Gate" and "skipped" in e.get("ResourceStatusReason", "") for e in events)
    assert history(ministack)[-1] == ("repair", "succeeded")

    (studio / APP_TEMPLATE).write_text(body.replace("FailOn: 'Update'", "FailOn: ''"))
    again = deploy(studio, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status(ministack, APP_STACK) == "UPDATE_COMPLETE"
    assert "FailOn: ''" in cfn.get_template(StackName=APP_STACK)["TemplateBody"]


def latest_event(ministack, name: str) -> tuple[str, str]:
    event = ministack.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"][0]
    return event["LogicalResourceId"], event["ResourceStatus"]


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def wait_answered(proxy: AwsProxy, action: str, child: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until `action` came through the proxy and `child`, its only client, made a call after it (so it
    had its answer)."""
    def answered() -> bool:
        if child.poll() is not None:
            out, err = child.communicate()
            raise AssertionError(f"inv ended (exit {child.returncode}) before {action} was answered:\n{out}{err}")
        actions = [c.action for c in proxy.calls]
        return action in actions and len(actions) > actions.index(action) + 1

    wait_until(answered, f"{action} answered", timeout)


def start_inv(studio, env, *args) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "inv"), *args], cwd=studio, env=link_sandbox(studio, env), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_app_update_held_in_progress_is_refused_by_planning_and_cancelled_by_app_repair(ministack, studio, tmp_path):
    """An app deploy whose stack update hangs (a custom resource held UPDATE_IN_PROGRESS): planning
    `app.deploy` or `app.update` meanwhile is refused, naming `inv app.repair`, and changes nothing;
    `app.repair --yes` cancels the update although the hung deploy still holds the app's deploy lock
    (cancelling that run's update is the point), CloudFormation rolls it back to
    UPDATE_ROLLBACK_COMPLETE, the hung deploy ends failed saying why, and the next deploy goes through.
    The cancel is let go deterministically: the hold ends only once CancelUpdateStack was answered
    (seen through a proxy), as ministack acts on a cancel only between two resources."""
    env = inv_env(ministack.endpoint, **FAST)
    app_world(ministack, studio, env)
    arn = gate_function(ministack)
    release = tmp_path / "release"
    # The load balancer waits on the gate: the update has a resource after it to stop before.
    with_resources(studio, gate(arn, ""), APP_TEMPLATE)
    path = studio / APP_TEMPLATE
    path.write_text(path.read_text().replace("\n  LoadBalancer:\n", "\n  LoadBalancer:\n    DependsOn: Gate\n", 1))
    first = deploy(studio, env)
    assert first.returncode == 0, first.stdout + first.stderr
    path.write_text(path.read_text().replace("      FailOn: ''\n", f"      FailOn: ''\n      Hold: {release}\n", 1))

    cfn, dynamodb = ministack.client("cloudformation"), ministack.client("dynamodb")
    settled = cfn.describe_stacks(StackName=APP_STACK)["Stacks"][0]["LastUpdatedTime"]
    # The hung deploy waits on the held update as long as the hold may last: however slow the runs
    # below, it must see the cancel's rollback, not give up waiting first.
    hung = start_inv(studio, {**env, "INVOKE_MVP_WAIT_TIMEOUT": str(HOLD_BOUND)}, "app.deploy", PROJECT,
                     "--cluster", "stage", "--yes")
    try:
        wait_until(lambda: latest_event(ministack, APP_STACK) == ("Gate", "UPDATE_IN_PROGRESS"), "the gate held")
        assert status(ministack, APP_STACK) == "UPDATE_IN_PROGRESS"
        # The update in progress has a LastUpdatedTime of its own: what ties app.repair's cancel to it.
        began = cfn.describe_stacks(StackName=APP_STACK)["Stacks"][0]["LastUpdatedTime"]
        assert began > settled, (settled, began)
        assert store.lock_item(dynamodb, cfn, "stage", PROJECT) is not None  # the hung deploy's
        before = untouched(ministack)
        for task in ("app.deploy", "app.update"):
            refused = run_inv(studio, task, PROJECT, "--cluster", "stage", "--yes", env=env)
            assert refused.returncode != 0 and "Traceback" not in refused.stdout + refused.stderr, refused.stderr
            assert "UPDATE_IN_PROGRESS" in refused.stderr and REPAIR_APP in refused.stderr, (task, refused.stderr)
        assert untouched(ministack) == before

        check = run_inv(studio, "app.repair", PROJECT, "--cluster", "stage", "--check", env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert f"cancel the update in progress since {began.strftime('%Y-%m-%d %H:%M:%S')} UTC" in check.stdout, \
            check.stdout
        assert "waits on this update" in check.stdout + check.stderr, check.stdout + check.stderr
        assert status(ministack, APP_STACK) == "UPDATE_IN_PROGRESS"

        with AwsProxy(ministack.endpoint) as proxy:
            repair = start_inv(studio, inv_env(proxy.url, **FAST), "app.repair", PROJECT, "--cluster", "stage", "--yes")
            wait_answered(proxy, "CancelUpdateStack", repair)
            release.touch()
            out, err = repair.communicate(timeout=60)
        assert repair.returncode == 0, out + err
        assert "update cancelled and rolled back" in out, out
    finally:
        release.touch()
        hung_out, hung_err = hung.communicate(timeout=60)
    assert status(ministack, APP_STACK) == "UPDATE_ROLLBACK_COMPLETE"
    assert "Hold" not in cfn.get_template(StackName=APP_STACK)["TemplateBody"]
    assert hung.returncode != 0, hung_out + hung_err
    line = next(line for line in hung_err.splitlines() if "ended in UPDATE_ROLLBACK_COMPLETE" in line)
    assert "User Initiated" in line, line
    assert store.lock_item(dynamodb, cfn, "stage", PROJECT) is None
    # Both runs see the rollback end: their records come in either order.
    assert sorted(history(ministack)[-2:]) == [("deploy", "failed"), ("repair", "succeeded")]

    again = deploy(studio, env)  # the hold is let go: the same change now goes through
    assert again.returncode == 0, again.stdout + again.stderr
    assert status(ministack, APP_STACK) == "UPDATE_COMPLETE"
    assert "Hold" in cfn.get_template(StackName=APP_STACK)["TemplateBody"]
