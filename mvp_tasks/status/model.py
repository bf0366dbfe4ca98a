"""The facts behind `app.status`: one row per app and cluster it is mapped to.

"What runs" is read from ECS, not from where a registry tag points: the service's current
(PRIMARY) deployment names a task definition (family:revision, and the image its container names);
the digest its running tasks resolved comes from DescribeTasks, and where ECS lists no task (the
emulator never does) from the last successful rollout the deploy history recorded. Where the
cluster tag points now is read from the registry; when the two differ the row says "tag moved,
not rolled out". HEAD's commit (what `app.push` would tag) stands next to what runs: `live` is yes
when that very commit runs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import CredentialsError, MvpError

TAG_MOVED = "tag moved, not rolled out"
# How many records of each app and cluster the history is read for (the planner's default too).
HISTORY_READ = 50
# How many of them the HTML page's timeline shows, per app and cluster.
PAGE_RECORDS = 30


# --- what runs where -------------------------------------------------------------------------------


class _Read:
    """One read of an app's history in a cluster, asked the planner's questions (so "the last
    successful rollout" means here what it means to `app.deploy`: `get_rolled_digest`)."""

    def __init__(self, records: list) -> None:
        self.records = records

    def get_records(self, project: str, limit: int = HISTORY_READ) -> list:
        return self.records[:limit]

    def get_current(self, project: str):
        return next((r for r in self.records if r.outcome == "succeeded" and r.commit), None)


def read_head(settings: Any, memo: Any = None) -> dict[str, Any]:
    """HEAD's commit (what `app.push` would tag), and which projects have uncommitted changes.
    Outside git, or without git: no commit ("-" in the table), never an error."""
    from ..image import git
    from ..image.runner import Runner

    try:
        runner = Runner.local()
        commit = git.get_commit(runner, settings.root, memo)
    except (MvpError, OSError):
        return {"commit": "", "dirty": set()}
    dirty = set()
    for project in settings.projects.values():
        try:
            if git.get_revision(runner, settings.root, f"projects/{project.name}", memo).dirty:
                dirty.add(project.name)
        except (MvpError, OSError):
            pass
    return {"commit": commit, "dirty": dirty}


def collect(world: Any, name: str | None, *, records: int = 0) -> list[dict]:
    """One row per app and cluster it is mapped to (see the module's docstring), read side by
    side (`mvp.parallel` at a time) through the run's `world`. `records` > 0: each row also
    carries its app's newest `records` history records in that cluster (`row["records"]`, for
    the HTML page)."""
    settings = world.settings
    projects = [settings.project(name)] if name else list(settings.projects.values())
    world.aws.session  # a profile that does not exist is one line, not a table of the same error
    head = read_head(settings, world.memo)
    targets = [(p, settings.clusters[c]) for p in projects for c in p.clusters]
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(targets))),
                            thread_name_prefix="status") as pool:
        # A credential failure (missing, expired, refused) ends the run as one error line.
        rows = list(pool.map(lambda t: read_row(world, t[0], t[1], head, records), targets))
    add_unshipped(settings, rows, world.memo)
    # Nothing answered at all (AWS unreachable): one line, not a table of dashes.
    errors = [e for r in rows for e in r["errors"]]
    if all(r["errors"] for r in rows) and errors and all("cannot reach" in e for e in errors):
        raise MvpError(errors[0].split(": ", 1)[1])
    return rows


