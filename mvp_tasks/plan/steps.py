"""The steps a plan is made of: frozen values that say what would change, and nothing else.

A planner reads the world and returns, per target, the steps that would change it; the executor
applies them. A step never acts and never prints: `lines()` is how the reporter shows it, and
`destructive` / `protected` decide whether the plan must be confirmed before it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from ..image.git import Revision
    from ..image.registry import RepositoryChanges
    from ..templates import Template
    from .context import World


class _Word(str, Enum):
    """A word of a plan: equal to its string, and written as it wherever it goes (JSON, DynamoDB,
    an f-string), so what is stored and shown stays the same string."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class StackAction(_Word):
    """What an `EnsureStack` does to its stack."""

    CREATE = "create"
    RECREATE = "recreate"  # delete what a failed create left (ROLLBACK_COMPLETE), then create
    UPDATE = "update"
    PROTECT = "protect"  # only turn termination protection on


class TargetKind(_Word):
    APP = "app"
    CLUSTER = "cluster"
    IMAGE = "image"


class Action(_Word):
    """What a target does, as its history record says it (`.value` is the stored string)."""

    DEPLOY = "deploy"
    RELEASE = "release"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    UPDATE = "update"
    DESTROY = "destroy"
    PUSH = "push"
    BUILD = "build"
    CLUSTER_UP = "cluster.up"
    CLUSTER_DOWN = "cluster.down"
    SECRET = "secret"  # app.secret.set / unset
    UNLOCK = "unlock"
    REPAIR = "repair"  # cluster.repair / app.repair
    UNMARK = "unmark"  # app.unmark: a commit a rollback marked bad may ship again
    SERVICE_ROLLBACK = "service rollback"  # a rollout stopped half-way, rolled back when offered


def short(digest: str) -> str:
    return digest[:19] if digest else "none"


