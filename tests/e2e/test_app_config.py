"""Per-cluster settings and secrets end to end: `inv` as a subprocess against the moto server, the
sandbox's registry and dockerd; every check reads back from CloudFormation, ECS, SSM and the deploy
store with boto3.

    mvp.projects.museum-adventure:
      environment: {GREETING: "hello {cluster}"}       # plain, with a placeholder
      secrets: [API_KEY]                                # SSM SecureString per cluster
      per_cluster.prod: {parameters: {DesiredCount: 3}, environment: {GREETING: hello prod}}

A release before API_KEY is set is refused and makes no stack; `app.secret.set` (value on stdin)
stores a SecureString; the release then runs one task in stage, the promotion three in prod, and
each task definition names the secret by its ARN while the value is in no stack, template, history
item or argv.

moto turns a task definition's CloudFormation keys into API keys (Environment -> environment) when
it creates one, not when a stack update replaces it; `container()` reads either.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, PROJECT, ROOT, assert_one_line_error, link_sandbox, moto_process
from test_lifecycle import BUILD_TIMEOUT, RecordingProxy, clusters_up, new_lab
from tests.support import iam
from tests.support.terminal import run_on_a_terminal

pytestmark = pytest.mark.e2e

VALUE = "s3cr3t-Value-7f2c9e-%s"  # never seen outside SSM
# CloudFormation's service role (docs/deploy-role.md), the one the deploy role may pass.
CFN_ROLE = f"arn:aws:iam::{iam.ACCOUNT}:role/mvp-cloudformation"
SECRET_PATH = "/mvp/{cluster}/" + PROJECT + "/API_KEY"


def config_files() -> dict[str, str]:
    data = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    data["mvp"]["projects"][PROJECT].update({
        "environment": {"GREETING": "hello {cluster}"},
        "secrets": ["API_KEY"],
        "per_cluster": {"prod": {"parameters": {"DesiredCount": 3}, "environment": {"GREETING": "hello prod"}}},
    })
    for cluster in data["mvp"]["clusters"].values():
        cluster["cfn_role"] = CFN_ROLE
    return {"invoke.yaml": yaml.safe_dump(data, sort_keys=False)}


def container(lab, cluster: str) -> dict:
    """The first container of the task definition the app's service runs, keys as the API has them."""
    service = lab.service(cluster, f"{PROJECT}-{cluster}")
    task = lab.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]

    def camel(value):
        if isinstance(value, dict):
            return {k[:1].lower() + k[1:]: camel(v) for k, v in value.items()}
        if isinstance(value, list):
            return [camel(v) for v in value]
        return value

    return camel(task["containerDefinitions"][0])


def set_secret(lab, cluster: str, value: str, key: str = "API_KEY"):
    return lab.inv("app.secret.set", PROJECT, key, "--cluster", cluster, input=value + "\n")


