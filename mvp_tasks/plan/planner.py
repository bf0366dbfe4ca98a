"""Planners: read the world, return one `TargetPlan` per target. They never change anything
(the change sets `plan_stack` makes are noted in the world, and deleted unless applied).

Each function plans ONE target, so the executor can plan many side by side, and a target whose
planning fails (throttled, unreachable, a bad template) is a failed target while the others go on.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from ..aws import discovery
from ..errors import BuildError, ConfigError, UsageError
from ..aws.secrets import secret_arn
from ..templates import expand_all, fill_parameters, load_template, with_container_settings
from ..state.location import plan_migration, plan_store
from .stacks import NOT_READ, plan_stack
from .steps import BuildImage, DeleteStack, EnsureStack, MoveTag, PushImage, RollService, TargetPlan

SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")
COMMIT_TAG = re.compile(r"^[0-9a-f]{40}$")


def app_key(project: str, cluster: str) -> str:
    return f"{project}@{cluster}"


def cluster_key(cluster: str) -> str:
    return cluster


# --- reading what runs ------------------------------------------------------------------------


def check_mapped(settings: Any, project: Any, cluster: Any) -> None:
    if cluster.name not in project.clusters:
        mapped = ", ".join(project.clusters) or "none"
        raise ConfigError(
            f"project {project.name} is not mapped to cluster {cluster.name} (its clusters: {mapped})",
            f"add {cluster.name} to mvp.projects.{project.name}.clusters in invoke.yaml",
        )


def get_image(world: Any, project: Any, tag: str, cluster: Any) -> tuple[str, str]:
    """The digest and commit of the image `tag` names; refuses a missing image."""
    registry = world.registry
    digest = registry.get_digest(project.repository, tag)
    if not digest:
        raise BuildError(
            f"image {registry.ref(project.repository, tag)} does not exist",
            f"push it first: inv app.push {project.name} --cluster {cluster.name}",
        )
    return digest, registry.get_commit(project.repository, tag)


def get_rolled_digest(history: Any, project: str) -> str:
    """The digest of the image last rolled out successfully, as far as the history knows."""
    rolled = next((r for r in history.get_records(project)
                   if r.succeeded and r.digest and r.action != "destroy"), None)
    return rolled.digest if rolled else ""


def resolve_commit(world: Any, project: Any, prefix: str) -> str:
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


def _planned_names(world: Any, stack: Any, cluster: Any, step: EnsureStack | None) -> tuple[str, ...]:
    """The service's names for a RollService after `step`: known now unless an update may change
    the stack's outputs or resources first (then the step finds them when applied)."""
    if step is not None and step.action == "update":
        return ()
    return discovery.service_names(world, stack, cluster)


# --- stacks ------------------------------------------------------------------------------------


def stacks_as(world: Any, role_arn: str) -> Any:
    """The world's stacks, CloudFormation acting as `role_arn` for the change sets planning makes."""
    stacks = world.stacks()
    return stacks.with_role(role_arn) if role_arn else stacks


def with_role(step: Any, role_arn: str) -> Any:
    """`step` (an EnsureStack, or None) applied with CloudFormation acting as `role_arn`."""
    return replace(step, role_arn=role_arn) if step is not None and role_arn else step


def app_well_known(project: Any, cluster: Any, image: str, commit: str) -> dict[str, str]:
    """What every app template may take by name besides its config and the cluster stack's outputs
    (and `ClusterName`, found from the cluster stack where the template declares it)."""
    return {"ClusterStack": cluster.stack_name, "EnvironmentName": cluster.name, "ProjectName": project.name,
            "Image": image, "ImageUri": image, "ImageTag": cluster.tag, "Commit": commit}


def cluster_well_known(cluster: Any) -> dict[str, str]:
    """What every cluster template may take by name besides its config."""
    return {"ClusterName": cluster.name, "EnvironmentName": cluster.name}


def check_clean_template(world: Any, path: str, cluster: Any, allow_dirty: bool, task: str,
                         project: Any = None) -> None:
    """A protected cluster gets only committed templates, and only committed settings of its own
    and of the app (invoke.yaml's parameters, environment and secrets shape the stack too), unless
    --allow-dirty."""
    if not cluster.protected or allow_dirty:
        return
    keys = [["mvp", "clusters", cluster.name]] + ([["mvp", "projects", project.name]] if project else [])
    what = f"template {path}" if world.template_dirty(path) else \
        "its settings in invoke.yaml" if world.config_dirty(keys) else ""
    if what:
        raise UsageError(
            f"{what} {'has' if what.startswith('template') else 'have'} uncommitted changes and cluster "
            f"{cluster.name} is protected; nothing was changed",
            f"commit them first, or pass --allow-dirty to {task} to deploy them as they are",
        )


