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
    from ..plan.planner import cluster_key, plan_cluster, plan_fleet_app, plan_orphans

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
            planners.append((target_stub(project.name, name, depends_on=(cluster_key(name),)),
                             (lambda world, p=project, c=cluster: plan_fleet_app(world, p, c, bool(allow_dirty)))))
    planners += plan_orphans(world, bool(prune))
    run_plan(world, "fleet.up", planners, parallel=parallel)

