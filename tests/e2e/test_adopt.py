"""Adopting a pair of templates written elsewhere, by config alone: `inv` as a subprocess against a
real moto server over HTTP on loopback, a real OCI registry and Docker engine, in a real git studio.

The templates (tests/fixtures/adopt/) know nothing of mvp-tasks. The cluster template names its ECS
cluster `<stack>-ECSCluster` (not the stack's name, our convention) and has none of our outputs: it
exports what apps need under names of its own (`<stack>:<output>`). The app template imports them
with Fn::ImportValue, lets CloudFormation name its service (`<stack>-Service-<random>`) and has no
outputs at all. So the tool finds the ECS cluster through the cluster stack's `AWS::ECS::Cluster`
resource and the service through the app stack's `AWS::ECS::Service` resource
(`mvp_tasks/aws/discovery.py`); guessing from names would roll nothing.

invoke.yaml points `mvp.clusters.*.template` at the cluster template and `mvp.projects.adopted`
at the app template (copied into the project, where project templates live), and fills both
templates' own parameters through placeholders ({cluster}, {image}).

The story: both clusters up; commit A pushed and deployed to stage; promoted to prod (its stack is
created there); commit B pushed and deployed to stage (the stack is unchanged: the service rolls);
promoted to prod (its tag moves, the service rolls). Every step is read back with boto3 from moto
and from the registry. The app stacks are only ever created, never updated: moto fails a change
set whose stack uses Fn::ImportValue (../shared/ENVIRONMENT.md).

`app.logs` on such a template (`TestLogsOfAnAdoptedTemplate`): a variant of the app template whose
log group is named after the stack itself, still with no outputs; the tool finds the group through
the stack's `AWS::Logs::LogGroup` resource and prints the events put into it with boto3.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest
import yaml

from conftest import ROOT
from test_lifecycle import BUILD_TIMEOUT, Lab, new_lab

pytestmark = pytest.mark.e2e

APP = "adopted"
FIXTURES = ROOT / "tests" / "fixtures" / "adopt"
CLUSTER_TEMPLATE = "tests/fixtures/adopt/cluster.yml"
# The outputs (and so the output keys) the adopted cluster template has: none the tool knows.
CLUSTER_OUTPUTS = {"VPCId", "PublicSubnetOne", "PublicSubnetTwo", "ContainerSecurityGroup", "Platform"}


def adopted_config() -> dict:
    config = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    mvp = config["mvp"]
    mvp["clusters"] = {
        "stage": {"template": CLUSTER_TEMPLATE, "protected": False,
                  "parameters": {"NetworkName": "{cluster}-network"}},
        "prod": {"template": CLUSTER_TEMPLATE, "protected": False, "promote_from": "stage",
                 "parameters": {"NetworkName": "{cluster}-network", "VpcCidr": "10.43.0.0/16",
                                "SubnetOneCidr": "10.43.0.0/24", "SubnetTwoCidr": "10.43.1.0/24"}},
    }
    mvp["projects"] = {APP: {"clusters": ["stage", "prod"], "template": "service.yml",
                             "parameters": {"NetworkStack": "{cluster}", "ContainerImage": "{image}"}}}
    return config


def adopted_files() -> dict[str, str]:
    return {
        "invoke.yaml": yaml.safe_dump(adopted_config(), sort_keys=False),
        f"projects/{APP}/service.yml": (FIXTURES / "app.yml").read_text(),
        f"projects/{APP}/Dockerfile": (ROOT / "projects" / "museum-adventure" / "Dockerfile").read_text(),
        f"projects/{APP}/site/index.html": "<!doctype html><title>adopted</title><p>commit A</p>\n",
    }


@dataclasses.dataclass
class Adoption(Lab):
    """test_lifecycle's `Lab` (running `inv`, reading stacks and the registry back), with what the
    adopted pair needs on top: its service is found in the ECS cluster, not by name, and each step's
    result and what ran where after it are kept for the tests."""

    results: dict = dataclasses.field(default_factory=dict)
    seen: dict = dataclasses.field(default_factory=dict)
    commits: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def start(cls, base, git_env, services, moto) -> "Adoption":
        return cls(**vars(new_lab(base, git_env, services, moto, files=adopted_files())))

    def step(self, label: str, *args: str, timeout: float = 120):
        """`inv ARGS`, which must succeed; its result is kept as `results[label]`."""
        self.results[label] = self.ok(*args, timeout=timeout)
        return self.results[label]

    # read back -------------------------------------------------------------------------------

    def physical_ids(self, stack: str, resource_type: str) -> list[str]:
        summaries = self.client("cloudformation").list_stack_resources(StackName=stack)["StackResourceSummaries"]
        return [r["PhysicalResourceId"] for r in summaries if r["ResourceType"] == resource_type]

    def services_in(self, ecs_cluster: str) -> list[dict]:
        ecs = self.client("ecs")
        arns = ecs.list_services(cluster=ecs_cluster)["serviceArns"]
        return ecs.describe_services(cluster=ecs_cluster, services=arns)["services"] if arns else []

    def app_service(self, cluster: str) -> dict:
        """The app's one service in `cluster`'s ECS cluster, as ECS describes it."""
        (service,) = self.services_in(f"{cluster}-ECSCluster")
        return service

    def deployments(self, cluster: str, project: str = APP) -> list[str]:
        # Not `Lab.deployments`: that finds the service by our naming convention, which this one has not.
        return sorted(d["id"] for d in self.app_service(cluster)["deployments"])

    def look(self, label: str) -> None:
        """What runs where, after step `label`."""
        self.seen[label] = {cluster: {"deployments": self.deployments(cluster),
                                      "task_definition": self.app_service(cluster)["taskDefinition"]}
                            for cluster in ("stage", "prod") if self.stack(f"{APP}-{cluster}") is not None}


def rolled(before: dict, after: dict) -> str:
    """The id of the one deployment `after` has and `before` had not: the service was rolled. (moto
    keeps a single deployment per service and gives it a new id on each forced deployment, where
    ECS would list the new one beside the old until the old drains: so ids, not counts.)"""
    (new,) = set(after["deployments"]) - set(before["deployments"])
    return new


@pytest.fixture(scope="class")
def adoption(tmp_path_factory, git_env, image_services, moto_server):
    lab = Adoption.start(tmp_path_factory.mktemp("adopt"), git_env, image_services, moto_server)
    lab.commits["A"] = lab.repo.commit

    lab.step("stage up", "cluster.up", "--name", "stage")
    lab.step("prod up", "cluster.up", "--name", "prod")
    lab.step("push A", "app.push", APP, timeout=BUILD_TIMEOUT)
    lab.step("deploy A", "app.deploy", APP)
    lab.look("deploy A")
    lab.step("promote A", "app.promote", APP, "--tag", "prod", "--yes")
    lab.look("promote A")

    lab.commits["B"] = lab.commit({f"projects/{APP}/site/index.html":
                                   "<!doctype html><title>adopted</title><p>commit B</p>\n"}, "commit B")
    lab.step("push B", "app.push", APP, timeout=BUILD_TIMEOUT)
    lab.step("deploy B", "app.deploy", APP)
    lab.look("deploy B")
    lab.step("promote B", "app.promote", APP, "--tag", "prod", "--yes")
    lab.look("promote B")
    return lab


class TestAdoptedTemplates:
    def test_the_templates_pass_cfn_lint(self):
        from cfnlint.api import ManualArgs, lint_file

        for name in ("cluster.yml", "app.yml"):
            matches = lint_file(FIXTURES / name, config=ManualArgs(regions=["us-east-1"]))
            assert [str(m) for m in matches if m.rule.id[0] in "EW"] == [], name

    def test_clusters_up_from_the_adopted_template_with_its_own_parameters(self, adoption):
        lab = adoption
        for cluster in ("stage", "prod"):
            stack = lab.stack(cluster)
            assert stack["StackStatus"] == "CREATE_COMPLETE", lab.results[f"{cluster} up"].stdout
            assert lab.parameters(cluster)["NetworkName"] == f"{cluster}-network"
            assert set(lab.outputs(cluster)) == CLUSTER_OUTPUTS  # none of ours
            # moto, like CloudFormation, gives an AWS::ECS::Cluster's name as its physical id.
            assert lab.physical_ids(cluster, "AWS::ECS::Cluster") == [f"{cluster}-ECSCluster"]
            (ecs_cluster,) = lab.client("ecs").describe_clusters(clusters=[f"{cluster}-ECSCluster"])["clusters"]
            assert ecs_cluster["status"] == "ACTIVE"
        # No ECS cluster is named after the stacks: a guess from names would find nothing.
        assert lab.client("ecs").describe_clusters(clusters=["stage", "prod"])["clusters"] == []

    def test_deploy_creates_the_app_stack_and_its_service_runs_in_the_clusters_ecs_cluster(self, adoption):
        lab = adoption
        stack = lab.stack(f"{APP}-stage")
        assert stack["StackStatus"] == "CREATE_COMPLETE", lab.results["deploy A"].stdout
        assert "Outputs" not in stack or stack["Outputs"] == []
        assert lab.parameters(f"{APP}-stage") == {"NetworkStack": "stage",
                                                  "ContainerImage": f"{lab.registry}/{APP}:stage",
                                                  "ContainerPort": "80", "DesiredCount": "1"}
        service = lab.app_service("stage")
        assert service["status"] == "ACTIVE"
        assert service["serviceName"].startswith(f"{APP}-stage-Service-")  # named by CloudFormation
        assert service["clusterArn"].endswith(":cluster/stage-ECSCluster")
        # moto, like CloudFormation, gives an AWS::ECS::Service's ARN as its physical id.
        assert lab.physical_ids(f"{APP}-stage", "AWS::ECS::Service") == [service["serviceArn"]]
        assert f"changed: {APP}@stage  {lab.commits['A'][:12]} deployed" in lab.results["deploy A"].stdout
        # The rollout was followed on the service found, not on one named after the stack.
        assert service["serviceName"] in lab.results["deploy A"].stdout + lab.results["deploy A"].stderr

    def test_first_promote_creates_the_prod_stack_in_prods_ecs_cluster(self, adoption):
        lab = adoption
        assert lab.stack(f"{APP}-prod")["StackStatus"] == "CREATE_COMPLETE", lab.results["promote A"].stdout
        assert lab.parameters(f"{APP}-prod")["NetworkStack"] == "prod"
        service = lab.seen["promote A"]["prod"]
        assert lab.app_service("prod")["clusterArn"].endswith(":cluster/prod-ECSCluster")
        assert len(service["deployments"]) == 1
        assert f"changed: {APP}@prod  {lab.commits['A'][:12]} promoted" in lab.results["promote A"].stdout
        # Promoting did not touch stage.
        assert lab.seen["promote A"]["stage"] == lab.seen["deploy A"]["stage"]

    def test_deploying_a_new_image_rolls_the_found_service_without_updating_the_stack(self, adoption):
        lab = adoption
        before, after = lab.seen["promote A"]["stage"], lab.seen["deploy B"]["stage"]
        new = rolled(before, after)
        service = lab.app_service("stage")["serviceName"]
        assert f"new deployment {new} of service {service}" in lab.results["deploy B"].stdout
        # The stack stayed as created: the same task definition (it names the image by its tag).
        assert after["task_definition"] == before["task_definition"]
        assert lab.stack(f"{APP}-stage")["StackStatus"] == "CREATE_COMPLETE"
        assert lab.digest("stage", APP) == lab.digest(lab.commits["B"], APP) != lab.digest(lab.commits["A"], APP)
        assert f"changed: {APP}@stage  {lab.commits['B'][:12]} deployed" in lab.results["deploy B"].stdout

    def test_promote_moves_prods_tag_and_rolls_prods_service(self, adoption):
        lab = adoption
        before, after = lab.seen["deploy B"]["prod"], lab.seen["promote B"]["prod"]
        new = rolled(before, after)
        service = lab.app_service("prod")["serviceName"]
        assert f"new deployment {new} of service {service}" in lab.results["promote B"].stdout
        assert lab.digest("prod", APP) == lab.digest("stage", APP) == lab.digest(lab.commits["B"], APP)
        assert lab.stack(f"{APP}-prod")["StackStatus"] == "CREATE_COMPLETE"
        assert f"changed: {APP}@prod  {lab.commits['B'][:12]} promoted" in lab.results["promote B"].stdout
        # Stage's service was left alone.
        assert lab.seen["promote B"]["stage"] == lab.seen["deploy B"]["stage"]

    def test_history_records_every_rollout(self, adoption):
        lab = adoption
        # app.push --cluster stage moved stage's tag under the app's lock: it is in the history too.
        for cluster, expected in (("stage", [("deploy", "B"), ("push", "B"), ("deploy", "A"), ("push", "A")]),
                                  ("prod", [("promote", "B"), ("promote", "A")])):
            result = lab.ok("app.history", APP, "--cluster", cluster, "--json")
            records = json.loads(result.stdout)
            assert [(r["action"], r["outcome"], r["commit"]) for r in records] == \
                [(action, "succeeded", lab.commits[c]) for action, c in expected]

    def test_promote_again_changes_nothing(self, adoption):
        lab = adoption
        result = lab.ok("app.promote", APP, "--tag", "prod", "--yes")
        assert f"ok: {APP}@prod  already runs" in result.stdout, result.stdout
        assert lab.deployments("prod") == lab.seen["promote B"]["prod"]["deployments"]


# --- app.logs on a template with no outputs ----------------------------------------------------------


def logs_variant() -> str:
    """The adopted app template with its log group named after the stack (`<app>-<cluster>`), no outputs."""
    text = (FIXTURES / "app.yml").read_text()
    named = text.replace("LogGroupName: !Sub '/adopted/${AWS::StackName}'", "LogGroupName: !Ref AWS::StackName")
    assert named != text and "Outputs:" not in named
    return named


@pytest.fixture(scope="class")
def logs_lab(tmp_path_factory, git_env, image_services, moto_server):
    files = dict(adopted_files(), **{f"projects/{APP}/service.yml": logs_variant()})
    lab = Adoption(**vars(new_lab(tmp_path_factory.mktemp("adopt-logs"), git_env, image_services, moto_server,
                                  files=files)))
    lab.step("stage up", "cluster.up", "--name", "stage")
    lab.step("push", "app.push", APP, timeout=BUILD_TIMEOUT)
    lab.step("deploy", "app.deploy", APP)
    return lab


class TestLogsOfAnAdoptedTemplate:
    def test_app_logs_finds_the_log_group_named_after_the_stack_and_prints_its_events(self, logs_lab):
        lab = logs_lab
        stack = f"{APP}-stage"
        assert lab.stack(stack)["StackStatus"] == "CREATE_COMPLETE", lab.results["deploy"].stdout
        assert lab.stack(stack).get("Outputs", []) == []
        assert lab.physical_ids(stack, "AWS::Logs::LogGroup") == [stack]
        logs = lab.client("logs")
        assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=stack)["logGroups"]] == [stack]

        # Nothing logged yet: one line that says so, and success.
        quiet = lab.ok("app.logs", APP)
        said = [line.strip() for line in quiet.stdout.splitlines()[1:]]  # after the run's header line
        assert said == [f"no log lines of {APP} in stage since 10m (log group {stack})"], quiet.stdout

        task = uuid.uuid4().hex
        stream = f"web/web/{task}"
        logs.create_log_stream(logGroupName=stack, logStreamName=stream)
        now = int(time.time() * 1000)
        marker = uuid.uuid4().hex[:8]
        logs.put_log_events(logGroupName=stack, logStreamName=stream, logEvents=[
            {"timestamp": now - 20 * 60 * 1000, "message": f"{marker} too old for --since 5m"},
            {"timestamp": now - 60 * 1000, "message": f"{marker} GET /index.html 200"},
            {"timestamp": now - 1000, "message": f"{marker} GET /visit.html 200"},
        ])

        result = lab.ok("app.logs", APP, "--since", "5m")

        lines = [line for line in result.stdout.splitlines() if marker in line]
        assert [line.split(f" {task[:8]} ", 1)[1] for line in lines] == \
            [f"{marker} GET /index.html 200", f"{marker} GET /visit.html 200"], result.stdout
        assert "no log lines" not in result.stdout
