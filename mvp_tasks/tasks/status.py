"""Read-only views of the apps: the app x cluster status (table, JSON, HTML page) and container logs.

"What runs" is read from ECS, not from where a registry tag points: the service's current
(PRIMARY) deployment names a task definition (family:revision, and the image its container names);
the digest its running tasks resolved comes from DescribeTasks, and where ECS lists no task (the
emulator never does) from the last successful rollout the deploy history recorded. Where the
cluster tag points now is read from the registry; when the two differ the row says "tag moved,
not rolled out". HEAD's commit (what `app.push` would tag) stands next to what runs: `live` is yes
when that very commit runs.
"""

from __future__ import annotations

import os
import re
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from ..errors import MvpError, UsageError

SINCE = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

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


def collect(run: Any, name: str | None, *, records: int = 0) -> list[dict]:
    """One row per app and cluster it is mapped to (see the module's docstring), read side by
    side (`mvp.parallel` at a time). `records` > 0: each row also carries its app's newest
    `records` history records in that cluster (`row["records"]`, for the HTML page)."""
    settings = run.settings
    projects = [settings.project(name)] if name else list(settings.projects.values())
    world = run
    run.aws.session  # a profile that does not exist is one line, not a table of the same error
    head = read_head(settings, world.memo)
    targets = [(p, settings.clusters[c]) for p in projects for c in p.clusters]
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(targets))),
                            thread_name_prefix="status") as pool:
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
    except MvpError as exc:
        errors.append(f"registry: {exc}")

    history = None
    try:
        history = _Read(world.history(cluster).get_records(project.name, limit=max(HISTORY_READ, records)))
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
    state = world.services().get_service(ecs_cluster, service)
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
    digest = _task_digest(world, ecs_cluster, row["service"], arn, container)
    if digest:
        row.update(digest=digest, digest_source="ecs")


def _container(world: Any, arn: str, ref: str) -> tuple[str, str]:
    """(name, image) of the task definition's container that runs the app's image: the one
    naming the app's repository, else the first essential one. Read once per run per ARN."""
    from ..aws.clients import aws_errors

    def read():
        with aws_errors():
            return world.aws.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]

    definition = world.memo.get(("task definition", arn), read)
    containers = definition.get("containerDefinitions", [])
    repository = ref.rsplit(":", 1)[0]
    chosen = next((c for c in containers if c.get("image", "").rsplit(":", 1)[0].split("@")[0] == repository), None) \
        or next((c for c in containers if c.get("essential", True)), None) or (containers[0] if containers else {})
    return chosen.get("name", ""), chosen.get("image", "")


def _task_digest(world: Any, cluster: str, service: str, arn: str, container: str) -> str:
    """The digest the service's running tasks of task definition `arn` resolved for `container`
    (DescribeTasks containers[].imageDigest; the most common one mid-rollout), "" when ECS lists
    no task or reports no digest."""
    from ..aws.clients import aws_errors

    ecs = world.aws.ecs
    with aws_errors():
        arns = [a for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, serviceName=service, desiredStatus="RUNNING") for a in page.get("taskArns", [])]
        tasks = []
        for start in range(0, len(arns), 100):  # DescribeTasks takes at most 100 tasks per call
            tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[start:start + 100]).get("tasks", [])
    digests = Counter(
        c["imageDigest"] for t in tasks
        if t.get("lastStatus") == "RUNNING" and t.get("taskDefinitionArn", arn) == arn
        for c in t.get("containers", [])
        if c.get("imageDigest") and (not container or c.get("name") == container))
    return digests.most_common(1)[0][0] if digests else ""


# --- the table ------------------------------------------------------------------------------------


WIDE = ["app", "cluster", "task def", "runs", "digest", "from", "tag", "live", "tasks", "rollout",
        "deployed (UTC)", "by", "stack"]
SHORT = ["app", "cluster", "runs", "tag", "live", "tasks", "rollout"]


