"""Planners: read the world, return one `TargetPlan` per target. They never change anything
(the change sets `plan_stack` makes are noted in the world, and deleted unless applied).

Each function plans ONE target, so the executor can plan many side by side, and a target whose
planning fails (throttled, unreachable, a bad template) is a failed target while the others go on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..aws import discovery
from ..aws.stacks import repair_command
from ..errors import BuildError, ConfigError, MvpError, UsageError
from ..templates import load_template
from . import parameters
from .stacks import NOT_READ, check_stack_updatable, plan_stack, stacks_as, with_role
from .store import plan_migration, plan_store
from .steps import (Action, BuildImage, DeleteStack, EnsureStack, MoveTag, PushImage, RollService, StackAction, Step,
                    TargetKind, TargetPlan)

if TYPE_CHECKING:
    from ..aws.stacks import StackInfo
    from ..image.builder import Builder
    from ..image.git import Revision
    from ..settings import ClusterSettings, ProjectSettings, Settings
    from ..state.store import Record
    from .context import World
    from .release import Release

SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")
COMMIT_TAG = re.compile(r"^[0-9a-f]{40}$")


def app_key(project: str, cluster: str) -> str:
    return f"{project}@{cluster}"


def cluster_key(cluster: str) -> str:
    return cluster


# --- reading what runs ------------------------------------------------------------------------


class HistoryReader(Protocol):
    """What planning reads of one cluster's deploy history (`state.store.ClusterStore` is one)."""

    def get_records(self, project: str, limit: int = ...) -> list[Record]: ...


def check_mapped(settings: Settings, project: ProjectSettings, cluster: ClusterSettings) -> None:
    if cluster.name not in project.clusters:
        mapped = ", ".join(project.clusters) or "none"
        raise ConfigError(
            f"project {project.name} is not mapped to cluster {cluster.name} (its clusters: {mapped})",
            f"add {cluster.name} to mvp.projects.{project.name}.clusters in invoke.yaml",
        )


def get_image(world: World, project: ProjectSettings, tag: str, cluster: ClusterSettings) -> tuple[str, str]:
    """The digest and commit of the image `tag` names; refuses a missing image."""
    registry = world.registry
    digest = registry.get_digest(project.repository, tag)
    if not digest:
        raise BuildError(
            f"image {registry.ref(project.repository, tag)} does not exist",
            f"push it first: inv app.push {project.name} --cluster {cluster.name}",
        )
    return digest, registry.get_commit(project.repository, tag)


def get_rolled_digest(history: HistoryReader, project: str) -> str:
    """The digest of the image last rolled out successfully, as far as the history knows."""
    rolled = next((r for r in history.get_records(project)
                   if r.succeeded and r.digest and r.action != Action.DESTROY), None)
    return rolled.digest if rolled else ""


def resolve_commit(world: World, project: ProjectSettings, prefix: str) -> str:
    """A full commit tag in the registry from a commit hash or a unique prefix of one."""
    prefix = prefix.strip().lower()
    if not SHA_PREFIX.match(prefix):
        raise UsageError(f"--commit/--to: {prefix!r} is not a commit hash (7 to 40 hex digits)")
    registry = world.registry
    if len(prefix) == 40 and registry.get_digest(project.repository, prefix):
        return prefix
    tags = [t for t in registry.list_tags(project.repository) if COMMIT_TAG.fullmatch(t) and t.startswith(prefix)]
    if not tags:
        raise BuildError(f"no image of {project.name} was built from commit {prefix}",
                         f"push it first (inv app.push {project.name}) or pick another commit")
    if len(tags) > 1:
        raise UsageError(f"commit prefix {prefix} is ambiguous: {', '.join(t[:12] for t in tags)}")
    return tags[0]


def _planned_names(world: World, stack: StackInfo, cluster: ClusterSettings,
                   step: EnsureStack | None) -> tuple[str, ...]:
    """The service's names for a RollService after `step`: known now unless an update may change
    the stack's outputs or resources first (then the step finds them when applied)."""
    if step is not None and step.action is StackAction.UPDATE:
        return ()
    return discovery.service_names(world, stack, cluster)


# --- stacks ------------------------------------------------------------------------------------


def check_clean_template(world: World, path: str, cluster: ClusterSettings, allow_dirty: bool, task: str,
                         project: ProjectSettings | None = None, check: bool = False) -> str:
    """A protected cluster gets only committed templates, and only committed settings of its own
    and of the app (invoke.yaml's parameters, environment and secrets shape the stack too), unless
    --allow-dirty. `check`: a preview needs no commit: the refusal is returned, as a warning of the
    plan, instead of raised ("" when there is nothing to say)."""
    if not cluster.protected or allow_dirty:
        return ""
    keys = [["mvp", "clusters", cluster.name]] + ([["mvp", "projects", project.name]] if project else [])
    what = f"template {path}" if world.template_dirty(path) else \
        "its settings in invoke.yaml" if world.config_dirty(keys) else ""
    if not what:
        return ""
    has = 'has' if what.startswith('template') else 'have'
    if check:
        return (f"{what} {has} uncommitted changes and cluster {cluster.name} is protected: this preview "
                f"shows them, but applying them is refused; commit them first, or pass --allow-dirty to {task}")
    raise UsageError(
        f"{what} {has} uncommitted changes and cluster {cluster.name} is protected; nothing was changed",
        f"commit them first, or pass --allow-dirty to {task} to deploy them as they are",
    )


def app_stack_step(world: World, project: ProjectSettings, cluster: ClusterSettings, commit: str,
                   stack: StackInfo | None = NOT_READ, allow_dirty: bool = False,
                   task: str = "app.deploy", release: Release | None = None, check: bool = False,
                   warnings: list[str] | None = None) -> tuple[EnsureStack | None, StackInfo | None]:
    """The step that brings the app's stack to its template and parameters, and the stack now
    (`stack`: as the caller has just read it, None where there is none; not given: read here).
    `release`: the release at a commit to render (its template and config as git has them);
    None: the working tree's (refused for a protected cluster when uncommitted, unless allowed;
    `check`: a preview, where the refusal goes to `warnings` instead)."""
    from .release import release_in_tree, render

    settings = world.settings
    if release is None:
        release = release_in_tree(settings, project, commit, world.memo)
        refusal = check_clean_template(world, f"projects/{project.name}/{project.template}", cluster, allow_dirty,
                                       task, project, check=check)
        if refusal and warnings is not None:
            warnings.append(refusal)
    check_secrets_set(world, release.project, cluster)
    rendering = render(world, release, cluster)
    stacks = stacks_as(world, cluster.cfn_role)
    if stack is NOT_READ:
        stack = stacks.get_stack(project.stack_name(cluster.name))
    values = dict(rendering.parameters)
    # A value the release no longer gives (a per-cluster DesiredCount a rollback leaves behind) goes
    # back to the template's default, said explicitly: an update that leaves a parameter out may keep
    # the stack's previous value.
    for name, spec in rendering.template.parameters.items():
        if stack is not None and name not in values and "Default" in spec and name in stack.parameters \
                and spec.get("NoEcho") not in (True, "true") \
                and str(stack.parameters[name]) != str(spec["Default"]):
            values[name] = str(spec["Default"])
    step, stack = plan_stack(stacks, name=project.stack_name(cluster.name),
                             template=rendering.template, parameters=values, tags=rendering.tags,
                             protected=cluster.protected, service=True, poll=settings.poll_interval,
                             change_sets=world.change_sets, stack=stack)
    return with_role(step, cluster.cfn_role), stack


