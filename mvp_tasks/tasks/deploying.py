"""Deploying an app's stack and rolling its ECS service, with the deploy lock and the history:
the steps `app.deploy`, `app.update`, `app.promote`, `app.rollback` and `ci.release` share."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from ..aws.history import History
from ..aws.services import Services, ServiceState
from ..aws.stacks import UPDATABLE, StackInfo, Stacks
from ..errors import BuildError, ConfigError, MvpError, StackFailed, UsageError
from ..report import Outcome
from ..settings import ClusterSettings, ProjectSettings
from ..templates import expand_all, fill_parameters, load_template
from .boundary import Run
from .converge import ensure_stack

SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass
class AppTarget:
    """One app in one cluster, with everything needed to change it."""

    run: Run
    project: ProjectSettings
    cluster: ClusterSettings
    cluster_stack: StackInfo
    stacks: Stacks
    services: Services
    history: History
    registry: Any
    _token: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return f"{self.project.name}@{self.cluster.name}"

    @property
    def stack_name(self) -> str:
        return self.project.stack_name(self.cluster.name)

    @property
    def locked(self) -> bool:
        return bool(self._token)

    def lock(self) -> None:
        """Take the deploy lock (once; never in check mode)."""
        if self._token or self.run.reporter.check:
            return
        owner = f"{caller(self.run)} on {socket.gethostname()} (pid {os.getpid()})"
        # Every wait of one run is bounded by wait_timeout; a run has at most three (change set,
        # stack, rollout), plus build and push in ci.release.
        ttl = self.run.settings.wait_timeout * 4 + 900
        self._token = self.history.acquire(self.project.name, owner, ttl)

    def unlock(self) -> None:
        if self._token:
            token, self._token = self._token, ""
            self.history.release(self.project.name, token)

    def record(self, action: str, *, commit: str, digest: str, outcome: str = "succeeded", message: str = ""):
        if self.run.reporter.check:
            return None
        return self.history.record(self.project.name, action=action, commit=commit, digest=digest,
                                   outcome=outcome, by=caller(self.run), message=message)


@contextlib.contextmanager
def recording(target: AppTarget, action: str, *, commit: str, digest: str, restore: str | None = None):
    """Record a failure of the block in the history (when it had started changing things), and
    always release the deploy lock.

    `restore`: the digest the cluster's tag named before the block. If the block fails after moving
    the tag, the tag goes back: task definitions point at the tag, so a circuit-breaker rollback
    or a replaced task would otherwise pull the image that just failed."""
    try:
        yield
    except MvpError as exc:
        if target.locked:
            if restore:
                restore_tag(target, restore)
            target.record(action, commit=commit, digest=digest, outcome="failed", message=str(exc))
        raise
    finally:
        target.unlock()


def restore_tag(target: AppTarget, digest: str) -> None:
    repo, tag = target.project.repository, target.cluster.tag
    try:
        if target.registry.get_digest(repo, tag) != digest:
            target.registry.retag(repo, digest, tag)
            target.run.reporter.warn(f"{target.project.name}:{tag} pointed back at {digest[:19]}, the image it named before")
    except MvpError as exc:
        target.run.reporter.warn(f"could not point {target.project.name}:{tag} back at {digest[:19]}: {exc}")


def get_rolled_digest(target: AppTarget) -> str:
    """The digest of the image last rolled out successfully, as far as the history knows."""
    rolled = next((r for r in target.history.get_records(target.project.name)
                   if r.succeeded and r.digest and r.action != "destroy"), None)
    return rolled.digest if rolled else ""


def caller(run: Run) -> str:
    """The STS caller identity, asked once per run."""
    if not getattr(run, "caller", ""):
        try:
            run.caller = run.aws.get_caller()
        except MvpError:
            run.caller = os.environ.get("USER", "unknown")
    return run.caller


def get_cluster_stack(stacks: Stacks, cluster: ClusterSettings) -> StackInfo:
    stack = stacks.get_stack(cluster.stack_name)
    if stack is None:
        raise UsageError(f"cluster {cluster.name} does not exist (no stack {cluster.stack_name})",
                         f"create it first: inv cluster.up --name {cluster.name}")
    if stack.status not in UPDATABLE:
        raise StackFailed(f"cluster stack {stack.name} is {stack.status}, not ready for apps",
                          f"wait for it or fix it: inv cluster.status --name {cluster.name}")
    return stack


def open_target(run: Run, project_name: str, cluster_name: str | None, registry=None) -> AppTarget:
    settings = run.settings
    project = settings.project(project_name)
    cluster = settings.cluster(cluster_name)
    if cluster.name not in project.clusters:
        mapped = ", ".join(project.clusters) or "none"
        raise ConfigError(
            f"project {project.name} is not mapped to cluster {cluster.name} (its clusters: {mapped})",
            f"add {cluster.name} to mvp.projects.{project.name}.clusters in invoke.yaml",
        )
    stacks = Stacks(run.aws.cloudformation)
    cluster_stack = get_cluster_stack(stacks, cluster)
    table = cluster_stack.outputs.get("DeployHistoryTable")
    if not table:
        raise StackFailed(f"cluster stack {cluster.stack_name} has no DeployHistoryTable output",
                          f"update it with the current template: inv cluster.up --name {cluster.name}")
    if registry is None:
        from .imaging import get_registry

        registry = get_registry(run)
    return AppTarget(run, project, cluster, cluster_stack, stacks, Services(run.aws.ecs),
                     History(run.aws.dynamodb, table, cluster.name), registry)


def check_image(target: AppTarget, tag: str | None = None) -> tuple[str, str]:
    """The digest and commit of the image the cluster's tag names; refuses a missing image."""
    tag = tag or target.cluster.tag
    repo = target.project.repository
    digest = target.registry.get_digest(repo, tag)
    if not digest:
        raise BuildError(
            f"image {target.registry.ref(repo, tag)} does not exist",
            f"push it first: inv app.push {target.project.name} --cluster {target.cluster.name}",
        )
    return digest, target.registry.get_commit(repo, tag)