def app_stack_step(world: Any, project: Any, cluster: Any, commit: str,
                   stack: Any = NOT_READ, allow_dirty: bool = False,
                   task: str = "app.deploy") -> tuple[EnsureStack | None, Any]:
    """The step that brings the app's stack to its template and parameters, and the stack now
    (`stack`: as the caller has just read it, None where there is none; not given: read here)."""
    settings = world.settings
    key = f"mvp.projects.{project.name}"
    path = f"projects/{project.name}/{project.template}"
    template = load_template(settings.root / path, settings.root, f"{key}.template")
    check_clean_template(world, path, cluster, allow_dirty, task, project)
    cluster_stack = world.cluster_stack(cluster)
    image = world.registry.ref(project.repository, cluster.tag)
    placeholders = {"project": project.name, "cluster": cluster.name, "image": image, "tag": cluster.tag,
                    "commit": commit}
    available = {**cluster_stack.outputs, **app_well_known(project, cluster, image, commit)}
    # A per-cluster parameter the template lacks is named where it was written.
    overrides = project.per_cluster.get(cluster.name)
    for name in (overrides.parameters if overrides else {}):
        if name not in template.parameters:
            fill_parameters(template, {}, {name: ""}, f"{key}.per_cluster.{cluster.name}.parameters")
    configured = layered(project, cluster, "parameters", placeholders)
    if "ClusterName" in template.parameters and "ClusterName" not in configured:
        # Only where the template takes it: finding it may read the cluster stack's resources.
        available["ClusterName"] = discovery.cluster_ecs_cluster(world, cluster, cluster_stack)
    parameters = fill_parameters(template, available, configured, f"{key}.parameters")
    template = container_settings(world, template, project, cluster, placeholders)
    step, stack = plan_stack(stacks_as(world, cluster.cfn_role), name=project.stack_name(cluster.name),
                             template=template, parameters=parameters,
                             tags={"mvp:cluster": cluster.name, "mvp:project": project.name},
                             protected=cluster.protected, service=True, poll=settings.poll_interval,
                             change_sets=world.change_sets, stack=stack)
    return with_role(step, cluster.cfn_role), stack


def layered(project: Any, cluster: Any, what: str, placeholders: dict) -> dict[str, str]:
    """The project's `what` (parameters, environment) with the cluster's own over them, each
    value's placeholders filled and, when one is wrong, named at the key it was written under."""
    key = f"mvp.projects.{project.name}"
    overrides = project.per_cluster.get(cluster.name)
    return {**expand_all(getattr(project, what), placeholders, f"{key}.{what}"),
            **expand_all(getattr(overrides, what) if overrides else {}, placeholders,
                         f"{key}.per_cluster.{cluster.name}.{what}")}


def container_settings(world: Any, template: Any, project: Any, cluster: Any, placeholders: dict) -> Any:
    """The template with the app's configured environment and secrets in its container; a secret
    that is not set yet in this cluster is refused here, before anything changes."""
    environment = layered(project, cluster, "environment", placeholders)
    names = project.secrets_for(cluster.name)
    if names:
        have = {s.key for s in world.secrets().list(cluster.name, project.name)}
        missing = [n for n in names if n not in have]
        if missing:
            raise UsageError(
                f"{project.name}@{cluster.name}: secret {', '.join(missing)} is configured but not set "
                f"in {cluster.name}; nothing was changed",
                f"set it: inv app.secret.set {project.name} {missing[0]} --cluster {cluster.name}",
            )
    secrets = {n: secret_arn(cluster.name, project.name, n) for n in names}
    return with_container_settings(template, environment, secrets, f"mvp.projects.{project.name}")