def get_release(world: World, project: ProjectSettings, commit: str, same_at: str = "") -> Release | None:
    """The release of `project` at `commit` from git; None where git cannot say (no commit known,
    outside git): then the working tree's is rendered, as before releases were commits.
    `same_at`: a commit whose release the run reads too (its files are read once for both where
    git says they are the same: `changes.file_at`)."""
    from ..errors import MvpError
    from .release import release_at

    if not commit or not world.head_commit():
        return None
    try:
        return release_at(world.settings, project, commit, world.memo, same_at)
    except MvpError:
        if commit == world.head_commit():
            return None
        raise


def released_commit(world: World, project: ProjectSettings, cluster: ClusterSettings, digest: str,
                    history: HistoryReader | None = None) -> str:
    """The commit whose release runs `digest` in `cluster`: the newest successful record of that
    image (a config-only release shares its image with an earlier commit), else the image's label.
    `history`: the planning's read of it (`read_history`), where it asks more of it."""
    from ..errors import MvpError

    try:
        records = (history or world.history(cluster)).get_records(project.name)
    except MvpError:  # no history yet: the label says it
        records = []
    found = next((r.commit for r in records if r.succeeded and r.commit and r.digest == digest
                  and r.action != Action.DESTROY), "")
    return found or world.registry.get_commit(project.repository, cluster.tag) or ""


def preflight(*checks: Callable[[], Any]) -> list[Any]:
    """Run every check; their answers, or one error naming every problem they found."""
    answers, problems = [], []
    for check in checks:
        try:
            answers.append(check())
        except MvpError as exc:
            answers.append(None)
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise type(problems[0])("; and ".join(str(p) for p in problems))
    return answers


def check_secrets_set(world: World, project: ProjectSettings, cluster: ClusterSettings) -> None:
    """A secret configured for the app but not set yet in this cluster is refused here, before
    anything changes."""
    names = project.secrets_for(cluster.name)
    if not names:
        return
    have = {s.key for s in world.secrets().list(cluster.name, project.name)}
    missing = [n for n in names if n not in have]
    if missing:
        raise UsageError(
            f"secret {', '.join(missing)} of {project.name} is configured but not set "
            f"in {cluster.name}; nothing was changed",
            f"set it: inv app.secret.set {project.name} {missing[0]} --cluster {cluster.name}",
        )


def plan_cluster(world: World, cluster: ClusterSettings, allow_dirty: bool = False,
                 task: str = "cluster.up", check: bool = False) -> TargetPlan:
    """`cluster.up`: the cluster's stack, from its template (termination protection when protected)."""
    settings = world.settings
    template = load_template(settings.root / cluster.template, settings.root, f"mvp.clusters.{cluster.name}.template")
    refusal = check_clean_template(world, cluster.template, cluster, allow_dirty, task, check=check)
    values = parameters.cluster_parameters(template, cluster)
    step, stack = plan_stack(stacks_as(world, cluster.cfn_role), name=cluster.stack_name, template=template, parameters=values,
                             tags={"mvp:cluster": cluster.name}, protect=cluster.protected,
                             protected=cluster.protected, poll=settings.poll_interval, change_sets=world.change_sets)
    step = with_role(step, cluster.cfn_role)
    plan = TargetPlan(cluster_key(cluster.name), kind=TargetKind.CLUSTER, cluster=cluster.name, action=Action.CLUSTER_UP)
    plan.warnings = (refusal,) if refusal else ()
    # The deploy store first (the history and locks of its apps), and a cluster made before the
    # store has its history copied there before its stack update drops the old table.
    store, migration = plan_store(world), plan_migration(world, cluster, stack)
    plan.steps += [s for s in (store, migration) if s is not None]
    if step is None:
        plan.note = f"stack {cluster.stack_name} up to date ({stack.status})"
    else:
        plan.steps.append(step)
    plan.done = "; ".join(s.done() for s in plan.steps)
    return plan


def plan_cluster_down(world: World, cluster: ClusterSettings) -> TargetPlan:
    stacks = world.stacks()
    plan = TargetPlan(cluster_key(cluster.name), kind=TargetKind.CLUSTER, cluster=cluster.name,
                      action=Action.CLUSTER_DOWN)
    stack = stacks.get_stack(cluster.stack_name)
    if stack is None:
        plan.note = "no such stack; nothing to delete"
        return plan
    live = set(stacks.list_live_stack_names())
    # Configured apps by name, and any stack the tool deployed into this cluster (a project since
    # removed from invoke.yaml still has its stack).
    apps = sorted({p.stack_name(cluster.name) for p in world.settings.projects.values()
                   if p.stack_name(cluster.name) in live}
                  | (set(stacks.list_stacks_tagged("mvp:cluster", cluster.name)) - {stack.name}))
    if apps:
        raise UsageError(
            f"cluster {cluster.name} still runs app stacks: {', '.join(apps)}",
            f"remove them first with `inv app.destroy NAME --cluster {cluster.name}`",
        )
    plan.steps.append(DeleteStack(stack.name, stack.status, stack.stack_id, stack.termination_protection,
                                  "and everything in it: VPC, subnets, ECS cluster", protected=cluster.protected,
                                  role_arn=cluster.cfn_role))
    plan.done = "stack deleted"
    return plan


# --- apps --------------------------------------------------------------------------------------


def _app_plan(project: ProjectSettings, cluster: ClusterSettings, action: Action | None, **kw: Any) -> TargetPlan:
    return TargetPlan(app_key(project.name, cluster.name), kind=TargetKind.APP, project=project.name,
                      cluster=cluster.name, action=action, **kw)


def _running_note(world: World, stack: StackInfo, cluster: ClusterSettings, commit: str, digest: str) -> str:
    state = _service_state(world, discovery.service_names(world, stack, cluster))
    tasks = f", {state.running}/{state.desired} tasks" if state is not None else ""
    return f"running {commit[:12] or digest[:19]}{tasks}"


def _service_state(world: World, names: tuple[str, str]) -> Any:
    """The app's service as planning reads it (None where there is none): one DescribeServices per
    service per run, shared by the checks and the note that read it."""
    return world.memo.get(("planned service", *names), lambda: world.services().get_service(*names))


def service_behind(world: World, stack: StackInfo, cluster: ClusterSettings) -> tuple[tuple[str, str], str, str] | None:
    """(names, what it runs, what the stack registered) where the app's service runs another task
    definition (family:revision) than its stack `stack` registered: a rollout of the stack's release
    failed, or was stopped, and was rolled back, which returns the service and leaves the stack as it
    is. None where the two agree, or where either cannot be told (no service, no task definition
    the stack names)."""
    from .steps import family_revision

    names = discovery.service_names(world, stack, cluster)
    state = _service_state(world, names)
    if state is None:
        return None
    primary = state.primary
    running = (primary.task_definition if primary is not None else "") or state.task_definition
    if not running:
        return None
    registered = discovery.registered_task_definition(world, stack, running)
    if not registered or family_revision(registered) == family_revision(running):
        return None
    return names, running, registered


def behind_reason(service: str, running: str, registered: str) -> str:
    """Why a plan updates the service to its stack's task definition."""
    from .steps import family_revision

    old, new = family_revision(running), family_revision(registered)
    return (f"service {service} runs {old}, not {new} that its stack registered (a rollout of it failed or was "
            f"stopped, and the service was rolled back): the release is out once the service runs {new}")


