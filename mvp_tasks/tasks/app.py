"""The apps in projects/<name>/: images, stacks, rollouts, promotion, rollback, status and logs."""

from __future__ import annotations

from pathlib import Path

from ..errors import MvpError, UsageError
from .boundary import mvp_task, require, start

HOST_HELP = "build on this SSH host (user@host[:port]) instead of locally (default: mvp.build.host)"
CLUSTER_HELP = "cluster (default: mvp.default_cluster)"
YES_HELP = "answer yes to confirmations (needed without a terminal for protected clusters)"
CHECK_HELP = "show what would change; change nothing"


@mvp_task(
    help={
        "name": "project to build: a folder under projects/ (a dirty tree is tagged <commit>-dirty-<hash>)",
        "host": HOST_HELP,
        "check": "show what would be built; build nothing",
    }
)
def build(ctx, name, host=None, check=False):
    """Build a project's image, tagged with the commit that built it."""
    from . import imaging

    run = start(ctx, f"app.build {name}", check=check, aws=False)
    project = run.settings.project_or_default(name)
    imaging.check_project_files(run, project)
    revision = imaging.get_revision(run, project, for_push=False, allow_dirty=True)
    builder = imaging.get_builder(run, host)
    try:
        imaging.ensure_built(builder, project, revision)
    finally:
        builder.close()
    run.finish()


@mvp_task(
    help={
        "name": "project to push: a folder under projects/",
        "cluster": "also point this cluster's tag at the image (default: mvp.default_cluster)",
        "allow_dirty": "push a throwaway image from uncommitted changes (never gets a cluster tag)",
        "host": HOST_HELP,
        "check": "show what would be built, pushed and tagged; change nothing",
        "yes": "move a protected cluster's tag without asking (needed without a terminal)",
    }
)
def push(ctx, name, cluster=None, allow_dirty=False, host=None, check=False, yes=False):
    """Build if needed, push the commit tag, and point the cluster tag at that image."""
    from . import imaging

    run = start(ctx, f"app.push {name}", check=check, yes=yes)
    project = run.settings.project_or_default(name)
    target = run.settings.cluster(cluster)
    if project.clusters and target.name not in project.clusters:
        raise UsageError(
            f"project {project.name} does not run in cluster {target.name} "
            f"(mvp.projects.{project.name}.clusters: {', '.join(project.clusters)})"
        )
    imaging.check_project_files(run, project)
    revision = imaging.get_revision(run, project, for_push=True, allow_dirty=allow_dirty)
    builder = imaging.get_builder(run, host)
    try:
        digest, _ = imaging.ensure_pushed(builder, project, revision)
        if revision.dirty:
            run.reporter.skipped(f"{project.name}:{target.tag}", "dirty builds never get a cluster tag")
        else:
            question = (f"point protected cluster {target.name}'s tag {target.tag} at {revision.short} "
                        f"(its tasks pull it on their next start)") if target.protected else ""
            imaging.ensure_tag(builder, project, revision.tag, target.tag, expected_digest=digest,
                               confirm_question=question)
    finally:
        builder.close()
    run.finish()


@mvp_task(help={"name": "project to deploy", "cluster": CLUSTER_HELP, "check": CHECK_HELP, "yes": YES_HELP})
def deploy(ctx, name, cluster=None, check=False, yes=False):
    """Create or update an app's stack <name>-<cluster> and wait for its service to roll out."""
    from ..report import Outcome
    from . import deploying

    run = start(ctx, f"app.deploy {name}", check=check, yes=yes)
    target = deploying.open_target(run, name, cluster)
    digest, commit = deploying.check_image(target)
    existed = target.stacks.get_stack(target.stack_name) is not None
    with deploying.recording(target, "deploy", commit=commit, digest=digest):
        outcome = deploying.deploy_stack(target, digest=digest, commit=commit)
        # The stack names the image by its cluster tag, which tasks resolve only when they start: after
        # `app.push` moved the tag, an existing service must roll even when its stack is unchanged.
        stale = existed and deploying.get_rolled_digest(target) != digest
        if stale:
            run.reporter.plan(target.name, [f"~ new deployment of the service ({commit[:12] or digest[:19]}): "
                                            f"its tag {target.cluster.tag} names another image than it last rolled out"])
            if run.reporter.check:
                run.reporter.changed(target.name, "would force a new deployment")
            elif target.cluster.protected and outcome is Outcome.OK:
                run.reporter.confirm(f"roll {name} in protected cluster {target.cluster.name}")
        if not run.reporter.check:
            stack = deploying.get_app_stack(target)
            if stale:
                state = deploying.roll_service(target, stack)
                outcome = Outcome.CHANGED
            else:
                state = deploying.wait_for_service(target, stack)
            if outcome.value == "changed":
                target.record("deploy", commit=commit, digest=digest)
                deploying.report_rollout(target, state, f"{commit[:12] or digest[:19]} deployed")
            else:
                run.reporter.ok(target.name, f"running {commit[:12] or digest[:19]}, {state.running}/{state.desired} tasks")
    run.finish()