def plan_cluster(world: Any, cluster: Any, allow_dirty: bool = False, task: str = "cluster.up") -> TargetPlan:
    """`cluster.up`: the cluster's stack, from its template (termination protection when protected)."""
    settings = world.settings
    key = f"mvp.clusters.{cluster.name}"
    template = load_template(settings.root / cluster.template, settings.root, f"{key}.template")
    check_clean_template(world, cluster.template, cluster, allow_dirty, task)
    placeholders = {"cluster": cluster.name, "tag": cluster.tag}
    configured = expand_all(cluster.parameters, placeholders, f"{key}.parameters")
    parameters = fill_parameters(template, cluster_well_known(cluster), configured, f"{key}.parameters")
    step, stack = plan_stack(stacks_as(world, cluster.cfn_role), name=cluster.stack_name, template=template,
                             parameters=parameters, tags={"mvp:cluster": cluster.name}, protect=cluster.protected,
                             protected=cluster.protected, poll=settings.poll_interval, change_sets=world.change_sets)
    step = with_role(step, cluster.cfn_role)
    plan = TargetPlan(cluster_key(cluster.name), kind="cluster", cluster=cluster.name, action="cluster.up")
    # The deploy store first (the history and locks of its apps), and a cluster made before the
    # store has its history copied there before its stack update drops the old table.
    store, migration = plan_store(world), plan_migration(world, cluster, stack)
    plan.steps += [s for s in (store, migration) if s is not None]
    done = [s.summary().replace("create the", "created the").replace("upgrade the", "upgraded the")
            for s in plan.steps]
    if step is None:
        plan.note = f"stack {cluster.stack_name} up to date ({stack.status})"
    else:
        plan.steps.append(step)
        done.append({"create": "stack created", "recreate": "stack re-created", "update": "stack updated",
                     "protect": "termination protection turned on"}[step.action])
    plan.done = "; ".join(done).replace("copy its history", "history copied")
    return plan


def plan_cluster_down(world: Any, cluster: Any) -> TargetPlan:
    stacks = world.stacks()
    plan = TargetPlan(cluster_key(cluster.name), kind="cluster", cluster=cluster.name, action="cluster.down")
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


def _app_plan(project: Any, cluster: Any, action: str, **kw: Any) -> TargetPlan:
    return TargetPlan(app_key(project.name, cluster.name), kind="app", project=project.name, cluster=cluster.name,
                      action=action, **kw)


def _running_note(world: Any, stack: Any, cluster: Any, commit: str, digest: str) -> str:
    ecs_cluster, service = discovery.service_names(world, stack, cluster)
    state = world.services().get_service(ecs_cluster, service)
    tasks = f", {state.running}/{state.desired} tasks" if state is not None else ""
    return f"running {commit[:12] or digest[:19]}{tasks}"


def plan_deploy(world: Any, project: Any, cluster: Any, action: str = "deploy",
                allow_dirty: bool = False, task: str = "app.deploy") -> TargetPlan:
    """`app.deploy` (and `fleet.up`): the app's stack as its template says, and its service running
    the image the cluster's tag names; a warning when HEAD has changes that image does not."""
    from .changes import unshipped

    check_mapped(world.settings, project, cluster)
    world.history(cluster)  # the cluster is there and ready for apps
    digest, commit = get_image(world, project, cluster.tag, cluster)
    plan = _app_plan(project, cluster, action, commit=commit, digest=digest)
    news = unshipped(world.settings, project, cluster, commit, world.head_commit(), world.memo)
    plan.warnings = (news,) if news else ()
    step, stack = app_stack_step(world, project, cluster, commit, allow_dirty=allow_dirty, task=task)
    if step is not None:
        plan.steps.append(step)
    if stack is not None and (step is None or step.action in ("update", "protect")):
        # The stack names the image by its cluster tag, which tasks resolve only when they start:
        # after `app.push` moved the tag, the service must roll even when its stack is unchanged.
        if get_rolled_digest(world.history(cluster), project.name) != digest:
            plan.steps.append(RollService(project.stack_name(cluster.name),
                                          f"{commit[:12] or digest[:19]}: its tag {cluster.tag} names another image "
                                          "than it last rolled out", protected=cluster.protected,
                                          names=_planned_names(world, stack, cluster, step)))
    if not plan.steps:
        plan.note = _running_note(world, stack, cluster, commit, digest)
    plan.done = f"{commit[:12] or digest[:19]} deployed"
    return plan


def plan_update(world: Any, project: Any, cluster: Any) -> TargetPlan:
    """`app.update`: a new deployment of the service (its tasks pull the cluster tag again)."""
    check_mapped(world.settings, project, cluster)
    world.history(cluster)
    stack = get_app_stack(world, project, cluster)
    digest, commit = get_image(world, project, cluster.tag, cluster)
    plan = _app_plan(project, cluster, "update", commit=commit, digest=digest)
    names = discovery.service_names(world, stack, cluster)
    plan.steps.append(RollService(stack.name, f"service {names[1]}, {commit[:12] or digest[:19]}",
                                  protected=cluster.protected, names=names))
    plan.done = f"{commit[:12] or digest[:19]} rolled out"
    return plan


