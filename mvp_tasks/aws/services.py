"""ECS services: force a deployment and follow its rollout until it settles; what their tasks run.

A rollout is judged by its own deployment, not by `services_stable`: a deployment the circuit
breaker rolled back ends with the *old* task definition running stably, which the waiter would
call a success.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import AwsError, WaitTimeout
from .clients import aws_errors


class NotRolledBack(AwsError):
    """A rollback that did not happen: the deployment is not the service's to roll back any more."""


class RolloutFailed(AwsError):
    """The deployment failed or the circuit breaker rolled it back.

    Carries what a rollback needs: the deployment, whether ECS already left it (rolled back or
    replaced), and the task definition the service ran before it."""

    def __init__(self, message: str, hint: str = "", *, deployment_id: str = "", left: bool = False,
                 previous_task_definition: str = "", task_definition: str = ""):
        super().__init__(message, hint)
        self.deployment_id = deployment_id
        self.left = left
        self.previous_task_definition = previous_task_definition
        self.task_definition = task_definition


@dataclass
class RolloutSeen:
    """What the watcher has learnt of a rollout so far, kept up to date while it waits: what a
    rollback needs when the wait ends without a verdict (Ctrl-C, SIGTERM, the timeout)."""

    deployment_id: str = ""
    previous_task_definition: str = ""
    task_definition: str = ""


def _epoch(value: Any) -> float:
    """A timestamp as boto3 gives it (datetime) or as a number, in epoch seconds (0: unknown)."""
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _older_or_other(running: str, registered: str) -> bool:
    """Whether the deployment runs another task definition than the run registered: another family,
    or an older revision of it. A newer revision is not counted: a stack's output can lag behind the
    revision its update registered (the emulator does not re-read it), and a later one is no older
    image going back out."""
    run_family, _, run_revision = _short(running).rpartition(":")
    reg_family, _, reg_revision = _short(registered).rpartition(":")
    if run_family != reg_family or not run_revision.isdigit() or not reg_revision.isdigit():
        return running != registered
    return int(run_revision) < int(reg_revision)


def _short(arn: str) -> str:
    """`family:revision` of a task definition ARN, the id of a task ARN."""
    return arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Deployment:
    id: str
    status: str  # PRIMARY | ACTIVE | INACTIVE
    rollout_state: str  # IN_PROGRESS | COMPLETED | FAILED ("" where ECS does not say)
    reason: str
    desired: int
    running: int
    pending: int
    failed_tasks: int
    task_definition: str
    created_at: float = 0.0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "Deployment":
        return cls(
            id=data.get("id", ""),
            status=data.get("status", ""),
            rollout_state=data.get("rolloutState", ""),
            reason=data.get("rolloutStateReason", ""),
            desired=int(data.get("desiredCount", 0)),
            running=int(data.get("runningCount", 0)),
            pending=int(data.get("pendingCount", 0)),
            failed_tasks=int(data.get("failedTasks", 0)),
            task_definition=data.get("taskDefinition", ""),
            created_at=_epoch(data.get("createdAt")),
        )


@dataclass(frozen=True)
class ServiceState:
    name: str
    cluster: str
    status: str
    desired: int
    running: int
    pending: int
    task_definition: str
    deployments: tuple[Deployment, ...] = ()
    events: tuple[str, ...] = field(default=())
    # The newest events with their times (epoch seconds), to tell this rollout's from older ones.
    timed_events: tuple[tuple[float, str], ...] = field(default=())
    target_groups: tuple[str, ...] = field(default=())

    @property
    def primary(self) -> Deployment | None:
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    @property
    def rollout(self) -> str:
        """One word for status tables: the primary deployment's rollout state."""
        primary = self.primary
        if primary is None:
            return "-"
        if primary.rollout_state:
            return primary.rollout_state
        return "COMPLETED" if len(self.deployments) == 1 and primary.running == primary.desired else "IN_PROGRESS"

    def progress(self) -> str:
        primary = self.primary
        text = f"running {self.running}/{self.desired}, pending {self.pending}"
        if primary:
            text += f"; deployment {primary.id} {primary.rollout_state or primary.status}"
            if primary.failed_tasks:
                text += f", {primary.failed_tasks} failed task(s)"
        if len(self.deployments) > 1:
            text += f"; {len(self.deployments) - 1} older deployment(s) draining"
        return text