@mvp_task(help={"name": "project to roll", "cluster": CLUSTER_HELP, "check": CHECK_HELP, "yes": YES_HELP})
def update(ctx, name, cluster=None, check=False, yes=False):
    """Force a new deployment of an app's service (tasks pull the cluster tag again) and wait."""
    from . import deploying

    run = start(ctx, f"app.update {name}", check=check, yes=yes)
    target = deploying.open_target(run, name, cluster)
    stack = deploying.get_app_stack(target)
    digest, commit = deploying.check_image(target)
    _, service = deploying.service_of(target, stack)
    run.reporter.plan(target.name, [f"~ new deployment of service {service} ({commit[:12] or digest[:19]})"])
    if run.reporter.check:
        run.reporter.changed(target.name, "would force a new deployment")
        return run.finish()
    if target.cluster.protected:
        run.reporter.confirm(f"roll {name} in protected cluster {target.cluster.name}")
    with deploying.recording(target, "update", commit=commit, digest=digest):
        state = deploying.roll_service(target, stack)
        target.record("update", commit=commit, digest=digest)
        deploying.report_rollout(target, state, f"{commit[:12] or digest[:19]} rolled out")
    run.finish()


@mvp_task(help={"name": "project to watch", "cluster": CLUSTER_HELP})
def wait(ctx, name, cluster=None):
    """Wait for an app's current rollout to finish (e.g. after a wait timed out)."""
    from . import deploying

    run = start(ctx, f"app.wait {name}")
    target = deploying.open_target(run, name, cluster)
    state = deploying.wait_for_service(target, deploying.get_app_stack(target))
    run.reporter.ok(target.name, f"rolled out; {state.running}/{state.desired} tasks running")
    run.finish()


def _project_from_cwd(root: Path) -> str:
    try:
        parts = Path.cwd().resolve().relative_to(root.resolve()).parts
    except ValueError:
        return ""
    return parts[1] if len(parts) >= 2 and parts[0] == "projects" else ""