def read_row(world: Any, project: Any, cluster: Any, head: dict, records: int = 0) -> dict:
    """The facts of one app in one cluster. A read that fails leaves its facts empty ("-") and
    says why in `errors`; it never stops the other reads or the other rows."""
    row: dict[str, Any] = {
        "app": project.name, "cluster": cluster.name, "stack": project.stack_name(cluster.name),
        "stack_status": "NOT_DEPLOYED", "url": "", "ecs_cluster": "", "service": "",
        "task_definition": "", "task_definition_arn": "", "image": "",
        "digest": "", "digest_source": "", "commit": "",
        "tag": cluster.tag, "tag_digest": "", "tag_commit": "", "tag_moved": False,
        "head": head["commit"], "head_dirty": project.name in head["dirty"], "live": None,
        "running": 0, "desired": 0, "rollout": "-",
        "deployed_at": "", "deployed_by": "", "last_action": "", "unshipped": "", "errors": [],
    }
    errors: list[str] = row["errors"]

    try:
        registry = world.registry
        row["tag_digest"] = registry.get_digest(project.repository, cluster.tag) or ""
        if row["tag_digest"]:
            row["tag_commit"] = registry.get_commit(project.repository, cluster.tag) or ""
    except CredentialsError:
        raise  # every read of every row would say the same: one line for the whole run
    except MvpError as exc:
        errors.append(f"registry: {exc}")

    history = None
    try:
        history = _Read(world.history(cluster).get_records(project.name, limit=max(HISTORY_READ, records)))
    except CredentialsError:
        raise  # every read of every row would say the same: one line for the whole run
    except MvpError as exc:
        errors.append(f"history: {exc}")
    if history is not None:
        current = history.get_current(project.name)
        if current is not None:
            row.update(deployed_at=current.at, deployed_by=current.by, last_action=current.action)
        if records:
            row["records"] = [_fields(r) for r in history.records[:records]]

    try:
        _read_service(world, project, cluster, row)
    except CredentialsError:
        raise  # every read of every row would say the same: one line for the whole run
    except MvpError as exc:
        errors.append(f"ecs: {exc}")

    if row["service"] and not row["digest"] and history is not None:
        from ..plan.planner import get_rolled_digest

        rolled = get_rolled_digest(history, project.name)
        if rolled:
            row.update(digest=rolled, digest_source="history")
    if row["digest"]:
        if row["digest"] == row["tag_digest"]:
            row["commit"] = row["tag_commit"]
        if not row["commit"] and history is not None:
            row["commit"] = next((r.commit for r in history.records if r.digest == row["digest"] and r.commit), "")
    row["tag_moved"] = bool(row["digest"] and row["tag_digest"] and row["digest"] != row["tag_digest"])
    if row["head"]:
        row["live"] = bool(row["commit"] and row["commit"] == row["head"] and row["running"] > 0)
    return row


def add_unshipped(settings: Any, rows: list[dict], memo: Any) -> None:
    """Each row's changes at HEAD that its cluster's tag does not have (git only, asked once each)."""
    from ..plan.changes import unshipped

    for row in rows:
        if not row["head"]:
            continue
        try:
            row["unshipped"] = unshipped(settings, settings.projects[row["app"]], settings.clusters[row["cluster"]],
                                         row["tag_commit"] or row["commit"], row["head"], memo)
        except MvpError as exc:
            row["errors"].append(f"git: {exc}")


def _fields(record: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(vars(record))


def _read_service(world: Any, project: Any, cluster: Any, row: dict) -> None:
    from ..aws.discovery import service_names

    stack = world.stacks().get_stack(row["stack"])
    if stack is None:
        return
    row["stack_status"] = stack.status
    row["url"] = stack.outputs.get("Url", "")
    ecs_cluster, service = service_names(world, stack, cluster)
    row.update(ecs_cluster=ecs_cluster)
    services = world.services()
    state = services.get_service(ecs_cluster, service)
    if state is None:
        return
    row.update(service=state.name or service, running=state.running, desired=state.desired, rollout=state.rollout)
    primary = state.primary
    arn = (primary.task_definition if primary else "") or state.task_definition
    if not arn:
        return
    row.update(task_definition_arn=arn, task_definition=arn.rsplit("/", 1)[-1])
    container, image = _container(world, arn, world.registry.ref(project.repository, cluster.tag))
    row["image"] = image
    # The most common digest mid-rollout, when tasks of one task definition differ.
    digests = services.get_task_digests(ecs_cluster, row["service"], arn, container)
    if digests:
        row.update(digest=digests.most_common(1)[0][0], digest_source="ecs")


def _container(world: Any, arn: str, ref: str) -> tuple[str, str]:
    """(name, image) of the task definition's container that runs the app's image: the one
    naming the app's repository, else the first essential one. Read once per run per ARN."""
    from ..aws.discovery import get_task_definition

    containers = get_task_definition(world, arn).get("containerDefinitions", [])
    repository = ref.rsplit(":", 1)[0]
    chosen = next((c for c in containers if c.get("image", "").rsplit(":", 1)[0].split("@")[0] == repository), None) \
        or next((c for c in containers if c.get("essential", True)), None) or (containers[0] if containers else {})
    return chosen.get("name", ""), chosen.get("image", "")
