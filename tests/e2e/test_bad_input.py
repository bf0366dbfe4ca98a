"""Bad input, as a table: every way a person can mistype a command, a flag, a config file, a
setting or the environment, and what `inv` must answer.

Each row of `CASES` is one `inv` run as a subprocess (stdin empty, no terminal) in a fresh copy of
the studio, against the moto server, in a prepared world (`prepare_world`: the stage and prod
cluster stacks, the app's ECR repository with its images, a deploy history item, an ECS service;
some rows add a deployed app stack or a held deploy lock). Every row asserts all of:
- a non-zero exit, and no "Traceback" anywhere;
- exactly one non-empty line on stderr, holding the row's fragments (what is wrong, and the fix);
- no change in the emulator: CloudFormation stacks (status, parameters, outputs, tags, protection,
  change sets), ECS clusters, services and task definitions, ECR repositories and image tags,
  DynamoDB tables and all their items, read back with boto3 before and after (`snapshot`).

Rows may change the environment, edit the studio's invoke.yaml (YAML round trip), write files,
make symlinks, run in an empty folder outside the studio, or make a folder read-only. The world is
made per row with boto3 (the `aws` fixture resets moto for every test), which keeps rows cheap.
`inv --help TASK | head -1` is exit 0 by design and has its own test below the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
import yaml

from tests.support import store

from conftest import BIN, PROJECT, ROOT, MotoServer, assert_one_line_error, free_port, inv_env, run_inv

pytestmark = pytest.mark.e2e

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CLUSTER_TEMPLATE = "infrastructure/fargate_cluster.yml"
APP_TEMPLATE = f"projects/{PROJECT}/deploy.yml"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": MANIFEST_TYPE,
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "a" * 64},
    "layers": [],
})
# A stand-in for a deployed app stack: what the tool reads of one (its outputs), nothing to wait for.
APP_STACK_TEMPLATE = yaml.safe_dump({
    "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
    "Outputs": {
        "ServiceName": {"Value": f"{PROJECT}-stage"},
        "ClusterName": {"Value": "stage"},
        "LogGroupName": {"Value": f"/mvp/{PROJECT}-stage"},
    },
})
# A pid no process has (above any pid_max): a sandbox state file left by a server long gone.
DEAD_PID = 2**31 - 1


# --- the table ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input. Strings in argv, fragments, env values, config values, link targets and cwd
    may use {tmp} (the test's folder), {studio} (the studio copy), {outside} (a folder beside the
    studio holding copies of its templates) and {port} (a free loopback port)."""

    id: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    env: Mapping[str, str | None] = dataclasses.field(default_factory=dict)  # None: unset it
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # dotted key in invoke.yaml -> value
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)  # path in the studio -> content
    links: Mapping[str, str] = dataclasses.field(default_factory=dict)  # path in the studio -> target
    cwd: str = "{studio}"
    read_only: str = ""  # a folder in the studio made read-only (immutable) for the run
    world: frozenset[str] = frozenset()  # extras: "app-stack" (museum-adventure-stage), "lock"
    after: Callable[[MotoServer], None] | None = None  # more read-backs after the run

    def __str__(self) -> str:
        return self.id


def no_app_stack_anywhere(aws: MotoServer) -> None:
    """Not in stage, not in prod, not half-made: no stack of the app was ever created."""
    summaries = aws.client("cloudformation").list_stacks()["StackSummaries"]
    app_stacks = [s["StackName"] for s in summaries if s["StackName"].startswith(f"{PROJECT}-")]
    assert app_stacks == [], app_stacks


def case(id: str, argv: str | tuple[str, ...], *fragments: str, **kwargs: Any) -> Any:
    """A row: `argv` as one string split on spaces, or a tuple when an argument is empty or holds a space."""
    args = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    return pytest.param(Case(id, args, fragments, **kwargs), id=id)


DEPLOYED = frozenset({"app-stack"})
SANDBOX_STATE = {".sandbox/moto.json": json.dumps({"pid": DEAD_PID, "port": 1}) + "\n",
                 ".sandbox/moto.log": "a log line of an earlier sandbox\n"}