@mvp_task(
    help={
        "name": "project to promote (default: the project whose folder you are in; at the root: every "
                "project of the target cluster whose image differs)",
        "tag": "the target cluster's image tag, e.g. prod (required)",
        "from": "take the image of this cluster (default: the target's promote_from)",
        "commit": "take the image built from this commit (hash or unique prefix) instead",
        "check": CHECK_HELP,
        "yes": YES_HELP,
    },
    positional=["name"],
)
def promote(ctx, name=None, tag=None, from_=None, commit=None, check=False, yes=False):
    """Give a cluster the image another cluster runs (no rebuild), then roll it out there."""
    from . import deploying

    require(tag, "--tag", "inv app.promote --tag prod")
    if from_ and commit:
        raise UsageError("--from and --commit exclude each other: promote a cluster's image or a commit's")
    run = start(ctx, f"app.promote {name or ''} --tag {tag}".replace("  ", " "), check=check, yes=yes)
    settings = run.settings
    matches = [c for c in settings.clusters.values() if c.tag == tag] or \
        [c for c in settings.clusters.values() if c.name == tag]
    if not matches:
        known = ", ".join(f"{c.tag} ({c.name})" for c in settings.clusters.values())
        raise UsageError(f"--tag {tag}: no cluster runs that tag (tags: {known})")
    target_cluster = matches[0]
    source_cluster = None
    if not commit:
        source_name = from_ or target_cluster.promote_from
        if not source_name:
            raise UsageError(
                f"cluster {target_cluster.name} has no promote_from and neither --from nor --commit was given",
                f"set mvp.clusters.{target_cluster.name}.promote_from, or pass --from CLUSTER or --commit SHA",
            )
        source_cluster = settings.cluster(
            source_name, flag="--from" if from_ else f"config mvp.clusters.{target_cluster.name}.promote_from")
        if source_cluster.name == target_cluster.name:
            raise UsageError(f"--from {source_name}: a cluster cannot promote from itself")
    name = name or _project_from_cwd(settings.root)
    if name:
        names = [settings.project(name).name]
    else:
        names = [p.name for p in settings.projects_in(target_cluster.name)]
        if not names:
            raise UsageError(f"no project runs in cluster {target_cluster.name}")
    registry = None
    plans = []
    for project_name in names:
        target = deploying.open_target(run, project_name, target_cluster.name, registry)
        registry = target.registry
        repo = target.project.repository
        if commit:
            source_tag = deploying.resolve_commit(target, commit)
        else:
            source_tag = source_cluster.tag
        source_digest = registry.get_digest(repo, source_tag)
        if not source_digest:
            raise UsageError(
                f"{project_name}: no image {registry.ref(repo, source_tag)} to promote; nothing was retagged",
                f"push it first: inv app.push {project_name}" + (f" --cluster {source_cluster.name}" if source_cluster else ""),
            )
        current = registry.get_digest(repo, target_cluster.tag)
        stack = target.stacks.get_stack(target.stack_name)
        if current == source_digest and stack is not None:
            run.reporter.ok(target.name, f"already runs {source_tag[:12]} ({source_digest[:19]})")
            continue
        plans.append((target, source_tag, source_digest, current, stack))
    if not plans:
        return run.finish()
    for target, source_tag, source_digest, current, stack in plans:
        lines = [f"~ tag {target.cluster.tag}: {current[:19] if current else 'none'} -> {source_digest[:19]} ({source_tag[:12]})"]
        lines.append(f"+ deploy stack {target.stack_name}" if stack is None else "~ new deployment of the service")
        run.reporter.plan(target.name, lines)
    if run.reporter.check:
        for target, *_ in plans:
            run.reporter.changed(target.name, "would promote")
        return run.finish()
    # A named app in an unprotected cluster goes ahead; the whole-cluster plan is always confirmed.
    if target_cluster.protected or not name or len(plans) > 1:
        run.reporter.confirm(f"promote {len(plans)} app(s) to {target_cluster.name}")
    for target, source_tag, source_digest, current, stack in plans:
        _promote_one(run, target, source_tag, source_digest, current, stack)
    run.finish()


def _promote_one(run, target, source_tag, source_digest, current, stack) -> None:
    from . import deploying

    commit = target.registry.get_commit(target.project.repository, source_tag) or (
        source_tag if len(source_tag) == 40 else "")
    try:
        with deploying.recording(target, "promote", commit=commit, digest=source_digest, restore=current):
            _retag_and_roll(run, target, source_tag, source_digest, current, stack, commit)
    except MvpError as exc:
        # One app's failure does not stop the others; the recap counts it and the exit is non-zero.
        run.reporter.failed(target.name, str(exc))


def _retag_and_roll(run, target, source_tag, source_digest, current, stack, commit) -> None:
    from . import deploying

    target.lock()
    if current != source_digest:
        target.registry.retag(target.project.repository, source_tag, target.cluster.tag)
        after = target.registry.get_digest(target.project.repository, target.cluster.tag)
        if after != source_digest:
            raise MvpError(f"tag {target.cluster.tag} points at {after} after the retag, not {source_digest}")
        run.reporter.event(f"{target.project.name}:{target.cluster.tag} -> {source_digest[:19]}")
    if stack is None:
        deploying.deploy_stack(target, digest=source_digest, commit=commit, confirmed=True)
        stack = deploying.get_app_stack(target)
        state = deploying.wait_for_service(target, stack)
    else:
        state = deploying.roll_service(target, stack)
    target.record("promote", commit=commit, digest=source_digest)
    deploying.report_rollout(target, state, f"{commit[:12] or source_digest[:19]} promoted")