def everything_stored(lab) -> str:
    """Every stack's template and parameters, and every deploy store item, as one text."""
    cfn = lab.client("cloudformation")
    parts = []
    for name in lab.live_stacks():
        parts.append(json.dumps(cfn.get_template(StackName=name)["TemplateBody"], default=str))
        parts.append(json.dumps(lab.stack(name), default=str))
    parts.append(json.dumps(lab.client("dynamodb").scan(TableName=lab.table())["Items"], default=str))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def moto_three(tmp_path_factory):
    """A moto server of its own (its services settle at their own desired counts: prod's three
    tasks, stage's one)."""
    with moto_process(tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def configured(tmp_path_factory, git_env, image_services, moto_three):
    """The story, every AWS call through a proxy that records it as `service:Action` for the
    deploy role's policy (docs/deploy-role-policy.json)."""
    lab = new_lab(tmp_path_factory.mktemp("config"), git_env, image_services, moto_three, files=config_files())
    proxy = iam.make_proxy(RecordingProxy, moto_three.endpoint)
    lab.env = dict(lab.env, AWS_ENDPOINT_URL=proxy.endpoint)
    try:
        clusters_up(lab)
        out = {"refused": lab.inv("ci.release", timeout=BUILD_TIMEOUT)}
        out["stacks_after_refusal"] = lab.live_stacks()
        out["set_stage"] = set_secret(lab, "stage", VALUE % "stage")
        out["set_prod"] = set_secret(lab, "prod", VALUE % "prod")
        out["release"] = lab.ok("ci.release", timeout=BUILD_TIMEOUT)
        out["promote"] = lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
        for task in (("app.status",), ("app.history", PROJECT), ("app.secret.list", PROJECT),
                     ("app.logs", PROJECT), ("cluster.status",), ("fleet.up", "--check")):
            lab.ok(*task)
        out["calls"] = list(proxy.calls)
    finally:
        proxy.close()
        lab.env = dict(lab.env, AWS_ENDPOINT_URL=moto_three.endpoint)
    return lab, out


def test_the_deploy_role_policy_allows_every_call_the_story_made(configured):
    lab, out = configured
    services = {c.split(":", 1)[0] for c in out["calls"]}
    assert {"cloudformation", "ecs", "dynamodb", "ssm", "sts", "logs"} <= services, services
    # Each call's action on the resource it named, under the conditions it set (RoleARN, PassRole).
    assert iam.refusals(out["calls"]) == []
    # CloudFormation acted as its service role: every stack the story made was given it (read back).
    stacks = lab.live_stacks()
    assert {"stage", "prod", f"{PROJECT}-stage", f"{PROJECT}-prod", "mvp-deploy-state"} <= set(stacks)
    assert {name: lab.stack(name).get("RoleARN") for name in stacks} == {name: CFN_ROLE for name in stacks}
    changes = [c for c in out["calls"] if c in ("cloudformation:CreateStack", "cloudformation:CreateChangeSet")]
    assert changes and all(c.params.get("RoleARN") == CFN_ROLE for c in changes)
    # Neither role can grant itself more (docs/deploy-role.md).
    assert iam.problems(iam.load(iam.POLICY)) == [] and iam.problems(iam.load(iam.CFN_POLICY)) == []
    # The check can fail: a policy without the secrets statement denies what app.secret.set did...
    policy = json.loads(iam.POLICY.read_text())
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != "ToolManagesSecretsNeverReadsThem"]
    assert "ssm:PutParameter" in iam.denied(out["calls"], policy)
    # ...one that lets the tool pass another role refuses the story's stack changes...
    other = json.loads(iam.POLICY.read_text().replace("role/mvp-cloudformation", "role/mvp-other"))
    assert "cloudformation:CreateStack" in iam.denied(out["calls"], other)
    # ...and one whose PassRole names any role passes the story but is refused as a policy.
    wildcard = json.loads(iam.POLICY.read_text().replace('"arn:aws:iam::*:role/mvp-cloudformation"', '"*"'))
    assert iam.refusals(out["calls"], wildcard) == []
    assert any("iam:PassRole of any role" in line for line in iam.problems(wildcard))


def test_a_release_is_refused_until_its_secret_is_set_and_makes_no_stack(configured):
    lab, out = configured
    refused = out["refused"]
    assert refused.returncode != 0
    assert "API_KEY" in refused.stdout + refused.stderr
    assert f"inv app.secret.set {PROJECT} API_KEY --cluster stage" in refused.stdout + refused.stderr
    # One target: its planning error is the task's one error line, and its fix names the app.
    assert refused.stderr.startswith(f"error: secret API_KEY of {PROJECT} is configured but not set in stage; nothing was changed")
    assert f"{PROJECT}-stage" not in out["stacks_after_refusal"]


def test_a_secret_set_on_stdin_is_a_secure_string_with_that_value(configured):
    lab, out = configured
    for cluster in ("stage", "prod"):
        assert out[f"set_{cluster}"].returncode == 0, out[f"set_{cluster}"].stderr
        parameter = lab.client("ssm").get_parameter(Name=SECRET_PATH.format(cluster=cluster),
                                                    WithDecryption=True)["Parameter"]
        assert parameter["Type"] == "SecureString"
        assert parameter["Value"] == VALUE % cluster  # the final newline of stdin is not part of it
        assert VALUE % cluster not in out[f"set_{cluster}"].stdout + out[f"set_{cluster}"].stderr


def test_per_cluster_parameters_give_prod_three_tasks_and_stage_one(configured):
    lab, _ = configured
    assert lab.service("stage", f"{PROJECT}-stage")["desiredCount"] == 1
    assert lab.service("prod", f"{PROJECT}-prod")["desiredCount"] == 3
    assert lab.parameters(f"{PROJECT}-prod")["DesiredCount"] == "3"


def test_the_container_gets_its_environment_and_its_secret_by_arn(configured):
    lab, _ = configured
    account = lab.client("sts").get_caller_identity()["Account"]
    for cluster, greeting in (("stage", "hello stage"), ("prod", "hello prod")):
        web = container(lab, cluster)
        assert {e["name"]: e["value"] for e in web["environment"]} == {"GREETING": greeting}
        assert web["secrets"] == [{
            "name": "API_KEY",
            "valueFrom": f"arn:aws:ssm:us-east-1:{account}:parameter" + SECRET_PATH.format(cluster=cluster)}]


