"""The facts behind `app.status`: one row per app and cluster it is mapped to.

"What runs" is read from ECS, not from where a registry tag points: the service's current
(PRIMARY) deployment names a task definition (family:revision, and the image its container names);
the digest its running tasks resolved comes from DescribeTasks, and where ECS lists no task (the
emulator never does) from the last successful rollout the deploy history recorded. Where the
cluster tag points now is read from the registry; when the two differ the row says "tag moved,
not rolled out". A cluster runs a release (one commit: image, template, config): the commit that
runs is the newest release of the running image in the history (a config-only release shares its
image, and its label, with an earlier commit), else the image's label. The row says whether the
stack still equals that commit's rendering (`drift`), whether the service runs the task definition
its stack registered (`service_drift`: a rollout that failed, or was stopped, and was rolled back
returns the service, not the stack; `stack_task_definition`), what HEAD changes for this app in this
cluster (`head_changes`, by `plan.changes`' one rule), and sums it all up in `state` (`decide_state`):
what a person must do, if anything, with `action` the command that does it. Stacks the tool made
for an app or cluster invoke.yaml no longer maps are rows too (`orphan`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import CredentialsError, MvpError

TAG_MOVED = "tag moved, not rolled out"
# The states of a row (`decide_state`); only UP_TO_DATE means there is nothing to do.
UP_TO_DATE = "up to date"
BEHIND = "behind HEAD"
DRIFT = "drift"
ROLLING = "rolling"
FAILED = "failed"
NOT_DEPLOYED = "not deployed"
ORPHAN = "orphan"
UNKNOWN = "unknown"
STATES = (UP_TO_DATE, BEHIND, DRIFT, TAG_MOVED, ROLLING, FAILED, NOT_DEPLOYED, ORPHAN, UNKNOWN)
# Stack states a failed operation leaves (UPDATE_ROLLBACK_COMPLETE is the earlier release, whole).
FAILED_STACKS = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED", "UPDATE_FAILED",
                 "UPDATE_ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE")
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
    unknown = None
    try:
        projects = [settings.project(name)] if name else list(settings.projects.values())
    except MvpError as exc:  # no longer in invoke.yaml: its orphan stacks, if any, are its rows
        projects, unknown = [], exc
    if unknown is not None:
        # The unknown name stays the error unless AWS holds an orphan stack of it.
        try:
            world.aws.session
            orphans = read_orphans(world, name)
        except MvpError:
            raise unknown from None
        if not orphans:
            raise unknown
        return orphans
    world.aws.session  # a profile that does not exist is one line, not a table of the same error
    head = read_head(settings, world.memo)
    targets = [(p, settings.clusters[c]) for p in projects for c in p.clusters]
    unlisted = None
    try:
        orphans = read_orphans(world, name)
    except CredentialsError:
        raise  # every read would say the same: one line for the whole run
    except MvpError as exc:
        if not targets:
            raise
        orphans, unlisted = [], exc  # the rows still say what runs; the missing list is said once
    if not targets:
        return orphans
    with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(targets))),
                            thread_name_prefix="status") as pool:
        # A credential failure (missing, expired, refused) ends the run as one error line.
        rows = list(pool.map(lambda t: read_row(world, t[0], t[1], head, records, judge=True), targets))
    add_unshipped(settings, rows, world.memo)
    for row in rows:
        row["state"], row["action"] = decide_state(row, settings.clusters[row["cluster"]].promote_from)
    rows += orphans
    # Nothing answered at all (AWS unreachable): one line, not a table of dashes.
    errors = [e for r in rows for e in r["errors"]]
    if all(r["errors"] for r in rows) and errors and all("cannot reach" in e for e in errors):
        raise MvpError(errors[0].split(": ", 1)[1])
    if unlisted is not None:
        world.reporter.warn(f"could not list the stacks invoke.yaml no longer maps (orphans): {unlisted}")
    return rows


def read_row(world: Any, project: Any, cluster: Any, head: dict, records: int = 0, *, judge: bool = False) -> dict:
    """The facts of one app in one cluster. A read that fails leaves its facts empty ("-") and
    says why in `errors`; it never stops the other reads or the other rows. `judge`: also whether
    the stack still equals the rendering of the release it runs (`drift`)."""
    row: dict[str, Any] = {
        "app": project.name, "cluster": cluster.name, "stack": project.stack_name(cluster.name),
        "stack_status": "NOT_DEPLOYED", "url": "", "ecs_cluster": "", "service": "",
        "task_definition": "", "task_definition_arn": "", "image": "",
        "digest": "", "digest_source": "", "commit": "",
        "tag": cluster.tag, "tag_digest": "", "tag_commit": "", "tag_moved": False,
        "head": head["commit"], "head_dirty": project.name in head["dirty"], "image_commit": "",
        "drift": [], "head_changes": [], "state": "", "action": "", "orphan": False,
        "stack_task_definition": "", "service_drift": "",
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

    stack = None
    try:
        stack = _read_service(world, project, cluster, row)
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
        from ..plan.release import released_in

        if row["digest"] == row["tag_digest"]:
            row["image_commit"] = row["tag_commit"]
        # The release that runs, as the planner reads it: the history's newest release of this
        # image (a config-only release retagged an earlier commit's image: its label names that one).
        row["commit"] = released_in(history.records if history is not None else [], row["digest"]) \
            or row["image_commit"]
        if not row["image_commit"] and history is not None:
            row["image_commit"] = next((r.commit for r in history.records if r.digest == row["digest"] and r.commit), "")
    row["tag_moved"] = bool(row["digest"] and row["tag_digest"] and row["digest"] != row["tag_digest"])
    if judge and stack is not None and row["task_definition_arn"]:
        try:
            read_stack_task_definition(world, stack, row)
        except CredentialsError:
            raise
        except MvpError as exc:
            errors.append(f"stack's task definition: {exc}")
    if judge and stack is not None and row["commit"] and row["service"]:
        try:
            row["drift"] = read_drift(world, project, cluster, row["commit"], stack)
        except CredentialsError:
            raise
        except MvpError as exc:
            errors.append(f"stack's release (drift): {exc}")
    return row


def read_drift(world: Any, project: Any, cluster: Any, commit: str, stack: Any) -> list[str]:
    """How the app's stack differs from the rendering of the release at `commit` (as `fleet.up`
    renders it to repair it): empty when it equals it."""
    from ..plan.planner import get_release
    from ..plan.release import drift, release_in_tree, render

    release = get_release(world, project, commit) or release_in_tree(world.settings, project, commit, world.memo)
    return drift(world, render(world, release, cluster, check_secrets=False), stack)


def read_stack_task_definition(world: Any, stack: Any, row: dict) -> None:
    """Fills the row's `stack_task_definition` (family:revision of what the stack registered for its
    service) and, where the service runs another one, `service_drift` saying so."""
    from ..aws.discovery import family_revision, registered_task_definition

    registered = registered_task_definition(world, stack, row["task_definition_arn"])
    if not registered:
        return
    row["stack_task_definition"] = family_revision(registered)
    if row["stack_task_definition"] != row["task_definition"]:
        row["service_drift"] = f"service runs {row['task_definition']}, the stack {row['stack_task_definition']}"


def read_orphans(world: Any, name: str | None) -> list[dict]:
    """A row per stack the tool made for an app or cluster invoke.yaml no longer maps (only app
    `name`'s, given one)."""
    from ..plan.planner import find_orphans

    rows = []
    for orphan in find_orphans(world):
        if name and orphan.project != name:
            continue
        stack = orphan.stack
        rows.append({
            "app": orphan.project or "-", "cluster": orphan.cluster, "stack": stack.name,
            "stack_status": stack.status, "url": stack.outputs.get("Url", ""), "ecs_cluster": "", "service": "",
            "task_definition": "", "task_definition_arn": "", "image": "", "digest": "", "digest_source": "",
            "commit": "", "tag": "", "tag_digest": "", "tag_commit": "", "tag_moved": False, "head": "",
            "head_dirty": False, "image_commit": "", "drift": [], "head_changes": [], "state": ORPHAN,
            "stack_task_definition": "", "service_drift": "",
            "action": orphan.remove, "orphan": True, "running": 0, "desired": 0, "rollout": "-",
            "deployed_at": "", "deployed_by": "", "last_action": "", "unshipped": orphan.line(), "errors": [],
        })
    return rows


def ship_command(name: str, cluster: str, promote_from: str, tag: str = "") -> str:
    """The command that ships HEAD's release of app `name` to `cluster`: `ci.release` where the
    cluster takes releases from HEAD, else a release to its source and a promotion."""
    if promote_from:
        return (f"inv ci.release --cluster {promote_from} --only {name} && "
                f"inv app.promote {name} --tag {tag or cluster}")
    return f"inv ci.release --cluster {cluster} --only {name}"


def decide_state(row: dict, promote_from: str = "") -> tuple[str, str]:
    """(state, action) of one row, from its plain facts: what a person must do, first things first,
    and the command that does it ("" where there is nothing to do). `promote_from`: the cluster
    this one takes its releases from ("" for HEAD's, by ci.release). A service that runs another
    task definition than its stack is `drift`, whose command ships the stack's release again."""
    from ..plan.steps import release_again_command

    name, cluster = row["app"], row["cluster"]
    ship = ship_command(name, cluster, promote_from, row.get("tag", ""))
    status = row.get("stack_status", "NOT_DEPLOYED")
    if row.get("orphan"):
        return ORPHAN, row.get("action") or f"inv app.destroy {name} --cluster {cluster}"
    if status == "NOT_DEPLOYED":
        return NOT_DEPLOYED, ship
    if row.get("rollout") == "FAILED" or status in FAILED_STACKS:
        return FAILED, (f"see inv app.history {name} --cluster {cluster}; fix, then {ship}, "
                        f"or inv app.rollback {name} --cluster {cluster}")
    if status.endswith("_IN_PROGRESS") or row.get("rollout") == "IN_PROGRESS":
        return ROLLING, f"inv app.wait {name} --cluster {cluster}"
    if row.get("tag_moved"):
        return TAG_MOVED, f"inv app.update {name} --cluster {cluster}"
    if row.get("service_drift"):
        # The release the stack holds is not out: shipping it again updates the service, not the stack.
        return DRIFT, release_again_command(name, cluster, promote_from, row.get("tag", ""))
    if row.get("drift"):
        return DRIFT, "inv fleet.up (brings the stack back to the release it runs)"
    if row.get("head_changes"):
        return BEHIND, ship
    if not row.get("head") or not row.get("commit") or not row.get("service"):
        return UNKNOWN, ""  # what runs, or HEAD, cannot be told: nothing is said to be fine
    return UP_TO_DATE, ""


def add_unshipped(settings: Any, rows: list[dict], memo: Any) -> None:
    """Each row's changes at HEAD for its app in its cluster that the release it runs does not
    have (`plan.changes`' rule: another app's files or another cluster's keys never count), and
    the line that says so with the command that ships them. Git only, asked once each."""
    from ..plan.changes import get_changed_reasons

    for row in rows:
        deployed = row["commit"] or row["tag_commit"]
        if not row["head"] or not deployed or deployed == row["head"]:
            continue
        cluster = settings.clusters[row["cluster"]]
        try:
            reasons = get_changed_reasons(settings, settings.projects[row["app"]], cluster, deployed, row["head"], memo)
        except MvpError as exc:
            row["errors"].append(f"git: {exc}")
            continue
        row["head_changes"] = reasons
        if reasons:
            row["unshipped"] = (f"HEAD {row['head'][:12]} has changes for {row['app']} in {row['cluster']} that its "
                                f"release {deployed[:12]} does not have ({'; '.join(reasons)}); to ship them: "
                                + ship_command(row["app"], row["cluster"], cluster.promote_from, cluster.tag))


def _fields(record: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(vars(record))


def _read_service(world: Any, project: Any, cluster: Any, row: dict) -> Any:
    """Fills the row's stack and service facts; the stack (None where there is none)."""
    from ..aws.discovery import service_names

    stack = world.stacks().get_stack(row["stack"])
    if stack is None:
        return None
    row["stack_status"] = stack.status
    row["url"] = stack.outputs.get("Url", "")
    ecs_cluster, service = service_names(world, stack, cluster)
    row.update(ecs_cluster=ecs_cluster)
    services = world.services()
    state = services.get_service(ecs_cluster, service)
    if state is None:
        return stack
    row.update(service=state.name or service, running=state.running, desired=state.desired, rollout=state.rollout)
    primary = state.primary
    arn = (primary.task_definition if primary else "") or state.task_definition
    if not arn:
        return stack
    row.update(task_definition_arn=arn, task_definition=arn.rsplit("/", 1)[-1])
    container, image = _container(world, arn, world.registry.ref(project.repository, cluster.tag))
    row["image"] = image
    # The most common digest mid-rollout, when tasks of one task definition differ.
    digests = services.get_task_digests(ecs_cluster, row["service"], arn, container)
    if digests:
        row.update(digest=digests.most_common(1)[0][0], digest_source="ecs")
    return stack


def _container(world: Any, arn: str, ref: str) -> tuple[str, str]:
    """(name, image) of the task definition's container that runs the app's image: the one
    naming the app's repository, else the first essential one. Read once per run per ARN."""
    from ..aws.discovery import get_task_definition

    containers = get_task_definition(world, arn).get("containerDefinitions", [])
    repository = ref.rsplit(":", 1)[0]
    chosen = next((c for c in containers if c.get("image", "").rsplit(":", 1)[0].split("@")[0] == repository), None) \
        or next((c for c in containers if c.get("essential", True)), None) or (containers[0] if containers else {})
    return chosen.get("name", ""), chosen.get("image", "")