def get_app_stack(world: Any, project: Any, cluster: Any):
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    if stack is None:
        raise UsageError(f"{project.name} is not deployed to {cluster.name} (no stack {project.stack_name(cluster.name)})",
                         f"deploy it first: inv app.deploy {project.name} --cluster {cluster.name}")
    return stack


def plan_promote(world: Any, project: Any, cluster: Any, *, source_tag: str = "", commit: str = "",
                 allow_dirty: bool = False) -> TargetPlan:
    """`app.promote`: the target cluster's tag takes the image of `source_tag` (or of `commit`),
    then the service rolls (or the stack is deployed, where there is none yet)."""
    check_mapped(world.settings, project, cluster)
    world.history(cluster)  # the target cluster is there and ready for apps
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
    source_commit = registry.get_commit(repo, source_tag) or (source_tag if COMMIT_TAG.fullmatch(source_tag) else "")
    current = registry.get_digest(repo, cluster.tag) or ""
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    plan = _app_plan(project, cluster, "promote", commit=source_commit, digest=source_digest)
    plan.done = f"{source_commit[:12] or source_digest[:19]} promoted"
    # The tag may already name the image (`app.push --cluster` moved it) while the service still runs
    # what it last rolled out: then it rolls all the same.
    rolled = get_rolled_digest(world.history(cluster), project.name) if stack is not None else ""
    if current == source_digest and stack is not None and rolled in ("", source_digest):
        plan.note = f"already runs {source_tag[:12]} ({source_digest[:19]})"
        return plan
    if current != source_digest:
        plan.steps.append(MoveTag(repo, cluster.tag, source_tag, current, source_digest,
                                  label=source_tag[:12], protected=cluster.protected))
    if stack is None:
        step, _ = app_stack_step(world, project, cluster, source_commit, stack=None, allow_dirty=allow_dirty,
                                 task="app.promote")
        if step is not None:
            plan.steps.append(step)
    else:
        plan.steps.append(RollService(stack.name, protected=cluster.protected,
                                      names=discovery.service_names(world, stack, cluster)))
    return plan


def plan_rollback(world: Any, project: Any, cluster: Any, to: str = "") -> TargetPlan:
    """`app.rollback`: back to the commit deployed before the current one (or `to`)."""
    check_mapped(world.settings, project, cluster)
    history = world.history(cluster)
    stack = get_app_stack(world, project, cluster)
    registry = world.registry
    repo = project.repository
    current = registry.get_digest(repo, cluster.tag) or ""
    if to:
        commit = resolve_commit(world, project, to)
    else:
        records = [r for r in history.get_records(project.name, limit=100) if r.succeeded and r.commit]
        earlier = next((r for r in records if r.digest != current and r.commit), None)
        if earlier is None:
            raise UsageError(f"no earlier deploy of {project.name} in {cluster.name} to roll back to",
                             f"see `inv app.history {project.name} --cluster {cluster.name}`, or pass --to SHA")
        commit = earlier.commit
    digest = registry.get_digest(repo, commit)
    if not digest:
        raise UsageError(f"no image {registry.ref(repo, commit)} to roll back to")
    plan = _app_plan(project, cluster, "rollback", commit=commit, digest=digest)
    plan.done = f"rolled back to {commit[:12]}"
    if digest == current:
        plan.note = f"already runs {commit[:12]}"
        return plan
    plan.steps.append(MoveTag(repo, cluster.tag, commit, current, digest, label=commit[:12],
                              protected=cluster.protected))
    plan.steps.append(RollService(stack.name, protected=cluster.protected,
                                  names=discovery.service_names(world, stack, cluster)))
    return plan


def plan_destroy(world: Any, project: Any, cluster: Any) -> TargetPlan:
    check_mapped(world.settings, project, cluster)
    plan = _app_plan(project, cluster, "destroy")
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    if stack is None:
        plan.note = f"no stack {project.stack_name(cluster.name)}; nothing to delete"
        return plan
    world.history(cluster)
    plan.steps.append(DeleteStack(stack.name, stack.status, stack.stack_id, stack.termination_protection,
                                  "load balancer, service, task definition, logs", protected=cluster.protected,
                                  role_arn=cluster.cfn_role))
    plan.done = "stack deleted"
    return plan


# --- images ------------------------------------------------------------------------------------


