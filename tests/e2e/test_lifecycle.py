"""The app lifecycle end to end: `inv` as a subprocess against a real moto server (over HTTP on loopback),
a real OCI registry and a private Docker engine (scripts/sandbox-services.sh), in real git studio
repositories. Every assertion reads the state back from the services themselves: CloudFormation, ECS,
ELBv2, CloudWatch Logs and the DynamoDB deploy history through boto3 against moto, image tags and
digests through the registry's HTTP API.

Set-up is shared where it is safe: each scenario class resets the moto server once (class-scoped
fixture) and runs its tests in order; no test in a scenario class may use the per-test `aws`
fixture (it would reset the scenario's state). Registry state is kept apart per scenario by giving
each its own namespace (`mvp.registry = 127.0.0.1:PORT/<namespace>`), except the studio story, which
uses the registry the sandbox directory names, as `make demo` does. Tests assert on what they changed
themselves (before/after read-backs), so they do not depend on each other's order.

What moto cannot show (see ../shared/ENVIRONMENT.md): it sets no LastUpdatedTime on updates, so
"nothing changed" is read back from the stack's status, events and change sets, the ECS deployments,
the history table and the registry, and "no mutating call" from a recording proxy in front of moto.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.support import store

from conftest import (
    PROJECT, ROOT, ImageServices, MotoServer, StudioRepo, assert_one_line_error, free_port, git,
    image_inv_env, make_studio_repo, run_inv,
)

pytestmark = pytest.mark.e2e

IMPORTS = "imports-app"
BUILD_TIMEOUT = 300
# Waits are bounded in tests: moto settles at once or never (a stack stuck in *_IN_PROGRESS).
LAB_SETTINGS = {"INVOKE_MVP_WAIT_TIMEOUT": "60", "INVOKE_MVP_POLL_INTERVAL": "0.5"}
READ_ONLY = ("Describe", "List", "Get", "Query", "Scan", "BatchGet", "Filter", "Lookup", "Validate")


# --- a recording proxy in front of moto ----------------------------------------------------------


class RecordingProxy:
    """A loopback HTTP proxy that forwards every AWS call to moto and records its action name, so a
    test can say "no mutating call was made", not only "nothing looks different"."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.calls: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.calls.append(proxy.action(self.headers, self.path, body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def action(headers, path: str, body: bytes) -> str:
        target = headers.get("X-Amz-Target")
        if target:  # JSON protocols: ECS, DynamoDB, Logs, ECR
            return target.rsplit(".", 1)[-1]
        params = parse_qs(body.decode("utf-8", "replace")) if body else parse_qs(urlsplit(path).query)
        if "Action" in params:  # query protocols: CloudFormation, STS, ELBv2, EC2
            return params["Action"][0]
        return f"{headers.get('X-HTTP-Method', '')}{path}"

    def mutating(self) -> list[str]:
        return [c for c in self.calls if not c.startswith(READ_ONLY)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_factory():
    proxies: list[RecordingProxy] = []

    def make(upstream: str) -> RecordingProxy:
        proxies.append(RecordingProxy(upstream))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


# --- the lab: one studio, one moto state, one registry namespace ---------------------------------


@dataclasses.dataclass
class Lab:
    repo: StudioRepo
    env: dict
    services: ImageServices
    moto: MotoServer
    git_env: dict
    namespace: str = ""  # "" means the registry's root, found through the sandbox directory
    _clients: dict = dataclasses.field(default_factory=dict)

    # running inv -----------------------------------------------------------------------------

    @property
    def work(self) -> Path:
        return self.repo.work

    def inv(self, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
            input: str | None = None):
        """`inv ARGS` in the studio (`input`: its stdin); no assertion (see `ok`)."""
        return run_inv(cwd or self.work, *args, env=env or self.env, timeout=timeout, input=input)

    def ok(self, *args: str, **kwargs):
        """`inv ARGS`, which must succeed."""
        result = self.inv(*args, **kwargs)
        assert result.returncode == 0, f"inv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def through(self, proxy: RecordingProxy) -> dict:
        return dict(self.env, AWS_ENDPOINT_URL=proxy.endpoint)

    # the registry ----------------------------------------------------------------------------

    @property
    def registry(self) -> str:
        """What image references start with: the configured registry."""
        return f"{self.services.registry}/{self.namespace}" if self.namespace else self.services.registry

    def repository(self, project: str = PROJECT) -> str:
        return f"{self.namespace}/{project}" if self.namespace else project

    def digest(self, tag: str, project: str = PROJECT) -> str | None:
        return self.services.digest(self.repository(project), tag)

    def tags(self, project: str = PROJECT) -> list[str]:
        return self.services.tags(self.repository(project))

    def registry_state(self, project: str = PROJECT) -> dict:
        return {tag: self.digest(tag, project) for tag in self.tags(project)}

    # AWS, read back --------------------------------------------------------------------------

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.moto.client(service)
        return self._clients[service]

    def stack(self, name: str) -> dict | None:
        cfn = self.client("cloudformation")
        try:
            return cfn.describe_stacks(StackName=name)["Stacks"][0]
        except cfn.exceptions.ClientError as exc:
            if "does not exist" in str(exc):
                return None
            raise

    def live_stacks(self) -> list[str]:
        summaries = self.client("cloudformation").list_stacks()["StackSummaries"]
        return sorted(s["StackName"] for s in summaries if s["StackStatus"] != "DELETE_COMPLETE")

    def outputs(self, name: str) -> dict:
        return {o["OutputKey"]: o["OutputValue"] for o in (self.stack(name) or {}).get("Outputs", [])}

    def parameters(self, name: str) -> dict:
        return {p["ParameterKey"]: p["ParameterValue"] for p in self.stack(name)["Parameters"]}

    def change_sets(self, name: str) -> list[str]:
        # moto lists every stack's change sets whatever StackName says: filter here.
        summaries = self.client("cloudformation").list_change_sets(StackName=name)["Summaries"]
        return sorted(s["ChangeSetId"] for s in summaries if s["StackName"] == name)

    def stack_state(self, name: str) -> dict:
        """Everything a change to an app stack would show in moto (which sets no LastUpdatedTime)."""
        stack = self.stack(name)
        if stack is None:
            return {"exists": False}
        events = self.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
        return {
            "exists": True,
            "status": stack["StackStatus"],
            "last_updated": stack.get("LastUpdatedTime"),
            "parameters": self.parameters(name),
            "events": sorted(e["EventId"] for e in events),
            "change_sets": self.change_sets(name),
        }

    def table(self, cluster: str = "") -> str:
        """The deploy store's table (one for every cluster)."""
        return store.table(self.client("cloudformation"))

    def history(self, cluster: str, project: str = PROJECT) -> list[dict]:
        """The history items of an app in a cluster, oldest first, as plain dicts."""
        return store.history_items(self.client("dynamodb"), self.client("cloudformation"), cluster, project)

    def lock_item(self, cluster: str, project: str = PROJECT) -> dict | None:
        return store.lock_item(self.client("dynamodb"), self.client("cloudformation"), cluster, project)

    def history_api(self, cluster: str):
        from mvp_tasks.state.store import ClusterStore

        return ClusterStore(self.client("dynamodb"), self.table(), cluster)

    def service(self, cluster: str, name: str) -> dict | None:
        services = self.client("ecs").describe_services(cluster=cluster, services=[name])["services"]
        return next((s for s in services if s["status"] == "ACTIVE"), None)

    def deployments(self, cluster: str, project: str = PROJECT) -> list[str]:
        service = self.service(cluster, f"{project}-{cluster}")
        return sorted(d["id"] for d in service["deployments"]) if service else []

    def snapshot(self, cluster: str = "stage", project: str = PROJECT) -> dict:
        """The state a refused or no-op command must leave exactly as it was."""
        return {
            "stacks": self.live_stacks(),
            "stack": self.stack_state(f"{project}-{cluster}"),
            "history": self.history(cluster, project),
            "deployments": self.deployments(cluster, project),
            "registry": self.registry_state(project),
        }

    # the studio's git ------------------------------------------------------------------------

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "-A", env=self.git_env)
        git(self.work, "commit", "-q", "-m", message, env=self.git_env)
        return git(self.work, "rev-parse", "HEAD", env=self.git_env).stdout.strip()

    def variant(self, dest: Path, *, config=None, files: dict[str, str | None] | None = None) -> Path:
        """A copy of the studio's working tree (no .git) with `config(dict)` applied to invoke.yaml
        and `files` written (None deletes), for commands that must be refused."""
        shutil.copytree(self.work, dest, ignore=shutil.ignore_patterns(".git", ".sandbox"))
        if config is not None:
            data = yaml.safe_load((dest / "invoke.yaml").read_text())
            config(data)
            (dest / "invoke.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        for name, text in (files or {}).items():
            if text is None:
                (dest / name).unlink()
            else:
                (dest / name).write_text(text)
        return dest


def new_lab(base: Path, git_env: dict, services: ImageServices, moto: MotoServer, *, namespace: bool = True,
            files: dict | None = None, reset: bool = True) -> Lab:
    if reset:
        moto.reset()
    repo = make_studio_repo(base, git_env, files=files)
    ns = f"lc{uuid.uuid4().hex[:10]}" if namespace else ""
    extra = dict(LAB_SETTINGS, AWS_ENDPOINT_URL=moto.endpoint)
    if ns:
        extra["INVOKE_MVP_REGISTRY"] = f"{services.registry}/{ns}"
    return Lab(repo, image_inv_env(git_env, services, **extra), services, moto, git_env, ns)


def clusters_up(lab: Lab, prod: bool = True) -> None:
    lab.ok("cluster.up", "--name", "stage")
    if prod:
        lab.ok("cluster.up", "--name", "prod", "--yes")


def shipped_everywhere(lab: Lab) -> Lab:
    """Both clusters up, HEAD pushed and deployed to stage, then promoted to prod."""
    clusters_up(lab)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    lab.ok("app.deploy", PROJECT)
    lab.ok("app.promote", "--tag", "prod", "--yes")
    return lab


def index_change(lab: Lab, text: str) -> dict[str, str]:
    path = f"projects/{PROJECT}/site/index.html"
    return {path: (lab.work / path).read_text() + f"\n<!-- {text} -->\n"}


def records(lab: Lab, cluster: str, action: str, project: str = PROJECT) -> list[dict]:
    return [r for r in lab.history(cluster, project) if r.get("action") == action]


# ==================================================================================================
# 1, 2, 6: the studio's three commands, then idempotence, status and logs
# ==================================================================================================


@pytest.fixture(scope="class")
def story(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("story"), git_env, image_services, moto_server, namespace=False)
    out = {
        "stage_up": lab.ok("cluster.up", "--name", "stage"),
        "push": lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT),
        "deploy": lab.ok("app.deploy", PROJECT),
        "prod_up": lab.ok("cluster.up", "--name", "prod", "--yes"),
        "promote": lab.ok("app.promote", "--tag", "prod", "--yes"),
    }
    return lab, out


