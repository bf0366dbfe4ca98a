"""CloudFormation's bad days, end to end on ministack (it rolls stacks back for real): `inv` as a
subprocess, the state read back with boto3.

The failures are made the way a studio meets them: a template whose update has a resource that
CloudFormation fails (a log stream in a log group that does not exist), and a custom resource whose
Lambda refuses one kind of request (its rollback, its delete), which is how a real stack gets stuck
in UPDATE_ROLLBACK_FAILED or DELETE_FAILED."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from conftest import inv_env, run_inv

pytestmark = pytest.mark.e2e

TEMPLATE = "infrastructure/fargate_cluster.yml"

# A Lambda behind a custom resource: it answers FAILED to the request types its `FailOn` property
# names (of the properties it is sent: a rollback sends the old ones), SUCCESS to the others.
GATE = '''
import json, urllib.request
def handler(event, context):
    props = event.get("ResourceProperties", {})
    failed = event["RequestType"] in props.get("FailOn", "").split(",")
    body = json.dumps({"Status": "FAILED" if failed else "SUCCESS",
                       "Reason": "the gate refuses " + event["RequestType"],
                       "PhysicalResourceId": event.get("PhysicalResourceId") or "gate-" + event["LogicalResourceId"],
                       "StackId": event["StackId"], "RequestId": event["RequestId"],
                       "LogicalResourceId": event["LogicalResourceId"]}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    urllib.request.urlopen(request).read()
'''

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


def with_resources(studio, text: str) -> None:
    path = studio / TEMPLATE
    body = path.read_text()
    assert "\nResources:\n" in body
    path.write_text(body.replace("\nResources:\n", "\nResources:\n" + text, 1))


def gate_function(ministack) -> str:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", GATE)
    return ministack.client("lambda").create_function(
        FunctionName="gate", Runtime="python3.11", Role="arn:aws:iam::000000000000:role/gate",
        Handler="index.handler", Code={"ZipFile": code.getvalue()})["FunctionArn"]


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
    # An app stack stuck on ministack would need an image pushed first; the planning and applying
    # of a repair are the cluster's (the tests above), only the stack's name differs.
    project = sorted(p.name for p in (studio / "projects").iterdir() if (p / "Dockerfile").exists())[0]
    result = run_inv(studio, "app.repair", project, "--cluster", "stage", "--yes", env=inv_env(ministack.endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to repair" in result.stdout, result.stdout