def _plan_roll(world: World, plan: TargetPlan, cluster: ClusterSettings, stack: StackInfo | None,
               step: EnsureStack | None, roll: Callable[[], bool], reason: str = "") -> None:
    """The service's step after the stack's `step` (None: the stack equals the release's rendering).
    Where the stack is left as it is and its service runs another task definition than the stack
    registered (`service_behind`), the service is updated to the stack's (its tasks pull the cluster
    tag too), said in the plan's reasons; else, where `roll()` says so, a new deployment of what it
    runs. Nothing for a stack created now (its service starts with what it registers)."""
    if stack is None or (step is not None and step.action not in (StackAction.UPDATE, StackAction.PROTECT)):
        return
    if step is None or step.action is StackAction.PROTECT:
        behind = service_behind(world, stack, cluster)
        if behind is not None:
            names, running, registered = behind
            plan.steps.append(RollService(stack.name, protected=cluster.protected, names=names,
                                          task_definition=registered, running=running))
            plan.reasons += (behind_reason(names[1], running, registered),)
            return
    if roll():
        plan.steps.append(RollService(stack.name, reason, protected=cluster.protected,
                                      names=_planned_names(world, stack, cluster, step)))


def plan_deploy(world: World, project: ProjectSettings, cluster: ClusterSettings, action: Action = Action.DEPLOY,
                allow_dirty: bool = False, task: str = "app.deploy", running: bool = False,
                builder_for: Callable[[], Builder] | None = None, check: bool = False) -> TargetPlan:
    """`app.deploy` (`builder_for` given): HEAD's release (see `plan_deploy_head`). Without a
    builder, or outside git (`fleet.up`; `running`: the release the cluster runs): the app's stack
    as its template says, and its service running the image the cluster's tag names; a warning
    when HEAD has changes that image does not."""
    from .changes import unshipped

    # Outside git (no HEAD) there is no release to ship: the image the tag names, as before.
    if builder_for is not None and not running and world.head_commit():
        return plan_deploy_head(world, builder_for, project, cluster, allow_dirty=allow_dirty, task=task, check=check)

    check_mapped(world.settings, project, cluster)
    world.check_cluster_ready(cluster)
    # Every problem of the pre-flight at once (a missing image and a missing secret), not one a run.
    (digest, commit), _ = preflight(lambda: get_image(world, project, cluster.tag, cluster),
                                    lambda: check_secrets_set(world, project, cluster))
    plan = _app_plan(project, cluster, action, commit=commit, digest=digest)
    news = unshipped(world.settings, project, cluster, commit, world.head_commit(), world.memo)
    plan.warnings = (news,) if news else ()
    history = read_history(world, cluster, project, lazily=True)
    release = None
    if running:
        # fleet.up: the release the cluster runs (its commit's template and config), drift repaired.
        commit = released_commit(world, project, cluster, digest, history) or commit
        plan.commit = commit
        release = get_release(world, project, commit)
    step, stack = app_stack_step(world, project, cluster, commit, allow_dirty=allow_dirty, task=task,
                                 release=release)
    if step is not None:
        plan.steps.append(step)
    # The stack names the image by its cluster tag, which tasks resolve only when they start:
    # after `app.push` moved the tag, the service must roll even when its stack is unchanged.
    _plan_roll(world, plan, cluster, stack, step, lambda: get_rolled_digest(history, project.name) != digest,
               f"{commit[:12] or digest[:19]}: its tag {cluster.tag} names another image than it last rolled out")
    if not plan.steps:
        plan.note = _running_note(world, stack, cluster, commit, digest)
    plan.done = f"{commit[:12] or digest[:19]} deployed"
    return plan


def plan_fleet_app(world: World, project: ProjectSettings, cluster: ClusterSettings,
                   allow_dirty: bool = False) -> TargetPlan:
    """`fleet.up`: the app in the cluster toward the release it runs (`plan_deploy`, `running`),
    after its cluster's target. Where the cluster's stack does not exist yet (this very plan
    creates it), a target planned only once its cluster is applied."""
    after = (cluster_key(cluster.name),)
    try:
        plan = plan_deploy(world, project, cluster, allow_dirty=allow_dirty, task="fleet.up", running=True)
    except UsageError:
        if world.stacks().get_stack(cluster.stack_name) is not None:
            raise
        # The cluster is created by this very plan: its apps are planned once it exists.
        return _app_plan(project, cluster, None, depends_on=after, deferred_protected=cluster.protected,
                         deferred=lambda w: plan_deploy(w, project, cluster, allow_dirty=allow_dirty, task="fleet.up",
                                                        running=True),
                         note=f"its cluster {cluster.name} is created first")
    plan.depends_on = after
    return plan


def plan_deploy_head(world: World, builder_for: Callable[[], Builder], project: ProjectSettings,
                     cluster: ClusterSettings, *, allow_dirty: bool = False, task: str = "app.deploy",
                     check: bool = False) -> TargetPlan:
    """`app.deploy`: HEAD's release, whole: its image (built and pushed if the registry has none;
    the image of the commit that runs, retagged server-side, when the build context did not change
    since), the cluster's tag moved to it, the stack from the working tree's template and config
    (refused for a protected cluster when uncommitted, unless allowed; `check`: shown, with a
    warning), and the service rolled. A commit marked bad is shipped: deploying it is on purpose."""
    from ..image import git
    from ..image.runner import Runner
    from .release import release_in_tree

    check_mapped(world.settings, project, cluster)
    world.check_cluster_ready(cluster)
    head = world.head_commit() or git.get_commit(Runner.local(), world.settings.root, world.memo)
    warnings: list[str] = []
    # The refusal first: nothing is built for a deploy that would be refused.
    refusal = check_clean_template(world, f"projects/{project.name}/{project.template}", cluster, allow_dirty,
                                   task, project, check=check)
    warnings += [refusal] if refusal else []
    context = _dirty_build_context(world, project)
    if context and not check:
        raise BuildError(f"projects/{project.name}/ has uncommitted changes outside its template ({context}): "
                         "a deployed image is built from a commit; nothing was changed",
                         f"commit them first, or build a throwaway image: inv app.push {project.name} --allow-dirty")
    if context:
        warnings.append(f"projects/{project.name}/ has uncommitted changes outside its template ({context}): "
                        f"the image is HEAD's ({head[:12]}) and applying is refused until they are committed")
    check_secrets_set(world, project, cluster)
    history = read_history(world, cluster, project)
    registry = world.registry
    current = history.get_current(project.name)
    deployed = (current.commit if current else "") or registry.get_commit(project.repository, cluster.tag) or ""
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    plan = _app_plan(project, cluster, Action.DEPLOY, commit=head)
    revision = git.Revision(head, False)
    plan.steps, digest = _head_image_steps(world, builder_for, project, cluster, revision, deployed)
    plan.digest = digest
    after = release_in_tree(world.settings, project, head, world.memo)
    plan.release_lines = tuple(_release_lines(world, project, cluster, deployed, after))
    # Checked above (a preview shows the uncommitted template with its warning).
    step, stack = app_stack_step(world, project, cluster, head, stack=stack, allow_dirty=True, task=task,
                                 release=None)
    if step is not None:
        plan.steps.append(step)
    _roll_if_needed(world, plan, history, project, cluster, stack, step, digest)
    plan.warnings = tuple(warnings)
    if not plan.steps:
        plan.note = _running_note(world, stack, cluster, head, digest) if stack is not None else ""
    plan.done = f"{head[:12]} deployed" + (f" (from {deployed[:12]})" if deployed and deployed != head else "")
    return plan