def terminal_width(reporter: Any) -> int | None:
    """The width the table must fit: COLUMNS when set, else the terminal's; None when the output
    is no terminal (a pipe, a CI log: no width to fit)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return reporter.console.width if reporter.interactive else None


def _live(row: dict) -> str:
    return "-" if row["live"] is None else ("yes" if row["live"] else "no")


def _tasks(row: dict) -> str:
    return f"{row['running']}/{row['desired']}" if row["service"] else "-"


def _tag(row: dict, n: int) -> str:
    return row["tag_commit"][:n] or row["tag_digest"][7:7 + n] or "-"


def _wide(row: dict) -> list[str]:
    return [row["app"], row["cluster"], row["task_definition"] or "-", row["commit"][:12] or "-",
            row["digest"][7:19] or "-", row["digest_source"] or "-", _tag(row, 12), _live(row), _tasks(row),
            row["rollout"], row["deployed_at"][:16].replace("T", " ") or "-", _short_arn(row["deployed_by"]) or "-",
            row["stack_status"]]


def _short(row: dict) -> list[str]:
    return [row["app"], row["cluster"], row["commit"][:7] or "-", _tag(row, 7), _live(row), _tasks(row),
            row["rollout"]]


def _table_width(columns: list[str], table: list[list[str]], boxed: bool) -> int:
    widths = [max(len(str(x)) for x in [col] + [r[i] for r in table]) for i, col in enumerate(columns)]
    # rich's boxed table: a border before each column and after the last, one space each side.
    return sum(widths) + (3 * len(widths) + 1 if boxed else 2 * (len(widths) - 1))


def notes(row: dict) -> list[str]:
    """What a person must know about a row beyond its cells."""
    out = []
    if row["tag_moved"]:
        out.append(f"{TAG_MOVED}: tag {row['tag']} is {_tag(row, 12)}, the service runs "
                   f"{row['commit'][:12] or row['digest'][:19]} ({row['digest_source']})")
    if row.get("unshipped"):
        out.append(row["unshipped"])
    for error in row["errors"]:
        # A missing history where nothing is deployed is no news (a cluster not up yet).
        if error.startswith("history: ") and row["stack_status"] == "NOT_DEPLOYED":
            continue
        out.append(f"could not read the {error}")
    return out


def show(run: Any, rows: list[dict]) -> None:
    """The table: every fact on a wide output; shorter columns where that does not fit the
    terminal; one block per row where even those do not."""
    reporter = run.reporter
    width = terminal_width(reporter)
    head = rows[0]["head"] if rows else read_head(run.settings)["commit"]
    _line(reporter, f"HEAD {head[:12] or '-'}: the commit app.push would tag; live = it runs", width)
    wide = [_wide(r) for r in rows]
    short = [_short(r) for r in rows]
    if width is None or _table_width(WIDE, wide, reporter.interactive) <= width:
        reporter.table(WIDE, wide)
    elif _table_width(SHORT, short, reporter.interactive) <= width:
        reporter.table(SHORT, short)
    else:
        for row in rows:
            _blocks(reporter, row, width)
    for row in rows:
        for note in notes(row):
            _line(reporter, f"{row['app']}@{row['cluster']}: {note}", width)


def _blocks(reporter: Any, row: dict, width: int) -> None:
    _line(reporter, f"{row['app']}@{row['cluster']}  live {_live(row)}  tasks {_tasks(row)}  {row['rollout']}", width)
    _line(reporter, f"  runs {row['commit'][:12] or '-'}  {row['task_definition'] or '-'}  "
                    f"{row['digest'][:19] or '-'} ({row['digest_source'] or '-'})", width)
    _line(reporter, f"  tag {row['tag']} {_tag(row, 12)}  {row['tag_digest'][:19] or '-'}", width)


def _line(reporter: Any, text: str, width: int | None) -> None:
    """One line through the reporter (which indents it by two), wrapped to `width`."""
    if width is None:
        reporter.info(text)
        return
    for part in textwrap.wrap(text, width=max(width - 2, 20), subsequent_indent="    ",
                              break_long_words=True, break_on_hyphens=False) or [""]:
        reporter.info(part)


def _short_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn


# --- the task -------------------------------------------------------------------------------------


def status(run: Any, name: str | None, *, json: bool, target: Any = None) -> None:
    """`app.status`: the table (or `--json`), and with `--html FILE` (`target`, a path that
    `status_page.check_path` accepted) the status page too."""
    from .. import status_page

    rows = collect(run, name, records=PAGE_RECORDS if target else 0)
    if target is not None:
        generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        page = status_page.render(rows, clusters=list(run.settings.clusters), generated_at=generated,
                                  title=f"mvp-studio status: {name}" if name else "mvp-studio status")
        status_page.write(target, page)
    if json:
        run.reporter.emit_json([{k: v for k, v in r.items() if k != "records"} for r in rows])
        return
    show(run, rows)
    if target is not None:
        run.reporter.info(f"status page written to {target}")


def parse_since(since: str) -> int:
    match = SINCE.match(since or "")
    if not match:
        raise UsageError(f"--since {since!r}: use a number and a unit, like 30s, 10m, 2h or 1d")
    return int(match.group(1)) * UNITS[match.group(2)]


def print_logs(run: Any, name: str, cluster_name: str | None, since: str, follow: bool) -> None:
    from ..aws.clients import aws_errors
    from ..aws.stacks import Stacks

    seconds = parse_since(since)
    project = run.settings.project(name)
    cluster = run.settings.cluster(cluster_name)
    stack = Stacks(run.aws.cloudformation).get_stack(project.stack_name(cluster.name))
    if stack is None:
        raise UsageError(f"{name} is not deployed to {cluster.name}",
                         f"deploy it first: inv app.deploy {name} --cluster {cluster.name}")
    group = stack.outputs.get("LogGroupName")
    if not group:
        raise UsageError(f"stack {stack.name} has no LogGroupName output; add one to its template")
    logs = run.aws.logs
    start_ms = int((time.time() - seconds) * 1000)
    seen: set[str] = set()
    try:
        while True:
            kwargs = {"logGroupName": group, "startTime": start_ms}
            newest = start_ms
            with aws_errors():
                for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
                    for event in page.get("events", []):
                        if event["eventId"] in seen:
                            continue
                        seen.add(event["eventId"])
                        when = datetime.fromtimestamp(event["timestamp"] / 1000, timezone.utc).strftime("%H:%M:%S")
                        stream = event.get("logStreamName", "").rsplit("/", 1)[-1][:8]
                        run.reporter.stream.write(f"{when} {stream} {event['message'].rstrip()}\n")
                        newest = max(newest, event["timestamp"])
            run.reporter.stream.flush()
            if not follow:
                return
            # Events can arrive out of order: look back a little, dedupe by id.
            start_ms = max(start_ms, newest - 5000)
            time.sleep(max(run.settings.poll_interval, 1))
    except KeyboardInterrupt:
        return