class TestStudioStory:
    """`inv cluster.up --name stage`, `inv app.deploy museum-adventure` (after `app.push`),
    `inv app.promote --tag prod --yes` (after `cluster.up --name prod --yes`), with the registry found
    through the sandbox directory as in `make demo`."""

    def test_commands_report_their_changes(self, story):
        lab, out = story
        assert "recap: ok=0 changed=1 skipped=0 failed=0" in out["stage_up"].stdout
        # The first cluster of an account and region makes the deploy store too, shown in its plan.
        assert "+ deploy store: stack mvp-deploy-state" in out["stage_up"].stdout, out["stage_up"].stdout
        assert "changed: stage  created the deploy store; stack created" in out["stage_up"].stdout
        assert "deploy store" not in out["prod_up"].stdout  # there already
        assert lab.client("dynamodb").describe_table(TableName=lab.table())["Table"]["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
        deploy = out["deploy"].stdout
        # One target: the plan says the stack will be created, its events show it was, and the one
        # result line says what was deployed and that the service runs.
        assert f"  {PROJECT}@stage: will:" in deploy, deploy
        assert f"+ stack {PROJECT}-stage from projects/{PROJECT}/deploy.yml" in deploy, deploy
        assert re.search(rf"CREATE_COMPLETE +AWS::CloudFormation::Stack {PROJECT}-stage$", deploy, re.M), deploy
        assert (f"changed: {PROJECT}@stage  {lab.repo.commit[:12]} deployed; "
                f"service {PROJECT}-stage running 1/1") in deploy, deploy
        assert "recap: ok=0 changed=1 skipped=0 failed=0" in deploy, deploy
        assert f"changed: {PROJECT}@prod  {lab.repo.commit[:12]} promoted" in out["promote"].stdout
        assert "failed=0" in out["promote"].stdout

    @pytest.mark.parametrize("cluster", ["stage", "prod"])
    def test_app_stack_runs_the_cluster_tag_with_the_cluster_outputs(self, story, cluster):
        lab, _ = story
        stack = lab.stack(f"{PROJECT}-{cluster}")
        assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE", stack
        params = lab.parameters(f"{PROJECT}-{cluster}")
        cluster_outputs = lab.outputs(cluster)
        assert params["Image"] == f"{lab.services.registry}/{PROJECT}:{cluster}"
        assert params["ClusterName"] == cluster_outputs["ClusterName"] == cluster
        for name in ("VpcId", "LoadBalancerSecurityGroup", "TaskSecurityGroup"):
            assert params[name] == cluster_outputs[name], name
        # moto reads List<> parameters back as "['a', 'b']"; AWS as "a,b".
        assert re.findall(r"subnet-[0-9a-f]+", params["PublicSubnets"]) == cluster_outputs["PublicSubnets"].split(",")
        assert stack_tags(stack).items() >= {"mvp:cluster": cluster, "mvp:project": PROJECT}.items()
        # The resources really sit in that cluster's network.
        lb_dns = lab.outputs(f"{PROJECT}-{cluster}")["LoadBalancerDns"]
        lbs = [lb for lb in lab.client("elbv2").describe_load_balancers()["LoadBalancers"] if lb["DNSName"] == lb_dns]
        assert len(lbs) == 1 and lbs[0]["VpcId"] == cluster_outputs["VpcId"]

    @pytest.mark.parametrize("cluster", ["stage", "prod"])
    def test_ecs_service_exists_in_its_cluster(self, story, cluster):
        lab, _ = story
        service = lab.service(cluster, f"{PROJECT}-{cluster}")
        assert service is not None, f"no service {PROJECT}-{cluster} in ECS cluster {cluster}"
        assert service["clusterArn"].endswith(f":cluster/{cluster}")
        assert service["desiredCount"] == 1
        task_def = lab.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        assert task_def["family"] == f"{PROJECT}-{cluster}"

    def test_prod_runs_the_image_stage_runs_without_a_rebuild(self, story):
        lab, _ = story
        commit_digest = lab.digest(lab.repo.commit)
        assert commit_digest and commit_digest.startswith("sha256:")
        assert lab.digest("stage") == commit_digest
        assert lab.digest("prod") == commit_digest
        assert {lab.repo.commit, "stage", "prod"} <= set(lab.tags())

    def test_history_has_the_deploy_in_stage_and_the_promotion_in_prod(self, story):
        lab, _ = story
        digest = lab.digest(lab.repo.commit)
        # app.push --cluster stage moved the tag under the app's lock, then the deploy rolled it out.
        push, deploy = lab.history("stage")
        assert (push["action"], push["outcome"], push["commit"]) == ("push", "succeeded", lab.repo.commit)
        assert (deploy["action"], deploy["outcome"], deploy["cluster"]) == ("deploy", "succeeded", "stage")
        assert (deploy["commit"], deploy["digest"]) == (lab.repo.commit, digest)
        assert deploy["by"] and deploy["sk"] == f"at#{deploy['at']}"
        (promote,) = lab.history("prod")
        assert (promote["action"], promote["outcome"], promote["cluster"]) == ("promote", "succeeded", "prod")
        assert (promote["commit"], promote["digest"]) == (lab.repo.commit, digest)
        # Every lock was given back.
        assert lab.lock_item("stage") is None and lab.lock_item("prod") is None

    def test_redeploy_is_ok_and_changes_nothing(self, story, proxy_factory):
        lab, _ = story
        before = lab.snapshot("stage")
        proxy = proxy_factory(lab.moto.endpoint)

        result = lab.ok("app.deploy", PROJECT, env=lab.through(proxy))

        # One target, ok (the stack is up to date and the service runs the tag's image): no plan shown.
        assert f"ok: {PROJECT}@stage  running {lab.repo.commit[:12]}, 1/1 tasks" in result.stdout, result.stdout
        assert "will:" not in result.stdout, result.stdout
        assert "recap: ok=1 changed=0 skipped=0 failed=0" in result.stdout, result.stdout
        assert proxy.calls and proxy.mutating() == [], proxy.calls
        assert "CreateChangeSet" not in proxy.calls
        assert lab.snapshot("stage") == before

    def test_repromote_is_ok_and_changes_nothing(self, story, proxy_factory):
        lab, _ = story
        before = lab.snapshot("prod")
        proxy = proxy_factory(lab.moto.endpoint)

        result = lab.ok("app.promote", "--tag", "prod", "--yes", env=lab.through(proxy))

        assert f"ok: {PROJECT}@prod  already runs" in result.stdout, result.stdout
        assert "changed=0" in result.stdout and "failed=0" in result.stdout
        assert proxy.mutating() == [], proxy.calls
        assert lab.snapshot("prod") == before

    def test_status_json_lists_every_app_and_cluster(self, story):
        lab, _ = story

        result = lab.ok("app.status", "--json")

        rows = {(r["app"], r["cluster"]): r for r in json.loads(result.stdout)}
        assert set(rows) == {(PROJECT, "stage"), (PROJECT, "prod")}
        for cluster in ("stage", "prod"):
            row = rows[(PROJECT, cluster)]
            service = lab.service(cluster, f"{PROJECT}-{cluster}")
            assert row["stack"] == f"{PROJECT}-{cluster}"
            assert row["stack_status"] == lab.stack(f"{PROJECT}-{cluster}")["StackStatus"] == "CREATE_COMPLETE"
            assert row["commit"] == lab.repo.commit
            assert row["digest"] == lab.digest(cluster)
            assert (row["running"], row["desired"]) == (service["runningCount"], service["desiredCount"]) == (1, 1)
            assert row["deployed_at"] == lab.history(cluster)[-1]["at"]
            assert row["url"] == lab.outputs(f"{PROJECT}-{cluster}")["Url"]

    def test_logs_print_the_events_of_the_stack_log_group(self, story):
        lab, _ = story
        group = lab.outputs(f"{PROJECT}-stage")["LogGroupName"]
        logs = lab.client("logs")
        stream = f"web/web/{uuid.uuid4().hex}"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        marker = uuid.uuid4().hex[:8]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": now - 20 * 60 * 1000, "message": f"{marker} too old for --since 5m"},
            {"timestamp": now - 60 * 1000, "message": f"{marker} GET /index.html 200"},
            {"timestamp": now - 1000, "message": f"{marker} GET /visit.html 200"},
        ])

        result = lab.ok("app.logs", PROJECT, "--since", "5m")

        lines = [line for line in result.stdout.splitlines() if marker in line]
        assert [line.split(marker, 1)[1] for line in lines] == [" GET /index.html 200", " GET /visit.html 200"], result.stdout
        # Each line names the task: the first 8 characters of the stream's last part (the task id).
        assert all(f" {stream.rsplit('/', 1)[-1][:8]} " in line for line in lines), lines