def _dirty_build_context(world: World, project: ProjectSettings) -> str:
    """The first uncommitted change under projects/NAME/ but its template ("" when none): what
    would make the image another than HEAD's."""
    from ..image import git
    from ..image.runner import Runner

    folder = f"projects/{project.name}"
    try:
        listing = git.git(Runner.local(), world.settings.root, "status", "--porcelain", "-z",
                          "--untracked-files=all", "--", folder, f":(exclude){folder}/{project.template}").stdout
    except (MvpError, OSError):
        return ""
    changed = [entry[3:] for entry in git.split_paths(listing) if len(entry) > 3]
    return changed[0] if changed else ""


def _head_image_steps(world: World, builder_for: Callable[[], Builder], project: ProjectSettings,
                      cluster: ClusterSettings, revision: Revision, deployed: str) -> tuple[list[Step], str]:
    """The steps that give `revision`'s commit its image and point the cluster's tag at it, and its
    digest ("" until pushed): none where the registry has it; a server-side retag of `deployed`'s
    image when the build context did not change since (THE rule: `changes.builds_image`); else a
    build (where needed) and a push."""
    registry = world.registry
    repo = project.repository
    steps: list[Step] = []
    have = registry.get_digest(repo, revision.tag) or ""
    reused = "" if have else _reusable_image(world, project, deployed, revision.commit)
    if reused:
        # The build context is as it was: the earlier commit's image is this commit's too (no build).
        steps.append(MoveTag(repo, revision.tag, reused, "", reused,
                             label=f"{revision.short}: the image of {deployed[:12]}, unchanged"))
    elif not have:
        # A builder (an SSH connection on a build host) only when there is something to build or push.
        builder = builder_for()
        try:
            steps = image_steps(world, builder, project, revision, push=True)
        finally:
            builder.close()
    digest = have or reused
    tag_digest = registry.get_digest(repo, cluster.tag) or ""
    if not digest or tag_digest != digest:
        steps.append(MoveTag(repo, cluster.tag, revision.tag, tag_digest, digest, label=revision.short,
                             protected=cluster.protected))
    return steps, digest


def _roll_if_needed(world: World, plan: TargetPlan, history: Any, project: ProjectSettings,
                    cluster: ClusterSettings, stack: StackInfo | None, step: EnsureStack | None, digest: str) -> None:
    # Tasks resolve the cluster tag only when they start: roll unless the running image is this one.
    _plan_roll(world, plan, cluster, stack, step,
               lambda: not digest or get_rolled_digest(history, project.name) != digest)


def _release_lines(world: World, project: ProjectSettings, cluster: ClusterSettings, before: str,
                   after: Release) -> list[str]:
    """`release.release_lines` from the commit `before` (its release read from git; where git cannot
    read it, the commits alone) to `after`."""
    from .release import Release as _Release
    from .release import release_lines

    if not before or before == after.commit:
        return []
    try:
        old = get_release(world, project, before, same_at=after.commit)
    except MvpError:
        old = None
    if old is None:
        return release_lines(world, _Release(before, after.project, after.template), after, cluster)[:1]
    return release_lines(world, old, after, cluster)


def plan_update(world: World, project: ProjectSettings, cluster: ClusterSettings) -> TargetPlan:
    """`app.update`: a new deployment of the service (its tasks pull the cluster tag again)."""
    check_mapped(world.settings, project, cluster)
    world.check_cluster_ready(cluster)
    stack = get_app_stack(world, project, cluster)
    # Not beside CloudFormation's own work on the service (an update in progress) nor on a stack it
    # left stuck (a rollback half done): the new deployment would roll what the stack does not say.
    check_stack_updatable(stack, repair_command(stack.tags))
    digest, commit = get_image(world, project, cluster.tag, cluster)
    plan = _app_plan(project, cluster, Action.UPDATE, commit=commit, digest=digest)
    names = discovery.service_names(world, stack, cluster)
    plan.steps.append(RollService(stack.name, f"service {names[1]}, {commit[:12] or digest[:19]}",
                                  protected=cluster.protected, names=names))
    # A new deployment of what runs, as asked: a service a rollback left behind its stack is said
    # to be, with the command that gets the stack's release out (the stack is not judged here: it
    # may hold a release that failed, whose image the cluster tag no longer names).
    behind = service_behind(world, stack, cluster)
    if behind is not None:
        from .steps import family_revision, release_again_command

        _, running, registered = behind
        old, new = family_revision(running), family_revision(registered)
        plan.warnings = (f"service {names[1]} runs {old}, not {new} that its stack registered (a rollout of it "
                         f"failed or was stopped, and the service was rolled back): this update rolls {old} again; "
                         f"`{release_again_command(project.name, cluster.name, cluster.promote_from, cluster.tag)}`"
                         " gets the stack's release out",)
    plan.done = f"{commit[:12] or digest[:19]} rolled out"
    return plan


def get_app_stack(world: World, project: ProjectSettings, cluster: ClusterSettings) -> StackInfo:
    """The app's stack in `cluster`; refused, with the command that makes it, when there is none."""
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    if stack is None:
        raise UsageError(f"{project.name} is not deployed to {cluster.name} (no stack {project.stack_name(cluster.name)})",
                         f"deploy it first: inv app.deploy {project.name} --cluster {cluster.name}")
    return stack


def plan_promote(world: World, project: ProjectSettings, cluster: ClusterSettings, *, source_tag: str = "",
                 commit: str = "", allow_dirty: bool = False) -> TargetPlan:
    """`app.promote`: the target cluster's tag takes the image of `source_tag` (or of `commit`),
    then the service rolls (or the stack is deployed, where there is none yet). A release marked
    bad in the target cluster (`app.rollback` left it) is skipped, saying what clears the mark."""
    from .release import bad_commits, bad_line
    check_mapped(world.settings, project, cluster)
    world.check_cluster_ready(cluster)
    registry = world.registry
    repo = project.repository
    if commit:
        source_tag = resolve_commit(world, project, commit)
    source_digest = registry.get_digest(repo, source_tag)
    if not source_digest:
        source = next((c.name for c in world.settings.clusters.values() if c.tag == source_tag), "")
        raise UsageError(
            f"no image {registry.ref(repo, source_tag)} to promote; nothing was retagged",
            f"push it first: inv app.push {project.name}" + (f" --cluster {source}" if source else ""),
        )
    source_commit = _source_commit(world, project, source_tag, source_digest)
    current = registry.get_digest(repo, cluster.tag) or ""
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    plan = _app_plan(project, cluster, Action.PROMOTE, commit=source_commit, digest=source_digest)
    plan.done = f"{source_commit[:12] or source_digest[:19]} promoted"
    history = read_history(world, cluster, project) if stack is not None else None
    # The tag may already name the image (`app.push --cluster` moved it) while the service still runs
    # what it last rolled out: then it rolls all the same.
    rolled = get_rolled_digest(history, project.name) if history is not None else ""
    running = next((r.commit for r in history.get_records(project.name)
                    if r.succeeded and r.commit and r.digest == current), "") if history is not None and current else ""
    if running and source_commit and running != source_commit:
        plan.reasons = (f"release {running[:12]} -> {source_commit[:12]}",)
    marks = bad_commits(history.get_records(project.name)) if history is not None and source_commit else {}
    if source_commit in marks:
        plan.skip = bad_line(project.name, cluster.name, source_commit, marks[source_commit])
        return plan
    # The release is the commit: its image, and the stack rendered from its template and config.
    release = get_release(world, project, source_commit)
    step, _ = app_stack_step(world, project, cluster, source_commit, stack=stack, allow_dirty=allow_dirty,
                             task="app.promote", release=release)
    if release is not None and running:
        plan.release_lines = tuple(_release_lines(world, project, cluster, running, release))
    if current == source_digest and stack is not None and rolled in ("", source_digest) and step is None \
            and service_behind(world, stack, cluster) is None:
        plan.note = f"already runs {source_tag[:12]} ({source_digest[:19]})"
        return plan
    if current != source_digest:
        plan.steps.append(MoveTag(repo, cluster.tag, source_tag, current, source_digest,
                                  label=source_tag[:12], protected=cluster.protected))
    if step is not None:
        plan.steps.append(step)
    _plan_roll(world, plan, cluster, stack, step,
               lambda: current != source_digest or rolled not in ("", source_digest))
    return plan