def utc_time(moment: datetime) -> str:
    """A timestamp AWS gave, as a person reads it: '2026-11-01 12:00:03 UTC'."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Step:
    protected: bool = field(default=False, kw_only=True)  # it touches a protected cluster

    destructive = False  # it deletes something
    locks = True  # applying it takes the app's deploy lock first (a change to what the app runs)

    @property
    def needs_confirmation(self) -> bool:
        return self.destructive or self.protected

    def lines(self) -> list[str]:  # pragma: no cover - every step overrides it
        raise NotImplementedError

    def summary(self) -> str:  # pragma: no cover - every step overrides it
        """What it would do, in a few words: "create stack (12 resources)"."""
        raise NotImplementedError

    def done(self) -> str:  # pragma: no cover - every step overrides it
        """What it did, once applied, in a few words: "stack created"."""
        raise NotImplementedError


@dataclass(frozen=True)
class EnsureStack(Step):
    """Create, re-create or update one CloudFormation stack, then (for an app) wait for its service.

    `change_set`: for an update, the change set the planner made to learn `changes`; applying
    executes it, and anything that does not apply it deletes it."""

    stack: str
    template: Template
    parameters: Mapping[str, str]
    tags: Mapping[str, str]
    action: StackAction
    protect: bool = False  # turn termination protection on
    change_set: str = ""
    changes: tuple[str, ...] = ()
    parameter_changes: tuple[tuple[str, str, str], ...] = ()  # (name, old, new)
    old_stack_id: str = ""  # recreate: the stack a failed create left
    service: bool = False  # an app stack: wait for its service's rollout afterwards
    role_arn: str = ""  # CloudFormation's service role (mvp.clusters.NAME.cfn_role); "": the caller's

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", StackAction(self.action))

    @property
    def destructive(self) -> bool:  # type: ignore[override]
        return self.action is StackAction.RECREATE

    def lines(self) -> list[str]:
        template = self.template
        if self.action in (StackAction.CREATE, StackAction.RECREATE):
            out = []
            if self.action is StackAction.RECREATE:
                out.append(f"- delete stack {self.stack} (ROLLBACK_COMPLETE: its first create failed)")
            out.append(f"+ stack {self.stack} from {template.label}")
            out += [f"+ {rtype} {logical}" + (f" (if {template.conditions[logical]})" if logical in template.conditions else "")
                    for logical, rtype in template.resources.items()]
        else:
            out = [f"~ stack {self.stack}"] if self.action is StackAction.UPDATE else []
            out += [f"  {line}" for line in self.changes]
            if self.action is StackAction.UPDATE and not self.changes:
                out.append("  ~ stack settings (parameters, tags or outputs)")
        out += [f"  ~ parameter {name}: {old or '(none)'} -> {new}" for name, old, new in self.parameter_changes]
        if self.protect:
            out.append(f"~ stack {self.stack}: termination protection on")
        return out

    def summary(self) -> str:
        return {
            StackAction.CREATE: f"create stack ({len(self.template.resources)} resources)",
            StackAction.RECREATE: "delete and re-create the stack left by a failed create",
            StackAction.UPDATE: f"update {len(self.changes)} resource(s)" if self.changes
            else "update the stack's settings",
            StackAction.PROTECT: "turn termination protection on",
        }[self.action]

    def done(self) -> str:
        return {StackAction.CREATE: "stack created", StackAction.RECREATE: "stack re-created",
                StackAction.UPDATE: "stack updated", StackAction.PROTECT: "termination protection turned on",
                }[self.action]


@dataclass(frozen=True)
class BuildImage(Step):
    project: str
    ref: str
    platform: str
    where: str = ""  # "" locally, else the build host
    revision: Revision | None = None

    def lines(self) -> list[str]:
        return [f"+ build {self.ref} for {self.platform}" + (f" on {self.where}" if self.where else "")]

    def summary(self) -> str:
        return "build the image"

    def done(self) -> str:
        return "built the image"


@dataclass(frozen=True)
class PushImage(Step):
    """Push the image; first, the repository changes planning read (`repository_changes`), which
    applying makes exactly as planned."""

    project: str
    repository: str
    tag: str
    ref: str
    repository_changes: RepositoryChanges | None = None

    def lines(self) -> list[str]:
        return [*(self.repository_changes.lines() if self.repository_changes else ()), f"+ push {self.ref}"]

    def summary(self) -> str:
        return "push the image"

    def done(self) -> str:
        return "pushed the image"


@dataclass(frozen=True)
class MoveTag(Step):
    """Point `tag` at the image `source` names (a tag or a digest), server-side, and verify it.

    `to_digest` empty: the image does not exist yet (an earlier step of the target pushes it)."""

    repository: str
    tag: str
    source: str
    from_digest: str
    to_digest: str
    label: str = ""  # what the source is, for people: a commit

    def lines(self) -> list[str]:
        target = self.to_digest and short(self.to_digest) or "the pushed image"
        return [f"~ tag {self.tag}: {short(self.from_digest)} -> {target} ({self.label or self.source[:12]})"]

    def summary(self) -> str:
        return f"point {self.tag} at {self.label or self.source[:12]}"

    def done(self) -> str:
        return f"pointed {self.tag} at {self.label or self.source[:12]}"


def wait_command(project: str, cluster: str) -> str:
    """The command that follows an app's rollout again."""
    return f"inv app.wait {project} --cluster {cluster}"


def wait_hint(project: str, cluster: str) -> str:
    """What to do when a wait for an app's rollout ends before the rollout does."""
    return f"ECS keeps going on its own; wait again with `{wait_command(project, cluster)}`"


def release_again_command(project: str, cluster: str, promote_from: str = "", tag: str = "") -> str:
    """The command that ships again the release a cluster was given, for a service a rollback left
    behind its stack: `app.promote` where the cluster takes its releases from another, else
    `app.deploy` (HEAD's release; the stack, unchanged, is not updated, and the service is)."""
    if promote_from:
        return f"inv app.promote {project} --tag {tag or cluster}"
    return f"inv app.deploy {project} --cluster {cluster}"


@dataclass(frozen=True)
class RollService(Step):
    """Force a new deployment of an app's service (its tasks pull the cluster tag again) and wait.

    `task_definition` given: update the service to that task definition instead (its tasks pull the
    tag too), for a service that runs another one than its stack registered (`running`): a rollout
    of the stack's that failed, or was stopped and rolled back, returned the service, not the stack."""

    stack: str
    reason: str = ""
    # (ECS cluster, service) as planning read them from the stack's outputs; empty where a step
    # before this one may change the stack: then they are read from the stack when applied. Not
    # part of what the step is (equality): only what its application need not ask again.
    names: tuple[str, ...] = field(default=(), compare=False)
    task_definition: str = ""  # the ARN the service is updated to; "": a new deployment of what it runs
    running: str = ""  # what the service ran when planned (with `task_definition`)

    @property
    def service(self) -> str:
        return self.names[1] if len(self.names) > 1 else self.stack

    def lines(self) -> list[str]:
        if self.task_definition:
            to = family_revision(self.task_definition)
            return [f"~ service {self.service}: runs {family_revision(self.running)}, the stack {to} -> {to}"]
        return ["~ new deployment of the service" + (f" ({self.reason})" if self.reason else "")]

    def summary(self) -> str:
        if self.task_definition:
            return f"update the service to {family_revision(self.task_definition)}"
        return "force a new deployment"

    def done(self) -> str:
        if self.task_definition:
            return f"updated the service to {family_revision(self.task_definition)}"
        return "forced a new deployment"