def test_no_secret_value_is_in_any_stack_template_parameter_or_history_item(configured):
    lab, out = configured
    stored = everything_stored(lab)
    assert "API_KEY" in stored  # the names are there: this reads what it should
    for cluster in ("stage", "prod"):
        assert VALUE % cluster not in stored
        assert VALUE % cluster not in out["release"].stdout + out["promote"].stdout


def test_secret_list_shows_names_and_times_never_values(configured):
    lab, _ = configured
    result = lab.ok("app.secret.list", PROJECT, "--cluster", "stage", "--json")
    rows = json.loads(result.stdout)
    assert [(r["key"], r["configured"], r["set"]) for r in rows] == [("API_KEY", True, True)]
    assert rows[0]["changed"] and rows[0]["version"] == 1
    table = lab.ok("app.secret.list", PROJECT, "--cluster", "stage")
    assert "API_KEY" in table.stdout and VALUE % "stage" not in table.stdout + result.stdout


def test_the_history_says_who_set_a_secret_but_not_its_value(configured):
    lab, out = configured
    items = [i for i in lab.history("stage") if i.get("action") == "secret"]
    assert [i["message"] for i in items] == ["set secret API_KEY (version 1)"]
    # Like every change, it was a plan applied by the engine: its line, its outcome and the recap.
    shown = out["set_stage"].stdout
    assert "+ secret API_KEY (value not shown)" in shown
    assert f"changed: {PROJECT}@stage  secret API_KEY set (version 1)" in shown
    assert "recap: ok=0 changed=1 skipped=0 failed=0" in shown


def test_a_secret_set_with_json_is_its_outcome_and_a_new_version(configured):
    import json

    lab, _ = configured
    result = lab.inv("app.secret.set", PROJECT, "JSON_CHECK", "--cluster", "stage", "--json", input="v1")
    assert result.returncode == 0, result.stderr
    [outcome] = json.loads(result.stdout)
    assert (outcome["target"], outcome["outcome"]) == (f"{PROJECT}@stage", "changed")
    assert outcome["message"] == "secret JSON_CHECK set (version 1)"
    stored = lab.client("ssm").get_parameter(Name=f"/mvp/stage/{PROJECT}/JSON_CHECK", WithDecryption=True)
    assert (stored["Parameter"]["Value"], stored["Parameter"]["Version"]) == ("v1", 1)
    lab.ok("app.secret.unset", PROJECT, "JSON_CHECK", "--cluster", "stage", "--yes")