class _History:
    """One app's history in one cluster as one planning reads it, asked the planner's questions
    (`HistoryReader`, `get_current`): a target's planner asks it up to three times (what runs, the
    bad marks, the last rollout) and planning only reads, so the history does not change under it.
    The first question is one Query (of its `limit`); a later one is answered from that read unless
    it wants more records than that read asked for and got (a history shorter than the limit read
    is whole). A failed read is not kept: the next question asks again, as a store would."""

    def __init__(self, store: Callable[[], Any], project: str) -> None:
        self._store = store  # the cluster's store (`World.history`), got at the first question if lazily
        self.project = project
        self._records: list | None = None
        self._limit = 0  # the limit `_records` was read with

    def get_records(self, project: str, limit: int = 50) -> list:
        if project != self.project:
            return self._store().get_records(project, limit=limit)
        if self._records is None or (limit > self._limit and len(self._records) >= self._limit):
            self._records = self._store().get_records(project, limit=limit)
            self._limit = limit
        return self._records[:limit]

    def get_current(self, project: str) -> Record | None:
        """`ClusterStore.get_current`: the newest successful record of a commit (of the newest 50)."""
        return next((r for r in self.get_records(project) if r.succeeded and r.commit), None)


def read_history(world: World, cluster: ClusterSettings, project: ProjectSettings, lazily: bool = False) -> _History:
    """`project`'s history in `cluster` for one planning (`_History`): read once, when first asked.
    The cluster's store is got now (`World.history` refuses a cluster not ready, or no store), or
    `lazily` at the first question (where a planner has always left that to the question)."""
    if lazily:
        return _History(lambda: world.history(cluster), project.name)
    store = world.history(cluster)
    return _History(lambda: store, project.name)


def _source_commit(world: World, project: ProjectSettings, source_tag: str, digest: str) -> str:
    """The commit whose release a promotion takes: a commit tag's own, else the release its
    cluster runs (its history's), else the image's label."""
    if COMMIT_TAG.fullmatch(source_tag):
        return source_tag
    source = next((c for c in world.settings.clusters.values() if c.tag == source_tag), None)
    if source is not None:
        from ..errors import MvpError

        from .changes import get_changed_reasons

        try:
            running = released_commit(world, project, source, digest)
            head = world.head_commit()
            # A commit that changes nothing the source cluster runs (a per_cluster value of another
            # cluster) is its release too: the source runs HEAD's release for itself.
            if running and head and running != head and \
                    not get_changed_reasons(world.settings, project, source, running, head, world.memo):
                return head
            return running
        except MvpError:
            pass
    return world.registry.get_commit(project.repository, source_tag) or ""


def plan_rollback(world: World, project: ProjectSettings, cluster: ClusterSettings, to: str = "") -> TargetPlan:
    """`app.rollback`: back to the release deployed before the current one (or `to`), whole: its
    image, and the stack rendered from its commit's template and config. The release it leaves is
    marked bad for this app in this cluster (`release.bad_commits` reads the mark back)."""
    from .release import releases

    check_mapped(world.settings, project, cluster)
    history = read_history(world, cluster, project)
    stack = get_app_stack(world, project, cluster)
    registry = world.registry
    repo = project.repository
    current = registry.get_digest(repo, cluster.tag) or ""
    records = releases(history.get_records(project.name, limit=100))
    running = records[0].commit if records else ""
    if to:
        commit = resolve_commit(world, project, to)
        earlier = next((r for r in records if r.commit == commit), None)
    else:
        earlier = next((r for r in records if r.commit != running), None)
        if earlier is None:
            raise UsageError(f"no earlier deploy of {project.name} in {cluster.name} to roll back to",
                             f"see `inv app.history {project.name} --cluster {cluster.name}`, or pass --to SHA")
        commit = earlier.commit
    digest = registry.get_digest(repo, commit)
    if not digest:
        raise UsageError(f"no image {registry.ref(repo, commit)} to roll back to")
    plan = _app_plan(project, cluster, Action.ROLLBACK, commit=commit, digest=digest)
    left = running if running and running != commit else ""
    plan.done = f"rolled back to {commit[:12]}" + (f"; {left[:12]} marked bad for {project.name} in {cluster.name}"
                                                   if left else "")
    if left:
        plan.reasons = (f"release {left[:12]} -> {commit[:12]}; {left[:12]} will be marked bad: ci.release "
                        "skips it",)
    release = get_release(world, project, commit)
    step, _ = app_stack_step(world, project, cluster, commit, stack=stack, task="app.rollback", release=release)
    if release is not None and left:
        plan.release_lines = tuple(_release_lines(world, project, cluster, left, release))
    rolled = get_rolled_digest(history, project.name)
    if digest == current and step is None and rolled in ("", digest) and not left \
            and service_behind(world, stack, cluster) is None:
        plan.note = f"already runs {commit[:12]}"
        return plan
    if digest != current:
        plan.steps.append(MoveTag(repo, cluster.tag, commit, current, digest, label=commit[:12], protected=cluster.protected))
    if step is not None:
        plan.steps.append(step)
    _plan_roll(world, plan, cluster, stack, step,
               lambda: digest != current or rolled not in ("", digest) or step is None)
    return plan


def plan_destroy(world: World, project: ProjectSettings, cluster: ClusterSettings) -> TargetPlan:
    """`app.destroy`: the app's stack deleted. A stack of an app no longer mapped to the cluster
    (an orphan: `find_orphans`) is deleted too, without mapping it again."""
    if cluster.name not in project.clusters:
        orphan = next((o for o in find_orphans(world) if o.project == project.name and o.cluster == cluster.name),
                      None)
        if orphan is not None:
            return plan_orphan(world, orphan, prune=True)
    check_mapped(world.settings, project, cluster)
    plan = _app_plan(project, cluster, Action.DESTROY)
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    if stack is None:
        plan.note = f"no stack {project.stack_name(cluster.name)}; nothing to delete"
        return plan
    world.check_cluster_ready(cluster)
    plan.steps.append(DeleteStack(stack.name, stack.status, stack.stack_id, stack.termination_protection,
                                  "load balancer, service, task definition, logs", protected=cluster.protected,
                                  role_arn=cluster.cfn_role))
    plan.done = "stack deleted"
    return plan


# --- images ------------------------------------------------------------------------------------


def image_steps(world: World, builder: Builder, project: ProjectSettings, revision: Revision, *,
                push: bool) -> list[Step]:
    """Build (unless the registry or the engine has the image) and push (unless the registry has it)."""
    from ..image.builder import check_project_files

    registry = world.registry
    ref = registry.ref(project.repository, revision.tag)
    steps: list[Step] = []
    if push and registry.get_digest(project.repository, revision.tag):
        return steps
    check_project_files(world.settings.root, project)
    # Whether the engine answers is the same for every target that builds there: asked once per run.
    world.memo.get(("docker version", builder.docker.engine), builder.docker.check_engine)
    if not builder.docker.has_image(ref):
        steps.append(BuildImage(project.name, ref, builder.platform, builder.where, revision=revision))
    if push:
        steps.append(PushImage(project.name, project.repository, revision.tag, ref,
                               registry.get_repository_changes(project.repository)))
    return steps


