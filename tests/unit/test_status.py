"""`app.status`'s facts and table (mvp_tasks/status/model.py and table.py), against botocore's Stubber for ECS
with responses shaped like AWS's: what moto cannot show (DescribeTasks of a service's running
tasks, with the digest each container resolved; moto lists no task for a service), the fallback
to the history where ECS lists none, a history that cannot be read, and the table's layouts at
every width (the end-to-end test, tests/e2e/test_app_status.py, runs the real thing against moto).
"""

from __future__ import annotations

import io
import types

import pytest
from botocore.stub import Stubber

from mvp_tasks.aws.services import ServiceReader, Services
from mvp_tasks.errors import UsageError
from mvp_tasks.memo import Memo
from mvp_tasks.report import Reporter
from mvp_tasks.state.store import Record
from mvp_tasks.status import model, table
from stubs import isolate_from_aws, make_client

ACCOUNT = "123456789012"
APP, CLUSTER = "museum-adventure", "stage"
SERVICE = f"{APP}-{CLUSTER}"
OLD, NEW = "1" * 40, "2" * 40
D_OLD, D_NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
REF = f"127.0.0.1:5000/{APP}:{CLUSTER}"


def td_arn(revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{SERVICE}:{revision}"


def task_arn(n: int) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/{CLUSTER}/{n:032x}"


class FakeRegistry:
    def __init__(self, tags: dict[str, tuple[str, str]]):
        self.tags = tags  # tag -> (digest, commit)

    def ref(self, repository, tag):
        return f"127.0.0.1:5000/{repository}:{tag}"

    def get_digest(self, repository, tag):
        return self.tags.get(tag, ("", ""))[0] or None

    def get_commit(self, repository, tag):
        return self.tags.get(tag, ("", ""))[1]


class FakeHistory:
    def __init__(self, records=None, error: Exception | None = None):
        self.records = records or []
        self.error = error

    def get_records(self, project, limit=50):
        if self.error:
            raise self.error
        return self.records[:limit]


def record(at: str, action: str, outcome: str, commit: str, digest: str) -> Record:
    return Record(APP, CLUSTER, action, commit, digest, outcome, "arn:aws:iam::123456789012:user/ci", at)


@pytest.fixture
def ecs(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("ecs")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def make_world(client, registry, history, stack_status="CREATE_COMPLETE"):
    stack = types.SimpleNamespace(name=SERVICE, status=stack_status, stack_id=f"id-{SERVICE}", last_updated=None,
                                  created=None, outputs={"ServiceName": SERVICE, "ClusterName": CLUSTER,
                                                         "Url": "http://museum.example.invalid"})
    stacks = types.SimpleNamespace(get_stack=lambda name: stack if stack_status else None)
    world = types.SimpleNamespace(
        memo=Memo(), registry=registry, aws=types.SimpleNamespace(ecs=client),
        stacks=lambda: stacks, services=lambda: Services(client, reader=ServiceReader()),
        history=lambda cluster: history if not isinstance(history, Exception) else (_ for _ in ()).throw(history),
    )
    return world


PROJECT = types.SimpleNamespace(name=APP, repository=APP, stack_name=lambda cluster: f"{APP}-{cluster}")
TARGET = types.SimpleNamespace(name=CLUSTER, tag=CLUSTER, stack_name=CLUSTER)


def expect_service(stubber, *, deployments):
    stubber.add_response("describe_services", {"services": [{
        "serviceName": SERVICE, "serviceArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/{CLUSTER}/{SERVICE}",
        "status": "ACTIVE", "desiredCount": 2, "runningCount": 2, "pendingCount": 0,
        "taskDefinition": deployments[0]["taskDefinition"], "deployments": deployments, "events": []}]},
        {"cluster": CLUSTER, "services": [SERVICE]})


def deployment(n: int, status_: str, revision: int, state: str = "COMPLETED") -> dict:
    return {"id": f"ecs-svc/{n}", "status": status_, "taskDefinition": td_arn(revision), "desiredCount": 2,
            "runningCount": 2, "pendingCount": 0, "failedTasks": 0, "rolloutState": state}


def expect_task_definition(stubber, revision: int):
    stubber.add_response("describe_task_definition", {"taskDefinition": {
        "taskDefinitionArn": td_arn(revision), "family": SERVICE, "revision": revision,
        "containerDefinitions": [
            {"name": "log-router", "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
             "essential": False},
            {"name": "web", "image": REF, "essential": True},
        ]}}, {"taskDefinition": td_arn(revision)})


def test_the_digest_comes_from_the_running_tasks_of_the_primary_deployment(ecs):
    client, stubber = ecs
    # Mid-rollout: the new deployment (revision 5) runs two tasks, the old one (revision 4) one.
    expect_service(stubber, deployments=[deployment(2, "PRIMARY", 5, "IN_PROGRESS"), deployment(1, "ACTIVE", 4)])
    expect_task_definition(stubber, 5)
    stubber.add_response("list_tasks", {"taskArns": [task_arn(1), task_arn(2), task_arn(3)]},
                         {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"})

    def task(n, revision, digest, sidecar="sha256:" + "f" * 64):
        return {"taskArn": task_arn(n), "taskDefinitionArn": td_arn(revision), "lastStatus": "RUNNING",
                "containers": [{"name": "log-router", "image": "fluent-bit", "imageDigest": sidecar},
                               {"name": "web", "image": REF, "imageDigest": digest}]}

    stubber.add_response("describe_tasks", {"tasks": [task(1, 5, D_NEW), task(2, 4, D_OLD), task(3, 5, D_NEW)]},
                         {"cluster": CLUSTER, "tasks": [task_arn(1), task_arn(2), task_arn(3)]})
    history = FakeHistory([record("2026-12-01T10:00:00+00:00", "deploy", "succeeded", OLD, D_OLD)])
    world = make_world(client, FakeRegistry({CLUSTER: (D_NEW, NEW)}), history)

    row = model.read_row(world, PROJECT, TARGET, {"commit": NEW, "dirty": set()})

    assert (row["task_definition"], row["task_definition_arn"], row["image"]) == (f"{SERVICE}:5", td_arn(5), REF)
    assert (row["digest"], row["digest_source"], row["commit"]) == (D_NEW, "ecs", NEW)
    assert (row["tag_digest"], row["tag_commit"], row["tag_moved"]) == (D_NEW, NEW, False)
    assert row["rollout"] == "IN_PROGRESS" and (row["running"], row["desired"]) == (2, 2)
    assert model.decide_state(row) == (model.ROLLING, f"inv app.wait {APP} --cluster {CLUSTER}")
    assert (row["deployed_at"], row["last_action"]) == ("2026-12-01T10:00:00+00:00", "deploy")
    assert row["errors"] == [] and table.notes(row) == []


def test_without_tasks_the_digest_is_the_last_successful_rollouts_and_a_moved_tag_is_said(ecs):
    client, stubber = ecs
    expect_service(stubber, deployments=[deployment(1, "PRIMARY", 4)])
    expect_task_definition(stubber, 4)
    stubber.add_response("list_tasks", {"taskArns": []},
                         {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"})
    # The newest rollout failed: what runs is the one before it.
    history = FakeHistory([
        record("2026-12-01T12:00:00+00:00", "update", "failed", NEW, D_NEW),
        record("2026-12-01T10:00:00+00:00", "deploy", "succeeded", OLD, D_OLD),
    ])
    world = make_world(client, FakeRegistry({CLUSTER: (D_NEW, NEW)}), history)

    row = model.read_row(world, PROJECT, TARGET, {"commit": NEW, "dirty": {APP}})

    assert (row["digest"], row["digest_source"], row["commit"]) == (D_OLD, "history", OLD)
    assert row["tag_moved"] is True and row["head_dirty"] is True
    assert model.decide_state(row) == (model.TAG_MOVED, f"inv app.update {APP} --cluster {CLUSTER}")
    assert table.notes(row) == [f"{model.TAG_MOVED}: tag stage is {NEW[:12]}, the service runs {OLD[:12]} (history)"]


def test_a_history_that_cannot_be_read_leaves_its_facts_empty(ecs):
    client, stubber = ecs
    expect_service(stubber, deployments=[deployment(1, "PRIMARY", 4)])
    expect_task_definition(stubber, 4)
    stubber.add_response("list_tasks", {"taskArns": []},
                         {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"})
    missing = UsageError("there is no deploy store in this account and region yet (stack mvp-deploy-state)")
    world = make_world(client, FakeRegistry({CLUSTER: (D_NEW, NEW)}), missing)

    row = model.read_row(world, PROJECT, TARGET, {"commit": "", "dirty": set()})

    assert (row["digest"], row["digest_source"], row["commit"], row["deployed_at"]) == ("", "", "", "")
    assert row["tag_moved"] is False
    assert model.decide_state(row) == (model.UNKNOWN, "")  # HEAD and what runs unknown: not said to be fine
    assert row["errors"] == [f"history: {missing}"]
    assert table.notes(row) == [f"could not read the history: {missing}"]
    assert table._state(row) == "-"  # not judged (collect judges a row)


def test_an_app_not_deployed_has_no_service_and_no_history_note(ecs):
    client, _ = ecs
    world = make_world(client, FakeRegistry({}), UsageError("cluster stage does not exist"), stack_status="")

    row = model.read_row(world, PROJECT, TARGET, {"commit": NEW, "dirty": set()})

    assert (row["stack_status"], row["service"], row["digest"]) == ("NOT_DEPLOYED", "", "")
    assert model.decide_state(row) == (model.NOT_DEPLOYED, f"inv ci.release --cluster {CLUSTER} --only {APP}")
    assert row["errors"] == ["history: cluster stage does not exist"] and table.notes(row) == []


def test_head_outside_git_is_no_commit(tmp_path):
    settings = types.SimpleNamespace(root=tmp_path, projects={})
    assert model.read_head(settings) == {"commit": "", "dirty": set()}


# --- the table at every width ----------------------------------------------------------------------


def rows(n_apps: int = 2) -> list[dict]:
    out = []
    for i in range(n_apps):
        for cluster in ("stage", "prod"):
            moved = cluster == "stage"
            out.append({
                "app": f"museum-adventure-{i}" if i else "museum-adventure", "cluster": cluster,
                "stack": f"museum-adventure-{cluster}", "stack_status": "UPDATE_COMPLETE", "url": "",
                "ecs_cluster": cluster, "service": f"museum-adventure-{cluster}",
                "task_definition": f"museum-adventure-{cluster}:12", "task_definition_arn": td_arn(12),
                "image": REF, "digest": D_OLD, "digest_source": "history", "commit": OLD, "tag": cluster,
                "tag_digest": D_NEW if moved else D_OLD, "tag_commit": NEW if moved else OLD, "tag_moved": moved,
                "head": NEW, "head_dirty": False, "running": 1, "desired": 1, "rollout": "COMPLETED",
                "deployed_at": "2026-12-01T10:00:00.123456+00:00",
                "deployed_by": "arn:aws:sts::123456789012:assumed-role/deploy/github-actions", "last_action": "deploy",
                "errors": [], "drift": [], "head_changes": [],
            })
            out[-1]["state"], out[-1]["action"] = model.decide_state(out[-1])
    return out


def shown(monkeypatch, columns: str | None, *, interactive: bool = False, data=None) -> list[str]:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    stream = io.StringIO()
    run = types.SimpleNamespace(reporter=Reporter(stream=stream, interactive=interactive), settings=None)
    table.show(run, rows() if data is None else data)
    return stream.getvalue().splitlines()


def test_no_width_to_fit_shows_every_column(monkeypatch):
    lines = shown(monkeypatch, None)
    header = next(line for line in lines if line.startswith("app "))
    for column in table.WIDE:
        assert column in header
    assert any(f"{OLD[:12]}" in line and f"{NEW[:12]}" in line and "museum-adventure-stage:12" in line
               for line in lines), lines
    assert any(model.TAG_MOVED in line for line in lines)


@pytest.mark.parametrize("interactive", [False, True], ids=["plain", "terminal"])
@pytest.mark.parametrize("columns", ["80", "60", "40"])
def test_every_line_fits_the_terminal(monkeypatch, columns, interactive):
    import re

    # What a person sees: the terminal's colour and bold codes take no columns.
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in shown(monkeypatch, columns, interactive=interactive)]
    assert max(len(line) for line in lines) <= int(columns), "\n".join(lines)
    text = "\n".join(lines)
    # Whatever the layout, what runs, where the tag points, the state and the moved tag are all there.
    assert OLD[:7] in text and NEW[:7] in text and "tag moved" in text and model.UP_TO_DATE in text
    assert model.TAG_MOVED in " ".join(text.split())


def test_eighty_columns_is_the_short_table(monkeypatch):
    lines = shown(monkeypatch, "80")
    header = next(line for line in lines if line.startswith("app "))
    assert header.split() == table.SHORT
    row = next(line for line in lines if line.startswith("museum-adventure ") and " stage " in line)
    assert row.split() == ["museum-adventure", "stage", "tag", "moved", OLD[:7], NEW[:7], "1/1", "COMPLETED"]


def test_narrower_than_the_short_table_is_one_block_per_row(monkeypatch):
    lines = shown(monkeypatch, "40")
    assert not any(line.startswith("app ") for line in lines)
    assert any(line.strip().startswith("museum-adventure@stage") for line in lines), lines


def test_the_url_is_a_column_of_the_wide_table_and_a_note_where_the_table_has_none(monkeypatch):
    data = rows()
    data[0]["url"] = "http://museum-adventure-stage-1234567890.us-east-1.elb.amazonaws.com"
    lines = shown(monkeypatch, None, data=data)
    header = next(line for line in lines if line.startswith("app "))
    assert header.split()[-1] == "url"
    row = next(line for line in lines if line.startswith("museum-adventure ") and " stage " in line)
    assert row.split()[-1] == data[0]["url"]
    assert next(line for line in lines if line.startswith("museum-adventure ") and " prod " in line).split()[-1] == "-"
    assert not any("url http" in line for line in lines)  # the column says it

    for columns in ("80", "40"):
        lines = shown(monkeypatch, columns, data=data)
        assert max(len(line) for line in lines) <= int(columns), "\n".join(lines)
        # Wrapped to the width (at 40 columns the URL itself is cut): read without the line breaks.
        text = "".join("".join(lines).split())
        assert f"museum-adventure@stage:url{data[0]['url']}" in text, lines
        assert text.count(":urlhttp") == 1  # only the row that has one
    # At 80 columns the URL moves whole to a line of its own, where a person can copy it.
    assert any(line.strip() == data[0]["url"] for line in shown(monkeypatch, "80", data=data))


# --- the state a person acts on, decided on plain rows ---------------------------------------------


def plain(**facts) -> dict:
    """A row of an app in stage that runs HEAD's release, as `collect` reads it; `facts` change it."""
    row = {"app": APP, "cluster": CLUSTER, "stack_status": "UPDATE_COMPLETE", "service": SERVICE, "rollout": "COMPLETED",
           "commit": OLD, "head": NEW, "tag": CLUSTER, "tag_moved": False, "drift": [], "head_changes": [],
           "orphan": False}
    row.update(facts)
    return row


@pytest.mark.parametrize("facts, state", [
    ({}, model.UP_TO_DATE),  # HEAD is newer, but changes nothing this app runs here
    ({"head_changes": ["1 file(s) under projects/museum-adventure/"]}, model.BEHIND),
    ({"drift": ["parameter DesiredCount: stack has 1, the release 3"]}, model.DRIFT),
    ({"tag_moved": True}, model.TAG_MOVED),
    ({"rollout": "IN_PROGRESS"}, model.ROLLING),
    ({"stack_status": "UPDATE_IN_PROGRESS"}, model.ROLLING),
    ({"rollout": "FAILED"}, model.FAILED),
    ({"stack_status": "ROLLBACK_COMPLETE"}, model.FAILED),
    ({"stack_status": "NOT_DEPLOYED", "service": "", "commit": ""}, model.NOT_DEPLOYED),
    ({"orphan": True, "action": "inv app.destroy museum-adventure --cluster stage"}, model.ORPHAN),
    ({"head": ""}, model.UNKNOWN),  # outside git: nothing is said to be fine
    ({"commit": ""}, model.UNKNOWN),
    # First things first: a failed rollout over a moved tag, a moved tag over drift, drift over HEAD.
    ({"rollout": "FAILED", "tag_moved": True}, model.FAILED),
    ({"tag_moved": True, "drift": ["x"]}, model.TAG_MOVED),
    ({"drift": ["x"], "head_changes": ["y"]}, model.DRIFT),
])
def test_the_state_of_a_row(facts, state):
    assert model.decide_state(plain(**facts))[0] == state


def test_only_up_to_date_has_nothing_to_do_and_behind_head_names_the_command_that_ships_it():
    assert model.decide_state(plain()) == (model.UP_TO_DATE, "")
    behind = plain(head_changes=["its template"])
    assert model.decide_state(behind) == (model.BEHIND, f"inv ci.release --cluster stage --only {APP}")
    prod = dict(behind, cluster="prod", tag="prod")
    assert model.decide_state(prod, promote_from="stage") == (
        model.BEHIND, f"inv ci.release --cluster stage --only {APP} && inv app.promote {APP} --tag prod")
    for facts in ({"drift": ["x"]}, {"tag_moved": True}, {"rollout": "FAILED"}, {"rollout": "IN_PROGRESS"}):
        assert model.decide_state(plain(**facts))[1], facts


def test_orphans_are_the_tools_stacks_of_apps_and_clusters_no_longer_mapped():
    from mvp_tasks.plan.planner import is_orphan

    clusters = {"stage": types.SimpleNamespace(name="stage", stack_name="stage"),
                "prod": types.SimpleNamespace(name="prod", stack_name="prod")}
    settings = types.SimpleNamespace(clusters=clusters, projects={
        APP: types.SimpleNamespace(clusters=["stage"])})
    ours = {"mvp:managed-by": "mvp-tasks"}
    # An app's stack: mapped, unmapped from a cluster, retired, in a cluster no longer configured.
    assert is_orphan(settings, {**ours, "mvp:project": APP, "mvp:cluster": "stage"}, f"{APP}-stage") is None
    assert is_orphan(settings, {**ours, "mvp:project": APP, "mvp:cluster": "prod"}, f"{APP}-prod") == (APP, "prod")
    assert is_orphan(settings, {**ours, "mvp:project": "gift-shop", "mvp:cluster": "stage"}, "x") == ("gift-shop", "stage")
    assert is_orphan(settings, {**ours, "mvp:project": APP, "mvp:cluster": "qa"}, f"{APP}-qa") == (APP, "qa")
    # Someone else's stack with the same tags but not the tool's mark is never ours to delete.
    assert is_orphan(settings, {"mvp:project": APP, "mvp:cluster": "prod"}, f"{APP}-prod") is None
    # A cluster's stack: configured, or not any more; the deploy store has no cluster tag.
    assert is_orphan(settings, {**ours, "mvp:cluster": "stage"}, "stage") is None
    assert is_orphan(settings, {**ours, "mvp:cluster": "qa"}, "qa") == ("", "qa")
    assert is_orphan(settings, {"mvp:cluster": "qa"}, "qa") == ("", "qa")
    assert is_orphan(settings, {**ours, "mvp:role": "deploy-store"}, "mvp-deploy-state") is None


# --- a service a rollback left behind its stack ------------------------------------------------------


def stack_world(outputs: dict, resources: list):
    """A world whose app stack has `outputs` and lists `resources` (counting the listings)."""
    from mvp_tasks.aws.stacks import StackResource

    listed = []
    stack = types.SimpleNamespace(name=SERVICE, status="UPDATE_COMPLETE", stack_id=f"id-{SERVICE}", last_updated=None,
                                  created=None, outputs=outputs)

    def list_stack_resources(ref):
        listed.append(ref)
        return [StackResource(logical, kind, physical, "UPDATE_COMPLETE") for logical, kind, physical in resources]

    world = types.SimpleNamespace(memo=Memo(), stacks=lambda: types.SimpleNamespace(
        list_stack_resources=list_stack_resources))
    return world, stack, listed


def running_row(revision: int) -> dict:
    return {"task_definition": f"{SERVICE}:{revision}", "task_definition_arn": td_arn(revision),
            "stack_task_definition": "", "service_drift": ""}


def test_a_service_that_runs_another_task_definition_than_its_stack_is_said_to():
    world, stack, listed = stack_world({"TaskDefinitionArn": td_arn(8)},
                                       [("TaskDefinition", "AWS::ECS::TaskDefinition", td_arn(8))])
    row = running_row(7)
    model.read_stack_task_definition(world, stack, row)
    assert row["stack_task_definition"] == f"{SERVICE}:8"
    assert row["service_drift"] == f"service runs {SERVICE}:7, the stack {SERVICE}:8"
    assert listed == [f"id-{SERVICE}"]  # the output disagreed with what runs: the resource confirmed it


def test_a_service_that_runs_its_stacks_task_definition_costs_no_call():
    world, stack, listed = stack_world({"TaskDefinitionArn": td_arn(8)}, [])
    row = running_row(8)
    model.read_stack_task_definition(world, stack, row)
    assert (row["stack_task_definition"], row["service_drift"]) == (f"{SERVICE}:8", "")
    assert listed == []


def test_without_an_output_the_stacks_task_definition_resource_says():
    world, stack, listed = stack_world({}, [("Service", "AWS::ECS::Service", "x"),
                                            ("TaskDefinition", "AWS::ECS::TaskDefinition", td_arn(9))])
    row = running_row(9)
    model.read_stack_task_definition(world, stack, row)
    assert (row["stack_task_definition"], row["service_drift"]) == (f"{SERVICE}:9", "")
    world, stack, _ = stack_world({}, [])  # no task definition in the stack: nothing to say
    row = running_row(9)
    model.read_stack_task_definition(world, stack, row)
    assert (row["stack_task_definition"], row["service_drift"]) == ("", "")


def test_the_state_of_a_service_left_behind_its_stack_is_drift_and_its_command_ships_the_release_again():
    behind = {"service_drift": f"service runs {SERVICE}:7, the stack {SERVICE}:8"}
    assert model.decide_state(plain(**behind)) == (model.DRIFT, f"inv app.deploy {APP} --cluster {CLUSTER}")
    prod = plain(cluster="prod", tag="prod", **behind)
    assert model.decide_state(prod, promote_from="stage") == (model.DRIFT, f"inv app.promote {APP} --tag prod")
    # Over the stack's own drift and HEAD's changes (shipping the release again is the fix); a failed or
    # rolling rollout and a moved tag come first, as ever.
    assert model.decide_state(plain(drift=["x"], head_changes=["y"], **behind))[1] == \
        f"inv app.deploy {APP} --cluster {CLUSTER}"
    assert model.decide_state(plain(rollout="IN_PROGRESS", **behind))[0] == model.ROLLING
    assert model.decide_state(plain(rollout="FAILED", **behind))[0] == model.FAILED
    assert model.decide_state(plain(tag_moved=True, **behind))[0] == model.TAG_MOVED
    assert model.decide_state(plain(service_drift=""))[0] == model.UP_TO_DATE


def test_the_table_says_what_the_service_runs_and_what_its_stack_names():
    row = dict(rows(1)[0], tag_moved=False, tag_digest=D_OLD, tag_commit=OLD,
               service_drift=f"service runs {SERVICE}:7, the stack {SERVICE}:8")
    row["state"], row["action"] = model.decide_state(row)
    assert table.notes(row)[:2] == [
        f"drift: inv app.deploy {APP} --cluster {CLUSTER}",
        f"drift: service runs {SERVICE}:7, the stack {SERVICE}:8 (a rollout of the stack's failed or was stopped, "
        "and the service was rolled back): the release is not out"]
