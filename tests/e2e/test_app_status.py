"""`inv app.status` end to end: `inv` as a subprocess in a real git studio repository, against a real
moto server over HTTP, a private Docker engine and an OCI registry on loopback.

One scenario, in order: the app is pushed and deployed to stage (prod's cluster is not up), so
status says stage is `up to date` (HEAD's release runs) and prod `not deployed`; its facts in `--json` match what boto3 reads from ECS and what
the registry says; every line fits 80 columns; `--html` writes a page headless Chromium renders.
Then a new commit is pushed without a deploy: the stage tag moved, the service still runs the old
image, and status says "tag moved, not rolled out"; after `app.update` that is gone and stage is
`up to date` again. (Before issue 17 the table had a `live` yes/no column; `state` replaces it.)

Then a studio of two apps in stage and prod (`TestReleases`): a commit that changes only the other
app leaves museum-adventure `up to date` everywhere; an app unmapped from prod in invoke.yaml is an
`orphan` for `app.status` and `fleet.up --check`, and `app.destroy` deletes it; `fleet.up --prune
--yes` deletes every orphan. Stacks are read back with boto3.

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


def table_row(stdout: str, cluster: str, app: str = PROJECT) -> list[str]:
    """The cells of the app's row in the plain table (no terminal: columns are two spaces or more
    apart; a cell such as `up to date` has single spaces)."""
    (line,) = [line for line in stdout.splitlines() if re.match(rf"{app}\s+{cluster}\s", line)]
    return re.split(r"\s{2,}", line.strip())


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
        # Where the tag points, from the registry; HEAD; the state: HEAD's release runs, the stack is its.
        assert (row["tag"], row["tag_digest"], row["tag_commit"]) == ("stage", lab.digest("stage"), lab.first)
        assert row["commit"] == row["head"] == lab.head() == lab.first
        assert row["state"] == "up to date" and row["action"] == "" and row["tag_moved"] is False
        assert row["drift"] == [] and row["head_changes"] == [] and row["errors"] == [] and "live" not in row
        assert row["stack_status"] == "CREATE_COMPLETE" and row["rollout"] == "COMPLETED"
        assert row["last_action"] == "deploy" and row["deployed_at"]
        # prod's cluster is not up: nothing deployed, nothing runs, no tag; shipping it is a promotion.
        prod = rows[(PROJECT, "prod")]
        assert (prod["stack_status"], prod["digest"], prod["tag_digest"], prod["state"]) == \
            ("NOT_DEPLOYED", "", "", "not deployed")
        assert prod["action"] == f"inv ci.release --cluster stage --only {PROJECT} && inv app.promote {PROJECT} --tag prod"

        text = lab.ok("app.status").stdout
        assert table_row(text, "stage")[header(text).index("state")] == "up to date"
        assert "live" not in header(text)
        assert TAG_MOVED not in text

    def test_every_line_fits_80_columns(self, lab):
        result = lab.ok("app.status", env={"COLUMNS": "80"})
        assert_fits(result.stdout)
        assert header(result.stdout) == ["app", "cluster", "state", "runs", "tag", "tasks", "rollout"]
        assert table_row(result.stdout, "stage") == [PROJECT, "stage", "up to date", lab.first[:7], lab.first[:7],
                                                     "1/1", "COMPLETED"]
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
        cells = re.findall(r'<td class="cell (\w+)" data-cluster="(\w+)" data-state="([^"]+)">', dom)
        assert cells == [("ok", "stage", "up to date"), ("absent", "prod", "not deployed")], cells
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
        # Nothing needs doing (prod is simply not deployed): no red anywhere on the page.
        assert chromium.count(chromium.red_mask(shot)) == 0, "a fleet with nothing to do shows red"

    def test_a_pushed_tag_not_rolled_out_is_said_until_update_rolls_it_out(self, lab):
        second = lab.commit("a change pushed but not deployed")
        lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
        assert lab.digest("stage") == lab.digest(second) != lab.digest(lab.first)

        row = lab.status()[(PROJECT, "stage")]

        assert row["tag_moved"] is True and row["state"] == TAG_MOVED
        assert row["action"] == f"inv app.update {PROJECT} --cluster stage"
        assert (row["tag_digest"], row["tag_commit"]) == (lab.digest(second), second)
        assert (row["digest"], row["digest_source"], row["commit"]) == (lab.digest(lab.first), "history", lab.first)
        assert row["head"] == second
        assert row["task_definition_arn"] == lab.ecs_service()["taskDefinition"]
        for env in ({}, {"COLUMNS": "80"}):
            text = lab.ok("app.status", env=env).stdout
            assert table_row(text, "stage")[header(text).index("state")] == "tag moved"
            joined = " ".join(text.split())
            assert f"{PROJECT}@stage: {TAG_MOVED}" in joined, text
            assert f"tag stage is {second[:12]}, the service runs {lab.first[:12]}" in joined, text
        assert_fits(text)

        lab.ok("app.update", PROJECT)
        row = lab.status()[(PROJECT, "stage")]

        assert row["tag_moved"] is False and row["state"] == "up to date"
        assert (row["digest"], row["commit"], row["head"]) == (lab.digest(second), second, second)
        assert row["last_action"] == "update"
        text = lab.ok("app.status").stdout
        assert TAG_MOVED not in text
        assert table_row(text, "stage")[header(text).index("state")] == "up to date"


# --- releases of a studio of two apps, and the stacks invoke.yaml no longer maps -------------------

OTHER = "gift-shop"


def two_app_files() -> dict[str, str]:
    """gift-shop beside museum-adventure (its Dockerfile and template), both in stage and prod."""
    root = Path(__file__).resolve().parents[2]
    source = root / "projects" / PROJECT
    config = (root / "invoke.yaml").read_text().rstrip("\n") + f"\n    {OTHER}:\n      clusters: [stage, prod]\n"
    return {f"projects/{OTHER}/Dockerfile": (source / "Dockerfile").read_text(),
            f"projects/{OTHER}/deploy.yml": (source / "deploy.yml").read_text(),
            f"projects/{OTHER}/site/index.html": f"<h1>{OTHER}</h1>\n", "invoke.yaml": config}


def unmapped(lab, text: str, app: str, cluster: str) -> str:
    """invoke.yaml's `text` with `cluster` taken out of `app`'s clusters."""
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == f"{app}:")
    clusters = next(i for i in range(at, len(lines)) if lines[i].strip().startswith("clusters:"))
    names = [n.strip() for n in lines[clusters].split("[", 1)[1].split("]", 1)[0].split(",") if n.strip() != cluster]
    lines[clusters] = lines[clusters].split("[", 1)[0] + "[" + ", ".join(names) + "]\n"
    return "".join(lines)


def without_project(text: str, app: str) -> str:
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == f"{app}:")
    indent = len(lines[at]) - len(lines[at].lstrip())
    end = next((i for i in range(at + 1, len(lines))
                if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent), len(lines))
    return "".join(lines[:at] + lines[end:])


@pytest.fixture(scope="class")
def studio(tmp_path_factory, git_env, image_services, moto_server):
    from test_lifecycle import clusters_up, new_lab

    lab = new_lab(tmp_path_factory.mktemp("releases"), git_env, image_services, moto_server, files=two_app_files())
    clusters_up(lab)
    lab.ok("ci.release", timeout=BUILD_TIMEOUT * 2)
    lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    return lab


def rows_of(lab, *args: str) -> dict:
    result = lab.ok("app.status", *args, "--json")
    return {(r["app"], r["cluster"]): r for r in json.loads(result.stdout)}


class TestReleases:
    def test_a_commit_of_another_app_leaves_this_one_up_to_date_everywhere(self, studio):
        lab = studio
        page = f"projects/{OTHER}/site/index.html"
        first = git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()
        assert {r["state"] for r in rows_of(lab).values()} == {"up to date"}
        change = lab.commit({page: (lab.work / page).read_text() + "\n<!-- only gift-shop -->\n"}, "gift-shop only")

        rows = rows_of(lab)

        for cluster in ("stage", "prod"):
            row = rows[(PROJECT, cluster)]
            assert row["state"] == "up to date" and row["action"] == "", row
            assert row["commit"] == first and row["head"] == change and row["head_changes"] == [], row
            assert row["drift"] == [] and row["errors"] == [], row
            other = rows[(OTHER, cluster)]
            assert other["state"] == "behind HEAD" and other["head_changes"] == [f"1 file(s) under projects/{OTHER}/"]
        assert rows[(OTHER, "stage")]["action"] == f"inv ci.release --cluster stage --only {OTHER}"
        # ci.plan goes by the same rule: only the app the commit changed is released.
        matrix = json.loads(lab.ok("ci.plan", "--cluster", "stage", "--json").stdout)
        assert [m["project"] for m in matrix] == [OTHER], matrix
        assert rows[(OTHER, "prod")]["action"] == \
            f"inv ci.release --cluster stage --only {OTHER} && inv app.promote {OTHER} --tag prod"
        text = lab.ok("app.status", env=dict(lab.env, COLUMNS="80")).stdout
        assert_fits(text)
        assert table_row(text, "stage")[2] == table_row(text, "prod")[2] == "up to date"
        assert table_row(text, "prod", OTHER)[2] == "behind HEAD"

    def test_an_app_unmapped_from_prod_is_an_orphan_until_app_destroy_deletes_it(self, studio):
        lab = studio
        config = unmapped(lab, (lab.work / "invoke.yaml").read_text(), OTHER, "prod")
        lab.commit({"invoke.yaml": config}, "gift-shop leaves prod")
        assert lab.stack(f"{OTHER}-prod")["StackStatus"] == "CREATE_COMPLETE"

        row = rows_of(lab)[(OTHER, "prod")]
        assert row["state"] == "orphan" and row["orphan"] is True and row["stack"] == f"{OTHER}-prod", row
        assert row["action"] == f"inv app.destroy {OTHER} --cluster prod"
        assert rows_of(lab, OTHER)[(OTHER, "prod")]["state"] == "orphan"
        text = " ".join(lab.ok("app.status").stdout.split())
        assert f"{OTHER}@prod: orphan: stack {OTHER}-prod" in text, text
        assert f"remove it: inv app.destroy {OTHER} --cluster prod" in text, text

        check = lab.ok("fleet.up", "--check", "--json", timeout=BUILD_TIMEOUT)
        outcomes = {r["target"]: r for r in json.loads(check.stdout)}
        assert outcomes[f"{OTHER}@prod"]["outcome"] == "skipped", outcomes
        assert f"inv app.destroy {OTHER} --cluster prod" in outcomes[f"{OTHER}@prod"]["message"]
        assert outcomes[f"{PROJECT}@prod"]["outcome"] == "ok", outcomes
        plain = lab.ok("fleet.up", "--yes", timeout=BUILD_TIMEOUT)
        assert f"{OTHER}@prod" in plain.stdout and "orphan" in plain.stdout, plain.stdout
        assert lab.stack(f"{OTHER}-prod")["StackStatus"] == "CREATE_COMPLETE", "fleet.up without --prune deletes nothing"

        refused = lab.inv("app.destroy", OTHER, "--cluster", "prod")
        assert refused.returncode == 1 and "needs confirmation" in refused.stderr, refused.stdout + refused.stderr
        lab.ok("app.destroy", OTHER, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)

        assert lab.stack(f"{OTHER}-prod") is None
        assert (OTHER, "prod") not in rows_of(lab)
        assert lab.stack(f"{OTHER}-stage")["StackStatus"] == "CREATE_COMPLETE"
        assert f"{OTHER}:" in (lab.work / "invoke.yaml").read_text(), "the mapping is not added back"

    def test_fleet_up_prune_deletes_every_orphan_as_one_confirmed_plan(self, studio):
        lab = studio
        config = without_project((lab.work / "invoke.yaml").read_text(), OTHER)
        config = unmapped(lab, config, PROJECT, "prod")
        lab.commit({"invoke.yaml": config}, "gift-shop is retired; museum-adventure leaves prod")

        rows = rows_of(lab)
        orphans = sorted(k for k, r in rows.items() if r["state"] == "orphan")
        assert orphans == [(OTHER, "stage"), (PROJECT, "prod")], rows
        check = {r["target"]: r["outcome"] for r in json.loads(lab.ok("fleet.up", "--check", "--prune", "--json",
                                                                      timeout=BUILD_TIMEOUT).stdout)}
        assert check[f"{OTHER}@stage"] == check[f"{PROJECT}@prod"] == "changed", check
        assert lab.stack(f"{OTHER}-stage") is not None and lab.stack(f"{PROJECT}-prod") is not None

        refused = lab.inv("fleet.up", "--prune")
        assert refused.returncode == 1 and "needs confirmation" in refused.stderr, refused.stdout + refused.stderr
        assert lab.stack(f"{OTHER}-stage") is not None, "a refused plan deletes nothing"

        result = lab.ok("fleet.up", "--prune", "--yes", timeout=BUILD_TIMEOUT)

        assert lab.stack(f"{OTHER}-stage") is None and lab.stack(f"{PROJECT}-prod") is None, result.stdout
        assert lab.stack(f"{PROJECT}-stage")["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
        assert lab.stack("stage") is not None and lab.stack("prod") is not None
        assert not [r for r in rows_of(lab).values() if r["state"] == "orphan"]