def plan_build(world: World, builder: Builder, project: ProjectSettings, revision: Revision) -> TargetPlan:
    tag = revision.tag[:12] + ("-dirty" if revision.dirty else "")
    plan = TargetPlan(f"{project.name}:{tag}", kind=TargetKind.IMAGE, project=project.name, action=Action.BUILD,
                      commit=revision.commit)
    plan.steps = image_steps(world, builder, project, revision, push=False)
    ref = world.registry.ref(project.repository, revision.tag)
    plan.note = f"image {ref} already built"
    plan.done = f"built {ref}"
    return plan


def plan_push(world: World, builder: Builder, project: ProjectSettings, cluster: ClusterSettings,
              revision: Revision) -> TargetPlan:
    """`app.push`: build if needed, push the commit tag, and point the cluster's tag at it."""
    registry = world.registry
    repo = project.repository
    plan = TargetPlan(f"{project.name}:{revision.short}" + ("-dirty" if revision.dirty else ""),
                      kind=TargetKind.IMAGE, project=project.name, cluster=cluster.name, action=Action.PUSH,
                      commit=revision.commit)
    plan.steps = image_steps(world, builder, project, revision, push=True)
    digest = registry.get_digest(repo, revision.tag) or ""
    ref = registry.ref(repo, revision.tag)
    if revision.dirty:
        plan.note = f"{ref} already in {registry.describe()}; dirty builds never get a cluster tag"
        plan.done = f"pushed {ref}; dirty builds never get a cluster tag"
        return plan
    current = registry.get_digest(repo, cluster.tag) or ""
    if not digest or current != digest:
        plan.steps.append(MoveTag(repo, cluster.tag, revision.tag, current, digest, label=revision.short,
                                  protected=cluster.protected))
        # The cluster's tag is what the app's next rollout pulls: moving it takes the app's deploy
        # lock and leaves a history record, as a deploy does (none where the cluster has no store yet).
        plan.recorded = _has_store(world, cluster)
    plan.note = f"{ref} already in {registry.describe()} and tagged {cluster.tag} ({digest[:19]})"
    plan.done = f"pushed {ref}, tagged {cluster.tag}" if any(isinstance(s, PushImage) for s in plan.steps) \
        else f"{cluster.tag} now {revision.short}"
    return plan


def plan_release(world: World, builder_for: Callable[[], Builder], project: ProjectSettings,
                 cluster: ClusterSettings, head: str, root: Path) -> TargetPlan:
    """`ci.release`: push HEAD's image and deploy it, when the project changed since what runs."""
    from ..image.builder import get_revision
    from .changes import get_changed_reasons

    check_mapped(world.settings, project, cluster)
    if not head:
        # Outside git, or without git: the reason, as building would say it.
        from ..image import git
        from ..image.runner import Runner

        head = git.get_commit(Runner.local(), root, world.memo)
    history = read_history(world, cluster, project)
    registry = world.registry
    repo = project.repository
    current = history.get_current(project.name)
    deployed = (current.commit if current else "") or registry.get_commit(repo, cluster.tag)
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    reasons = get_changed_reasons(world.settings, project, cluster, deployed, head, world.memo)
    plan = _app_plan(project, cluster, Action.RELEASE, commit=head)
    if not reasons and stack is not None:
        plan.commit = deployed  # what runs, not HEAD: the summary says which commit this target is at
        plan.note = f"unchanged since {deployed[:12]}"
        return plan
    from .release import bad_commits, bad_line

    marks = bad_commits(history.get_records(project.name, limit=100))
    if head in marks:
        plan.skip = bad_line(project.name, cluster.name, head, marks[head])
        return plan
    plan.reasons = tuple(reasons or ["its stack does not exist"])
    revision = get_revision(root, project, for_push=True, allow_dirty=False, memo=world.memo)
    plan.commit = revision.commit
    plan.steps, digest = _head_image_steps(world, builder_for, project, cluster, revision, deployed)
    plan.digest = digest
    from .release import release_in_tree

    plan.release_lines = tuple(_release_lines(world, project, cluster, deployed,
                                              release_in_tree(world.settings, project, revision.commit, world.memo)))
    step, stack = app_stack_step(world, project, cluster, revision.commit, stack=stack, task="ci.release")
    if step is not None:
        plan.steps.append(step)
    _roll_if_needed(world, plan, history, project, cluster, stack, step, digest)
    if not plan.steps:
        plan.note = f"{revision.short} already released"
    plan.done = f"{revision.short} released" + (f" (from {deployed[:12]})"
                                                 if deployed and deployed != revision.commit else "")
    return plan


def _reusable_image(world: World, project: ProjectSettings, deployed: str, head: str) -> str:
    """The digest of `deployed`'s image where `head` needs no new one (its build context, build
    arguments and platform are as they were); "" where it does or git cannot tell."""
    from .changes import builds_image, changed_files, file_at, load_config

    if not deployed or not head or deployed == head:
        return ""
    digest = world.registry.get_digest(project.repository, deployed) or ""
    files = changed_files(world.settings.root, deployed, head, world.memo) if digest else None
    if files is None:
        return ""
    root = world.settings.root
    before = after = None
    if "invoke.yaml" in files:
        before = load_config(file_at(root, deployed, "invoke.yaml", world.memo), world.memo)
        after = load_config(file_at(root, head, "invoke.yaml", world.memo), world.memo)
        if before is None or after is None:
            return ""
    return "" if builds_image(files, before, after, project.name, project.template) else digest


# --- promotion: which cluster takes which image ---------------------------------------------------


def resolve_promotion(settings: Any, tag: str, from_: str = "", commit: str = "") -> tuple[Any, str]:
    """`app.promote --tag T [--from C | --commit SHA]`: the cluster whose tag is T (or named T), and
    the tag its image comes from ("" when a commit is promoted)."""
    if from_ and commit:
        raise UsageError("--from and --commit exclude each other: promote a cluster's image or a commit's")
    clusters = list(settings.clusters.values())
    matches = [c for c in clusters if c.tag == tag] or [c for c in clusters if c.name == tag]
    if not matches:
        known = ", ".join(f"{c.tag} ({c.name})" for c in clusters)
        raise UsageError(f"--tag {tag}: no cluster runs that tag (tags: {known})")
    target = matches[0]
    if commit:
        return target, ""
    source_name = from_ or target.promote_from
    if not source_name:
        raise UsageError(
            f"cluster {target.name} has no promote_from and neither --from nor --commit was given",
            f"set mvp.clusters.{target.name}.promote_from, or pass --from CLUSTER or --commit SHA",
        )
    source = settings.cluster(source_name, flag="--from" if from_ else f"config mvp.clusters.{target.name}.promote_from")
    if source.name == target.name:
        raise UsageError(f"--from {source_name}: a cluster cannot promote from itself")
    return target, source.tag


# --- a rollout stopped half-way ---------------------------------------------------------------------