def stack_tags(stack: dict) -> dict:
    return {t["Key"]: t["Value"] for t in stack.get("Tags", [])}


# ==================================================================================================
# 3: ci.release
# ==================================================================================================


@pytest.fixture(scope="class")
def released(tmp_path_factory, git_env, image_services, moto_server):
    """A fresh studio with both clusters up, and one `inv ci.release` (the first: it pushes and deploys)."""
    lab = new_lab(tmp_path_factory.mktemp("release"), git_env, image_services, moto_server)
    clusters_up(lab)
    assert lab.tags() == [] and lab.stack(f"{PROJECT}-stage") is None  # the premise: nothing released yet
    first = lab.ok("ci.release", timeout=BUILD_TIMEOUT)
    return lab, first


class TestRelease:
    def test_first_release_pushes_and_deploys(self, released):
        lab, first = released
        commit = lab.repo.commit
        digest = lab.digest(commit)
        assert digest and lab.digest("stage") == digest, lab.registry_state()
        # The reason, then the plan: build and push this commit, point stage at it, create the stack.
        assert f"  {PROJECT}@stage: nothing deployed yet\n" in first.stdout, first.stdout
        assert f"+ push {lab.registry}/{PROJECT}:{commit}" in first.stdout, first.stdout
        assert f"~ tag stage: none -> the pushed image ({commit[:12]})" in first.stdout, first.stdout
        assert f"+ stack {PROJECT}-stage from projects/{PROJECT}/deploy.yml" in first.stdout, first.stdout
        assert f"changed: {PROJECT}@stage  {commit[:12]} released" in first.stdout
        assert "failed=0" in first.stdout
        stack = lab.stack(f"{PROJECT}-stage")
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        assert lab.parameters(f"{PROJECT}-stage")["Image"] == f"{lab.registry}/{PROJECT}:stage"
        assert lab.service("stage", f"{PROJECT}-stage") is not None
        releases = records(lab, "stage", "release")
        assert [(r["commit"], r["digest"], r["outcome"]) for r in releases][:1] == [(commit, digest, "succeeded")]
        # Nothing reached prod: a release is for one cluster.
        assert lab.digest("prod") is None and lab.stack(f"{PROJECT}-prod") is None

    def test_second_release_builds_nothing_and_mutates_nothing(self, released, proxy_factory):
        lab, _ = released
        before = lab.snapshot("stage")
        proxy = proxy_factory(lab.moto.endpoint)

        again = lab.ok("ci.release", env=lab.through(proxy))

        assert f"ok: {PROJECT}@stage  unchanged since" in again.stdout, again.stdout
        assert "recap: ok=1 changed=0 skipped=0 failed=0" in again.stdout, again.stdout
        assert not re.search(r"^(changed|failed):", again.stdout, re.M), again.stdout
        assert "building" not in again.stdout and "pushing" not in again.stdout
        assert proxy.calls and proxy.mutating() == [], proxy.calls
        assert lab.snapshot("stage") == before

    def test_commit_under_the_project_is_released(self, released):
        lab, _ = released
        before = lab.snapshot("stage")
        commit = lab.commit(index_change(lab, f"release {uuid.uuid4().hex}"), "museum-adventure: new text")

        result = lab.ok("ci.release", timeout=BUILD_TIMEOUT)

        assert f"  {PROJECT}@stage: 1 file(s) under projects/{PROJECT}/\n" in result.stdout, result.stdout
        assert f"+ push {lab.registry}/{PROJECT}:{commit}" in result.stdout, result.stdout
        assert f"~ tag stage: {before['registry']['stage'][:19]} -> the pushed image ({commit[:12]})" in result.stdout
        assert "~ new deployment of the service" in result.stdout, result.stdout
        assert f"changed: {PROJECT}@stage  {commit[:12]} released" in result.stdout
        digest = lab.digest(commit)
        assert digest and digest not in before["registry"].values()
        assert lab.digest("stage") == digest
        # The old commit's image is still there (rollback material).
        assert all(lab.digest(tag) == d for tag, d in before["registry"].items() if tag != "stage")
        newest = lab.history("stage")[-1]
        assert (newest["action"], newest["commit"], newest["digest"], newest["outcome"]) == (
            "release", commit, digest, "succeeded")
        # The stack is unchanged (same template and parameters); the service rolled to pull the new image.
        assert lab.deployments("stage") != before["deployments"]
        assert lab.stack_state(f"{PROJECT}-stage")["parameters"] == before["stack"]["parameters"]

    def test_release_after_a_push_still_rolls_the_service(self, released):
        # `app.push` moved the stage tag already (as `make demo` does): the tag move is `ok`, but the
        # running tasks still have the old image, so the release must roll the service.
        lab, _ = released
        commit = lab.commit(index_change(lab, f"pushed first {uuid.uuid4().hex}"), "museum-adventure: pushed first")
        lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
        before = lab.deployments("stage")

        result = lab.ok("ci.release", timeout=BUILD_TIMEOUT)

        assert f"changed: {PROJECT}@stage  {commit[:12]} released" in result.stdout, result.stdout
        assert lab.deployments("stage") != before
        newest = lab.history("stage")[-1]
        assert (newest["action"], newest["commit"], newest["digest"]) == ("release", commit, lab.digest(commit))

    def test_commit_outside_every_project_releases_nothing(self, released, proxy_factory):
        lab, _ = released
        lab.ok("ci.release", timeout=BUILD_TIMEOUT)  # whatever ran before, the cluster is up to date now
        before = lab.snapshot("stage")
        commit = lab.commit({"README.md": (lab.work / "README.md").read_text() + "\nA note.\n"}, "docs only")
        proxy = proxy_factory(lab.moto.endpoint)

        result = lab.ok("ci.release", env=lab.through(proxy))

        assert f"ok: {PROJECT}@stage  unchanged since" in result.stdout, result.stdout
        assert "recap: ok=1 changed=0 skipped=0 failed=0" in result.stdout
        assert commit not in lab.tags()
        assert proxy.mutating() == [], proxy.calls
        assert lab.snapshot("stage") == before


