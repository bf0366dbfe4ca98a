"""Read-only views of the apps: the app x cluster status table and container logs."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from ..errors import MvpError, UsageError
from .boundary import Run

SINCE = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def collect(run: Run, name: str | None) -> list[dict]:
    """One row per app and cluster it is mapped to, read from CloudFormation, ECS, the registry and the history."""
    from ..aws.history import History
    from ..aws.services import Services
    from ..aws.stacks import Stacks
    from ..world import World

    settings = run.settings
    projects = [settings.project(name)] if name else list(settings.projects.values())
    stacks = Stacks(run.aws.cloudformation)
    services = Services(run.aws.ecs)
    registry = World(run.settings, run.reporter, run.aws).registry
    cluster_stacks = {c: stacks.get_stack(c) for c in settings.clusters}
    rows = []
    for project in projects:
        for cluster_name in project.clusters:
            cluster = settings.clusters[cluster_name]
            row = {"app": project.name, "cluster": cluster_name, "stack": project.stack_name(cluster_name),
                   "stack_status": "NOT_DEPLOYED", "commit": "", "digest": "", "deployed_at": "", "deployed_by": "",
                   "running": 0, "desired": 0, "rollout": "-", "url": ""}
            try:
                row["digest"] = registry.get_digest(project.repository, cluster.tag) or ""
                if row["digest"]:
                    row["commit"] = registry.get_commit(project.repository, cluster.tag)
            except MvpError as exc:
                row["registry_error"] = str(exc)
            stack = stacks.get_stack(row["stack"])
            if stack is not None:
                row["stack_status"] = stack.status
                row["url"] = stack.outputs.get("Url", "")
                state = services.get_service(stack.outputs.get("ClusterName", cluster_name),
                                             stack.outputs.get("ServiceName", stack.name))
                if state is not None:
                    row.update(running=state.running, desired=state.desired, rollout=state.rollout)
            cluster_stack = cluster_stacks.get(cluster_name)
            table = cluster_stack.outputs.get("DeployHistoryTable") if cluster_stack else None
            if table:
                current = History(run.aws.dynamodb, table, cluster_name).get_current(project.name)
                if current is not None:
                    row.update(deployed_at=current.at, deployed_by=current.by, last_action=current.action)
                    row["commit"] = row["commit"] or current.commit
            rows.append(row)
    return rows


def show(run: Run, rows: list[dict]) -> None:
    columns = ["app", "cluster", "commit", "digest", "deployed at", "by", "tasks", "rollout", "stack"]
    table = []
    for r in rows:
        table.append([
            r["app"], r["cluster"], r["commit"][:12] or "-", r["digest"][7:19] or "-",
            r["deployed_at"][:19].replace("T", " ") or "-", _short_arn(r["deployed_by"]) or "-",
            f"{r['running']}/{r['desired']}" if r["stack_status"] != "NOT_DEPLOYED" else "-",
            r["rollout"], r["stack_status"],
        ])
    run.reporter.table(columns, table)


def _short_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn


def parse_since(since: str) -> int:
    match = SINCE.match(since or "")
    if not match:
        raise UsageError(f"--since {since!r}: use a number and a unit, like 30s, 10m, 2h or 1d")
    return int(match.group(1)) * UNITS[match.group(2)]


def print_logs(run: Run, name: str, cluster_name: str | None, since: str, follow: bool) -> None:
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