@dataclass(frozen=True)
class DeleteStack(Step):
    stack: str
    status: str
    stack_id: str = ""
    termination_protection: bool = False
    what: str = ""
    role_arn: str = ""  # CloudFormation's service role for the delete; "": the caller's

    destructive = True

    def lines(self) -> list[str]:
        out = [f"- stack {self.stack} ({self.status})" + (f": {self.what}" if self.what else "")]
        if self.termination_protection:
            out.append("~ termination protection off")
        return out

    def summary(self) -> str:
        return f"delete stack {self.stack}"

    def done(self) -> str:
        return f"deleted stack {self.stack}"


@dataclass(frozen=True)
class EnsureStore(Step):
    """Make or upgrade the deploy store's stack (history and locks of every cluster). Carried by
    every cluster target that plans it; applied once per run, by whichever comes first."""

    stack: EnsureStack

    def lines(self) -> list[str]:
        head = "+ deploy store: stack" if self._makes() else "~ deploy store: stack"
        return [f"{head} {self.stack.stack} (the history and locks of every cluster here)",
                *[f"  {line}" for line in self.stack.lines()[1:]]]

    def _makes(self) -> bool:
        return self.stack.action in (StackAction.CREATE, StackAction.RECREATE)

    def summary(self) -> str:
        return ("create" if self._makes() else "upgrade") + " the deploy store"

    def done(self) -> str:
        return ("created" if self._makes() else "upgraded") + " the deploy store"


@dataclass(frozen=True)
class MigrateHistory(Step):
    """Copy the history of a cluster made before the store (its stack's own table) into the store."""

    cluster: str
    table: str

    def lines(self) -> list[str]:
        return [f"~ copy the deploy history of {self.cluster} from {self.table} into the deploy store"]

    def summary(self) -> str:
        return "copy its history into the deploy store"

    def done(self) -> str:
        return "history copied into the deploy store"


@dataclass(frozen=True)
class BreakLock(Step):
    """Break an app's deploy lock in a cluster (a run that died holding it), if it is still the
    lock planning saw (`token`): one that changed hands meanwhile is not broken."""

    project: str
    cluster: str
    token: str
    holder: str

    locks = False  # the lock is another run's: breaking it is the point

    def lines(self) -> list[str]:
        return [f"- deploy lock of {self.project} in {self.cluster}, held by {self.holder}"]

    def summary(self) -> str:
        return "break the deploy lock"

    def done(self) -> str:
        return f"broke the deploy lock held by {self.holder}"


@dataclass(frozen=True)
class PutSecret(Step):
    """Set an app's secret in a cluster (an SSM SecureString). The value is never shown: not in a
    line, a summary, a repr or a history record."""

    project: str
    cluster: str
    key: str
    value: str = field(repr=False, compare=False)
    exists: bool = False

    locks = False  # what runs does not change until the service rolls

    def lines(self) -> list[str]:
        return [f"{'~' if self.exists else '+'} secret {self.key} (value not shown)"]

    def summary(self) -> str:
        return f"set secret {self.key}"

    def done(self) -> str:
        return f"secret {self.key} set"


@dataclass(frozen=True)
class DeleteSecret(Step):
    """Remove an app's secret from a cluster."""

    project: str
    cluster: str
    key: str

    destructive = True
    locks = False

    def lines(self) -> list[str]:
        return [f"- secret {self.key}"]

    def summary(self) -> str:
        return f"remove secret {self.key}"

    def done(self) -> str:
        return f"removed secret {self.key}"


