"""ECS services: force a deployment and follow its rollout until it settles.

A rollout is judged by its own deployment, not by `services_stable`: a deployment the circuit
breaker rolled back ends with the *old* task definition running stably, which the waiter would
call a success.
"""

from __future__ import annotations

import time
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


class Services:
    def __init__(self, client, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.sleep = sleep
        self.clock = clock

    def get_service(self, cluster: str, service: str) -> ServiceState | None:
        with aws_errors():
            data = self.client.describe_services(cluster=cluster, services=[service])
        for svc in data.get("services", []):
            if svc.get("status") in ("ACTIVE", "DRAINING"):
                return ServiceState(
                    name=svc.get("serviceName", service),
                    cluster=cluster,
                    status=svc.get("status", ""),
                    desired=int(svc.get("desiredCount", 0)),
                    running=int(svc.get("runningCount", 0)),
                    pending=int(svc.get("pendingCount", 0)),
                    task_definition=svc.get("taskDefinition", ""),
                    deployments=tuple(Deployment.from_api(d) for d in svc.get("deployments", [])),
                    events=tuple(e.get("message", "") for e in svc.get("events", [])[:5]),
                )
        return None

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
        last = ""
        while True:
            state = self.get_service(cluster, service)
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
