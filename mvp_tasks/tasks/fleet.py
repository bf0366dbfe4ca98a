"""The whole studio at once: every cluster and every app in every cluster it is mapped to."""

from __future__ import annotations

from .boundary import mvp_task, run_plan, start, target_stub


@mvp_task(
    help={
        "parallel": "how many targets to plan and apply side by side (default: mvp.parallel)",
        "check": "show what would change everywhere; change nothing",
        "yes": "answer yes to confirmations (needed without a terminal for protected clusters)",
        "json": "print the plan and the outcomes as JSON for scripts",
        "allow_dirty": "apply cluster and app templates with uncommitted changes to protected clusters too",
        "prune": "also delete every orphan: a stack the tool made for an app or cluster invoke.yaml no longer maps",
    }
)
def up(ctx, parallel=None, check=False, yes=False, json=False, allow_dirty=False, prune=False):
    """Converge everything in invoke.yaml: cluster stacks, and each app to the release (commit) it runs.

    Like Terraform's plan/apply or an Ansible playbook run, for the studio: one plan for every
    target, confirmed once, applied in parallel, a cluster before its apps. A stack left by an app or
    cluster no longer in invoke.yaml is listed as an orphan (skipped); --prune deletes them all."""
    from ..plan.planner import cluster_key, plan_cluster

    world = start(ctx, "fleet.up", check=check, yes=yes, json_output=json)
    settings = world.settings
    planners = []
    for cluster in settings.clusters.values():
        planners.append((target_stub(cluster=cluster.name),
                         (lambda world, c=cluster: plan_cluster(world, c, allow_dirty=bool(allow_dirty),
                                                                task="fleet.up", check=bool(check)))))
    for project in settings.projects.values():
        for name in project.clusters:
            cluster = settings.clusters[name]
            stub = target_stub(project.name, name, depends_on=(cluster_key(name),))
            planners.append((stub, (lambda world, p=project, c=cluster, s=stub: _deploy(world, p, c, s,
                                                                                      bool(allow_dirty)))))
    planners += _orphans(world, bool(prune))
    run_plan(world, "fleet.up", planners, parallel=parallel)


def _deploy(world, project, cluster, stub, allow_dirty: bool = False):
    from ..errors import UsageError
    from ..plan.planner import plan_deploy

    try:
        plan = plan_deploy(world, project, cluster, allow_dirty=allow_dirty, task="fleet.up", running=True)
    except UsageError:
        if world.stacks().get_stack(cluster.stack_name) is not None:
            raise
        # The cluster is created by this very plan: its apps are planned once it exists.
        stub.deferred = lambda w: plan_deploy(w, project, cluster, allow_dirty=allow_dirty, task="fleet.up",
                                              running=True)
        stub.deferred_protected = cluster.protected
        stub.note = f"its cluster {cluster.name} is created first"
        return stub
    plan.depends_on = stub.depends_on
    return plan


def _orphans(world, prune: bool) -> list:
    """A target per orphan stack (skipped with the command that removes it; deleted with --prune),
    a cluster's after its apps'. Which stacks are orphans is read once, before planning."""
    from ..errors import MvpError
    from ..plan.planner import find_orphans, plan_orphan

    try:
        orphans = find_orphans(world)
    except MvpError as exc:
        def refused(world, exc=exc):
            raise exc

        return [(target_stub(kind="cluster", key="orphans"), refused)]
    out = []
    for orphan in orphans:
        after = () if orphan.project else tuple(o.key for o in orphans if o.project and o.cluster == orphan.cluster)
        stub = target_stub(orphan.project, orphan.cluster, depends_on=after)
        out.append((stub, lambda world, o=orphan, a=after: plan_orphan(world, o, prune, after=a)))
    return out