CASES = [
    # 1. Nothing typed is ignored: an Invoke core flag (or any short flag) after a task is refused.
    case("deploy-core-flag-c", "app.deploy museum-adventure -c prod", "-c", "inv --help app.deploy",
         after=no_app_stack_anywhere),
    case("deploy-core-flag-f", "app.deploy museum-adventure -f x.yaml", "-f", "inv --help app.deploy",
         files={"x.yaml": "mvp: {default_cluster: prod}\n"}, after=no_app_stack_anywhere),
    case("deploy-core-flag-echo", "app.deploy museum-adventure --echo", "--echo", "inv --help app.deploy"),
    case("deploy-core-flag-e", "app.deploy museum-adventure -e", "-e", "inv --help app.deploy"),
    case("deploy-core-flag-dry", "app.deploy museum-adventure --dry", "--dry", "inv --help app.deploy"),
    case("deploy-core-flag-d", "app.deploy museum-adventure -d", "-d", "inv --help app.deploy"),
    case("status-named-core-flag-f", "app.status museum-adventure -f x.yaml", "-f", "inv --help app.status",
         files={"x.yaml": "mvp: {}\n"}),
    case("status-named-core-flag-echo", "app.status museum-adventure --echo", "--echo", "inv --help app.status"),
    # The same flags where the task's optional NAME has not been given yet.
    case("status-core-flag-f", "app.status -f x.yaml", "-f", "inv --help app.status", files={"x.yaml": "mvp: {}\n"}),
    case("status-core-flag-echo", "app.status --echo", "--echo", "inv --help app.status"),
    case("status-core-flag-e", "app.status -e", "-e", "inv --help app.status"),
    case("status-core-flag-dry", "app.status --dry", "--dry", "inv --help app.status"),
    case("status-core-flag-d", "app.status -d", "-d", "inv --help app.status"),
    case("cluster-up-core-flag-dry", "cluster.up --dry", "--dry", "inv --help cluster.up"),
    # Invoke's core options that do nothing here are refused before anything runs (issue 18 item
    # 11): `inv --dry app.update` used to run the update.
    case("core-dry-before-task", "--dry app.update museum-adventure --yes", "--dry", "does nothing", "--check",
         world=DEPLOYED),
    case("core-R-before-task", "-R app.update museum-adventure --yes", "--dry (-R)", "--check", world=DEPLOYED),
    case("core-echo-before-task", "--echo app.update museum-adventure --yes", "--echo", "does nothing",
         world=DEPLOYED),
    case("core-hide-before-task", "--hide both app.status", "--hide", "does nothing"),
    case("core-pty-before-task", "-p app.status", "--pty (-p)", "does nothing"),
    case("core-warn-only-before-task", "-w app.status", "--warn-only (-w)", "does nothing"),
    case("core-command-timeout-before-task", "-T 5 app.status", "--command-timeout (-T)", "does nothing"),
    case("core-sudo-password-before-task", "--prompt-for-sudo-password app.status", "--prompt-for-sudo-password",
         "does nothing"),
    case("core-write-pyc-before-list", "--write-pyc --list", "--write-pyc", "does nothing"),
    case("deploy-dry-after-task-hint", "app.deploy museum-adventure --dry", "--dry", "give it --check",
         "inv --help app.deploy", after=no_app_stack_anywhere),
    # A flag of another task, where this task has one for the purpose under another name.
    case("promote-with-cluster-flag", "app.promote museum-adventure --cluster prod --yes", "--cluster",
         "app.promote takes --tag CLUSTER_TAG, the cluster to promote to", "--from", "inv --help app.promote"),
    # -f files and other config files: checked before anything runs, one line naming the path.
    case("f-missing-file", "-f missing.yaml app.status", "missing.yaml", "does not exist", "check the path"),
    case("f-folder", "-f projects app.status", "config file projects", "is a folder", ".yaml"),
    case("f-not-yaml", "-f notes.txt app.status", "notes.txt", ".yaml", files={"notes.txt": "mvp: {}\n"}),
    case("f-yaml-syntax-error", "-f bad.yaml app.status", "bad.yaml:3:14", "YAML syntax error", "fix that line",
         files={"bad.yaml": "mvp:\n  region: us-east-1\n  registry: a: b\n"}),
    case("f-json-syntax-error", "-f bad.json app.status", "bad.json:1:32", "JSON syntax error", "fix that line",
         files={"bad.json": '{"mvp": {"region": "us-east-1",}}\n'}),
    case("f-top-level-list", "-f list.yaml app.status", "list.yaml", "top level must be a mapping",
         files={"list.yaml": "- mvp\n- region\n"}),
    case("invoke-yaml-syntax-error", "app.status", "invoke.yaml:2:1", "YAML syntax error", "not tabs",
         files={"invoke.yaml": "mvp:\n\tregion: us-east-1\n"}),
    case("invoke-yaml-top-level-list", "app.status", "invoke.yaml", "top level must be a mapping",
         files={"invoke.yaml": "- mvp:\n    region: us-east-1\n"}),
    case("runtime-config-missing", "app.status", "missing.yaml", "INVOKE_RUNTIME_CONFIG", "check the path",
         env={"INVOKE_RUNTIME_CONFIG": "missing.yaml"}),
    # 4. Mistakes get a way out.
    case("unknown-task", "app.deplyo museum-adventure", "app.deplyo", "did you mean app.deploy", "inv --list"),
    case("unknown-flag", "app.deploy museum-adventure --clustr stage", "--clustr", "--cluster",
         "inv --help app.deploy"),
    case("flag-without-value", "app.deploy museum-adventure --cluster", "--cluster", "needs a value"),
    case("extra-positional", "app.deploy museum-adventure stage", "'stage'", "--cluster stage",
         "inv --help app.deploy", after=no_app_stack_anywhere),
    case("missing-positional", "app.deploy", "app.deploy needs NAME", "inv --help app.deploy"),
    case("outside-the-repository", "app.status", "not inside the studio repository", "cd into the repository",
         cwd="{tmp}/empty"),
    # Names: unknown, invalid, empty.
    case("unknown-cluster", "app.deploy museum-adventure --cluster prdo", "unknown cluster 'prdo'", "mvp.clusters"),
    case("unknown-cluster-status", "cluster.status qa", "unknown cluster 'qa'", "mvp.clusters"),
    case("unknown-cluster-release", "ci.release --cluster prdo", "unknown cluster 'prdo'", "mvp.clusters"),
    case("unknown-cluster-push", "app.push museum-adventure --cluster prdo", "unknown cluster 'prdo'"),
    case("invalid-cluster-name", ("cluster.up", "stage;rm"), "'stage;rm'", "not a valid cluster name",
         "lowercase letters, digits or '-'"),
    case("misspelt-cluster", "app.deploy museum-adventure --cluster prdo", "unknown cluster 'prdo'",
         "did you mean 'prod'?", "mvp.clusters"),
    case("misspelt-cluster-status", "cluster.status stgae", "unknown cluster 'stgae'", "did you mean 'stage'?",
         "mvp.clusters"),
    case("misspelt-project", "app.deploy museum-adventur", "unknown project 'museum-adventur'",
         "did you mean 'museum-adventure'?", "mvp.projects"),
    case("misspelt-project-status", "app.status musuem-adventure", "unknown project 'musuem-adventure'",
         "did you mean 'museum-adventure'?", "mvp.projects"),
    case("misspelt-project-build", "app.build museum-adventur", "unknown project 'museum-adventur'",
         "did you mean 'museum-adventure'?", "projects/museum-adventur/", "mvp.projects"),
    case("unknown-project", "app.deploy nosuch", "unknown project 'nosuch'", "mvp.projects"),
    case("unknown-project-status", "app.status nosuch", "unknown project 'nosuch'", "mvp.projects"),
    case("status-html-missing-folder", "app.status --html nosuch/status.html", "--html nosuch/status.html",
         "nosuch does not exist", "create it first"),
    case("status-html-a-folder", "app.status --html projects", "--html projects", "is a folder"),
    case("unknown-project-build", "app.build nosuch", "unknown project 'nosuch'", "projects/nosuch/"),
    case("invalid-project-name-space", ("app.deploy", "Bad Name"), "'Bad Name'", "not a valid project name",
         "lowercase letters, digits or '-'"),
    case("invalid-project-name-path", "app.deploy ../x", "'../x'", "not a valid project name"),
    case("empty-cluster", ("app.deploy", PROJECT, "--cluster", ""), "--cluster", "empty", "inv --help app.deploy",
         after=no_app_stack_anywhere),
    case("empty-cluster-name", ("cluster.up", "--name", ""), "--name", "empty", "inv --help cluster.up"),
    case("empty-project-name", ("app.deploy", ""), "NAME", "empty"),
    case("empty-release-cluster", ("ci.release", "--cluster", ""), "--cluster", "empty"),
    case("project-not-mapped", "app.deploy museum-adventure --cluster prod --yes", "not mapped to cluster prod",
         "mvp.projects.museum-adventure.clusters", config={"mvp.projects.museum-adventure.clusters": ["stage"]}),
    # Config values, from invoke.yaml or INVOKE_MVP_*: one line naming the key path.
    case("env-wait-timeout", "app.status", "mvp.wait_timeout", "whole number", env={"INVOKE_MVP_WAIT_TIMEOUT": "soon"}),
    case("env-poll-interval", "app.status", "mvp.poll_interval", "out of range", env={"INVOKE_MVP_POLL_INTERVAL": "0"}),
    case("env-region", "app.status", "mvp.region", "'mars'", env={"INVOKE_MVP_REGION": "mars"}),
    case("env-default-cluster", "app.status", "mvp.default_cluster", "unknown cluster 'qa'",
         env={"INVOKE_MVP_DEFAULT_CLUSTER": "qa"}),
    case("config-unknown-top-key", "app.status", "mvp.regoin", "unknown key", config={"mvp.regoin": "us-east-1"}),
    case("config-unknown-cluster-key", "cluster.up stage", "mvp.clusters.stage.protectd", "unknown key",
         config={"mvp.clusters.stage.protectd": True}),
    case("config-wrong-type", "app.status", "mvp.projects.museum-adventure.clusters", "a list",
         config={"mvp.projects.museum-adventure.clusters": 5}),
    case("config-project-unknown-cluster", "app.status", "mvp.projects.museum-adventure.clusters",
         "unknown cluster 'qa'", config={"mvp.projects.museum-adventure.clusters": ["stage", "qa"]}),
    case("config-invalid-cluster-name", "app.status", "mvp.clusters.Prod_1", "not a valid cluster name",
         config={"mvp.clusters.Prod_1": {"template": CLUSTER_TEMPLATE}}),
    case("config-project-template-outside", "app.deploy museum-adventure --check",
         "mvp.projects.museum-adventure.template", "inside the project",
         config={"mvp.projects.museum-adventure.template": "../../../outside/deploy.yml"}),
    case("config-project-template-dotdot", "app.deploy museum-adventure --check",
         "mvp.projects.museum-adventure.template", "inside projects/museum-adventure/",
         config={"mvp.projects.museum-adventure.template": "site/../../../../outside/deploy.yml"}),
    case("config-project-template-missing", "app.deploy museum-adventure --check", "nope.yml", "not found",
         config={"mvp.projects.museum-adventure.template": "nope.yml"}, after=no_app_stack_anywhere),
    case("config-cluster-template-missing", "cluster.up stage", "infrastructure/nope.yml", "not found",
         "mvp.clusters.stage.template", config={"mvp.clusters.stage.template": "infrastructure/nope.yml"}),
    case("config-cluster-app-parameter", "app.deploy museum-adventure --cluster prod --yes",
         "mvp.clusters.prod.parameters.DesiredCount", "mvp.projects",
         config={"mvp.clusters.prod.parameters": {"DesiredCount": 3}}, after=no_app_stack_anywhere),
    # 2. promote_from is validated with the settings, before any task runs.
    case("promote-from-itself", "app.status", "mvp.clusters.prod.promote_from", "itself",
         config={"mvp.clusters.prod.promote_from": "prod"}),
    case("promote-from-unknown", "app.status", "mvp.clusters.prod.promote_from", "unknown cluster 'qa'",
         config={"mvp.clusters.prod.promote_from": "qa"}),
    case("promote-from-cycle", "app.promote --tag prod --yes", "promote_from", "cycle stage -> prod -> stage",
         "remove promote_from",
         config={"mvp.clusters.stage.promote_from": "prod"}),
    # 5. The environment's errors carry their fix.
    case("aws-profile-missing", "app.status", "no-such-profile", "aws configure",
         env={"AWS_PROFILE": "no-such-profile", "AWS_CONFIG_FILE": "/dev/null"}),
    case("aws-endpoint-unreachable", "app.status", "cannot reach http://127.0.0.1:{port}", "AWS_ENDPOINT_URL",
         env={"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"}),
    case("sandbox-read-only", "sandbox.down", ".sandbox", "not writable", "chattr -i", files=SANDBOX_STATE,
         read_only=".sandbox"),
    # 6. Paths stay inside the repository.
    case("cluster-template-relative-outside", "cluster.up stage --check", "mvp.clusters.stage.template",
         "inside the repository", config={"mvp.clusters.stage.template": "../outside/fargate_cluster.yml"}),
    case("cluster-template-absolute", "cluster.up stage --check", "mvp.clusters.stage.template",
         "inside the repository", config={"mvp.clusters.stage.template": "{outside}/fargate_cluster.yml"}),
    case("app-template-symlink-outside", "app.deploy museum-adventure --check", "deploy.yml", "outside the repository",
         links={APP_TEMPLATE: "{outside}/deploy.yml"}, after=no_app_stack_anywhere),
    case("cluster-template-symlink-outside", "cluster.up stage --check", "fargate_cluster.yml",
         "outside the repository", links={CLUSTER_TEMPLATE: "{outside}/fargate_cluster.yml"}),
    # In invoke.yaml: run_inv turns an absolute INVOKE_MVP_SANDBOX_DIR into a .sandbox link (conftest).
    case("sandbox-dir-absolute", "sandbox.status", "mvp.sandbox.dir", "inside the repository",
         config={"mvp.sandbox.dir": "{tmp}/elsewhere"}),
    case("sandbox-dir-relative-outside", "sandbox.status", "mvp.sandbox.dir", "inside the repository",
         env={"INVOKE_MVP_SANDBOX_DIR": "../elsewhere"}),
    # Confirmation: without a terminal, refused in one line unless --yes.
    case("cluster-down-with-apps", "cluster.down stage --yes", f"{PROJECT}-stage", "inv app.destroy",
         world=DEPLOYED),
    case("cluster-down-unconfirmed", "cluster.down prod", "needs confirmation", "--yes"),
    case("destroy-unconfirmed", "app.destroy museum-adventure --cluster stage", "needs confirmation", "--yes",
         world=DEPLOYED),
    case("destroy-without-cluster", "app.destroy museum-adventure", "--cluster is required", world=DEPLOYED),
    case("deploy-protected-unconfirmed", "app.deploy museum-adventure --cluster prod", "protected cluster prod",
         "--yes", after=no_app_stack_anywhere),
    # Pre-flight of the app lifecycle (issue 4): refused before anything changes.
    case("deploy-missing-image", "app.deploy museum-adventure --yes", "museum-adventure:canary", "does not exist",
         "inv app.push museum-adventure", config={"mvp.clusters.stage.tag": "canary"}, after=no_app_stack_anywhere),
    case("update-not-deployed", "app.update museum-adventure --yes", "not deployed", "inv app.deploy"),
    case("wait-not-deployed", "app.wait museum-adventure", "not deployed", "inv app.deploy"),
    case("update-lock-held", "app.update museum-adventure --yes", "another deploy of museum-adventure",
         "someone else on ci-7", "wait for it to finish", world=DEPLOYED | {"lock"}),
    # Flags of the fleet, history and per-cluster work (issues 8 to 10) that exist today.
    case("promote-without-tag", "app.promote", "--tag is required"),
    case("promote-empty-tag", ("app.promote", "--tag", ""), "--tag", "empty"),
    case("release-parallel-not-a-number", "ci.release --parallel abc", "--parallel 'abc'", "whole number"),
    case("release-parallel-zero", "ci.release --parallel 0", "--parallel '0'", "from 1 to 64"),
    case("promote-parallel-negative", "app.promote --tag prod --parallel -3", "--parallel '-3'", "whole number"),
    case("fleet-up-parallel-too-many", "fleet.up --parallel 1000", "--parallel '1000'", "from 1 to 64"),
    case("plan-only-unknown-project", "ci.plan --only nosuch", "unknown project 'nosuch'", "mvp.projects"),
    case("history-limit-zero", "app.history museum-adventure --limit 0", "--limit '0'", "whole number"),
    case("history-unknown-cluster", "app.history museum-adventure --cluster prdo", "unknown cluster 'prdo'"),
    case("promote-unknown-tag", "app.promote --tag nosuch", "--tag nosuch", "no cluster runs that tag"),
    case("promote-from-self-flag", "app.promote museum-adventure --tag prod --from prod", "--from prod", "itself"),
    case("promote-from-unknown-flag", "app.promote museum-adventure --tag prod --from qa", "unknown cluster 'qa'"),
    case("promote-from-and-commit", "app.promote museum-adventure --tag prod --from stage --commit 0123456",
         "--from and --commit"),
    case("promote-commit-not-a-hash", "app.promote museum-adventure --tag prod --commit notahash --yes",
         "'notahash'", "not a commit hash", after=no_app_stack_anywhere),
    case("promote-commit-unknown", "app.promote museum-adventure --tag prod --commit 7777777 --yes",
         "commit 7777777", "inv app.push", after=no_app_stack_anywhere),
    case("rollback-without-cluster", "app.rollback museum-adventure --to notahash", "--cluster is required"),
    case("rollback-to-not-a-hash", "app.rollback museum-adventure --cluster stage --to notahash --yes",
         "'notahash'", "not a commit hash", world=DEPLOYED),
    case("rollback-to-unknown-commit", "app.rollback museum-adventure --cluster stage --to 7777777 --yes",
         "commit 7777777", "inv app.push", world=DEPLOYED),
    case("logs-since-forever", "app.logs museum-adventure --since forever", "--since 'forever'", "10m"),
    case("logs-not-deployed", "app.logs museum-adventure --cluster prod", "not deployed", "inv app.deploy"),
]