def test_set_secret_argv_never_holds_the_value(configured, tmp_path):
    """`ps` sampled while app.secret.set runs, start to end: no process's arguments hold the value."""
    lab, _ = configured
    value = VALUE % "ps-check"
    env = link_sandbox(lab.work, lab.env)
    proc = subprocess.Popen([str(BIN / "inv"), "app.secret.set", PROJECT, "PS_CHECK", "--cluster", "stage"],
                            cwd=lab.work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    samples: list[str] = []

    def sample():
        while proc.poll() is None:
            samples.append(subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout)

    watcher = threading.Thread(target=sample)
    watcher.start()
    time.sleep(0.5)
    stdout, stderr = proc.communicate(value, timeout=120)
    watcher.join()
    assert proc.returncode == 0, stderr
    assert len(samples) >= 2 and any("app.secret.set" in s for s in samples)  # it was seen running
    assert not any(value in s for s in samples)
    assert value not in stdout + stderr
    stored = lab.client("ssm").get_parameter(Name=f"/mvp/stage/{PROJECT}/PS_CHECK", WithDecryption=True)
    assert stored["Parameter"]["Value"] == value
    lab.ok("app.secret.unset", PROJECT, "PS_CHECK", "--cluster", "stage", "--yes")


def test_unset_removes_it_and_the_next_deploy_is_refused_naming_the_fix(configured):
    import json

    lab, _ = configured
    ssm = lab.client("ssm")
    refused = lab.inv("app.secret.unset", PROJECT, "API_KEY", "--cluster", "prod")
    assert refused.returncode != 0 and "confirmation" in refused.stderr
    checked = lab.ok("app.secret.unset", PROJECT, "API_KEY", "--cluster", "prod", "--check")
    assert "- secret API_KEY" in checked.stdout and "recap:" in checked.stdout
    assert ssm.get_parameter(Name=SECRET_PATH.format(cluster="prod"))["Parameter"]["Name"]
    unset = lab.ok("app.secret.unset", PROJECT, "API_KEY", "--cluster", "prod", "--yes", "--json")
    assert json.loads(unset.stdout) == [{"target": f"{PROJECT}@prod", "outcome": "changed", "commit": "",
                                         "duration": json.loads(unset.stdout)[0]["duration"],
                                         "message": "removed secret API_KEY"}]
    again = lab.ok("app.secret.unset", PROJECT, "API_KEY", "--cluster", "prod", "--yes")
    assert "no secret API_KEY is set; nothing to remove" in again.stdout and "changed=0" in again.stdout
    names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    assert SECRET_PATH.format(cluster="prod") not in names
    before = lab.stack_state(f"{PROJECT}-prod")
    deploy = lab.inv("app.deploy", PROJECT, "--cluster", "prod", "--yes")
    assert deploy.returncode != 0
    assert f"inv app.secret.set {PROJECT} API_KEY --cluster prod" in deploy.stdout + deploy.stderr
    assert lab.stack_state(f"{PROJECT}-prod") == before
    assert set_secret(lab, "prod", VALUE % "prod").returncode == 0


# --- bad input: one line, non-zero, nothing changed --------------------------------------------


def ssm_state(lab) -> list:
    return sorted((p["Name"], p["Version"]) for p in lab.client("ssm").describe_parameters()["Parameters"])


@pytest.mark.parametrize("key, value, fragment", [
    ("1BAD", "x", "not an environment variable name"),
    ("API-KEY", "x", "not an environment variable name"),
    ("API_KEY", "", "is empty; nothing was set"),
    ("API_KEY", "\n", "is empty; nothing was set"),
])
def test_bad_secret_input_is_one_line_and_changes_nothing(configured, key, value, fragment):
    lab, _ = configured
    before = ssm_state(lab)
    result = lab.inv("app.secret.set", PROJECT, key, "--cluster", "stage", input=value)
    assert_one_line_error(result, fragment)
    assert ssm_state(lab) == before


def test_a_value_that_is_not_utf8_text_is_one_line_and_changes_nothing(configured):
    lab, _ = configured
    before = ssm_state(lab)
    result = subprocess.run([str(BIN / "inv"), "app.secret.set", PROJECT, "API_KEY", "--cluster", "stage"],
                            cwd=lab.work, env=link_sandbox(lab.work, lab.env), input=b"\xff\xfe\n",
                            capture_output=True, timeout=120, check=False)
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    assert_one_line_error(result, "the value of API_KEY is not UTF-8 text; nothing was set")
    assert ssm_state(lab) == before


def test_a_secret_for_a_cluster_the_app_does_not_run_in_is_refused(configured):
    lab, _ = configured
    before = ssm_state(lab)
    studio = lab.variant(Path(lab.work.parent / "one-cluster"),
                         config=lambda d: d["mvp"]["projects"][PROJECT].update(clusters=["stage"], per_cluster={}))
    result = lab.inv("app.secret.set", PROJECT, "API_KEY", "--cluster", "prod", cwd=studio, input="x")
    assert_one_line_error(result, "not mapped to cluster prod")
    assert ssm_state(lab) == before


def test_per_cluster_for_an_unmapped_cluster_is_refused_naming_the_key(configured, tmp_path):
    lab, _ = configured
    before = lab.stack_state(f"{PROJECT}-stage")
    studio = lab.variant(tmp_path / "unmapped", config=lambda d: d["mvp"]["projects"][PROJECT]["per_cluster"]
                         .update(qa={"parameters": {"DesiredCount": 2}}))
    result = lab.inv("app.deploy", PROJECT, "--cluster", "stage", cwd=studio)
    assert_one_line_error(result, f"mvp.projects.{PROJECT}.per_cluster.qa", "not mapped to cluster qa")
    assert lab.stack_state(f"{PROJECT}-stage") == before


def test_on_a_terminal_the_value_is_typed_at_a_prompt_that_does_not_echo_it(configured):
    """A person at a terminal: the prompt asks for the value, what they type is not shown, and
    it is stored as typed."""
    lab, _ = configured
    value = VALUE % "typed"
    code, text = run_on_a_terminal(lab.work, ["app.secret.set", PROJECT, "TYPED", "--cluster", "stage"],
                                   link_sandbox(lab.work, lab.env), answers={"(not shown)": value})
    assert code == 0, text
    assert "value of TYPED (not shown)" in text and "secret TYPED set (version 1)" in text
    assert value not in text
    stored = lab.client("ssm").get_parameter(Name=f"/mvp/stage/{PROJECT}/TYPED", WithDecryption=True)
    assert stored["Parameter"]["Value"] == value
