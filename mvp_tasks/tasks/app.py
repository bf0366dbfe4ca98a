"""The apps in projects/<name>/: images, stacks, rollouts, promotion, rollback, status and logs."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .boundary import mvp_task, require, start

HOST_HELP = "build on this SSH host (user@host[:port]) instead of locally (default: mvp.build.host)"
CLUSTER_HELP = "cluster (default: mvp.default_cluster)"
YES_HELP = "answer yes to confirmations (needed without a terminal for protected clusters)"
CHECK_HELP = "show what would change; change nothing"


PARALLEL_HELP = "how many apps to plan and apply side by side (default: mvp.parallel)"


def _project_and_cluster(run, name: str, cluster: str | None, flag: str = "--cluster"):
    return run.settings.project(name), run.settings.cluster(cluster, flag=flag)


def _one(plan_stub, planner):
    return [(plan_stub, planner)]


def _stub(project: str, cluster: str, kind: str = "app"):
    from ..plan.planner import app_key
    from ..plan.steps import TargetPlan

    return TargetPlan(app_key(project, cluster), kind=kind, project=project, cluster=cluster)


@mvp_task(
    help={
        "name": "project to build: a folder under projects/ (a dirty tree is tagged <commit>-dirty-<hash>)",
        "host": HOST_HELP,
        "check": "show what would be built; build nothing",
    }
)
def build(ctx, name, host=None, check=False):
    """Build a project's image, tagged with the commit that built it."""
    from ..apply.executor import run_plan
    from ..image.builder import check_project_files, get_revision
    from ..plan.planner import plan_build
    from ..plan.steps import TargetPlan

    run = start(ctx, f"app.build {name}", check=check, aws=False)
    project = run.settings.project_or_default(name)
    check_project_files(run.settings.root, project)
    revision = get_revision(run.settings.root, project, for_push=False, allow_dirty=True)

    def planner(world):
        builder = world.builder(host)
        try:
            return plan_build(world, builder, project, revision)
        finally:
            builder.close()

    stub = TargetPlan(f"{project.name}:{revision.tag[:12]}", kind="image", project=project.name)
    run_plan(run, "app.build", [(stub, planner)], host=host)


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
    from ..apply.executor import run_plan
    from ..image.builder import check_project_files, get_revision
    from ..plan.planner import plan_push
    from ..plan.steps import TargetPlan

    run = start(ctx, f"app.push {name}", check=check, yes=yes)
    project = run.settings.project_or_default(name)
    target = run.settings.cluster(cluster)
    if project.clusters and target.name not in project.clusters:
        raise UsageError(
            f"project {project.name} does not run in cluster {target.name} "
            f"(mvp.projects.{project.name}.clusters: {', '.join(project.clusters)})"
        )
    check_project_files(run.settings.root, project)
    revision = get_revision(run.settings.root, project, for_push=True, allow_dirty=allow_dirty)

    def planner(world):
        builder = world.builder(host)
        try:
            return plan_push(world, builder, project, target, revision)
        finally:
            builder.close()

    stub = TargetPlan(f"{project.name}:{revision.short}", kind="image", project=project.name, cluster=target.name)
    run_plan(run, "app.push", [(stub, planner)], host=host)


DIRTY_HELP = "deploy a template with uncommitted changes to a protected cluster"


@mvp_task(help={"name": "project to deploy", "cluster": CLUSTER_HELP, "check": CHECK_HELP, "yes": YES_HELP,
                "allow_dirty": DIRTY_HELP})
def deploy(ctx, name, cluster=None, check=False, yes=False, allow_dirty=False):
    """Create or update an app's stack <name>-<cluster> and wait for its service to roll out."""
    from ..apply.executor import run_plan
    from ..plan.planner import plan_deploy

    run = start(ctx, f"app.deploy {name}", check=check, yes=yes)
    project, target = _project_and_cluster(run, name, cluster)
    planner = lambda world: plan_deploy(world, project, target, allow_dirty=bool(allow_dirty))  # noqa: E731
    run_plan(run, "app.deploy", [(_stub(project.name, target.name), planner)])


@mvp_task(help={"name": "project to roll", "cluster": CLUSTER_HELP, "check": CHECK_HELP, "yes": YES_HELP})
def update(ctx, name, cluster=None, check=False, yes=False):
    """Force a new deployment of an app's service (tasks pull the cluster tag again) and wait."""
    from ..apply.executor import run_plan
    from ..plan.planner import plan_update

    run = start(ctx, f"app.update {name}", check=check, yes=yes)
    project, target = _project_and_cluster(run, name, cluster)
    run_plan(run, "app.update", [(_stub(project.name, target.name), lambda world: plan_update(world, project, target))])