def _state(svc: Mapping[str, Any], cluster: str) -> ServiceState:
    return ServiceState(
        name=svc.get("serviceName", ""),
        cluster=cluster,
        status=svc.get("status", ""),
        desired=int(svc.get("desiredCount", 0)),
        running=int(svc.get("runningCount", 0)),
        pending=int(svc.get("pendingCount", 0)),
        task_definition=svc.get("taskDefinition", ""),
        deployments=tuple(Deployment.from_api(d) for d in svc.get("deployments", [])),
        events=tuple(e.get("message", "") for e in svc.get("events", [])[:5]),
        timed_events=tuple((_epoch(e.get("createdAt")), e.get("message", "")) for e in svc.get("events", [])[:20]),
        target_groups=tuple(lb["targetGroupArn"] for lb in svc.get("loadBalancers", []) if lb.get("targetGroupArn")),
    )


def _live(data: Mapping[str, Any], cluster: str) -> dict[str, ServiceState]:
    """Services of a DescribeServices answer that still exist, by name and by ARN."""
    out = {}
    for svc in data.get("services", []):
        if svc.get("status") in ("ACTIVE", "DRAINING"):
            state = _state(svc, cluster)
            out[state.name] = state
            if svc.get("serviceArn"):
                out[svc["serviceArn"]] = state
    return out


BATCH = 10  # DescribeServices reads at most 10 services per call
FIRST_POLL = 0.5  # seconds before the first look again at a rollout; doubled up to the poll interval


class _Read:
    """One DescribeServices round for a cluster, under way: the services it covers, and the event
    the waiters it covers sleep on until its answer is stored."""

    def __init__(self, names: list[str]) -> None:
        import threading

        self.names = set(names)
        self.done = threading.Event()
        self.ok = False