def plan_rollback_offer(world: Any, offer: Any) -> TargetPlan:
    """The rollback offered for a rollout a run stopped half-way (`offer`: its `RollBackService`),
    planned against the service as it is now: nothing to do once the deployment has completed, has
    been rolled back or replaced, or the service runs what ran before it again."""
    plan = TargetPlan(app_key(offer.project, offer.cluster), kind=TargetKind.APP, project=offer.project,
                      cluster=offer.cluster, action=Action.SERVICE_ROLLBACK)
    state = world.services().get_service(*offer.names)
    ours = next((d for d in state.deployments if d.id == offer.deployment_id), None) if state else None
    if state is None:
        plan.note = f"service {offer.service} is gone: nothing to roll back"
    elif ours is None or ours.status != "PRIMARY":
        plan.note = f"deployment {offer.deployment_id} is not the service's any more: nothing to roll back"
    elif ours.rollout_state == "COMPLETED":
        plan.note = f"deployment {offer.deployment_id} completed meanwhile: nothing to roll back"
    else:
        plan.steps.append(offer)
        plan.done = offer.done()
    return plan


# --- locks and secrets -------------------------------------------------------------------------------


def plan_unlock(world: Any, project: Any, cluster: Any) -> TargetPlan:
    """`app.unlock`: break the app's deploy lock in the cluster, the one held now."""
    from .steps import BreakLock

    check_mapped(world.settings, project, cluster)
    plan = _app_plan(project, cluster, "unlock")
    holder = world.history(cluster).get_lock(project.name)
    if holder is None:
        plan.note = "no deploy lock is held"
        return plan
    plan.steps.append(BreakLock(project.name, cluster.name, holder.token, holder.describe()))
    return plan


def plan_unmark(world: World, project: ProjectSettings, cluster: ClusterSettings, commit: str) -> TargetPlan:
    """`app.unmark`: the commit (hash or unique prefix) `app.rollback` marked bad for the app in the
    cluster may ship again (`ci.release`, `app.promote`); its history record says who cleared it."""
    from .release import bad_commits
    from .steps import ClearMark

    check_mapped(world.settings, project, cluster)
    prefix = commit.strip().lower()
    if not SHA_PREFIX.match(prefix):
        raise UsageError(f"--commit: {commit!r} is not a commit hash (7 to 40 hex digits)")
    marks = bad_commits(world.history(cluster).get_records(project.name, limit=100))
    found = [c for c in marks if c.startswith(prefix)]
    plan = _app_plan(project, cluster, Action.UNMARK)
    if not found:
        plan.note = (f"{prefix[:12]} is not marked bad for {project.name} in {cluster.name}"
                     + (f" (marked: {', '.join(c[:12] for c in marks)})" if marks else ""))
        return plan
    if len(found) > 1:
        raise UsageError(f"commit prefix {prefix} is ambiguous: {', '.join(c[:12] for c in found)}")
    mark = marks[found[0]]
    plan.steps.append(ClearMark(project.name, cluster.name, found[0],
                                f"rolled back {mark.at[:16].replace('T', ' ')} UTC to {mark.commit[:12]}",
                                protected=cluster.protected))
    plan.done = f"{found[0][:12]} no longer marked bad for {project.name} in {cluster.name}"
    return plan


def _has_store(world: Any, cluster: Any) -> bool:
    """Whether the cluster's history can be written (a secret may be set before its cluster exists)."""
    from ..errors import MvpError

    try:
        world.history(cluster)
    except MvpError:
        return False
    return True


def plan_secret_set(world: Any, project: Any, cluster: Any, key: str, value: str) -> TargetPlan:
    """`app.secret.set`: the secret `key` of the app in the cluster takes `value`."""
    from .steps import PutSecret

    check_mapped(world.settings, project, cluster)
    plan = _app_plan(project, cluster, "secret", recorded=_has_store(world, cluster))
    exists = key in {s.key for s in world.secrets().list(cluster.name, project.name)}
    plan.steps.append(PutSecret(project.name, cluster.name, key, value, exists=exists))
    if key not in project.secrets_for(cluster.name):
        plan.warnings = (f"{key} is not in mvp.projects.{project.name}.secrets, so the app does not get it; "
                         "add it there and deploy",)
    else:
        plan.reasons = (f"running tasks read it when they start: `inv app.update {project.name} "
                        f"--cluster {cluster.name}` rolls them",)
    return plan


def plan_secret_unset(world: Any, project: Any, cluster: Any, key: str) -> TargetPlan:
    """`app.secret.unset`: the secret `key` of the app in the cluster is removed."""
    from .steps import DeleteSecret

    check_mapped(world.settings, project, cluster)
    plan = _app_plan(project, cluster, "secret", recorded=_has_store(world, cluster))
    if key not in {s.key for s in world.secrets().list(cluster.name, project.name)}:
        plan.note = f"no secret {key} is set; nothing to remove"
        return plan
    plan.steps.append(DeleteSecret(project.name, cluster.name, key))
    if key in project.secrets_for(cluster.name):
        plan.warnings = (f"mvp.projects.{project.name}.secrets still names {key}: remove it there, or set it "
                         "again, before the next deploy (it would be refused); running tasks keep the value they "
                         "started with",)
    return plan


# --- repairing a stuck stack -------------------------------------------------------------------------


def plan_repair_cluster(world: Any, cluster: Any, skip: tuple[str, ...] | None = None) -> TargetPlan:
    """`cluster.repair`: get the cluster's stack moving again (see `repair_steps`)."""
    plan = TargetPlan(cluster_key(cluster.name), kind=TargetKind.CLUSTER, cluster=cluster.name, action=Action.REPAIR)
    return _plan_repair(world, plan, cluster.stack_name, cluster, skip)


def plan_repair_app(world: Any, project: Any, cluster: Any, skip: tuple[str, ...] | None = None) -> TargetPlan:
    """`app.repair`: get the app's stack in the cluster moving again (see `repair_steps`)."""
    from .steps import CancelUpdate

    check_mapped(world.settings, project, cluster)
    plan = _plan_repair(world, _app_plan(project, cluster, Action.REPAIR), project.stack_name(cluster.name),
                        cluster, skip)
    if any(isinstance(step, CancelUpdate) for step in plan.steps) and _has_store(world, cluster):
        holder = world.history(cluster).get_lock(project.name)
        if holder is not None:
            plan.warnings = (f"the deploy of {holder.describe()} waits on this update: it fails once the update "
                             "is rolled back",)
    return plan


def _plan_repair(world: Any, plan: TargetPlan, name: str, cluster: Any, skip: tuple[str, ...] | None) -> TargetPlan:
    stacks = world.stacks()
    stack = stacks.get_stack(name)
    if stack is None:
        plan.note = f"no stack {name}; nothing to repair"
        return plan
    follow = (f"inv app.status {plan.project}" if plan.kind is TargetKind.APP
              else f"inv cluster.status {cluster.name}")
    step = repair_step(stacks, stack, skip, protected=cluster.protected, role_arn=cluster.cfn_role, follow=follow)
    if step is None:
        plan.note = f"nothing to repair: stack {name} is {stack.status}"
        return plan
    plan.steps.append(step)
    plan.done = step.done()
    return plan