@mvp_task(help={"name": "project to watch", "cluster": CLUSTER_HELP})
def wait(ctx, name, cluster=None):
    """Wait for an app's current rollout to finish (e.g. after a wait timed out)."""
    from ..aws.discovery import service_names
    from ..plan.planner import check_mapped, get_app_stack
    from ..world import World

    run = start(ctx, f"app.wait {name}")
    project, target = _project_and_cluster(run, name, cluster)
    check_mapped(run.settings, project, target)
    world = World(run.settings, run.reporter, run.aws)
    world.cluster_stack(target)
    stack = get_app_stack(world, project, target)
    ecs_cluster, service = service_names(world, stack, target)
    resume = f"ECS keeps going on its own; wait again with `inv app.wait {project.name} --cluster {target.name}`"
    key = f"{project.name}@{target.name}"
    with run.reporter.progress(f"waiting for service {service} to roll out"):
        state = world.services().wait_for_rollout(
            ecs_cluster, service, timeout=run.settings.wait_timeout, poll=run.settings.poll_interval,
            resume_hint=resume, on_progress=lambda s: run.reporter.event(s.progress(), target=key))
    run.reporter.ok(key, f"rolled out; {state.running}/{state.desired} tasks running")
    run.finish()


def _project_from_cwd(root: Path) -> str:
    try:
        parts = Path.cwd().resolve().relative_to(root.resolve()).parts
    except ValueError:
        return ""
    return parts[1] if len(parts) >= 2 and parts[0] == "projects" else ""


def _names(settings, name: str | None, cluster) -> list[str]:
    """NAME, else the project whose folder the shell is in, else every project of the cluster."""
    name = name or _project_from_cwd(settings.root)
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
        "tag": "the target cluster's image tag, e.g. prod (required)",
        "from": "take the image of this cluster (default: the target's promote_from)",
        "commit": "take the image built from this commit (hash or unique prefix) instead",
        "parallel": PARALLEL_HELP,
        "check": CHECK_HELP,
        "yes": YES_HELP,
        "allow_dirty": DIRTY_HELP + " (where the app's stack is made there)",
    },
    positional=["name"],
)
def promote(ctx, name=None, tag=None, from_=None, commit=None, parallel=None, check=False, yes=False,
            allow_dirty=False):
    """Give a cluster the image another cluster runs (no rebuild), then roll it out there."""
    from ..apply.executor import run_plan
    from ..plan.planner import plan_promote

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
    source_tag = ""
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
        source_tag = source_cluster.tag
    names = _names(settings, name, target_cluster)
    planners = [(_stub(n, target_cluster.name),
                 (lambda world, p=settings.project(n): plan_promote(world, p, target_cluster, source_tag=source_tag,
                                                                     commit=commit or "",
                                                                     allow_dirty=bool(allow_dirty))))
                for n in names]
    # A named app in an unprotected cluster goes ahead; a whole-cluster plan is always confirmed.
    confirm = f"promote {len(names)} app(s) to {target_cluster.name}" if (not name and len(names) > 1) else ""
    run_plan(run, "app.promote", planners, confirm=confirm, parallel=parallel)


@mvp_task(
    help={
        "name": "project to roll back (default: every app of the cluster, each to the commit it ran before)",
        "cluster": "cluster to roll back (required)",
        "to": "commit (hash or unique prefix) to return to (default: the one deployed before the current)",
        "parallel": PARALLEL_HELP,
        "check": CHECK_HELP,
        "yes": YES_HELP,
    },
    positional=["name"],
)
def rollback(ctx, name=None, cluster=None, to=None, parallel=None, check=False, yes=False):
    """Return apps in a cluster to the previous (or a given) commit: retag, roll out, wait."""
    from ..apply.executor import run_plan
    from ..plan.planner import plan_rollback

    require(cluster, "--cluster", f"inv app.rollback {name or 'NAME'} --cluster stage")
    if to and not name:
        raise UsageError("--to needs NAME: one commit is one app's", "inv app.rollback NAME --cluster C --to SHA")
    run = start(ctx, f"app.rollback {name or ''} --cluster {cluster}".replace("  ", " "), check=check, yes=yes)
    target = run.settings.cluster(cluster)
    names = [run.settings.project(name).name] if name else _names(run.settings, None, target)
    planners = [(_stub(n, target.name), (lambda world, p=run.settings.project(n): plan_rollback(world, p, target, to or "")))
                for n in names]
    what = f"roll {names[0]} in {target.name} back" if name else f"roll {len(names)} app(s) in {target.name} back"
    run_plan(run, "app.rollback", planners, confirm=what, parallel=parallel)