@dataclass(frozen=True)
class ClearMark(Step):
    """Clear the bad mark `app.rollback` left on a commit of an app in a cluster: its history
    record is the whole change (`release.bad_commits` reads it back)."""

    project: str
    cluster: str
    commit: str
    mark: str = ""  # what marked it, for people

    # Locks (the default): it changes what may ship next, and a release, promote or rollback of
    # the app in flight decides from the marks it read.

    def lines(self) -> list[str]:
        return [f"- bad mark of {self.commit[:12]} for {self.project} in {self.cluster}"
                + (f" ({self.mark})" if self.mark else "")]

    def summary(self) -> str:
        return f"clear the bad mark of {self.commit[:12]}"

    def done(self) -> str:
        return f"{self.commit[:12]} no longer marked bad"


@dataclass(frozen=True)
class RollBackService(Step):
    """Return a service whose rollout a run stopped half-way (Ctrl-C, SIGTERM, the wait timeout) to
    what it ran before: the rollback a failed rollout gets at once, offered after the run."""

    project: str
    cluster: str
    names: tuple[str, str]  # (ECS cluster, service)
    deployment_id: str  # the rollout that was stopped
    task_definition: str  # what it deploys
    previous_task_definition: str  # what ran before it

    @property
    def service(self) -> str:
        return self.names[1]

    @property
    def back_to(self) -> str:
        """What it goes back to, in a few words."""
        previous = self.previous_task_definition
        if previous and previous != self.task_definition:
            return family_revision(previous)
        return "the deployment before it"

    def lines(self) -> list[str]:
        return [f"~ service {self.service}: roll deployment {self.deployment_id} "
                f"({family_revision(self.task_definition)}) back to {self.back_to}"]

    def summary(self) -> str:
        return f"roll service {self.service} back to {self.back_to}"

    def done(self) -> str:
        return f"rolled back: service {self.service} runs {self.back_to} again"


def family_revision(arn: str) -> str:
    """`family:revision` of a task definition ARN ("?" when unknown)."""
    return arn.rsplit("/", 1)[-1] if arn else "?"


@dataclass
class TargetPlan:
    """One target (an app in a cluster, or a cluster) and the steps that would change it.

    No steps: it is as it should be (`note` says how). `error`: its planning failed; it is a
    failed target, and the others go on."""

    key: str  # museum-adventure@stage | cluster stage
    kind: TargetKind = TargetKind.APP
    project: str = ""
    cluster: str = ""
    action: Action | None = None  # what the history records (None: nothing)
    steps: list[Step] = field(default_factory=list)
    depends_on: tuple[str, ...] = ()
    commit: str = ""
    digest: str = ""
    note: str = ""  # said when there is nothing to do
    done: str = ""  # said when it was done
    error: str = ""
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # said whatever it does (HEAD has changes its tag does not have)
    skip: str = ""  # a reason not to act on it at all (reported as skipped)
    # The release it moves from and to, and what of its configuration changes (shown above the steps).
    release_lines: tuple[str, ...] = ()
    recorded: bool = True  # an app target's outcome goes into its cluster's history (False: no store yet)
    # Planned only once the targets it depends on are applied (fleet.up: the apps of a cluster that
    # does not exist yet have no outputs to plan against). Covered by the plan's one confirmation.
    deferred: Callable[[World], TargetPlan] | None = None
    deferred_protected: bool = False

    def __post_init__(self) -> None:
        self.kind = TargetKind(self.kind)
        self.action = Action(self.action) if self.action else None

    @property
    def changes(self) -> bool:
        return (bool(self.steps) or self.deferred is not None) and not self.error and not self.skip

    @property
    def needs_confirmation(self) -> bool:
        return self.changes and (any(step.needs_confirmation for step in self.steps)
                                 or self.deferred is not None and self.deferred_protected)

    def lines(self) -> list[str]:
        if self.deferred is not None and not self.steps:
            return [f"+ planned once {', '.join(self.depends_on)} is applied ({self.note})"]
        return [*self.release_lines, *(line for step in self.steps for line in step.lines())]

    def would(self) -> str:
        """What applying it would do, in a few words (check mode's outcome line)."""
        if self.deferred is not None and not self.steps:
            return f"planned once {', '.join(self.depends_on)} is applied"
        return ", ".join(step.summary() for step in self.steps)

    def change_sets(self) -> list[tuple[str, str]]:
        return [(s.stack, s.change_set) for s in self.steps if isinstance(s, EnsureStack) and s.change_set]