def repair_step(stacks: Any, stack: Any, skip: tuple[str, ...] | None = None, *, protected: bool = False,
                role_arn: str = "", follow: str = "inv cluster.status") -> Step | None:
    """The step that gets a stuck stack moving again, None for a healthy one:
    UPDATE_ROLLBACK_FAILED: continue the rollback, skipping the resources that block it (all of them
    unless `skip` chooses); UPDATE_IN_PROGRESS: cancel the update; DELETE_FAILED: delete it again,
    keeping the resources that could not be deleted."""
    from ..aws.stacks import blocking_resources, is_in_progress
    from ..errors import StackBusy, StackFailed
    from .steps import CancelUpdate, ContinueRollback, RetainDelete

    status = stack.status
    if status == "UPDATE_ROLLBACK_FAILED":
        blocked = tuple((e.logical_id, e.resource_type, " ".join(e.reason.split()))
                        for e in blocking_resources(stacks.get_events(stack.stack_id or stack.name)))
        names = [b[0] for b in blocked]
        if skip is None:
            chosen = tuple(names)
        else:
            unknown = [s for s in skip if s not in names]
            if unknown:
                raise UsageError(f"--skip {','.join(unknown)}: not a resource whose rollback failed in stack "
                                 f"{stack.name} (those: {', '.join(names) or 'none'})",
                                 "name only those, or leave --skip out to skip them all")
            chosen = tuple(skip)
        return ContinueRollback(stack.name, skip=chosen, blocked=blocked, protected=protected, role_arn=role_arn)
    if status == "UPDATE_IN_PROGRESS":
        if skip:
            raise UsageError(f"--skip: stack {stack.name} is {status}; only a failed rollback skips resources")
        # What identifies this update: applying cancels it only if it is still the one in progress.
        return CancelUpdate(stack.name, stack_id=stack.stack_id, last_updated=stack.last_updated, protected=protected)
    if status == "DELETE_FAILED":
        if skip:
            raise UsageError(f"--skip: stack {stack.name} is {status}; only a failed rollback skips resources")
        failed = {e.logical_id: e for e in blocking_resources(stacks.get_events(stack.stack_id or stack.name))}
        # The stack's own word on what failed to delete, with the reason its events give.
        retain = tuple((r.logical_id, r.resource_type, " ".join(failed[r.logical_id].reason.split())
                        if r.logical_id in failed else "")
                       for r in stacks.list_stack_resources(stack.stack_id or stack.name)
                       if r.status == "DELETE_FAILED")
        return RetainDelete(stack.name, retain=retain, stack_id=stack.stack_id, protected=protected,
                            role_arn=role_arn)
    if is_in_progress(status):
        raise StackBusy(f"stack {stack.name} is {status}: CloudFormation is still at work",
                        f"wait for it to settle (`{follow}`), then run the repair again if it is stuck")
    if status in ("ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED"):
        raise StackFailed(f"stack {stack.name} is {status}: only deleting it gets it out of there",
                          "delete it (`inv cluster.down` / `inv app.destroy`), then deploy again")
    return None


# --- orphans: stacks the tool made for an app or a cluster invoke.yaml no longer maps -------------


class Orphan:
    """A stack the tool made (its tags say for which app and cluster) that invoke.yaml no longer
    maps: an app's (`project` set) or a cluster's (`project` "")."""

    def __init__(self, stack: StackInfo, project: str, cluster: str) -> None:
        self.stack, self.project, self.cluster = stack, project, cluster

    @property
    def key(self) -> str:
        return app_key(self.project, self.cluster) if self.project else cluster_key(self.cluster)

    def target(self, **kw: Any) -> TargetPlan:
        """Its target: an app's or a cluster's, by its key."""
        return TargetPlan(self.key, kind=TargetKind.APP if self.project else TargetKind.CLUSTER,
                          project=self.project, cluster=self.cluster, **kw)

    @property
    def remove(self) -> str:
        """The command that removes it."""
        if self.project:
            return f"inv app.destroy {self.project} --cluster {self.cluster}"
        return "inv fleet.up --prune"

    def line(self) -> str:
        what = (f"{self.project} is not mapped to cluster {self.cluster} in invoke.yaml" if self.project else
                f"cluster {self.cluster} is not in invoke.yaml")
        return f"orphan: stack {self.stack.name} ({self.stack.status}) remains but {what}; remove it: {self.remove}"


def is_orphan(settings: Settings, tags: dict, name: str) -> tuple[str, str] | None:
    """(project, cluster) of a stack whose `tags` say the tool made it for an app or a cluster that
    `settings` no longer map; None for any other stack. Plain data, for the unit tests."""
    from .stacks import MANAGED_TAG

    cluster = tags.get("mvp:cluster", "")
    if not cluster:
        return None
    project = tags.get("mvp:project", "")
    if project:
        if any(tags.get(k) != v for k, v in MANAGED_TAG.items()):
            return None  # a stack someone else tagged: never ours to delete
        mapped = settings.projects.get(project)
        if mapped is not None and cluster in mapped.clusters and cluster in settings.clusters:
            return None
        return project, cluster
    if cluster in settings.clusters or any(c.stack_name == name for c in settings.clusters.values()):
        return None
    return "", cluster


def find_orphans(world: World) -> list[Orphan]:
    """Every orphan stack (`is_orphan`), apps first, read once per run."""
    def read() -> list[Orphan]:
        found = []
        for stack in world.stacks().list_stacks_with_tag("mvp:cluster"):
            mark = is_orphan(world.settings, dict(stack.tags), stack.name)
            if mark is not None:
                found.append(Orphan(stack, *mark))
        return sorted(found, key=lambda o: (not o.project, o.cluster, o.project))

    return world.memo.get(("orphans",), read)


def plan_orphan(world: World, orphan: Orphan, prune: bool = False, after: tuple[str, ...] = ()) -> TargetPlan:
    """An orphan stack as a target: without `prune` skipped with the line that removes it; with it,
    deleted (destructive: confirmed). `after`: the targets deleted first (a cluster's apps)."""
    settings = world.settings
    cluster = settings.clusters.get(orphan.cluster)
    plan = orphan.target(action=Action.DESTROY if orphan.project else Action.CLUSTER_DOWN, depends_on=after,
                         # Its history is recorded only where the cluster is still configured and has a store.
                         recorded=bool(orphan.project and cluster is not None and _has_store(world, cluster)))
    if not prune:
        plan.skip = orphan.line()
        return plan
    stack = orphan.stack
    what = "orphan: load balancer, service, task definition, logs" if orphan.project else \
        "orphan cluster: VPC, subnets, ECS cluster"
    plan.steps.append(DeleteStack(stack.name, stack.status, stack.stack_id, stack.termination_protection, what,
                                  protected=bool(cluster and cluster.protected),
                                  role_arn=cluster.cfn_role if cluster is not None else ""))
    plan.done = "orphan stack deleted"
    return plan


def plan_orphans(world: World, prune: bool = False) -> list[tuple[TargetPlan, Callable[[World], TargetPlan]]]:
    """`fleet.up`'s orphans: a placeholder and a planner (`plan_orphan`) per orphan stack, a
    cluster's after its apps'. Which stacks are orphans is read here, once, before the fleet is
    planned (it decides which targets there are); a failed read is one failed target, `orphans`."""
    try:
        orphans = find_orphans(world)
    except MvpError as exc:
        def refused(world: World, exc: MvpError = exc) -> TargetPlan:
            raise exc

        return [(TargetPlan("orphans", kind=TargetKind.CLUSTER), refused)]
    out = []
    for orphan in orphans:
        after = () if orphan.project else tuple(o.key for o in orphans if o.project and o.cluster == orphan.cluster)
        out.append((orphan.target(depends_on=after),
                    lambda world, o=orphan, a=after: plan_orphan(world, o, prune, after=a)))
    return out


def plan_destroy_orphan(world: World, project: str, cluster: str, refused: MvpError) -> TargetPlan:
    """`app.destroy NAME --cluster C` where invoke.yaml no longer has the app or the cluster: the
    orphan stack the tool made for them, deleted; `refused` (why the config has no such target)
    where there is none."""
    orphan = next((o for o in find_orphans(world) if o.project == project and o.cluster == cluster), None)
    if orphan is None:
        raise refused
    return plan_orphan(world, orphan, prune=True)