@mvp_task(
    help={
        "name": "project to roll back",
        "cluster": "cluster to roll back (required)",
        "to": "commit (hash or unique prefix) to return to (default: the one deployed before the current)",
        "check": CHECK_HELP,
        "yes": YES_HELP,
    }
)
def rollback(ctx, name, cluster=None, to=None, check=False, yes=False):
    """Return an app in a cluster to the previous (or a given) commit: retag, roll out, wait."""
    from . import deploying

    require(cluster, "--cluster", f"inv app.rollback {name} --cluster stage")
    run = start(ctx, f"app.rollback {name} --cluster {cluster}", check=check, yes=yes)
    target = deploying.open_target(run, name, cluster)
    stack = deploying.get_app_stack(target)
    repo = target.project.repository
    current_digest = target.registry.get_digest(repo, target.cluster.tag)
    if to:
        commit = deploying.resolve_commit(target, to)
    else:
        records = [r for r in target.history.get_records(name, limit=100) if r.succeeded and r.commit]
        earlier = next((r for r in records if r.digest != current_digest and r.commit), None)
        if earlier is None:
            raise UsageError(f"no earlier deploy of {name} in {target.cluster.name} to roll back to",
                             "see the history with `inv app.status`, or pass --to SHA")
        commit = earlier.commit
    digest = target.registry.get_digest(repo, commit)
    if not digest:
        raise UsageError(f"no image {target.registry.ref(repo, commit)} to roll back to")
    if digest == current_digest:
        run.reporter.ok(target.name, f"already runs {commit[:12]}")
        return run.finish()
    run.reporter.plan(target.name, [
        f"~ tag {target.cluster.tag}: {current_digest[:19] if current_digest else 'none'} -> {digest[:19]} ({commit[:12]})",
        "~ new deployment of the service",
    ])
    if run.reporter.check:
        run.reporter.changed(target.name, f"would roll back to {commit[:12]}")
        return run.finish()
    run.reporter.confirm(f"roll {name} in {target.cluster.name} back to {commit[:12]}")
    with deploying.recording(target, "rollback", commit=commit, digest=digest, restore=current_digest):
        target.lock()
        target.registry.retag(repo, commit, target.cluster.tag)
        after = target.registry.get_digest(repo, target.cluster.tag)
        if after != digest:
            raise MvpError(f"tag {target.cluster.tag} points at {after} after the retag, not {digest}")
        state = deploying.roll_service(target, stack)
        target.record("rollback", commit=commit, digest=digest)
        deploying.report_rollout(target, state, f"rolled back to {commit[:12]}")
    run.finish()


@mvp_task(help={"name": "only this project (default: every project)", "json": "print JSON for scripts"},
          positional=["name"])
def status(ctx, name=None, json=False):
    """Show which commit runs where: app x cluster, rollout, history and stack status."""
    from . import status as app_status

    run = start(ctx, "app.status", json_output=json)
    rows = app_status.collect(run, name)
    if json:
        run.reporter.emit_json(rows)
        return
    app_status.show(run, rows)


@mvp_task(
    help={
        "name": "project whose logs to show",
        "cluster": CLUSTER_HELP,
        "since": "how far back to start: 30s, 10m, 2h or 1d (default 10m)",
        "follow": "keep printing new lines until Ctrl-C",
    }
)
def logs(ctx, name, cluster=None, since="10m", follow=False):
    """Print an app's container logs from CloudWatch Logs."""
    from . import status as app_status

    run = start(ctx, f"app.logs {name}")
    app_status.print_logs(run, name, cluster, since, follow)


@mvp_task(help={"name": "project to remove", "cluster": "cluster to remove it from (required)",
                "check": CHECK_HELP, "yes": "delete without asking (needed without a terminal)"})
def destroy(ctx, name, cluster=None, check=False, yes=False):
    """Delete an app's stack from a cluster, after confirmation, and wait."""
    from . import deploying
    from .converge import delete_stack

    require(cluster, "--cluster", f"inv app.destroy {name} --cluster stage")
    run = start(ctx, f"app.destroy {name} --cluster {cluster}", check=check, yes=yes)
    target = deploying.open_target(run, name, cluster)
    stack = target.stacks.get_stack(target.stack_name)
    if stack is None:
        run.reporter.ok(target.name, f"no stack {target.stack_name}; nothing to delete")
        return run.finish()
    run.reporter.plan(target.name, [f"- stack {stack.name} ({stack.status}): load balancer, service, task definition, logs"])
    if run.reporter.check:
        run.reporter.changed(target.name, "would delete the stack")
        return run.finish()
    what = "protected cluster " if target.cluster.protected else ""
    run.reporter.confirm(f"delete {name} from {what}{target.cluster.name} (stack {stack.name})")
    try:
        target.lock()
        delete_stack(target.stacks, run.reporter, stack, timeout=run.settings.wait_timeout,
                     poll=run.settings.poll_interval)
        target.record("destroy", commit="", digest="")
        run.reporter.changed(target.name, "stack deleted")
    finally:
        target.unlock()
    run.finish()
