"""What the studio's CI runs on every push: plan the release (`ci.plan`, the workflow's matrix),
and release the projects that changed (`ci.release`)."""

from __future__ import annotations

from ..errors import UsageError
from .boundary import mvp_task, start

PARALLEL_HELP = "how many projects to plan and release side by side (default: mvp.parallel)"


def _projects(run, cluster, only: str | None) -> list:
    projects = run.settings.projects_in(cluster.name)
    if only is None:
        return projects
    names = [n.strip() for n in only.split(",")]
    if any(not n for n in names):
        raise UsageError(f"--only {only!r}: an empty name; give NAME[,NAME...]")
    mapped = {p.name for p in projects}
    for n in names:
        project = run.settings.project(n)
        if project.name not in mapped:
            raise UsageError(f"--only {n}: project {n} does not run in cluster {cluster.name}",
                             f"add {cluster.name} to mvp.projects.{n}.clusters, or pick another cluster")
    return [p for p in projects if p.name in names]


def _release_planners(run, cluster, projects, host):
    from ..plan.planner import app_key, plan_release
    from ..plan.steps import TargetPlan

    def planner(project):
        # HEAD as the run's world reads it (once per run, however many projects ask).
        return lambda world: plan_release(world, lambda: world.builder(host), project, cluster, world.head_commit(),
                                          run.settings.root)

    return [(TargetPlan(app_key(p.name, cluster.name), project=p.name, cluster=cluster.name),
             _checked(p, cluster, planner(p)))
            for p in projects]


def _checked(project, cluster, planner):
    """`planner`, refusing to ship a project that fails project.check: a project the plan would
    release (or could not plan) is checked, and its first error fails the target. Unchanged
    projects are not linted, so a release with nothing to do stays as quick as before."""
    from ..errors import MvpError
    from ..world import Interrupted

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
    }
)
def release(ctx, cluster=None, only=None, parallel=None, check=False, yes=False, host=None):
    """Push and deploy every project that changed since the commit running in the cluster."""
    from ..apply.executor import run_plan

    run = start(ctx, "ci.release", check=check, yes=yes)
    target = run.settings.cluster(cluster)
    projects = _projects(run, target, only)
    run_plan(run, "ci.release", _release_planners(run, target, projects, host), parallel=parallel, host=host)


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

    run = start(ctx, "ci.plan", check=True, json_output=json)
    target = run.settings.cluster(cluster)
    projects = _projects(run, target, only)
    with Engine(run, parallel=parallel) as engine:
        planned = engine.plan("ci.plan", _release_planners(run, target, projects, None))
    failed = [t for t in planned.targets if t.error]
    matrix = [{"project": t.project, "cluster": t.cluster, "reasons": list(t.reasons) or ["its image or stack differs"]}
              for t in planned.targets if t.changes]
    if json:
        run.reporter.emit_json(matrix)
    else:
        for t in planned.targets:
            if t.error:
                run.reporter.failed(t.key, t.error)
            elif t.changes:
                run.reporter.changed(t.key, "release: " + "; ".join(t.reasons or ("its image or stack differs",)))
            else:
                run.reporter.ok(t.key, t.note)
        run.reporter.finish()
    if failed:
        import sys

        from invoke import Exit

        # As for every engine run: each failed target once on stderr, where CI looks for errors.
        run.reporter.stream.flush()
        for t in failed:
            sys.stderr.write(f"error: {t.key}: {t.error}\n")
        raise Exit(code=1)
