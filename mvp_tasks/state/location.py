"""Where the deploy store's table lives. Nothing outside `mvp_tasks/state/` knows.

In this order:
1. `mvp.state.table`, a table the studio names: used as it is when it exists; else `cluster.up`
   creates it (through the store's stack, with that name).
2. The store's own stack (`mvp.state.stack`, default `mvp-deploy-state`), one per account and
   region, made by the first `cluster.up`: one DynamoDB table, output `Table`. A stack, not a bare
   CreateTable, so that the tool upgrades it the way it upgrades everything (a change set, shown
   in the plan) and a person sees in the console what made it.

Clusters made before the store kept their history in a table of their own stack (output
`DeployHistoryTable`). Until `cluster.up` copies it into the store (`MigrateHistory`, planned
before the cluster's stack update that drops the table from our template; it stays, retained),
reads merge both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError

TEMPLATE = Path(__file__).with_name("store.yml")
LEGACY_OUTPUT = "DeployHistoryTable"


def store_template():
    from ..templates import Template, parse_template

    body = TEMPLATE.read_text(encoding="utf-8")
    data = parse_template(body, "the deploy store's template")
    return Template(path=TEMPLATE, label="the deploy store's template (mvp_tasks/state/store.yml)", body=body,
                    parameters=data.get("Parameters") or {},
                    resources={k: v.get("Type", "?") for k, v in data["Resources"].items()})


def _table_exists(world: Any, name: str) -> bool:
    from ..aws.clients import aws_errors, error_code
    from ..errors import AwsError

    try:
        with aws_errors():
            world.aws.dynamodb.describe_table(TableName=name)
    except AwsError as exc:
        if error_code(exc.__cause__) == "ResourceNotFoundException":
            return False
        raise
    return True


def find_table(world: Any) -> str:
    """The store's table name (read once per run); `UsageError` when there is no store yet."""
    state = world.settings.state

    def find() -> str:
        if state.table and _table_exists(world, state.table):
            return state.table
        stack = world.stacks().get_stack(state.stack)
        table = stack.outputs.get("Table", "") if stack is not None else ""
        if not table:
            where = f"table {state.table}" if state.table else f"stack {state.stack}"
            raise UsageError(f"there is no deploy store in this account and region yet ({where})",
                             f"create it: inv cluster.up {world.settings.default_cluster}")
        return table

    return world.memo.get(("deploy store", "table"), find)


def cluster_store(world: Any, cluster: Any):
    """The deploy history and locks of `cluster`, with its old table while not migrated."""
    from .store import ClusterStore

    legacy = legacy_table(world, cluster)  # the cluster first: it is there and ready for apps
    table = find_table(world)
    store = ClusterStore(world.aws.dynamodb, table, cluster.name)
    if legacy and not world.memo.get(("deploy store", "migrated", cluster.name, legacy),
                                     lambda: store.is_migrated(legacy)):
        store.legacy = legacy
    return store


def legacy_table(world: Any, cluster: Any) -> str:
    """The table of a cluster made before the store (its stack's old output), if any."""
    return world.cluster_stack(cluster).outputs.get(LEGACY_OUTPUT, "")


def plan_store(world: Any):
    """The step that makes (or upgrades) the store's stack; None when it is there as it should be,
    or when the studio's own table exists. Planned once per run, whichever cluster asks first."""

    def plan():
        from ..plan.planner import stacks_as, with_role
        from ..plan.stacks import plan_stack
        from ..plan.steps import EnsureStore

        state = world.settings.state
        if state.table and _table_exists(world, state.table) and not _store_stack_holds(world, state):
            return None
        step, _ = plan_stack(stacks_as(world, state.cfn_role), name=state.stack, template=store_template(),
                             parameters={"TableName": state.table}, tags={"mvp:role": "deploy-store"},
                             poll=world.settings.poll_interval, change_sets=world.change_sets)
        return EnsureStore(with_role(step, state.cfn_role)) if step is not None else None

    return world.memo.get(("deploy store", "plan"), plan)


def _store_stack_holds(world: Any, state: Any) -> bool:
    stack = world.stacks().get_stack(state.stack)
    return stack is not None and stack.outputs.get("Table") == state.table


def plan_migration(world: Any, cluster: Any, stack: Any):
    """The step that copies a pre-store cluster's history into the store, or None."""
    from ..plan.steps import MigrateHistory

    legacy = stack.outputs.get(LEGACY_OUTPUT, "") if stack is not None else ""
    if not legacy:
        return None
    try:
        if cluster_store(world, cluster).legacy == "":
            return None  # migrated already
    except UsageError:
        pass  # no store yet: this very plan makes it, then migrates
    return MigrateHistory(cluster.name, legacy)


def store_made(world: Any) -> None:
    """The store's stack was just made: where its table is must be read again."""
    world.memo.forget(("deploy store", "table"))
