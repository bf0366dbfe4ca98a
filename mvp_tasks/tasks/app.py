"""The apps in projects/<name>/: images, stacks, rollouts, promotion, rollback, status and logs."""

from __future__ import annotations

from ..errors import ConfigError, UsageError
from .boundary import finish, mvp_task, project_from_cwd, project_name, require, run_plan, start, target_stub

HOST_HELP = "build on this SSH host (user@host[:port]) instead of locally (default: mvp.build.host)"
CLUSTER_HELP = "cluster (default: mvp.default_cluster)"
YES_HELP = "answer yes to confirmations (needed without a terminal for protected clusters)"
CHECK_HELP = "show what would change; change nothing"
JSON_HELP = "print every target's outcome as JSON for scripts"


PARALLEL_HELP = "how many apps to plan and apply side by side (default: mvp.parallel)"


def _app(world, name: str | None, cluster: str | None, task: str, flag: str = "--cluster"):
    """The project (NAME, else the one whose folder the shell is in) and the cluster."""
    return world.settings.project(project_name(world, name, task)), world.settings.cluster(cluster, flag=flag)


NAME_HELP = " (default: the project whose folder you are in)"


@mvp_task(
    help={
        "name": "project to build: a folder under projects/ (a dirty tree is tagged <commit>-dirty-<hash>)" + NAME_HELP,
        "host": HOST_HELP,
        "check": "show what would be built; build nothing",
        "json": JSON_HELP,
    },
    positional=["name"],
)
def build(ctx, name=None, host=None, check=False, json=False):
    """Build a project's image, tagged with the commit that built it."""
    from ..image.builder import check_project_files, get_revision
    from ..plan.planner import plan_build

    world = start(ctx, f"app.build {name or ''}".strip(), check=check, aws=False, json_output=json)
    project = world.settings.project_or_default(project_name(world, name, "app.build"))
    check_project_files(world.settings.root, project)
    revision = get_revision(world.settings.root, project, for_push=False, allow_dirty=True)

    def planner(world):
        builder = world.builder(host)
        try:
            return plan_build(world, builder, project, revision)
        finally:
            builder.close()

    stub = target_stub(project.name, kind="image", key=f"{project.name}:{revision.tag[:12]}")
    run_plan(world, "app.build", [(stub, planner)], host=host)