# ==================================================================================================
# 4: rollback after two promotions
# ==================================================================================================


@pytest.fixture(scope="class")
def promoted_twice(tmp_path_factory, git_env, image_services, moto_server):
    """Commit A pushed, deployed and promoted to prod; then commit B pushed, deployed and promoted."""
    lab = shipped_everywhere(new_lab(tmp_path_factory.mktemp("rollback"), git_env, image_services, moto_server))
    a = lab.repo.commit
    stage_deployments_a = lab.deployments("stage")
    b = lab.commit(index_change(lab, "commit B"), "museum-adventure: commit B")
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    deploy_b = lab.ok("app.deploy", PROJECT)
    lab.ok("app.promote", "--tag", "prod", "--yes")
    state = {"a": a, "b": b, "digest_a": lab.digest(a), "digest_b": lab.digest(b),
             "stage_deployments_a": stage_deployments_a, "deploy_b": deploy_b}
    assert state["digest_a"] and state["digest_b"] and state["digest_a"] != state["digest_b"]
    return lab, state


class TestRollback:
    def test_premise_prod_runs_b_after_two_promotions(self, promoted_twice):
        lab, s = promoted_twice
        assert lab.digest("stage") == s["digest_b"]
        promotions = records(lab, "prod", "promote")
        assert [(r["commit"], r["digest"]) for r in promotions][:2] == [(s["a"], s["digest_a"]), (s["b"], s["digest_b"])]

    def test_deploy_after_a_new_push_rolls_the_service(self, promoted_twice):
        # The stack names the image by tag (unchanged), so only a new deployment makes tasks pull B.
        lab, s = promoted_twice
        assert f"changed: {PROJECT}@stage  {s['b'][:12]} deployed" in s["deploy_b"].stdout, s["deploy_b"].stdout
        deploys = records(lab, "stage", "deploy")
        assert [(r["commit"], r["digest"]) for r in deploys][:2] == [(s["a"], s["digest_a"]), (s["b"], s["digest_b"])]
        assert lab.deployments("stage") != s["stage_deployments_a"]

    def test_rollback_restores_the_earlier_digest(self, promoted_twice):
        lab, s = promoted_twice
        if lab.digest("prod") != s["digest_b"]:  # another test left prod elsewhere: start from B again
            lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--to", s["b"][:10], "--yes")
        deployments = lab.deployments("prod")
        history = lab.history("prod")

        result = lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--yes")

        assert f"changed: {PROJECT}@prod  rolled back to {s['a'][:12]}" in result.stdout, result.stdout
        assert lab.digest("prod") == s["digest_a"]
        assert lab.digest("stage") == s["digest_b"]  # only prod moved
        assert lab.digest(s["a"]) == s["digest_a"] and lab.digest(s["b"]) == s["digest_b"]
        new = lab.history("prod")[len(history):]
        assert [(r["action"], r["commit"], r["digest"], r["outcome"]) for r in new] == [
            ("rollback", s["a"], s["digest_a"], "succeeded")]
        assert lab.deployments("prod") != deployments
        assert lab.lock_item("prod") is None

    def test_rollback_to_a_commit_prefix(self, promoted_twice):
        lab, s = promoted_twice
        history = lab.history("prod")

        lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--to", s["a"][:8], "--yes")
        assert lab.digest("prod") == s["digest_a"]
        forward = lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--to", s["b"][:8], "--yes")

        assert f"rolled back to {s['b'][:12]}" in forward.stdout, forward.stdout
        assert lab.digest("prod") == s["digest_b"]
        new = [r for r in lab.history("prod")[len(history):]]
        assert [(r["action"], r["commit"], r["digest"]) for r in new][-1] == ("rollback", s["b"], s["digest_b"])
        # Rolling back to what already runs is ok and changes nothing.
        again = lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--to", s["b"][:8], "--yes")
        assert f"ok: {PROJECT}@prod  already runs {s['b'][:12]}" in again.stdout
        assert len(lab.history("prod")) == len(history) + len(new)


