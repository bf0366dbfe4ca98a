"""`inv app.status` end to end: `inv` as a subprocess in a real git studio repository, against a real
moto server over HTTP, a private Docker engine and an OCI registry on loopback.

One scenario, in order: the app is pushed and deployed to stage (prod's cluster is not up), so
status says HEAD's commit is live; its facts in `--json` match what boto3 reads from ECS and what
the registry says; every line fits 80 columns; `--html` writes a page headless Chromium renders.
Then a new commit is pushed without a deploy: the stage tag moved, the service still runs the old
image, and status says "tag moved, not rolled out" and live=no; after `app.update` that is gone
and live=yes again.

moto lists no task for a service (ENVIRONMENT.md), so the digest that runs comes from the history
here (`digest_source: history`); the DescribeTasks path is tested in tests/unit/test_status.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from pathlib import Path

import pytest

from conftest import PROJECT, ImageServices, MotoServer, git, image_inv_env, make_studio_repo, need, run_inv

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT = 300
LAB_SETTINGS = {"INVOKE_MVP_WAIT_TIMEOUT": "60", "INVOKE_MVP_POLL_INTERVAL": "0.5"}
TAG_MOVED = "tag moved, not rolled out"


@dataclasses.dataclass
class Lab:
    work: Path
    env: dict
    services: ImageServices
    moto: MotoServer
    git_env: dict
    namespace: str
    first: str  # the commit first pushed and deployed

    def inv(self, *args: str, env: dict | None = None, timeout: float = 120):
        return run_inv(self.work, *args, env=dict(self.env, **(env or {})), timeout=timeout)

    def ok(self, *args: str, **kwargs):
        result = self.inv(*args, **kwargs)
        assert result.returncode == 0, f"inv {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        return result

    def status(self, *args: str, env: dict | None = None) -> dict:
        """`inv app.status --json`: its rows by (app, cluster); stdout must be that JSON alone."""
        result = self.ok("app.status", *args, "--json", env=env)
        return {(r["app"], r["cluster"]): r for r in json.loads(result.stdout)}

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{PROJECT}"

    @property
    def registry(self) -> str:
        return f"{self.services.registry}/{self.namespace}"

    def digest(self, tag: str) -> str | None:
        return self.services.digest(self.repository, tag)

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD", env=self.git_env).stdout.strip()

    def commit(self, text: str) -> str:
        path = self.work / "projects" / PROJECT / "site" / "index.html"
        path.write_text(path.read_text() + f"\n<!-- {text} -->\n")
        git(self.work, "commit", "-q", "-am", text, env=self.git_env)
        return self.head()

    def ecs_service(self, cluster: str = "stage") -> dict:
        ecs = self.moto.client("ecs")
        (service,) = [s for s in ecs.describe_services(cluster=cluster, services=[f"{PROJECT}-{cluster}"])["services"]
                      if s["status"] == "ACTIVE"]
        return service


@pytest.fixture(scope="class")
def lab(tmp_path_factory, git_env, image_services, moto_server) -> Lab:
    moto_server.reset()
    repo = make_studio_repo(tmp_path_factory.mktemp("status"), git_env)
    namespace = f"st{uuid.uuid4().hex[:10]}"
    env = image_inv_env(git_env, image_services, AWS_ENDPOINT_URL=moto_server.endpoint,
                        INVOKE_MVP_REGISTRY=f"{image_services.registry}/{namespace}", **LAB_SETTINGS)
    lab = Lab(repo.work, env, image_services, moto_server, git_env, namespace, repo.commit)
    lab.ok("cluster.up", "--name", "stage")
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    lab.ok("app.deploy", PROJECT)
    return lab


def table_row(stdout: str, cluster: str) -> list[str]:
    """The cells of the app's row in the plain table (no terminal: columns split on spaces)."""
    (line,) = [line for line in stdout.splitlines() if re.match(rf"{PROJECT}\s+{cluster}\s", line)]
    return line.split()


def header(stdout: str) -> list[str]:
    (line,) = [line for line in stdout.splitlines() if line.startswith("app ")]
    return re.split(r"\s{2,}", line.strip())


def assert_fits(stdout: str, width: int = 80) -> None:
    wide = [line for line in stdout.splitlines() if len(line) > width]
    assert wide == [], "\n".join(wide)