def deploy_stack(target: AppTarget, *, digest: str = "", commit: str = "", confirmed: bool = False) -> Outcome:
    """Pre-flight (cluster, image, parameters), then create or update the app's stack.

    `confirmed`: the caller already asked about this protected cluster; do not ask twice."""
    run, project, cluster = target.run, target.project, target.cluster
    key = f"mvp.projects.{project.name}"
    template = load_template(run.settings.root / "projects" / project.name / project.template,
                             run.settings.root, f"{key}.template")
    if not digest:
        digest, commit = check_image(target)
    image = target.registry.ref(project.repository, cluster.tag)
    placeholders = {"project": project.name, "cluster": cluster.name, "image": image, "tag": cluster.tag,
                    "commit": commit}
    available = {
        **target.cluster_stack.outputs,
        "ClusterName": target.cluster_stack.outputs.get("ClusterName", cluster.name),
        "ClusterStack": cluster.stack_name,
        "EnvironmentName": cluster.name,
        "ProjectName": project.name,
        "Image": image,
        "ImageUri": image,
        "ImageTag": cluster.tag,
        "Commit": commit,
    }
    configured = expand_all(project.parameters, placeholders, f"{key}.parameters")
    parameters = fill_parameters(template, available, configured, f"{key}.parameters")
    return ensure_stack(
        target.stacks, run.reporter,
        name=target.stack_name,
        template=template,
        parameters=parameters,
        tags={"mvp:cluster": cluster.name, "mvp:project": project.name},
        protect=False,
        confirm_question=(f"deploy {project.name} to protected cluster {cluster.name}"
                          if cluster.protected and not confirmed else ""),
        timeout=run.settings.wait_timeout,
        poll=run.settings.poll_interval,
        on_act=target.lock,
    )


def get_app_stack(target: AppTarget) -> StackInfo:
    stack = target.stacks.get_stack(target.stack_name)
    if stack is None:
        raise UsageError(f"{target.project.name} is not deployed to {target.cluster.name} (no stack {target.stack_name})",
                         f"deploy it first: inv app.deploy {target.project.name} --cluster {target.cluster.name}")
    return stack


def service_of(target: AppTarget, stack: StackInfo) -> tuple[str, str]:
    """(cluster, service) names: from the stack's outputs, by convention the stack's name."""
    return (stack.outputs.get("ClusterName") or target.cluster.name,
            stack.outputs.get("ServiceName") or stack.name)


def wait_for_service(target: AppTarget, stack: StackInfo, deployment_id: str = "") -> ServiceState:
    run = target.run
    cluster, service = service_of(target, stack)
    resume = f"ECS keeps going on its own; wait again with `inv app.wait {target.project.name} --cluster {target.cluster.name}`"
    with run.reporter.progress(f"waiting for service {service} to roll out"):
        return target.services.wait_for_rollout(
            cluster, service, deployment_id=deployment_id, timeout=run.settings.wait_timeout,
            poll=run.settings.poll_interval, resume_hint=resume,
            on_progress=lambda state: run.reporter.event(state.progress()),
        )


def roll_service(target: AppTarget, stack: StackInfo) -> ServiceState:
    """Force a new deployment (tasks pull the cluster tag again) and wait for it."""
    cluster, service = service_of(target, stack)
    target.lock()
    deployment = target.services.force_new_deployment(cluster, service)
    target.run.reporter.event(f"new deployment {deployment or '?'} of service {service}")
    return wait_for_service(target, stack, deployment)


def resolve_commit(target: AppTarget, prefix: str) -> str:
    """A full commit tag in the registry from a commit hash or a unique prefix of one."""
    prefix = prefix.strip().lower()
    if not SHA_PREFIX.match(prefix):
        raise UsageError(f"--commit/--to: {prefix!r} is not a commit hash (7 to 40 hex digits)")
    repo = target.project.repository
    if len(prefix) == 40 and target.registry.get_digest(repo, prefix):
        return prefix
    tags = [t for t in target.registry.list_tags(repo) if re.fullmatch(r"[0-9a-f]{40}", t) and t.startswith(prefix)]
    if not tags:
        raise BuildError(f"no image of {target.project.name} was built from commit {prefix}",
                         f"push it first (inv app.push {target.project.name}) or pick another commit")
    if len(tags) > 1:
        raise UsageError(f"commit prefix {prefix} is ambiguous: {', '.join(t[:12] for t in tags)}")
    return tags[0]


def report_rollout(target: AppTarget, state: ServiceState, what: str) -> None:
    target.run.reporter.changed(target.name, f"{what}; service {state.name} running {state.running}/{state.desired}")
