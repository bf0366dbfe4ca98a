"""Planning the deploy store: its stack (made or upgraded by `cluster.up`) and the copy of a
pre-store cluster's history into it. Where the store is, and its items, are `state/`'s."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..state.location import LEGACY_OUTPUT, TEMPLATE, store_stack_holds, table_exists
from .stacks import plan_stack, stacks_as, with_role
from .steps import EnsureStore, MigrateHistory

if TYPE_CHECKING:
    from ..aws.stacks import StackInfo
    from ..settings import ClusterSettings
    from ..templates import Template
    from .context import World


def store_template() -> Template:
    from ..templates import Template, parse_template

    body = TEMPLATE.read_text(encoding="utf-8")
    data = parse_template(body, "the deploy store's template")
    return Template(path=TEMPLATE, label="the deploy store's template (mvp_tasks/state/store.yml)", body=body,
                    parameters=data.get("Parameters") or {},
                    resources={k: v.get("Type", "?") for k, v in data["Resources"].items()})


def plan_store(world: World) -> EnsureStore | None:
    """The step that makes (or upgrades) the store's stack; None when it is there as it should be,
    or when the studio's own table exists. Planned once per run, whichever cluster asks first."""

    def plan() -> EnsureStore | None:
        state = world.settings.state
        stacks = stacks_as(world, state.cfn_role)
        if state.table and table_exists(world.aws.dynamodb, state.table) and not store_stack_holds(stacks, state):
            return None
        step, _ = plan_stack(stacks, name=state.stack, template=store_template(),
                             parameters={"TableName": state.table}, tags={"mvp:role": "deploy-store"},
                             poll=world.settings.poll_interval, change_sets=world.change_sets)
        return EnsureStore(with_role(step, state.cfn_role)) if step is not None else None

    return world.memo.get(("deploy store", "plan"), plan)


def plan_migration(world: World, cluster: ClusterSettings, stack: StackInfo | None) -> MigrateHistory | None:
    """The step that copies a pre-store cluster's history into the store, or None."""
    legacy = stack.outputs.get(LEGACY_OUTPUT, "") if stack is not None else ""
    if not legacy:
        return None
    try:
        if world.history(cluster).legacy == "":
            return None  # migrated already
    except UsageError:
        pass  # no store yet: this very plan makes it, then migrates
    return MigrateHistory(cluster.name, legacy)