class ServiceReader:
    """Shared reads of ECS services for every rollout a run follows at once.

    Each waiter asks for its own service; whoever finds its last read older than `max_age` reads
    *every* service being followed in that cluster that is missing or past half its age (it would
    be due before the next poll anyway), 10 per DescribeServices call, for all of them. Twenty
    rollouts in one cluster cost two calls per poll, not twenty; a rollout joining in the middle of
    a poll reads its own service, not everyone's again.

    No lock is held across a call to AWS: one read is in flight per cluster, and a waiter whose
    service it covers waits for its answer instead of reading again. Should the read fail, its
    waiters read again themselves (the one that made it raises its error)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        import threading

        self.clock = clock
        self._lock = threading.Lock()
        self._watched: dict[str, set[str]] = {}
        self._states: dict[tuple[str, str], tuple[float, ServiceState | None]] = {}
        self._reading: dict[str, _Read] = {}

    def get(self, client, cluster: str, service: str, max_age: float) -> ServiceState | None:
        while True:
            with self._lock:
                self._watched.setdefault(cluster, set()).add(service)
                seen = self._states.get((cluster, service))
                now = self.clock()
                if seen is not None and now - seen[0] < max_age:
                    return seen[1]
                current = self._reading.get(cluster)
                if current is None:
                    names = sorted(name for name in self._watched[cluster]
                                   if name == service or self._due(cluster, name, now, max_age / 2))
                    current = self._reading[cluster] = _Read(names)
                    break
            # Another thread is reading this cluster: take its answer if it covers us, else
            # wait for it to end and look again.
            current.done.wait()
            if current.ok and service in current.names:
                with self._lock:
                    seen = self._states.get((cluster, service))
                if seen is not None:
                    return seen[1]
        return self._read(client, cluster, service, current, now)

    def _due(self, cluster: str, service: str, now: float, age: float) -> bool:
        seen = self._states.get((cluster, service))
        return seen is None or now - seen[0] >= age

    def _read(self, client, cluster: str, service: str, read: _Read, now: float) -> ServiceState | None:
        names = sorted(read.names)
        found: dict[str, ServiceState | None] = {}
        try:
            for start in range(0, len(names), BATCH):
                chunk = names[start:start + BATCH]
                with aws_errors():
                    data = client.describe_services(cluster=cluster, services=chunk)
                live = _live(data, cluster)
                for name in chunk:
                    found[name] = live.get(name)
            read.ok = True
        finally:
            with self._lock:
                for name, state in found.items():
                    if name in self._watched.get(cluster, ()):
                        self._states[(cluster, name)] = (now, state)
                del self._reading[cluster]
            read.done.set()
        return found[service]

    def forget(self, cluster: str, service: str) -> None:
        with self._lock:
            self._watched.get(cluster, set()).discard(service)
            self._states.pop((cluster, service), None)


class Services:
    def __init__(self, client, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, reader: ServiceReader | None = None):
        self.client = client
        self.sleep = sleep
        self.clock = clock
        self.reader = reader

    def get_service(self, cluster: str, service: str, max_age: float = 0.0) -> ServiceState | None:
        if self.reader is not None and max_age > 0:
            return self.reader.get(self.client, cluster, service, max_age)
        with aws_errors():
            data = self.client.describe_services(cluster=cluster, services=[service])
        live = _live(data, cluster)
        return live.get(service) or next(iter(live.values()), None)

    def get_task_definition(self, arn: str) -> dict:
        """The task definition `arn` (family:revision or ARN) as DescribeTaskDefinition gives it."""
        with aws_errors():
            return self.client.describe_task_definition(taskDefinition=arn)["taskDefinition"]

    def get_task_digests(self, cluster: str, service: str, arn: str, container: str = "") -> Counter:
        """How many of the service's running tasks of task definition `arn` resolved each image digest
        for `container` (any container when ""): DescribeTasks containers[].imageDigest. Empty
        when ECS lists no task (the emulator never does) or reports no digest."""
        with aws_errors():
            arns = [a for page in self.client.get_paginator("list_tasks").paginate(
                cluster=cluster, serviceName=service, desiredStatus="RUNNING") for a in page.get("taskArns", [])]
            tasks = []
            for start in range(0, len(arns), 100):  # DescribeTasks takes at most 100 tasks per call
                tasks += self.client.describe_tasks(cluster=cluster, tasks=arns[start:start + 100]).get("tasks", [])
        return Counter(
            c["imageDigest"] for t in tasks
            if t.get("lastStatus") == "RUNNING" and t.get("taskDefinitionArn", arn) == arn
            for c in t.get("containers", [])
            if c.get("imageDigest") and (not container or c.get("name") == container))

    def force_new_deployment(self, cluster: str, service: str) -> str:
        """Start a new deployment (tasks pull the image tag again). Returns its id."""
        return self._deploy(cluster, service, forceNewDeployment=True)

    def update_task_definition(self, cluster: str, service: str, task_definition: str) -> str:
        """Start a deployment of `task_definition` (an ARN or family:revision): UpdateService, the way
        a service that a rollback left on an older task definition than its stack's gets it back.
        Returns the new deployment's id."""
        return self._deploy(cluster, service, taskDefinition=task_definition)

    def _deploy(self, cluster: str, service: str, **change: Any) -> str:
        """UpdateService with `change`; the id of the primary deployment it answers with ("" if none)."""
        with aws_errors():
            data = self.client.update_service(cluster=cluster, service=service, **change)
        for deployment in data.get("service", {}).get("deployments", []):
            if deployment.get("status") == "PRIMARY":
                return deployment.get("id", "")
        return ""

    def get_stopped_tasks(self, cluster: str, service: str, deployment_id: str) -> list[dict]:
        """The stopped tasks of deployment `deployment_id` (ECS starts a service's tasks "by" its
        deployment), newest first, as DescribeTasks gives them."""
        with aws_errors():
            arns = [a for page in self.client.get_paginator("list_tasks").paginate(
                cluster=cluster, serviceName=service, desiredStatus="STOPPED", startedBy=deployment_id)
                for a in page.get("taskArns", [])]
            tasks = []
            for start in range(0, len(arns), 100):
                tasks += self.client.describe_tasks(cluster=cluster, tasks=arns[start:start + 100]).get("tasks", [])
        tasks = [t for t in tasks if t.get("startedBy", deployment_id) == deployment_id]
        return sorted(tasks, key=lambda t: _epoch(t.get("stoppedAt")), reverse=True)

    def explain_failure(self, cluster: str, state: ServiceState, deployment_id: str, *, elbv2=None,
                        logs=None) -> list[str]:
        """Why deployment `deployment_id` fails, in AWS's words: the last two stopped tasks' reasons
        and exit codes, unhealthy targets of the service's target groups, the last log lines of a
        stopped task. Whatever cannot be read is left out: the failure is known already."""
        reasons: list[str] = []
        failed = []
        try:
            failed = [t for t in self.get_stopped_tasks(cluster, state.name, deployment_id) if _is_failure(t)]
        except Exception:  # noqa: BLE001 - an explanation must never hide the failure it explains
            pass
        for task in failed[:2]:
            reasons.append(_task_reason(task))
        for arn in state.target_groups if elbv2 is not None else ():
            try:
                with aws_errors():
                    health = elbv2.describe_target_health(TargetGroupArn=arn).get("TargetHealthDescriptions", [])
            except Exception:  # noqa: BLE001
                continue
            for item in health:
                th = item.get("TargetHealth", {})
                if th.get("State") not in ("healthy", "initial", "unused", "draining"):
                    detail = ": ".join(x for x in (th.get("Reason", ""), th.get("Description", "")) if x)
                    reasons.append(f"target {item.get('Target', {}).get('Id', '?')} in {_short(arn)} is "
                                   f"{th.get('State', '?')}" + (f" ({detail})" if detail else ""))
                    break
        if logs is not None and failed:
            lines = self._last_log_lines(failed[0], logs)
            if lines:
                reasons.append("last log lines: " + " | ".join(lines))
        return reasons

    def _last_log_lines(self, task: dict, logs, count: int = 3) -> list[str]:
        from .logs import Logs

        try:
            definition = self.get_task_definition(task.get("taskDefinitionArn", ""))
            task_id = _short(task.get("taskArn", ""))
            for container in definition.get("containerDefinitions", []):
                config = container.get("logConfiguration") or {}
                options = config.get("options") or {}
                group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
                if config.get("logDriver") != "awslogs" or not group or not prefix:
                    continue
                stream = f"{prefix}/{container.get('name', '')}/{task_id}"
                lines = [e.get("message", "").rstrip() for e in Logs(logs).get_events(group, stream, 0)]
                if lines:
                    return lines[-count:]
        except Exception:  # noqa: BLE001 - no log group, no stream, no permission: say nothing
            return []
        return []

    def roll_back(self, cluster: str, service: str, previous_task_definition: str, task_definition: str,
                  deployment_id: str = "") -> str:
        """Return the service to its previous deployment: StopServiceDeployment(ROLLBACK) where ECS
        offers it, else the previous task definition. Says what was done ("" when nothing could be).

        `deployment_id`: the deployment to roll back, read again first: only while it is still the
        service's primary (one that completed, or that a newer deployment replaced, is someone
        else's to judge now) does anything happen; `NotRolledBack` says why not. ECS rolls out one
        deployment at a time: the one in progress is then this one."""
        if deployment_id:
            state = self.get_service(cluster, service)
            ours = next((d for d in state.deployments if d.id == deployment_id), None) if state else None
            if ours is None or ours.status != "PRIMARY":
                raise NotRolledBack(f"deployment {deployment_id} is not service {service}'s any more: nothing "
                                    "rolled back")
            if ours.rollout_state == "COMPLETED":
                raise NotRolledBack(f"deployment {deployment_id} of service {service} completed: nothing rolled back")
        try:
            with aws_errors():
                found = self.client.list_service_deployments(cluster=cluster, service=service,
                                                               status=["PENDING", "IN_PROGRESS"])
            arns = [d["serviceDeploymentArn"] for d in found.get("serviceDeployments", [])]
        except AwsError as exc:
            if exc.message.startswith("access denied"):
                raise  # the policy lacks it: said, not hidden behind "nothing to roll back to"
            arns = None  # no such API here (an older ECS, an emulator): the fallback below
        if arns is not None and len(arns) == 1:
            with aws_errors():
                self.client.stop_service_deployment(serviceDeploymentArn=arns[0], stopType="ROLLBACK")
            return f"rolling back: ECS returns service {service} to its previous deployment"
        if previous_task_definition and previous_task_definition != task_definition:
            self._deploy(cluster, service, taskDefinition=previous_task_definition)
            return f"rolled back: service {service} runs {_short(previous_task_definition)} again"
        return ""

    def wait_for_rollout(self, cluster: str, service: str, *, deployment_id: str = "", timeout: float,
                         poll: float, on_progress: Callable[[ServiceState], None] | None = None,
                         resume_hint: str = "", task_definition: str = "", failed_tasks: int = 2,
                         on_quiet: Callable[[ServiceState, float], None] | None = None, quiet: float = 60.0,
                         elbv2=None, logs=None, seen: RolloutSeen | None = None) -> ServiceState:
        """Block until deployment `deployment_id` (default: the current primary) has replaced every
        older one with all desired tasks running; raise `RolloutFailed`, naming AWS's reasons, as
        soon as it fails: FAILED or no longer the primary (rolled back, replaced), not running
        `task_definition` (when given), `failed_tasks` of its tasks stopped with a failure, or an
        "unable to" service event since it started. `on_quiet` hears after each `quiet` seconds
        without change. `seen` is kept up to date with the deployment followed and what ran before it."""
        deadline = self.clock() + timeout
        watch = _Watch(cluster, service, deployment_id, task_definition, failed_tasks, elbv2, logs, seen)
        try:
            return self._wait(watch, deadline, timeout, poll, on_progress, resume_hint, on_quiet, quiet)
        finally:
            if self.reader is not None:
                self.reader.forget(cluster, service)

    def look(self, cluster: str, service: str, seen: RolloutSeen) -> None:
        """Fill `seen` from one read of the service, for a rollout stopped before the watcher learnt
        it: its deployment (the one `seen` names, else the primary while it is still rolling out)
        and what ran before it."""
        state = self.get_service(cluster, service)
        if state is None:
            return
        deployment_id = seen.deployment_id
        if not deployment_id:
            primary = state.primary
            if primary is None or primary.rollout_state != "IN_PROGRESS" or (
                    seen.task_definition and _older_or_other(primary.task_definition, seen.task_definition)):
                return
            deployment_id = primary.id
        _Watch(cluster, service, deployment_id, seen.task_definition, 0, None, None, seen).see(state)

    def _wait(self, watch, deadline, timeout, poll, on_progress, resume_hint, on_quiet, quiet):
        cluster, service = watch.cluster, watch.service
        last = ""
        started = changed = self.clock()
        interval = slept = min(poll, FIRST_POLL)
        while True:
            # A shared read at most most of a poll old: the rollouts of one cluster are read together.
            state = self.get_service(cluster, service, max_age=slept * 0.8)
            if state is None:
                raise RolloutFailed(f"service {service} is not running in cluster {cluster}")
            watch.see(state)
            text = state.progress()
            if on_progress and text != last:
                on_progress(state)
                last = text
                changed = self.clock()
            elif on_quiet and self.clock() - changed >= quiet:
                on_quiet(state, self.clock() - started)
                changed = self.clock()
            failure = watch.failure(state)
            if failure:
                raise self._failed(watch, state, failure)
            ours = watch.ours(state)
            done_state = ours.rollout_state in ("COMPLETED", "")
            if ours.status == "PRIMARY" and len(state.deployments) == 1 and done_state and ours.running >= ours.desired:
                return state
            if self.clock() >= deadline:
                raise WaitTimeout(
                    f"service {service} in cluster {cluster} has not finished deployment {watch.deployment_id} "
                    f"after {timeout:.0f} s ({text})",
                    resume_hint or "ECS keeps going on its own; check it with `inv app.status`",
                )
            slept = min(interval, max(0.0, deadline - self.clock())) or interval
            self.sleep(slept)
            # Soon after the start, then every `poll`: a rollout with nothing to replace, or whose first
            # tasks fail at once, is told in about a second, and a long one costs no more calls.
            interval = min(poll, interval * 2)

    def _failed(self, watch: "_Watch", state: ServiceState, failure: tuple[str, bool, str]) -> RolloutFailed:
        what, left, reason = failure
        ours = watch.ours(state)
        reasons = [reason] if reason else []
        for line in self.explain_failure(watch.cluster, state, watch.deployment_id, elbv2=watch.elbv2,
                                         logs=watch.logs):
            if line not in reasons:
                reasons.append(line)
        return RolloutFailed(
            f"deployment {watch.deployment_id} of service {watch.service} {what}" +
            (": " + "; ".join(reasons) if reasons else ""),
            "fix the cause named above, then deploy again; `inv app.logs` shows the app's output",
            deployment_id=watch.deployment_id, left=left, previous_task_definition=watch.previous,
            task_definition=ours.task_definition if ours else watch.task_definition)