# ==================================================================================================
# 5, 7, 9: one image pushed once, deployed to stage in fresh moto states
# ==================================================================================================


@pytest.fixture(scope="module")
def pushed_image(tmp_path_factory, git_env, image_services, moto_server):
    """A studio whose commit was pushed (commit tag + stage tag) to its own registry namespace; no AWS
    state. Classes that only read the registry deploy it into their own moto state."""
    lab = new_lab(tmp_path_factory.mktemp("pushed"), git_env, image_services, moto_server, reset=False)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    assert lab.digest("stage") == lab.digest(lab.repo.commit) is not None
    return lab


def deployed_to_stage(lab: Lab) -> Lab:
    lab.moto.reset()
    clusters_up(lab)
    lab.ok("app.deploy", PROJECT)
    return lab


@pytest.fixture(scope="class")
def deployed(pushed_image):
    return deployed_to_stage(pushed_image)


class TestDeployLock:
    HOLDER = "someone else (ci on runner-7)"

    def test_update_is_refused_while_another_run_holds_the_lock(self, deployed, proxy_factory):
        lab = deployed
        history = lab.history_api("stage")
        token = history.acquire(PROJECT, self.HOLDER, 600)
        try:
            before = lab.snapshot("stage")
            proxy = proxy_factory(lab.moto.endpoint)

            refused = lab.inv("app.update", PROJECT, env=lab.through(proxy))

            assert_one_line_error(refused, f"another deploy of {PROJECT} to stage is running", f"held by {self.HOLDER}")
            assert lab.snapshot("stage") == before
            assert lab.lock_item("stage")["owner"] == self.HOLDER  # still theirs
            # The only write was the lock's conditional put, which DynamoDB refused.
            assert proxy.mutating() == ["PutItem"], proxy.calls
        finally:
            history.release(PROJECT, token)
        assert lab.lock_item("stage") is None
        proxy = proxy_factory(lab.moto.endpoint)

        result = lab.ok("app.update", PROJECT, env=lab.through(proxy))

        assert f"changed: {PROJECT}@stage  {lab.repo.commit[:12]} rolled out" in result.stdout, result.stdout
        # Lock, roll, record, unlock: and the proxy sees writes when there are some.
        # The lock, the new deployment, then the record and the lock's release in one transaction.
        assert proxy.mutating() == ["PutItem", "UpdateService", "TransactWriteItems"], proxy.calls
        assert lab.deployments("stage") != before["deployments"]
        newest = lab.history("stage")[-1]
        assert (newest["action"], newest["commit"], newest["outcome"]) == ("update", lab.repo.commit, "succeeded")
        assert lab.lock_item("stage") is None

    def test_deploy_that_needs_a_change_is_refused_while_locked(self, deployed, tmp_path):
        lab = deployed
        count = str(int(lab.parameters(f"{PROJECT}-stage")["DesiredCount"]) % 3 + 1)
        changed = lab.variant(tmp_path / "studio", config=lambda c: c["mvp"]["projects"][PROJECT].update(
            parameters={"DesiredCount": count}))
        history = lab.history_api("stage")
        token = history.acquire(PROJECT, self.HOLDER, 600)
        try:
            before = lab.snapshot("stage")

            refused = lab.inv("app.deploy", PROJECT, cwd=changed)

            assert_one_line_error(refused, f"another deploy of {PROJECT} to stage is running", f"held by {self.HOLDER}")
            # No change set left (planning's is deleted), no update, no deployment, no record.
            assert lab.snapshot("stage") == before
        finally:
            history.release(PROJECT, token)

        result = lab.ok("app.deploy", PROJECT, cwd=changed)

        # One target: the plan names the stack update and the parameter, the result line the new count.
        assert f"~ stack {PROJECT}-stage\n" in result.stdout, result.stdout
        assert f"~ parameter DesiredCount: {before['stack']['parameters']['DesiredCount']} -> {count}" in result.stdout
        assert re.search(rf"UPDATE_COMPLETE +AWS::CloudFormation::Stack {PROJECT}-stage$", result.stdout, re.M)
        assert (f"changed: {PROJECT}@stage  {lab.repo.commit[:12]} deployed; "
                f"service {PROJECT}-stage running {count}/{count}") in result.stdout, result.stdout
        assert "recap: ok=0 changed=1 skipped=0 failed=0" in result.stdout, result.stdout
        assert lab.parameters(f"{PROJECT}-stage")["DesiredCount"] == count
        assert lab.service("stage", f"{PROJECT}-stage")["desiredCount"] == int(count)
        assert lab.history("stage")[-1]["action"] == "deploy"
        assert lab.lock_item("stage") is None

    @pytest.mark.parametrize("how", ["expiry in the past", "expiry hours ahead"])
    def test_a_lock_not_renewed_for_one_lease_does_not_block_whatever_its_expiry(self, deployed, how):
        # A run on another machine that died: its expiry (on its clock) is never compared with ours;
        # its record version stays the same for one lease (3 s here), timed by the acquirer.
        lab = deployed
        from mvp_tasks.state.store import ClusterStore

        skew = -7200 if how == "expiry in the past" else 7200
        dead = ClusterStore(lab.client("dynamodb"), lab.table(), "stage", clock=lambda: time.time() + skew)
        dead.here = lambda: "another-machine/pid:[4026531836]"
        dead.acquire(PROJECT, "a run that died", 3)
        before = lab.deployments("stage")

        result = lab.ok("app.update", PROJECT)

        assert "rolled out" in result.stdout
        assert "took over the deploy lock" in result.stdout + result.stderr
        assert lab.deployments("stage") != before
        assert lab.lock_item("stage") is None  # taken over, then given back


