"""What the studio's CI runs on every push: plan the release (`ci.plan`, the workflow's matrix),
and release the projects that changed (`ci.release`)."""

from __future__ import annotations

from ..errors import UsageError
from .boundary import finish, mvp_task, run_plan, start, target_stub

PARALLEL_HELP = "how many projects to plan and release side by side (default: mvp.parallel)"


def _projects(world, cluster, only: str | None) -> list:
    projects = world.settings.projects_in(cluster.name)
    if only is None:
        return projects
    names = [n.strip() for n in only.split(",")]
    if any(not n for n in names):
        raise UsageError(f"--only {only!r}: an empty name; give NAME[,NAME...]")
    mapped = {p.name for p in projects}
    for n in names:
        project = world.settings.project(n)
        if project.name not in mapped:
            raise UsageError(f"--only {n}: project {n} does not run in cluster {cluster.name}",
                             f"add {cluster.name} to mvp.projects.{n}.clusters, or pick another cluster")
    return [p for p in projects if p.name in names]


def _release_planners(world, cluster, projects, host):
    from ..plan.planner import plan_release

    def planner(project):
        # HEAD as the run's world reads it (once per run, however many projects ask).
        return lambda world: plan_release(world, lambda: world.builder(host), project, cluster, world.head_commit(),
                                          world.settings.root)

    return [(target_stub(p.name, cluster.name), _checked(p, cluster, planner(p)))
            for p in projects]


def _checked(project, cluster, planner):
    """`planner`, refusing to ship a project that fails project.check: a project the plan would
    release (or could not plan) is checked, and its first error fails the target. Unchanged
    projects are not linted, so a release with nothing to do stays as quick as before."""
    from ..errors import MvpError
    from ..errors import Interrupted

    def plan(world):
        from ..checks import CheckFailed, check_release, errors_in

        try:
            target = planner(world)
        except Interrupted:
            raise
        except MvpError:
            # A planning error of a project that also fails its checks: the checks say it better
            # (every file and line, not only the first thing planning tripped over).
            findings = check_release(world.settings, project, cluster, world.memo)
            if errors_in(findings):
                raise CheckFailed.of(project.name, findings) from None
            raise
        if target.changes:
            findings = check_release(world.settings, project, cluster, world.memo)
            if errors_in(findings):
                raise CheckFailed.of(project.name, findings)
        return target

    return plan


@mvp_task(
    help={
        "cluster": "cluster to release to (default: mvp.default_cluster)",
        "only": "only these projects (NAME[,NAME...]): what a CI matrix leg runs",
        "parallel": PARALLEL_HELP,
        "check": "show which projects would be released and what would change; change nothing",
        "yes": "answer yes to confirmations (needed without a terminal for protected clusters)",
        "host": "build on this SSH host (default: mvp.build.host)",
        "json": "print every project's outcome as JSON for scripts",
    }
)
def release(ctx, cluster=None, only=None, parallel=None, check=False, yes=False, host=None, json=False):
    """Push and deploy every project that changed since the commit running in the cluster."""
    world = start(ctx, "ci.release", check=check, yes=yes, json_output=json)
    target = world.settings.cluster(cluster)
    projects = _projects(world, target, only)
    run_plan(world, "ci.release", _release_planners(world, target, projects, host), parallel=parallel, host=host)


@mvp_task(
    help={
        "cluster": "cluster to plan the release of (default: mvp.default_cluster)",
        "only": "only these projects (NAME[,NAME...])",
        "parallel": PARALLEL_HELP,
        "json": "print the plan as the GitHub Actions matrix: [{project, cluster, reasons}], [] when nothing changed",
    }
)
def plan(ctx, cluster=None, only=None, parallel=None, json=False):
    """Say what `ci.release` would release and why, changing nothing (`--json`: the CI matrix)."""
    from ..apply.executor import Engine
    from ..report import Outcome

    world = start(ctx, "ci.plan", check=True, json_output=json)
    target = world.settings.cluster(cluster)
    projects = _projects(world, target, only)
    with Engine(world, parallel=parallel) as engine:
        planned = engine.plan("ci.plan", _release_planners(world, target, projects, None))
    if json:
        world.reporter.emit_json([{"project": t.project, "cluster": t.cluster,
                                   "reasons": list(t.reasons) or ["its image or stack differs"]}
                                  for t in planned.targets if t.changes])
    reporter = world.reporter
    for t in planned.targets:
        if t.error:
            reporter.result(t.key, Outcome.FAILED, t.error)
        elif t.changes:
            reporter.result(t.key, Outcome.CHANGED, "release: " + "; ".join(t.reasons or ("its image or stack differs",)))
        else:
            reporter.result(t.key, Outcome.OK, t.note, commit=t.commit)
    finish(world, json_outcomes=False)  # with --json, the matrix is the whole output