@dataclass
class Plan:
    title: str
    targets: list[TargetPlan] = field(default_factory=list)
    # Ask even when no step is destructive or protected (a whole-cluster promote, a rollback).
    confirm: str = ""

    @property
    def changes(self) -> list[TargetPlan]:
        return [t for t in self.targets if t.changes]

    def question(self) -> str:
        """The one question to ask before applying, or "" when none is needed."""
        changing = self.changes
        if not changing:
            return ""
        if self.confirm:
            return self.confirm
        risky = [t for t in changing if t.needs_confirmation]
        if not risky:
            return ""
        protected = sorted({t.cluster for t in risky if t.cluster and any(s.protected for s in t.steps)})
        parts = []
        if protected:
            parts.append(f"change protected cluster{'s' if len(protected) > 1 else ''} {', '.join(protected)}")
        if any(s.destructive for t in risky for s in t.steps):
            parts.append("delete what the plan marks with -")
        return f"apply this plan to {len(changing)} target(s) ({'; '.join(parts)})"


# --- repairing a stuck stack (cluster.repair, app.repair) ------------------------------------------


@dataclass(frozen=True)
class ContinueRollback(Step):
    """Continue the rollback of an UPDATE_ROLLBACK_FAILED stack, skipping `skip` (CloudFormation then
    counts them as rolled back: each may differ from its template until the next deploy).

    `blocked`: (logical id, type, reason) of each resource whose rollback failed."""

    stack: str
    skip: tuple[str, ...] = ()
    blocked: tuple[tuple[str, str, str], ...] = ()
    role_arn: str = ""

    destructive = True  # a skipped resource is left as it is, whatever its template says

    def lines(self) -> list[str]:
        out = [f"~ stack {self.stack}: continue the rollback (UPDATE_ROLLBACK_FAILED)"]
        for logical, rtype, reason in self.blocked:
            verb = "skip" if logical in self.skip else "retry"
            out.append(f"  {'-' if verb == 'skip' else '~'} {verb} {rtype} {logical}" + (f": {reason}" if reason else ""))
        out += [f"  - skip {logical}" for logical in self.skip if logical not in {b[0] for b in self.blocked}]
        return out

    def summary(self) -> str:
        return "continue the rollback" + (f", skipping {', '.join(self.skip)}" if self.skip else "")

    def done(self) -> str:
        return "rollback completed" + (f" (skipped {', '.join(self.skip)})" if self.skip else "")


@dataclass(frozen=True)
class CancelUpdate(Step):
    """Cancel an update stuck in UPDATE_IN_PROGRESS; CloudFormation rolls it back.

    Which update was planned: the stack's id and its LastUpdatedTime as DescribeStacks gave it
    (CloudFormation sets it as an update begins; None where it gives none). Applying reads the stack
    again and cancels only that update: one that ended meanwhile, or gave way to another run's, is
    not cancelled."""

    stack: str
    stack_id: str = ""
    last_updated: datetime | None = None

    # Not the app's deploy lock: the run that started the update holds it while it waits, and
    # cancelling that run's update is the point (CloudFormation cancels only an update in progress).
    # So nothing but `stack_id` and `last_updated` ties the cancel to the update that was planned.
    locks = False

    def lines(self) -> list[str]:
        since = f" since {utc_time(self.last_updated)}" if self.last_updated else ""
        return [f"~ stack {self.stack}: cancel the update in progress{since} (CloudFormation rolls it back)"]

    def summary(self) -> str:
        return "cancel the update"

    def done(self) -> str:
        return "update cancelled and rolled back"


@dataclass(frozen=True)
class RetainDelete(Step):
    """Delete a DELETE_FAILED stack again, keeping the resources that cannot go (`retain`: logical
    id, type, reason); they stay in the account, outside any stack."""

    stack: str
    retain: tuple[tuple[str, str, str], ...] = ()
    stack_id: str = ""
    role_arn: str = ""

    destructive = True

    def lines(self) -> list[str]:
        return [f"- stack {self.stack} (DELETE_FAILED), again",
                *[f"  = keep {rtype} {logical}" + (f": {reason}" if reason else "") for logical, rtype, reason in self.retain]]

    def summary(self) -> str:
        return f"delete stack {self.stack}" + (f", keeping {', '.join(r[0] for r in self.retain)}" if self.retain else "")

    def done(self) -> str:
        return f"deleted stack {self.stack}" + (f" (kept {', '.join(r[0] for r in self.retain)})" if self.retain else "")
