"""The shared Fargate clusters: one CloudFormation stack per cluster, named after it."""

from __future__ import annotations

from .boundary import mvp_task, require, run_plan, start, target_stub


@mvp_task(
    help={
        "name": "cluster to create or update (default: mvp.default_cluster)",
        "check": "show what would change; change nothing",
        "yes": "answer yes to confirmations (needed without a terminal for protected clusters)",
        "allow_dirty": "apply a cluster template with uncommitted changes to a protected cluster",
        "json": "print the outcome as JSON for scripts",
    },
    positional=["name"],
)
def up(ctx, name=None, check=False, yes=False, allow_dirty=False, json=False):
    """Create or update a cluster's stack, previewing the change first."""
    from ..plan.planner import plan_cluster

    world = start(ctx, f"cluster.up {name or ''}".strip(), check=check, yes=yes, json_output=json)
    cluster = world.settings.cluster(name, flag="--name")
    run_plan(world, "cluster.up", [(target_stub(cluster=cluster.name), lambda world: plan_cluster(world, cluster,
                                                                                   allow_dirty=bool(allow_dirty),
                                                                                   check=bool(check)))])


def _when(stack) -> str:
    moment = stack.last_updated or stack.created
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else "-"


@mvp_task(
    help={
        "name": "only this cluster (default: every configured cluster)",
        "json": "print JSON for scripts instead of a table",
    },
    positional=["name"],
)
def status(ctx, name=None, json=False):
    """Show each cluster's stack status, last update and outputs."""
    world = start(ctx, "cluster.status", json_output=json)
    clusters = [world.settings.cluster(name, flag="--name")] if name is not None else list(world.settings.clusters.values())
    stacks = world.stacks()
    rows, data = [], []
    for cluster in clusters:
        stack = stacks.get_stack(cluster.stack_name)
        entry = {
            "cluster": cluster.name,
            "stack": cluster.stack_name,
            "status": stack.status if stack else "NOT_DEPLOYED",
            "last_updated": (stack.last_updated or stack.created).isoformat() if stack and (stack.last_updated or stack.created) else None,
            "protected": cluster.protected,
            "termination_protection": stack.termination_protection if stack else False,
            "outputs": dict(stack.outputs) if stack else {},
        }
        data.append(entry)
        outputs = "\n".join(f"{k}={v}" for k, v in sorted(entry["outputs"].items())) or "-"
        rows.append([cluster.name, entry["status"], _when(stack) if stack else "-",
                     "yes" if cluster.protected else "no", outputs])
    if json:
        world.reporter.emit_json(data)
        return
    if world.reporter.interactive:
        world.reporter.table(["cluster", "status", "last updated", "protected", "outputs"], rows)
    else:
        for row, entry in zip(rows, data):
            world.reporter.info(f"{row[0]}: {row[1]}  last updated {row[2]}  protected={row[3]}")
            for k, v in sorted(entry["outputs"].items()):
                world.reporter.info(f"    {k} = {v}")


@mvp_task(
    help={
        "name": "cluster to delete (required)",
        "yes": "delete without asking (needed without a terminal)",
        "check": "show what would be deleted; delete nothing",
        "json": "print the outcome as JSON for scripts",
    },
    positional=["name"],
)
def down(ctx, name=None, yes=False, check=False, json=False):
    """Delete a cluster's stack, after confirmation; refuses while apps still run in it."""
    from ..plan.planner import plan_cluster_down

    require(name, "NAME", "inv cluster.down stage")
    world = start(ctx, f"cluster.down {name}", check=check, yes=yes, json_output=json)
    cluster = world.settings.cluster(name, flag="--name")
    what = "protected cluster" if cluster.protected else "cluster"
    run_plan(world, "cluster.down", [(target_stub(cluster=cluster.name), lambda world: plan_cluster_down(world, cluster))],
             confirm=f"delete {what} {cluster.name} (stack {cluster.stack_name})")


def _skip_list(skip):
    """`--skip A,B` as a tuple of logical ids; None when not given (skip every blocking resource)."""
    if skip is None:
        return None
    from ..errors import UsageError

    names = tuple(s.strip() for s in str(skip).split(",") if s.strip())
    if not names or any(not n.replace("-", "").isalnum() for n in names):
        raise UsageError(f"--skip {skip!r}: give logical ids separated by commas (e.g. --skip Service,LoadBalancer)")
    return names


@mvp_task(
    help={
        "name": "cluster whose stack is stuck (required)",
        "skip": "UPDATE_ROLLBACK_FAILED: skip only these resources (LOGICAL_ID[,..]; default: every one that blocks it)",
        "check": "show what the repair would do; change nothing",
        "yes": "repair without asking (needed without a terminal)",
        "json": "print the outcome as JSON for scripts",
    },
    positional=["name"],
)
def repair(ctx, name=None, skip=None, check=False, yes=False, json=False):
    """Get a stuck cluster stack moving again: continue a failed rollback, cancel a hung update, finish a failed delete."""
    from ..plan.planner import plan_repair_cluster

    require(name, "NAME", "inv cluster.repair stage")
    skipped = _skip_list(skip)
    world = start(ctx, f"cluster.repair {name}", check=check, yes=yes, json_output=json)
    cluster = world.settings.cluster(name, flag="--name")
    run_plan(world, "cluster.repair", [(target_stub(cluster=cluster.name), lambda world: plan_repair_cluster(world, cluster, skipped))],
             confirm=f"repair the stack of cluster {cluster.name} ({cluster.stack_name})")
