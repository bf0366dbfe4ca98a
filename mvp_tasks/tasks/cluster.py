"""The shared Fargate clusters: one CloudFormation stack per cluster, named after it."""

from __future__ import annotations

from ..errors import UsageError
from .boundary import Run, mvp_task, require, start


def _well_known(cluster) -> dict[str, str]:
    return {"ClusterName": cluster.name, "EnvironmentName": cluster.name}


def _stacks(run: Run):
    from ..aws.stacks import Stacks

    return Stacks(run.aws.cloudformation)


@mvp_task(
    help={
        "name": "cluster to create or update (default: mvp.default_cluster)",
        "check": "show what would change; change nothing",
        "yes": "answer yes to confirmations (needed without a terminal for protected clusters)",
    },
    positional=["name"],
)
def up(ctx, name=None, check=False, yes=False):
    """Create or update a cluster's stack, previewing the change first."""
    from ..templates import expand_all, fill_parameters, load_template
    from .converge import ensure_stack

    run = start(ctx, f"cluster.up {name or ''}".strip(), check=check, yes=yes)
    cluster = run.settings.cluster(name, flag="--name")
    key = f"mvp.clusters.{cluster.name}"
    template = load_template(run.settings.root / cluster.template, run.settings.root, f"{key}.template")
    placeholders = {"cluster": cluster.name, "tag": cluster.tag}
    configured = expand_all(cluster.parameters, placeholders, f"{key}.parameters")
    parameters = fill_parameters(template, _well_known(cluster), configured, f"{key}.parameters")
    stacks = _stacks(run)
    ensure_stack(
        stacks, run.reporter,
        name=cluster.stack_name,
        template=template,
        parameters=parameters,
        tags={"mvp:cluster": cluster.name},
        protect=cluster.protected,
        confirm_question=f"change protected cluster {cluster.name}" if cluster.protected else "",
        timeout=run.settings.wait_timeout,
        poll=run.settings.poll_interval,
    )
    run.finish()


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
    run = start(ctx, "cluster.status", json_output=json)
    clusters = [run.settings.cluster(name, flag="--name")] if name is not None else list(run.settings.clusters.values())
    stacks = _stacks(run)
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
        run.reporter.emit_json(data)
        return
    if run.reporter.interactive:
        run.reporter.table(["cluster", "status", "last updated", "protected", "outputs"], rows)
    else:
        for row, entry in zip(rows, data):
            run.reporter.info(f"{row[0]}: {row[1]}  last updated {row[2]}  protected={row[3]}")
            for k, v in sorted(entry["outputs"].items()):
                run.reporter.info(f"    {k} = {v}")


@mvp_task(
    help={
        "name": "cluster to delete (required)",
        "yes": "delete without asking (needed without a terminal)",
        "check": "show what would be deleted; delete nothing",
    },
    positional=["name"],
)
def down(ctx, name=None, yes=False, check=False):
    """Delete a cluster's stack, after confirmation; refuses while apps still run in it."""
    from ..report import Outcome
    from .converge import delete_stack

    require(name, "NAME", "inv cluster.down stage")
    run = start(ctx, f"cluster.down {name}", check=check, yes=yes)
    cluster = run.settings.cluster(name, flag="--name")
    stacks = _stacks(run)
    stack = stacks.get_stack(cluster.stack_name)
    if stack is None:
        run.reporter.ok(cluster.name, "no such stack; nothing to delete")
        return run.finish()
    live = set(stacks.list_live_stack_names())
    # Configured apps by name, and any stack the tool deployed into this cluster (a project since
    # removed from invoke.yaml still has its stack).
    apps = sorted({p.stack_name(cluster.name) for p in run.settings.projects.values()
                   if p.stack_name(cluster.name) in live}
                  | (set(stacks.list_stacks_tagged("mvp:cluster", cluster.name)) - {stack.name}))
    if apps:
        raise UsageError(
            f"cluster {cluster.name} still runs app stacks: {', '.join(apps)}",
            f"remove them first with `inv app.destroy NAME --cluster {cluster.name}`",
        )
    lines = [f"- stack {stack.name} ({stack.status}) and everything in it: VPC, subnets, ECS cluster"]
    if stack.termination_protection:
        lines.append("~ termination protection off")
    run.reporter.plan(cluster.name, lines)
    if run.reporter.check:
        run.reporter.changed(cluster.name, "would delete the cluster stack")
        return run.finish()
    what = "protected cluster" if cluster.protected else "cluster"
    run.reporter.confirm(f"delete {what} {cluster.name} (stack {stack.name})")
    delete_stack(stacks, run.reporter, stack, timeout=run.settings.wait_timeout, poll=run.settings.poll_interval)
    run.reporter.result(cluster.name, Outcome.CHANGED, "stack deleted")
    run.finish()