@mvp_task(
    help={
        "name": "project whose history to show",
        "cluster": "only this cluster (default: every cluster the project runs in)",
        "limit": "at most this many entries, newest first (default 20)",
        "json": "print JSON for scripts",
    },
    positional=["name"],
)
def history(ctx, name=None, cluster=None, limit=None, json=False):
    """Every deploy, update, promotion, rollback, release and interruption of an app, newest first."""
    from ..world import World

    require(name, "NAME", "inv app.history museum-adventure")
    try:
        count = int(limit) if limit is not None else 20
    except ValueError:
        count = 0
    if not 1 <= count <= 1000:
        raise UsageError(f"--limit {limit!r}: give a whole number from 1 to 1000")
    run = start(ctx, f"app.history {name}", json_output=json)
    project = run.settings.project(name)
    clusters = [run.settings.cluster(cluster)] if cluster is not None else \
        [run.settings.clusters[c] for c in project.clusters]
    world = World(run.settings, run.reporter, run.aws)
    records = []
    for target in clusters:
        records += world.history(target).get_records(project.name, limit=count)
    records = sorted(records, key=lambda r: r.at, reverse=True)[:count]
    if json:
        run.reporter.emit_json([r.__dict__ for r in records])
        return
    if not records:
        run.reporter.info(f"no history of {project.name} in {', '.join(c.name for c in clusters)} yet")
        return
    rows = [[r.at[:19].replace("T", " "), r.cluster, r.action, r.outcome, r.commit[:12] or "-",
             r.digest[7:19] or "-", f"{r.duration}s" if r.duration else "-",
             (r.actor or r.by.rsplit(":", 1)[-1]) or "-", (r.message or r.run_url or "")[:60] or "-"]
            for r in records]
    run.reporter.table(["at (UTC)", "cluster", "action", "outcome", "commit", "digest", "took", "by", "message"], rows)


@mvp_task(help={"name": "project whose deploy lock to break", "cluster": CLUSTER_HELP,
                "yes": "break it without asking (needed without a terminal)"})
def unlock(ctx, name, cluster=None, yes=False):
    """Break an app's deploy lock in a cluster (left by a run that died holding it), after confirmation.

    The history records who broke it and whose it was.
    """
    from ..world import World

    run = start(ctx, f"app.unlock {name}", yes=yes)
    project, target = _project_and_cluster(run, name, cluster)
    world = World(run.settings, run.reporter, run.aws)
    store = world.history(target)
    holder = store.get_lock(project.name)
    if holder is None:
        run.reporter.info(f"ok: {project.name}@{target.name}  no deploy lock is held")
        return
    run.reporter.info(f"{project.name}@{target.name}: deploy lock held by {holder.describe()}")
    run.reporter.confirm(f"break the deploy lock of {project.name} in {target.name}")
    message = f"broke the deploy lock held by {holder.describe()}"
    if not store.break_lock(project.name, holder.token):
        raise UsageError(f"the deploy lock of {project.name} in {target.name} changed hands meanwhile; "
                         "nothing was broken", f"look again: inv app.unlock {project.name} --cluster {target.name}")
    store.record(project.name, action="unlock", commit="", digest="", outcome="succeeded", by=world.caller,
                 message=message)
    run.reporter.info(f"changed: {project.name}@{target.name}  {message}")


@mvp_task(help={"name": "only this project (default: every project)",
                "json": "print the facts as one JSON document for scripts",
                "html": "also write a self-contained HTML status page to this file (the matrix and "
                        "each app's recent history)"},
          positional=["name"])
def status(ctx, name=None, json=False, html=None):
    """Show what runs where (read from ECS), where each cluster tag points, and whether HEAD is live."""
    from . import status as app_status

    target = None
    if html is not None:
        from ..status_page import check_path

        target = check_path(html)
    run = start(ctx, "app.status", json_output=json)
    app_status.status(run, name, json=json, target=target)


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
    from ..apply.executor import run_plan
    from ..plan.planner import plan_destroy

    require(cluster, "--cluster", f"inv app.destroy {name} --cluster stage")
    run = start(ctx, f"app.destroy {name} --cluster {cluster}", check=check, yes=yes)
    project, target = _project_and_cluster(run, name, cluster)
    what = "protected cluster " if target.protected else ""
    run_plan(run, "app.destroy", [(_stub(project.name, target.name), lambda world: plan_destroy(world, project, target))],
             confirm=f"delete {name} from {what}{target.name} (stack {project.stack_name(target.name)})")