class TestDestroy:
    def test_destroy_without_yes_and_without_a_terminal_deletes_nothing(self, deployed):
        lab = deployed
        if lab.stack(f"{PROJECT}-stage") is None:
            lab.ok("app.deploy", PROJECT)
        before = lab.snapshot("stage")

        refused = lab.inv("app.destroy", PROJECT, "--cluster", "stage")

        assert_one_line_error(refused, f"delete {PROJECT} from stage", "no terminal", "--yes")
        assert lab.snapshot("stage") == before

    def test_destroy_with_yes_deletes_the_stack(self, deployed):
        lab = deployed
        if lab.stack(f"{PROJECT}-stage") is None:
            lab.ok("app.deploy", PROJECT)
        stack_id = lab.stack(f"{PROJECT}-stage")["StackId"]

        result = lab.ok("app.destroy", PROJECT, "--cluster", "stage", "--yes")

        assert f"changed: {PROJECT}@stage  stack deleted" in result.stdout, result.stdout
        assert lab.stack(f"{PROJECT}-stage") is None
        deleted = lab.client("cloudformation").describe_stacks(StackName=stack_id)["Stacks"][0]
        assert deleted["StackStatus"] == "DELETE_COMPLETE"
        assert lab.stack("stage")["StackStatus"] == "CREATE_COMPLETE"  # the cluster stays
        assert lab.history("stage")[-1]["action"] == "destroy"
        assert lab.lock_item("stage") is None
        # The images stay: destroying a stack is not deleting a release.
        assert lab.digest("stage") == lab.digest(lab.repo.commit) is not None

        again = lab.ok("app.destroy", PROJECT, "--cluster", "stage", "--yes")
        assert f"ok: {PROJECT}@stage  no stack {PROJECT}-stage" in again.stdout


