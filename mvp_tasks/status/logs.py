"""`app.logs`: an app's container logs in a cluster, from the log group its stack has.

The log group is found as the service is, on any template (`aws.discovery.log_group`): outputs,
then the stack's log group resource, then the running task definition's `awslogs-group`. Each
event is one line: its time (UTC), the first 8 characters of its stream's last part (the task id,
with the awslogs stream prefix `PREFIX/CONTAINER/TASK`) and its message.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import UsageError

SINCE = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Events can reach a log group out of order: following, each read looks back this far (and
# drops the events it has already printed, by id).
LOOK_BACK_MS = 5000


def parse_since(since: str) -> int:
    """`--since` in seconds: a number and a unit (30s, 10m, 2h, 1d)."""
    match = SINCE.match(since or "")
    if not match:
        raise UsageError(f"--since {since!r}: use a number and a unit, like 30s, 10m, 2h or 1d")
    return int(match.group(1)) * UNITS[match.group(2)]


def format_event(event: dict) -> str:
    """One event as a line; what the container wrote is shown, never sent to the terminal as
    control sequences (an ESC or OSC 52 in a log line stays visible text)."""
    from ..report import printable

    when = datetime.fromtimestamp(event["timestamp"] / 1000, timezone.utc).strftime("%H:%M:%S")
    stream = event.get("logStreamName", "").rsplit("/", 1)[-1][:8]
    return printable(f"{when} {stream} {event['message'].rstrip()}")


def print_logs(world: Any, name: str, cluster_name: str | None, since: str, follow: bool) -> None:
    """Print the app's log lines of the last `since` in `cluster_name` (default: the default
    cluster) through `world.reporter`; `follow`: keep printing new ones until Ctrl-C."""
    from ..aws.discovery import log_group
    from ..plan.planner import get_app_stack

    seconds = parse_since(since)
    settings = world.settings
    project = settings.project(name)
    cluster = settings.cluster(cluster_name)
    stack = get_app_stack(world, project, cluster)
    group = log_group(world, stack, cluster)
    logs = world.logs()
    stream = world.reporter.stream
    start_ms = int((time.time() - seconds) * 1000)
    seen: set[str] = set()
    quiet = f"no log lines of {project.name} in {cluster.name} since {since} (log group {group})"
    try:
        while True:
            newest = start_ms
            for event in logs.filter_events(group, start_ms):
                if event["eventId"] in seen:
                    continue
                seen.add(event["eventId"])
                stream.write(format_event(event) + "\n")
                newest = max(newest, event["timestamp"])
            stream.flush()
            if not follow:
                if not seen:
                    world.reporter.info(quiet)
                return
            if quiet and not seen:
                world.reporter.info(f"{quiet}; waiting for new ones (Ctrl-C to stop)")
            quiet = ""  # said once
            start_ms = max(start_ms, newest - LOOK_BACK_MS)
            time.sleep(max(settings.poll_interval, 1))
    except KeyboardInterrupt:
        return