def image_steps(world: Any, builder: Any, project: Any, revision: Any, *, push: bool) -> list:
    """Build (unless the registry or the engine has the image) and push (unless the registry has it)."""
    from ..image.builder import check_project_files

    registry = world.registry
    ref = registry.ref(project.repository, revision.tag)
    steps: list = []
    if push and registry.get_digest(project.repository, revision.tag):
        return steps
    check_project_files(world.settings.root, project)
    # Whether the engine answers is the same for every target that builds there: asked once per run.
    world.memo.get(("docker version", builder.docker.engine), builder.docker.check_engine)
    if not builder.docker.has_image(ref):
        steps.append(BuildImage(project.name, ref, builder.platform, builder.where, revision=revision))
    if push:
        changes = tuple(registry.ensure_repository(project.repository, check=True))
        steps.append(PushImage(project.name, project.repository, revision.tag, ref, changes))
    return steps


def plan_build(world: Any, builder: Any, project: Any, revision: Any) -> TargetPlan:
    tag = revision.tag[:12] + ("-dirty" if revision.dirty else "")
    plan = TargetPlan(f"{project.name}:{tag}", kind="image", project=project.name, action="build",
                      commit=revision.commit)
    plan.steps = image_steps(world, builder, project, revision, push=False)
    ref = world.registry.ref(project.repository, revision.tag)
    plan.note = f"image {ref} already built"
    plan.done = f"built {ref}"
    return plan


def plan_push(world: Any, builder: Any, project: Any, cluster: Any, revision: Any) -> TargetPlan:
    """`app.push`: build if needed, push the commit tag, and point the cluster's tag at it."""
    registry = world.registry
    repo = project.repository
    plan = TargetPlan(f"{project.name}:{revision.short}" + ("-dirty" if revision.dirty else ""), kind="image",
                      project=project.name, cluster=cluster.name, action="push", commit=revision.commit)
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
    plan.note = f"{ref} already in {registry.describe()} and tagged {cluster.tag} ({digest[:19]})"
    plan.done = f"pushed {ref}, tagged {cluster.tag}" if any(isinstance(s, PushImage) for s in plan.steps) \
        else f"{cluster.tag} now {revision.short}"
    return plan


def plan_release(world: Any, builder_for: Any, project: Any, cluster: Any, head: str, root: Any) -> TargetPlan:
    """`ci.release`: push HEAD's image and deploy it, when the project changed since what runs."""
    from ..image.builder import get_revision
    from .changes import get_changed_reasons

    check_mapped(world.settings, project, cluster)
    history = world.history(cluster)
    registry = world.registry
    repo = project.repository
    current = history.get_current(project.name)
    deployed = (current.commit if current else "") or registry.get_commit(repo, cluster.tag)
    stack = world.stacks().get_stack(project.stack_name(cluster.name))
    reasons = get_changed_reasons(world.settings, project, cluster, deployed, head, world.memo)
    plan = _app_plan(project, cluster, "release", commit=head)
    if not reasons and stack is not None:
        plan.note = f"unchanged since {deployed[:12]}"
        return plan
    plan.reasons = tuple(reasons or ["its stack does not exist"])
    revision = get_revision(root, project, for_push=True, allow_dirty=False, memo=world.memo)
    plan.commit = revision.commit
    if not registry.get_digest(repo, revision.tag):
        # A builder (an SSH connection on a build host) only when there is something to build or push.
        builder = builder_for()
        try:
            plan.steps = image_steps(world, builder, project, revision, push=True)
        finally:
            builder.close()
    digest = registry.get_digest(repo, revision.tag) or ""
    tag_digest = registry.get_digest(repo, cluster.tag) or ""
    plan.digest = digest
    if not digest or tag_digest != digest:
        plan.steps.append(MoveTag(repo, cluster.tag, revision.tag, tag_digest, digest, label=revision.short,
                                  protected=cluster.protected))
    step, stack = app_stack_step(world, project, cluster, revision.commit, stack=stack, task="ci.release")
    if step is not None:
        plan.steps.append(step)
    # Tasks resolve the cluster tag only when they start: roll unless the running image is this one.
    if stack is not None and (step is None or step.action in ("update", "protect")):
        if not digest or get_rolled_digest(history, project.name) != digest:
            plan.steps.append(RollService(stack.name, protected=cluster.protected,
                                          names=_planned_names(world, stack, cluster, step)))
    if not plan.steps:
        plan.note = f"{revision.short} already released"
    plan.done = f"{revision.short} released"
    return plan


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