# ==================================================================================================
# 8: an app template that imports the cluster's exports (the museum-adventure tests cover parameters)
# ==================================================================================================

IMPORTS_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Description: >-
  imports-app on ECS Fargate. Reads the shared cluster through its exports
  (Fn::ImportValue of <cluster stack>-<output>); `inv app.deploy` fills ClusterStack.

Parameters:
  ClusterStack:
    Type: String
    Description: Name of the cluster stack whose exports this stack imports.
  Image:
    Type: String
    Description: Image URI with the cluster's tag.

Resources:
  LoadBalancer:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties:
      Type: application
      Scheme: internet-facing
      Subnets: !Split [',', {'Fn::ImportValue': !Sub '${ClusterStack}-PublicSubnets'}]
      SecurityGroups:
        - Fn::ImportValue: !Sub '${ClusterStack}-LoadBalancerSecurityGroup'

  TargetGroup:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      VpcId:
        Fn::ImportValue: !Sub '${ClusterStack}-VpcId'
      Protocol: HTTP
      Port: 80
      TargetType: ip
      HealthCheckPath: /

  Listener:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref LoadBalancer
      Protocol: HTTP
      Port: 80
      DefaultActions:
        - Type: forward
          TargetGroupArn: !Ref TargetGroup

  LogGroup:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /ecs/${AWS::StackName}
      RetentionInDays: 7

  ExecutionRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal:
              Service: ecs-tasks.amazonaws.com
            Action: sts:AssumeRole
      ManagedPolicyArns:
        - !Sub arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy

  TaskDefinition:
    Type: AWS::ECS::TaskDefinition
    Properties:
      Family: !Ref AWS::StackName
      RequiresCompatibilities: [FARGATE]
      NetworkMode: awsvpc
      Cpu: '256'
      Memory: '512'
      ExecutionRoleArn: !GetAtt ExecutionRole.Arn
      ContainerDefinitions:
        - Name: web
          Image: !Ref Image
          Essential: true
          PortMappings:
            - ContainerPort: 80
          LogConfiguration:
            LogDriver: awslogs
            Options:
              awslogs-group: !Ref LogGroup
              awslogs-region: !Ref AWS::Region
              awslogs-stream-prefix: web

  Service:
    Type: AWS::ECS::Service
    DependsOn: Listener
    Properties:
      ServiceName: !Ref AWS::StackName
      Cluster:
        Fn::ImportValue: !Sub '${ClusterStack}-ClusterName'
      LaunchType: FARGATE
      DesiredCount: 1
      TaskDefinition: !Ref TaskDefinition
      NetworkConfiguration:
        AwsvpcConfiguration:
          AssignPublicIp: ENABLED
          Subnets: !Split [',', {'Fn::ImportValue': !Sub '${ClusterStack}-PublicSubnets'}]
          SecurityGroups:
            - Fn::ImportValue: !Sub '${ClusterStack}-TaskSecurityGroup'
      LoadBalancers:
        - ContainerName: web
          ContainerPort: 80
          TargetGroupArn: !Ref TargetGroup

Outputs:
  ServiceName:
    Value: !GetAtt Service.Name
  LogGroupName:
    Value: !Ref LogGroup
  TargetGroupArn:
    Value: !Ref TargetGroup
  LoadBalancerArn:
    Value: !Ref LoadBalancer
