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


class RolloutFailed(AwsError):
    """The deployment failed or the circuit breaker rolled it back."""


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
        with aws_errors():
            data = self.client.update_service(cluster=cluster, service=service, forceNewDeployment=True)
        for deployment in data.get("service", {}).get("deployments", []):
            if deployment.get("status") == "PRIMARY":
                return deployment.get("id", "")
        return ""

    def wait_for_rollout(self, cluster: str, service: str, *, deployment_id: str = "", timeout: float,
                         poll: float, on_progress: Callable[[ServiceState], None] | None = None,
                         resume_hint: str = "") -> ServiceState:
        """Block until deployment `deployment_id` (default: the current primary) has replaced every
        older one with all desired tasks running; raise `RolloutFailed` if it fails or is rolled back."""
        deadline = self.clock() + timeout
        try:
            return self._wait(cluster, service, deployment_id, deadline, timeout, poll, on_progress, resume_hint)
        finally:
            if self.reader is not None:
                self.reader.forget(cluster, service)

    def _wait(self, cluster, service, deployment_id, deadline, timeout, poll, on_progress, resume_hint):
        last = ""
        while True:
            # A shared read at most most of a poll old: the rollouts of one cluster are read together.
            state = self.get_service(cluster, service, max_age=poll * 0.8)
            if state is None:
                raise RolloutFailed(f"service {service} is not running in cluster {cluster}")
            if not deployment_id and state.primary:
                deployment_id = state.primary.id
            ours = next((d for d in state.deployments if d.id == deployment_id), None)
            text = state.progress()
            if on_progress and text != last:
                on_progress(state)
                last = text
            if ours is None or ours.rollout_state == "FAILED":
                reason = (ours.reason if ours else "") or next(iter(state.events), "")
                if ours is None:
                    what = ("is gone: the deployment circuit breaker rolled it back, "
                            "or a newer deployment replaced it")
                elif state.primary is not None and state.primary.id != deployment_id:
                    what = "was rolled back by the deployment circuit breaker"
                else:
                    what = "failed"
                raise RolloutFailed(
                    f"deployment {deployment_id} of service {service} {what}" + (f": {reason}" if reason else ""),
                    "look at the tasks' logs (`inv app.logs`) and stopped-task reasons in the ECS console",
                )
            done_state = ours.rollout_state in ("COMPLETED", "")
            if ours.status == "PRIMARY" and len(state.deployments) == 1 and done_state and ours.running >= ours.desired:
                return state
            if self.clock() >= deadline:
                raise WaitTimeout(
                    f"service {service} in cluster {cluster} has not finished deployment {deployment_id} "
                    f"after {timeout:.0f} s ({text})",
                    resume_hint or "ECS keeps going on its own; check it with `inv app.status`",
                )
            self.sleep(poll)