@mvp_task(
    help={
        "name": "project to push: a folder under projects/" + NAME_HELP,
        "cluster": "also point this cluster's tag at the image (default: mvp.default_cluster)",
        "allow_dirty": "push a throwaway image from uncommitted changes (never gets a cluster tag)",
        "host": HOST_HELP,
        "check": "show what would be built, pushed and tagged; change nothing",
        "yes": "move a protected cluster's tag without asking (needed without a terminal)",
        "json": JSON_HELP,
    },
    positional=["name"],
)
def push(ctx, name=None, cluster=None, allow_dirty=False, host=None, check=False, yes=False, json=False):
    """Build if needed, push the commit tag, and point the cluster tag at that image."""
    from ..image.builder import check_project_files, get_revision
    from ..plan.planner import plan_push

    world = start(ctx, f"app.push {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project = world.settings.project_or_default(project_name(world, name, "app.push"))
    target = world.settings.cluster(cluster)
    if project.clusters and target.name not in project.clusters:
        raise UsageError(
            f"project {project.name} does not run in cluster {target.name} "
            f"(mvp.projects.{project.name}.clusters: {', '.join(project.clusters)})"
        )
    check_project_files(world.settings.root, project)
    revision = get_revision(world.settings.root, project, for_push=True, allow_dirty=allow_dirty)

    def planner(world):
        builder = world.builder(host)
        try:
            return plan_push(world, builder, project, target, revision)
        finally:
            builder.close()

    stub = target_stub(project.name, target.name, kind="image", key=f"{project.name}:{revision.short}")
    run_plan(world, "app.push", [(stub, planner)], host=host)


DIRTY_HELP = "deploy a template with uncommitted changes to a protected cluster"


@mvp_task(help={"name": "project to deploy" + NAME_HELP, "cluster": CLUSTER_HELP,
                "check": "show what would change (uncommitted changes too, even for a protected cluster); "
                         "change nothing",
                "yes": YES_HELP, "allow_dirty": DIRTY_HELP, "host": HOST_HELP, "json": JSON_HELP},
          positional=["name"])
def deploy(ctx, name=None, cluster=None, check=False, yes=False, allow_dirty=False, host=None, json=False):
    """Ship HEAD's release to a cluster: build and push if needed, move the tag, update the stack, roll."""
    from ..plan.planner import plan_deploy

    world = start(ctx, f"app.deploy {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project, target = _app(world, name, cluster, "app.deploy")
    planner = lambda world: plan_deploy(world, project, target, allow_dirty=bool(allow_dirty),  # noqa: E731
                                        builder_for=lambda: world.builder(host), check=bool(check))
    run_plan(world, "app.deploy", [(target_stub(project.name, target.name), planner)], host=host)


@mvp_task(help={"name": "project whose commit to clear" + NAME_HELP, "cluster": CLUSTER_HELP,
                "commit": "the commit (hash or unique prefix) app.rollback marked bad (required)",
                "check": "show which mark would be cleared; clear nothing",
                "yes": YES_HELP, "json": JSON_HELP},
          positional=["name"])
def unmark(ctx, name=None, cluster=None, commit=None, check=False, yes=False, json=False):
    """Let a commit that app.rollback marked bad ship again (ci.release, app.promote); recorded in the history."""
    from ..plan.planner import plan_unmark

    require(commit, "--commit", f"inv app.unmark {name or 'NAME'} --cluster prod --commit SHA")
    world = start(ctx, f"app.unmark {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project, target = _app(world, name, cluster, "app.unmark")
    run_plan(world, "app.unmark",
             [(target_stub(project.name, target.name), lambda world: plan_unmark(world, project, target, commit))])


@mvp_task(help={"name": "project to roll" + NAME_HELP, "cluster": CLUSTER_HELP, "check": CHECK_HELP,
                "yes": YES_HELP, "json": JSON_HELP},
          positional=["name"])
def update(ctx, name=None, cluster=None, check=False, yes=False, json=False):
    """Force a new deployment of an app's service (tasks pull the cluster tag again) and wait."""
    from ..plan.planner import plan_update

    world = start(ctx, f"app.update {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project, target = _app(world, name, cluster, "app.update")
    run_plan(world, "app.update", [(target_stub(project.name, target.name), lambda world: plan_update(world, project, target))])


@mvp_task(help={"name": "project to watch" + NAME_HELP, "cluster": CLUSTER_HELP}, positional=["name"])
def wait(ctx, name=None, cluster=None):
    """Wait for an app's current rollout to finish (e.g. after a wait timed out)."""
    from ..aws.discovery import service_names
    from ..plan.planner import check_mapped, get_app_stack
    from ..plan.steps import wait_hint

    world = start(ctx, f"app.wait {name or ''}".strip())
    project, target = _app(world, name, cluster, "app.wait")
    check_mapped(world.settings, project, target)
    world.cluster_stack(target)
    stack = get_app_stack(world, project, target)
    ecs_cluster, service = service_names(world, stack, target)
    key = f"{project.name}@{target.name}"
    with world.reporter.progress(f"waiting for service {service} to roll out"):
        state = world.services().wait_for_rollout(
            ecs_cluster, service, timeout=world.settings.wait_timeout, poll=world.settings.poll_interval,
            resume_hint=wait_hint(project.name, target.name),
            on_progress=lambda s: world.reporter.event(s.progress(), target=key))
    world.reporter.ok(key, f"rolled out; {state.running}/{state.desired} tasks running")
    finish(world)


def _names(settings, name: str | None, cluster) -> list[str]:
    """NAME, else the project whose folder the shell is in, else every project of the cluster."""
    name = name or project_from_cwd(settings.root)
    if name:
        return [settings.project(name).name]
    names = [p.name for p in settings.projects_in(cluster.name)]
    if not names:
        raise UsageError(f"no project runs in cluster {cluster.name}",
                         f"map one to it under mvp.projects.NAME.clusters in invoke.yaml")
    return names


@mvp_task(
    help={
        "name": "project to promote (default: the project whose folder you are in; at the root: every "
                "project of the target cluster whose image differs)",
        "tag": "the image tag of the cluster to promote TO, e.g. prod (required; it names the target cluster)",
        "from": "take the image of this cluster (default: the target's promote_from)",
        "commit": "take the image built from this commit (hash or unique prefix) instead",
        "parallel": PARALLEL_HELP,
        "check": CHECK_HELP,
        "yes": YES_HELP,
        "allow_dirty": DIRTY_HELP + " (where the app's stack is made there)",
        "json": JSON_HELP,
    },
    positional=["name"],
)
def promote(ctx, name=None, tag=None, from_=None, commit=None, parallel=None, check=False, yes=False,
            allow_dirty=False, json=False):
    """Give a cluster the image another cluster runs (no rebuild), then roll it out there."""
    from ..plan.planner import plan_promote, resolve_promotion

    require(tag, "--tag", "inv app.promote --tag prod")
    world = start(ctx, f"app.promote {name or ''} --tag {tag}".replace("  ", " "), check=check, yes=yes,
                  json_output=json)
    settings = world.settings
    target_cluster, source_tag = resolve_promotion(settings, tag, from_ or "", commit or "")
    names = _names(settings, name, target_cluster)
    planners = [(target_stub(n, target_cluster.name),
                 (lambda world, p=settings.project(n): plan_promote(world, p, target_cluster, source_tag=source_tag,
                                                                     commit=commit or "",
                                                                     allow_dirty=bool(allow_dirty))))
                for n in names]
    # A named app in an unprotected cluster goes ahead; a whole-cluster plan is always confirmed.
    confirm = f"promote {len(names)} app(s) to {target_cluster.name}" if (not name and len(names) > 1) else ""
    run_plan(world, "app.promote", planners, confirm=confirm, parallel=parallel)


@mvp_task(
    help={
        "name": "project to roll back (default: the project whose folder you are in; at the root: every app "
                "of the cluster, each to the commit it ran before)",
        "cluster": "cluster to roll back (required)",
        "to": "commit (hash or unique prefix) to return to (default: the one deployed before the current)",
        "parallel": PARALLEL_HELP,
        "check": CHECK_HELP,
        "yes": YES_HELP,
        "json": JSON_HELP,
    },
    positional=["name"],
)
def rollback(ctx, name=None, cluster=None, to=None, parallel=None, check=False, yes=False, json=False):
    """Return apps in a cluster to the previous (or a given) commit: retag, roll out, wait."""
    from ..plan.planner import plan_rollback

    require(cluster, "--cluster", f"inv app.rollback {name or 'NAME'} --cluster stage")
    world = start(ctx, f"app.rollback {name or ''} --cluster {cluster}".replace("  ", " "), check=check, yes=yes,
                  json_output=json)
    target = world.settings.cluster(cluster)
    names = _names(world.settings, name, target)
    if to and len(names) > 1:
        raise UsageError("--to needs NAME: one commit is one app's", "inv app.rollback NAME --cluster C --to SHA")
    planners = [(target_stub(n, target.name), (lambda world, p=world.settings.project(n): plan_rollback(world, p, target, to or "")))
                for n in names]
    what = f"roll {names[0]} in {target.name} back" if len(names) == 1 else \
        f"roll {len(names)} app(s) in {target.name} back"
    run_plan(world, "app.rollback", planners, confirm=what, parallel=parallel)


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` characters; a cut one ends with an ellipsis."""
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


@mvp_task(
    help={
        "name": "project whose history to show" + NAME_HELP,
        "cluster": "only this cluster (default: every cluster the project runs in)",
        "limit": "at most this many entries, newest first (default 20)",
        "json": "print JSON for scripts",
    },
    positional=["name"],
)
def history(ctx, name=None, cluster=None, limit=None, json=False):
    """Every deploy, update, promotion, rollback, release and interruption of an app, newest first."""
    try:
        count = int(limit) if limit is not None else 20
    except ValueError:
        count = 0
    if not 1 <= count <= 1000:
        raise UsageError(f"--limit {limit!r}: give a whole number from 1 to 1000")
    world = start(ctx, f"app.history {name or ''}".strip(), json_output=json)
    project = world.settings.project(project_name(world, name, "app.history"))
    clusters = [world.settings.cluster(cluster)] if cluster is not None else \
        [world.settings.clusters[c] for c in project.clusters]
    records = []
    for target in clusters:
        records += world.history(target).get_records(project.name, limit=count)
    records = sorted(records, key=lambda r: r.at, reverse=True)[:count]
    if json:
        world.reporter.emit_json([r.__dict__ for r in records])
        return
    if not records:
        world.reporter.info(f"no history of {project.name} in {', '.join(c.name for c in clusters)} yet")
        return
    rows = [[r.at[:19].replace("T", " "), r.cluster, r.action, r.outcome, r.commit[:12] or "-",
             r.digest[7:19] or "-", f"{r.duration}s" if r.duration else "-",
             (r.actor or r.by.rsplit(":", 1)[-1]) or "-", _cut(r.message or r.run_url or "", 60) or "-"]
            for r in records]
    world.reporter.table(["at (UTC)", "cluster", "action", "outcome", "commit", "digest", "took", "by", "message"], rows)


@mvp_task(help={"name": "project whose deploy lock to break" + NAME_HELP, "cluster": CLUSTER_HELP,
                "check": "show whose lock would be broken; break nothing",
                "yes": "break it without asking (needed without a terminal)", "json": JSON_HELP},
          positional=["name"])
def unlock(ctx, name=None, cluster=None, check=False, yes=False, json=False):
    """Break an app's deploy lock in a cluster (left by a run that died holding it), after confirmation.

    The history records who broke it and whose it was."""
    from ..plan.planner import plan_unlock

    world = start(ctx, f"app.unlock {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project, target = _app(world, name, cluster, "app.unlock")
    run_plan(world, "app.unlock", [(target_stub(project.name, target.name), lambda world: plan_unlock(world, project, target))],
             confirm=f"break the deploy lock of {project.name} in {target.name}")


@mvp_task(help={"name": "only this project (default: the project whose folder you are in; at the root: every "
                        "project)",
                "json": "print the facts as one JSON document for scripts",
                "html": "also write a self-contained HTML status page to this file (the matrix and "
                        "each app's recent history)"},
          positional=["name"])
def status(ctx, name=None, json=False, html=None):
    """Show what runs where (read from ECS) and each app's state per cluster: what to do, if anything."""
    from ..status import show_status

    target = None
    if html is not None:
        from ..status.page import check_path

        target = check_path(html)
    world = start(ctx, "app.status", json_output=json)
    show_status(world, name or project_from_cwd(world.settings.root) or None, json=json, target=target)


@mvp_task(
    help={
        "name": "project whose logs to show" + NAME_HELP,
        "cluster": CLUSTER_HELP,
        "since": "how far back to start: 30s, 10m, 2h or 1d (default 10m)",
        "follow": "keep printing new lines until Ctrl-C",
    },
    positional=["name"],
)
def logs(ctx, name=None, cluster=None, since="10m", follow=False):
    """Print an app's container logs from CloudWatch Logs."""
    from ..status.logs import print_logs

    world = start(ctx, f"app.logs {name or ''}".strip())
    print_logs(world, project_name(world, name, "app.logs"), cluster, since, follow)


@mvp_task(help={"name": "project to remove" + NAME_HELP, "cluster": "cluster to remove it from (required)",
                "check": CHECK_HELP, "yes": "delete without asking (needed without a terminal)", "json": JSON_HELP},
          positional=["name"])
def destroy(ctx, name=None, cluster=None, check=False, yes=False, json=False):
    """Delete an app's stack from a cluster, after confirmation, and wait."""
    from ..plan.planner import plan_destroy

    require(cluster, "--cluster", f"inv app.destroy {name or 'NAME'} --cluster stage")
    world = start(ctx, f"app.destroy {name or ''} --cluster {cluster}".replace("  ", " "), check=check, yes=yes,
                  json_output=json)
    try:
        project, target = _app(world, name, cluster, "app.destroy")
    except ConfigError as exc:
        # Not in invoke.yaml (any more): the stack the tool made for it may remain, an orphan.
        from ..plan.planner import plan_destroy_orphan

        name = project_name(world, name, "app.destroy")
        run_plan(world, "app.destroy", [(target_stub(name, cluster), lambda world: plan_destroy_orphan(
            world, name, cluster, exc))], confirm=f"delete orphan {name} from {cluster} (stack {name}-{cluster})")
        return
    what = "protected cluster " if target.protected else ""
    run_plan(world, "app.destroy", [(target_stub(project.name, target.name), lambda world: plan_destroy(world, project, target))],
             confirm=f"delete {project.name} from {what}{target.name} (stack {project.stack_name(target.name)})")


@mvp_task(help={"name": "project whose stack is stuck" + NAME_HELP, "cluster": CLUSTER_HELP,
                "skip": "UPDATE_ROLLBACK_FAILED: skip only these resources (LOGICAL_ID[,..]; default: every one "
                        "that blocks it)",
                "check": "show what the repair would do; change nothing",
                "yes": "repair without asking (needed without a terminal)", "json": JSON_HELP},
          positional=["name"])
def repair(ctx, name=None, cluster=None, skip=None, check=False, yes=False, json=False):
    """Get an app's stuck stack moving again: continue a failed rollback, cancel a hung update, finish a failed delete."""
    from ..plan.planner import plan_repair_app
    from .cluster import _skip_list

    skipped = _skip_list(skip)
    world = start(ctx, f"app.repair {name or ''}".strip(), check=check, yes=yes, json_output=json)
    project, target = _app(world, name, cluster, "app.repair")
    run_plan(world, "app.repair", [(target_stub(project.name, target.name),
                                    lambda world: plan_repair_app(world, project, target, skipped))],
             confirm=f"repair the stack of {project.name} in {target.name} ({project.stack_name(target.name)})")