"""


def imports_app_files() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    config["mvp"]["projects"][IMPORTS] = {"clusters": ["stage"]}
    return {
        f"projects/{IMPORTS}/Dockerfile": (ROOT / "projects" / PROJECT / "Dockerfile").read_text(),
        f"projects/{IMPORTS}/site/index.html": "<!doctype html><title>imports-app</title><p>imports</p>\n",
        f"projects/{IMPORTS}/deploy.yml": IMPORTS_TEMPLATE,
        "invoke.yaml": yaml.safe_dump(config, sort_keys=False),
    }


@pytest.fixture(scope="class")
def imports_app(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("imports"), git_env, image_services, moto_server, files=imports_app_files())
    # Both clusters: the app must import stage's exports, not just any cluster's.
    clusters_up(lab)
    lab.ok("app.push", IMPORTS, timeout=BUILD_TIMEOUT)
    deploy = lab.ok("app.deploy", IMPORTS)
    return lab, deploy


class TestImportValueTemplate:
    def test_template_passes_cfn_lint(self, tmp_path):
        from cfnlint.api import ManualArgs, lint_file

        path = tmp_path / "deploy.yml"
        path.write_text(IMPORTS_TEMPLATE)
        matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))
        assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []

    def test_stack_is_created_with_only_the_cluster_stack_name_and_image(self, imports_app):
        lab, deploy = imports_app
        stack = lab.stack(f"{IMPORTS}-stage")
        assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE", deploy.stdout
        assert lab.parameters(f"{IMPORTS}-stage") == {"ClusterStack": "stage",
                                                       "Image": f"{lab.registry}/{IMPORTS}:stage"}
        assert f"changed: {IMPORTS}@stage  {lab.repo.commit[:12]} deployed" in deploy.stdout
        pushed, record = lab.history("stage", IMPORTS)
        assert pushed["action"] == "push"
        assert (record["action"], record["commit"], record["digest"]) == (
            "deploy", lab.repo.commit, lab.digest("stage", IMPORTS))
        # The other app was not touched.
        assert lab.stack(f"{PROJECT}-stage") is None and lab.history("stage") == []

    def test_resources_sit_in_the_cluster_network(self, imports_app):
        lab, _ = imports_app
        stage, prod = lab.outputs("stage"), lab.outputs("prod")
        assert stage["VpcId"] != prod["VpcId"]
        app = lab.outputs(f"{IMPORTS}-stage")
        elbv2 = lab.client("elbv2")

        (tg,) = elbv2.describe_target_groups(TargetGroupArns=[app["TargetGroupArn"]])["TargetGroups"]
        (lb,) = elbv2.describe_load_balancers(LoadBalancerArns=[app["LoadBalancerArn"]])["LoadBalancers"]

        assert tg["VpcId"] == stage["VpcId"]
        assert lb["VpcId"] == stage["VpcId"]
        assert sorted(az["SubnetId"] for az in lb["AvailabilityZones"]) == sorted(stage["PublicSubnets"].split(","))
        assert lb["SecurityGroups"] == [stage["LoadBalancerSecurityGroup"]]
        assert tg["LoadBalancerArns"] == [app["LoadBalancerArn"]]
        service = lab.service("stage", app["ServiceName"])
        assert service is not None and service["clusterArn"] == stage["ClusterArn"]
        log_groups = lab.client("logs").describe_log_groups(logGroupNamePrefix=app["LogGroupName"])["logGroups"]
        assert [g["logGroupName"] for g in log_groups] == [f"/ecs/{IMPORTS}-stage"]

    def test_redeploy_is_ok_without_a_change_set(self, imports_app, proxy_factory):
        lab, _ = imports_app
        before = lab.snapshot("stage", IMPORTS)
        proxy = proxy_factory(lab.moto.endpoint)

        result = lab.ok("app.deploy", IMPORTS, env=lab.through(proxy))

        assert f"ok: {IMPORTS}@stage  running {lab.repo.commit[:12]}, 1/1 tasks" in result.stdout, result.stdout
        assert "recap: ok=1 changed=0 skipped=0 failed=0" in result.stdout, result.stdout
        assert proxy.mutating() == [], proxy.calls
        assert lab.snapshot("stage", IMPORTS) == before


# ==================================================================================================
# 9: bad input: one clear line, a non-zero exit, and nothing changed
# ==================================================================================================


def add_parameter_without_default(text: str) -> str:
    assert "\nParameters:\n" in text
    return text.replace("\nParameters:\n", "\nParameters:\n  ApiKey:\n    Type: String\n    Description: no default\n", 1)


class TestBadInput:
    def everything(self, lab: Lab) -> dict:
        return {"stage": lab.snapshot("stage"), "prod": lab.snapshot("prod")}

    def test_app_not_mapped_to_the_cluster(self, deployed, tmp_path):
        lab = deployed
        studio = lab.variant(tmp_path / "studio", config=lambda c: c["mvp"]["clusters"].update(
            qa={"template": "infrastructure/fargate_cluster.yml"}))
        before = self.everything(lab)

        result = lab.inv("app.deploy", PROJECT, "--cluster", "qa", cwd=studio)

        assert_one_line_error(result, f"project {PROJECT} is not mapped to cluster qa (its clusters: stage, prod)",
                              f"add qa to mvp.projects.{PROJECT}.clusters")
        assert result.returncode == 1
        assert self.everything(lab) == before
        assert lab.stack(f"{PROJECT}-qa") is None

    def test_promotion_to_a_cluster_without_promote_from(self, deployed):
        lab = deployed
        before = self.everything(lab)

        result = lab.inv("app.promote", "--name", PROJECT, "--tag", "stage")

        assert_one_line_error(result, "cluster stage has no promote_from", "--from CLUSTER or --commit SHA")
        assert self.everything(lab) == before

    @pytest.mark.parametrize("name", [[], ["--name", PROJECT]], ids=["every-project", "one-project"])
    def test_promotion_of_a_commit_without_an_image(self, deployed, name):
        lab = deployed
        before = self.everything(lab)
        assert lab.digest("prod") is None  # the premise: nothing was ever promoted to prod here

        result = lab.inv("app.promote", *name, "--tag", "prod", "--commit", "deadbeef", "--yes")

        assert_one_line_error(result, f"no image of {PROJECT} was built from commit deadbeef", f"inv app.push {PROJECT}")
        assert lab.digest("prod") is None and "prod" not in lab.tags()
        assert self.everything(lab) == before

    def test_missing_deploy_template(self, deployed, tmp_path):
        lab = deployed
        studio = lab.variant(tmp_path / "studio", files={f"projects/{PROJECT}/deploy.yml": None})
        before = self.everything(lab)

        result = lab.inv("app.deploy", PROJECT, cwd=studio)

        assert_one_line_error(result, f"template projects/{PROJECT}/deploy.yml not found",
                              f"mvp.projects.{PROJECT}.template")
        assert self.everything(lab) == before

    def test_template_parameter_without_a_value(self, deployed, tmp_path):
        lab = deployed
        template = (lab.work / "projects" / PROJECT / "deploy.yml").read_text()
        studio = lab.variant(tmp_path / "studio",
                             files={f"projects/{PROJECT}/deploy.yml": add_parameter_without_default(template)})
        before = self.everything(lab)

        result = lab.inv("app.deploy", PROJECT, cwd=studio)

        assert_one_line_error(result, f"template projects/{PROJECT}/deploy.yml: no value for parameter ApiKey",
                              f"mvp.projects.{PROJECT}.parameters", "Default")
        assert self.everything(lab) == before


@pytest.fixture
def empty_lab(aws, studio, git_env, image_services) -> Lab:
    """A fresh moto state, a copy of the studio (no git needed to deploy) and an empty registry namespace."""
    ns = f"lc{uuid.uuid4().hex[:10]}"
    env = image_inv_env(git_env, image_services, AWS_ENDPOINT_URL=aws.endpoint,
                        INVOKE_MVP_REGISTRY=f"{image_services.registry}/{ns}", **LAB_SETTINGS)
    repo = StudioRepo(studio, studio, "", b"")
    return Lab(repo, env, image_services, aws, git_env, ns)


def test_deploy_before_the_image_was_pushed_says_how_to_push(empty_lab):
    lab = empty_lab
    lab.ok("cluster.up", "--name", "stage")
    stacks = lab.live_stacks()

    result = lab.inv("app.deploy", PROJECT)

    assert_one_line_error(result, f"image {lab.registry}/{PROJECT}:stage does not exist",
                          f"push it first: inv app.push {PROJECT} --cluster stage")
    assert lab.live_stacks() == stacks == ["mvp-deploy-state", "stage"]
    assert lab.history("stage") == [] and lab.lock_item("stage") is None
    assert lab.tags() == []


def test_deploy_before_cluster_up_says_how_to_create_it(empty_lab):
    lab = empty_lab

    result = lab.inv("app.deploy", PROJECT)

    assert_one_line_error(result, "cluster stage does not exist (no stack stage)", "inv cluster.up stage")
    assert lab.live_stacks() == []
    assert lab.client("ecs").list_clusters()["clusterArns"] == []