class TestStatus:
    def test_a_deployed_app_runs_heads_commit_and_json_matches_ecs_and_the_registry(self, lab):
        rows = lab.status()

        assert set(rows) == {(PROJECT, "stage"), (PROJECT, "prod")}
        row = rows[(PROJECT, "stage")]
        service = lab.ecs_service("stage")
        ecs = lab.moto.client("ecs")
        (primary,) = [d for d in service["deployments"] if d["status"] == "PRIMARY"]
        definition = ecs.describe_task_definition(taskDefinition=primary["taskDefinition"])["taskDefinition"]
        # What runs, read from ECS: the primary deployment's task definition and the image it names.
        assert row["task_definition_arn"] == primary["taskDefinition"] == service["taskDefinition"]
        assert row["task_definition"] == f"{definition['family']}:{definition['revision']}"
        assert definition["family"] == f"{PROJECT}-stage"
        assert row["image"] == definition["containerDefinitions"][0]["image"] == f"{lab.registry}/{PROJECT}:stage"
        assert (row["running"], row["desired"]) == (service["runningCount"], service["desiredCount"]) == (1, 1)
        assert (row["ecs_cluster"], row["service"]) == ("stage", service["serviceName"])
        # The sandbox's ECS runs the service's one task, but reports no image digest for it (as ECS
        # does before it resolved one): the digest is the last successful rollout's.
        tasks = ecs.list_tasks(cluster="stage", serviceName=service["serviceName"])["taskArns"]
        assert len(tasks) == 1
        described = ecs.describe_tasks(cluster="stage", tasks=tasks)["tasks"][0]
        assert not any(c.get("imageDigest") for c in described.get("containers", []))
        assert (row["digest"], row["digest_source"]) == (lab.digest("stage"), "history")
        # Where the tag points, from the registry; HEAD; live.
        assert (row["tag"], row["tag_digest"], row["tag_commit"]) == ("stage", lab.digest("stage"), lab.first)
        assert row["commit"] == row["head"] == lab.head() == lab.first
        assert row["live"] is True and row["tag_moved"] is False and row["errors"] == []
        assert row["stack_status"] == "CREATE_COMPLETE" and row["rollout"] == "COMPLETED"
        assert row["last_action"] == "deploy" and row["deployed_at"]
        # prod's cluster is not up: nothing deployed, nothing runs, no tag, and not live.
        prod = rows[(PROJECT, "prod")]
        assert (prod["stack_status"], prod["digest"], prod["tag_digest"], prod["live"]) == ("NOT_DEPLOYED", "", "", False)

        text = lab.ok("app.status").stdout
        assert table_row(text, "stage")[header(text).index("live")] == "yes"
        assert TAG_MOVED not in text

    def test_every_line_fits_80_columns(self, lab):
        result = lab.ok("app.status", env={"COLUMNS": "80"})
        assert_fits(result.stdout)
        assert header(result.stdout) == ["app", "cluster", "runs", "tag", "live", "tasks", "rollout"]
        assert table_row(result.stdout, "stage") == [PROJECT, "stage", lab.first[:7], lab.first[:7], "yes", "1/1",
                                                     "COMPLETED"]
        # Without a width to fit (a pipe), every column.
        wide = lab.ok("app.status").stdout
        assert "task def" in header(wide) and f"{PROJECT}-stage:1" in wide

    def test_html_page_of_the_deployed_app_renders_in_chromium(self, lab, tmp_path):
        from tests.support import chromium

        need(chromium.find() is not None, "chromium is not installed (apt-get install -y chromium)")
        out = tmp_path / "site"
        out.mkdir()
        result = lab.ok("app.status", "--html", str(out / "status.html"))

        assert f"status page written to {out / 'status.html'}" in result.stdout
        assert [p.name for p in out.iterdir()] == ["status.html"]  # no temporary file left
        dom = chromium.dump_dom(out / "status.html")
        assert re.search(r'<span class="ago" data-at="[^"]+">\(\d+ (s|min|h|days) ago\)</span>', dom)
        cells = re.findall(r'<td class="cell (\w+)" data-cluster="(\w+)" data-live="([\w-]+)">', dom)
        assert cells == [("ok", "stage", "yes"), ("absent", "prod", "no")], cells
        stage = dom.split('data-cluster="stage"', 1)[1].split("</td>", 1)[0]
        assert lab.first[:12] in stage and lab.digest("stage")[:19] in stage and f"{PROJECT}-stage:1" in stage
        # The push (it moved stage's tag under the app's lock) and the deploy.
        assert re.findall(r'<rect class="mark (\w+)"', dom) == ["succeeded", "succeeded"]

        from mvp_tasks.status.page import HEADER_COLOUR, LANE_COLOUR, OUTCOME_COLOURS

        shot = chromium.screenshot(out / "status.html", tmp_path / "status.png")
        matrix = chromium.dense_bbox(chromium.colour_mask(shot, HEADER_COLOUR), 200)
        lanes = chromium.dense_bbox(chromium.colour_mask(shot, LANE_COLOUR), 200)
        assert matrix is not None and lanes is not None and matrix[3] < lanes[1], (matrix, lanes)
        green = chromium.colour_mask(shot.crop(lanes), OUTCOME_COLOURS["succeeded"])
        assert chromium.count(green) >= 150, "the deploy's green mark is not on the timeline"

    def test_a_pushed_tag_not_rolled_out_is_said_until_update_rolls_it_out(self, lab):
        second = lab.commit("a change pushed but not deployed")
        lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
        assert lab.digest("stage") == lab.digest(second) != lab.digest(lab.first)

        row = lab.status()[(PROJECT, "stage")]

        assert row["tag_moved"] is True and row["live"] is False
        assert (row["tag_digest"], row["tag_commit"]) == (lab.digest(second), second)
        assert (row["digest"], row["digest_source"], row["commit"]) == (lab.digest(lab.first), "history", lab.first)
        assert row["head"] == second
        assert row["task_definition_arn"] == lab.ecs_service()["taskDefinition"]
        for env in ({}, {"COLUMNS": "80"}):
            text = lab.ok("app.status", env=env).stdout
            assert table_row(text, "stage")[header(text).index("live")] == "no"
            joined = " ".join(text.split())
            assert f"{PROJECT}@stage: {TAG_MOVED}" in joined, text
            assert f"tag stage is {second[:12]}, the service runs {lab.first[:12]}" in joined, text
        assert_fits(text)

        lab.ok("app.update", PROJECT)
        row = lab.status()[(PROJECT, "stage")]

        assert row["tag_moved"] is False and row["live"] is True
        assert (row["digest"], row["commit"], row["head"]) == (lab.digest(second), second, second)
        assert row["last_action"] == "update"
        text = lab.ok("app.status").stdout
        assert TAG_MOVED not in text
        assert table_row(text, "stage")[header(text).index("live")] == "yes"