# --- the world ----------------------------------------------------------------------------------


def prepare_world(aws: MotoServer, extras: frozenset[str]) -> None:
    """The state a bad input could damage: both cluster stacks (prod protected), the app's image
    under its commit and both cluster tags (so a swallowed flag would really deploy), a history
    item, an ECS service; optionally the app's stack in stage and a held deploy lock."""
    cfn = aws.client("cloudformation")
    body = (ROOT / CLUSTER_TEMPLATE).read_text()
    for name in ("stage", "prod"):
        cfn.create_stack(StackName=name, TemplateBody=body, Tags=[{"Key": "mvp:cluster", "Value": name}],
                         EnableTerminationProtection=name == "prod")
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName=PROJECT)
    for tag in (COMMIT, "stage", "prod"):
        ecr.put_image(repositoryName=PROJECT, imageManifest=MANIFEST, imageTag=tag,
                      imageManifestMediaType=MANIFEST_TYPE)
    dynamodb = aws.client("dynamodb")
    item = {"project": PROJECT, "cluster": "stage", "action": "deploy", "commit": COMMIT, "outcome": "succeeded",
            "by": "arn:aws:iam::123456789012:user/tests", "at": "2026-01-01T00:00:00.000000+00:00"}
    table = store.create_store(cfn)
    dynamodb.put_item(TableName=table, Item={
        "pk": {"S": store.app_pk("stage", PROJECT)}, "sk": {"S": f"at#{item['at']}"},
        **{k: {"S": v} for k, v in item.items()}})
    ecs = aws.client("ecs")
    definition = ecs.register_task_definition(
        family=f"{PROJECT}-stage", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
        memory="512", containerDefinitions=[{"name": "web", "image": f"{PROJECT}:stage", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="stage", serviceName=f"{PROJECT}-stage", taskDefinition=definition, desiredCount=1)
    if "app-stack" in extras:
        cfn.create_stack(StackName=f"{PROJECT}-stage", TemplateBody=APP_STACK_TEMPLATE,
                         Tags=[{"Key": "mvp:cluster", "Value": "stage"}])
    if "lock" in extras:
        # A live run on this host (this test's own process): refused at once, never watched.
        from mvp_tasks.state.store import host_identity, process_start

        dynamodb.put_item(TableName=table, Item={
            **store.lock_key("stage", PROJECT), "owner": {"S": "someone else on ci-7 (pid 42)"},
            "host_id": {"S": host_identity()}, "pid": {"N": str(os.getpid())},
            "pid_start": {"S": process_start(os.getpid()) or ""}, "rvn": {"S": "their-version"},
            "token": {"S": "their-token"}, "acquired_at": {"S": "2026-01-01T00:00:00.000000+00:00"},
            "expires_at": {"N": str(int(time.time()) + 3600)}})


def snapshot(aws: MotoServer) -> dict:
    """Everything a task could change in the emulator, read back with boto3, in a comparable form."""
    cfn = aws.client("cloudformation")
    stacks = {}
    for summary in cfn.list_stacks()["StackSummaries"]:  # deleted stacks too
        key = f"{summary['StackName']} {summary['StackId']}"
        stacks[key] = {"status": summary["StackStatus"]}
        if summary["StackStatus"] == "DELETE_COMPLETE":
            continue
        stack = cfn.describe_stacks(StackName=summary["StackId"])["Stacks"][0]
        stacks[key].update(
            parameters=sorted((p["ParameterKey"], p.get("ParameterValue")) for p in stack.get("Parameters", [])),
            outputs=sorted((o["OutputKey"], o["OutputValue"]) for o in stack.get("Outputs", [])),
            tags=sorted((t["Key"], t["Value"]) for t in stack.get("Tags", [])),
            protected=stack.get("EnableTerminationProtection"),
            change_sets=sorted(c["ChangeSetName"] for c in
                               cfn.list_change_sets(StackName=summary["StackId"]).get("Summaries", [])),
        )
    ecs = aws.client("ecs")
    clusters = {}
    arns = ecs.list_clusters()["clusterArns"]
    for cluster in ecs.describe_clusters(clusters=arns)["clusters"] if arns else []:
        services = ecs.list_services(cluster=cluster["clusterArn"])["serviceArns"]
        described = (ecs.describe_services(cluster=cluster["clusterArn"], services=services)["services"]
                     if services else [])
        clusters[cluster["clusterName"]] = {"status": cluster["status"], "services": {
            s["serviceName"]: {"status": s["status"], "desired": s["desiredCount"],
                               "taskDefinition": s["taskDefinition"],
                               "deployments": sorted(d["id"] for d in s.get("deployments", []))}
            for s in described}}
    ecr = aws.client("ecr")
    repositories = {}
    for repo in ecr.describe_repositories()["repositories"]:
        images = ecr.list_images(repositoryName=repo["repositoryName"])["imageIds"]
        repositories[repo["repositoryName"]] = sorted((i.get("imageTag", ""), i["imageDigest"]) for i in images)
    dynamodb = aws.client("dynamodb")
    tables = {}
    for table in dynamodb.list_tables()["TableNames"]:
        items = dynamodb.scan(TableName=table)["Items"]
        tables[table] = sorted(json.dumps(i, sort_keys=True) for i in items)
    return {"stacks": stacks, "ecs": clusters,
            "task_definitions": sorted(ecs.list_task_definitions()["taskDefinitionArns"]),
            "ecr": repositories, "dynamodb": tables}


# --- applying a row -----------------------------------------------------------------------------


def set_key(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def fill(value: Any, places: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**places)
    if isinstance(value, list):
        return [fill(v, places) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, places) for k, v in value.items()}
    return value


def folder_contents(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder cannot be changed for the block: immutable as root (chattr +i), else a read-only
    bind mount, else mode 0555 (which root would ignore)."""
    undo: list[str] = []
    if os.geteuid() == 0 and shutil.which("chattr") and subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    elif os.geteuid() == 0 and subprocess.run(["mount", "--bind", str(folder), str(folder)],
                                              capture_output=True).returncode == 0:
        undo = ["umount", str(folder)]
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(undo, check=True)
            pytest.fail(f"cannot make {folder} read-only", pytrace=False)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
    try:
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True, capture_output=True)
        else:
            folder.chmod(mode)


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_and_changes_nothing(bad: Case, aws, studio, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(ROOT / CLUSTER_TEMPLATE, outside / "fargate_cluster.yml")
    shutil.copy(ROOT / APP_TEMPLATE, outside / "deploy.yml")
    (tmp_path / "empty").mkdir()
    places = {"tmp": str(tmp_path), "studio": str(studio), "outside": str(outside), "port": str(free_port())}

    if bad.config:
        config = yaml.safe_load((studio / "invoke.yaml").read_text())
        for key, value in bad.config.items():
            set_key(config, key, fill(value, places))
        (studio / "invoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name, content in bad.files.items():
        (studio / name).parent.mkdir(parents=True, exist_ok=True)
        (studio / name).write_text(content)
    for name, target in bad.links.items():
        (studio / name).unlink()
        (studio / name).symlink_to(fill(target, places))
    env = inv_env(aws.endpoint)
    for key, value in bad.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = fill(value, places)
    argv = [fill(arg, places) for arg in bad.argv]
    fragments = [fill(fragment, places) for fragment in bad.fragments]

    prepare_world(aws, bad.world)
    before = snapshot(aws)
    guarded = studio / bad.read_only if bad.read_only else None
    contents = folder_contents(guarded) if guarded else None
    with read_only(guarded) if guarded else contextlib.nullcontext():
        result = run_inv(Path(fill(bad.cwd, places)), *argv, env=env, timeout=60)

    assert_one_line_error(result, *fragments)
    assert snapshot(aws) == before
    if guarded:
        assert folder_contents(guarded) == contents
    if bad.after:
        bad.after(aws)


@pytest.mark.parametrize("command, delay, reader", [
    ("--help app.deploy", "", "head -1"),
    # The reader has gone before inv writes a byte: a plain Python print would be a BrokenPipeError.
    ("--help app.deploy", "sleep 0.3; ", "true"),
    ("--list", "sleep 0.3; ", "true"),
], ids=["help-into-head-1", "help-into-a-closed-pipe", "list-into-a-closed-pipe"])
def test_help_into_a_closed_pipe_ends_quietly(studio, command, delay, reader):
    """`inv --help app.deploy | head -1`: exit 0 by design, and no BrokenPipeError when the reader
    leaves. Without `set -o pipefail` the pipeline's status is the reader's, so inv's own status is
    read from PIPESTATUS, and its stderr is kept apart in a file."""
    err = studio / "inv.err"
    script = (f"{{ {delay}'{BIN / 'inv'}' {command} 2>'{err}'; }} | {reader}; "
              "echo \"inv exit status ${PIPESTATUS[0]}\" >&2")
    result = subprocess.run(["bash", "-c", script], cwd=studio, env=inv_env(), capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    inv_stderr = err.read_text()
    assert result.returncode == 0, result.stderr
    assert "inv exit status 0" in result.stderr, result.stderr + inv_stderr
    if reader == "head -1":
        assert result.stdout.startswith("Usage: inv app.deploy"), result.stdout
    for text in (inv_stderr, result.stderr):
        assert "BrokenPipeError" not in text and "Traceback" not in text, text