UNABLE = "unable to"  # ECS's service events for tasks it cannot place or start: "(service x) was unable to ..."


def _is_failure(task: Mapping[str, Any]) -> bool:
    """A task stopped by a failure, not by ECS replacing or scaling it."""
    code = task.get("stopCode", "")
    reason = task.get("stoppedReason", "")
    if code in ("TaskFailedToStart", "EssentialContainerExited"):
        return True
    if "health check" in reason.lower():
        return True
    return any(c.get("exitCode") not in (None, 0) for c in task.get("containers", [])) and \
        not reason.startswith("Scaling activity")


def _task_reason(task: Mapping[str, Any]) -> str:
    text = f"task {_short(task.get('taskArn', '?'))} stopped: {task.get('stoppedReason') or task.get('stopCode') or '?'}"
    for container in task.get("containers", []):
        code, reason = container.get("exitCode"), container.get("reason", "")
        if code is not None and code != 0:
            text += f"; container {container.get('name', '?')} exit code {code}"
        if reason and reason not in text:
            text += f"; container {container.get('name', '?')}: {reason}"
    return text


class _Watch:
    """What one rollout is watched for: its deployment, and what it replaces."""

    def __init__(self, cluster, service, deployment_id, task_definition, failed_tasks, elbv2, logs, seen=None):
        self.cluster, self.service = cluster, service
        self.deployment_id = deployment_id
        self.task_definition = task_definition
        self.failed_tasks = failed_tasks
        self.elbv2, self.logs = elbv2, logs
        self.previous = ""
        self.seen = seen

    def see(self, state: ServiceState) -> None:
        if not self.deployment_id and state.primary:
            self.deployment_id = state.primary.id
        if not self.previous:
            # What ran before: the newest other deployment that completed, else any other.
            others = [d for d in state.deployments if d.id != self.deployment_id]
            done = [d for d in others if d.rollout_state in ("COMPLETED", "")]
            if done or others:
                self.previous = (done or others)[0].task_definition
        if self.seen is not None:
            ours = self.ours(state)
            self.seen.deployment_id = self.deployment_id
            self.seen.previous_task_definition = self.previous
            self.seen.task_definition = (ours.task_definition if ours else "") or self.task_definition

    def ours(self, state: ServiceState) -> Deployment | None:
        return next((d for d in state.deployments if d.id == self.deployment_id), None)

    def failure(self, state: ServiceState) -> tuple[str, bool, str] | None:
        """(what happened, whether ECS already left the deployment, AWS's reason), or None."""
        ours = self.ours(state)
        primary = state.primary
        if ours is None:
            return ("is gone: the deployment circuit breaker rolled it back, or a newer deployment replaced it",
                    True, next(iter(state.events), ""))
        if primary is not None and primary.id != ours.id:
            if ours.rollout_state == "FAILED":
                return "was rolled back by the deployment circuit breaker", True, ours.reason
            # Right after UpdateService ECS may still list the old deployment as PRIMARY (reads are
            # eventually consistent): only a newer primary has replaced ours.
            if primary.created_at > ours.created_at > 0:
                return f"was replaced by deployment {primary.id}", True, ""
        if ours.rollout_state == "FAILED":
            return "failed", False, ours.reason
        if self.task_definition and ours.task_definition and _older_or_other(ours.task_definition,
                                                                             self.task_definition):
            return (f"runs {_short(ours.task_definition)}, not {_short(self.task_definition)} that this run registered",
                    False, "")
        if self.failed_tasks and ours.failed_tasks >= self.failed_tasks:
            return f"failed: {ours.failed_tasks} of its tasks stopped", False, ""
        if ours.created_at:
            unable = next((m for t, m in state.timed_events if t >= ours.created_at and UNABLE in m), "")
            if unable:
                return "failed: ECS cannot start its tasks", False, unable
        return None
