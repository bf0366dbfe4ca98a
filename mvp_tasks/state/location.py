"""Where the deploy store's table lives. Nothing outside `mvp_tasks/state/` knows.

In this order:
1. `mvp.state.table`, a table the studio names: used as it is when it exists; else `cluster.up`
   creates it (through the store's stack, with that name).
2. The store's own stack (`mvp.state.stack`, default `mvp-deploy-state`), one per account and
   region, made by the first `cluster.up`: one DynamoDB table, output `Table`. A stack, not a bare
   CreateTable, so that the tool upgrades it the way it upgrades everything (a change set, shown
   in the plan) and a person sees in the console what made it. Planning that stack is the
   planner's (`plan/store.py`); this module only finds what is there.

Clusters made before the store kept their history in a table of their own stack (output
`DeployHistoryTable`). Until `cluster.up` copies it into the store (`MigrateHistory`, planned
before the cluster's stack update that drops the table from our template; it stays, retained),
reads merge both.

Everything here takes plain values (a DynamoDB client, the settings, a reader of
stacks, the run's memo), never the run's whole world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

from ..errors import UsageError
from ..memo import Memo
from ..settings import Settings, StateSettings

TEMPLATE = Path(__file__).with_name("store.yml")
LEGACY_OUTPUT = "DeployHistoryTable"
TABLE_KEY = ("deploy store", "table")


class StackReader(Protocol):
    """What finding the store reads of CloudFormation (`aws.stacks.Stacks` is one)."""

    def get_stack(self, name: str) -> Any: ...


def table_exists(dynamodb: Any, name: str) -> bool:
    from ..aws.clients import aws_errors, error_code
    from ..errors import AwsError

    try:
        with aws_errors():
            dynamodb.describe_table(TableName=name)
    except AwsError as exc:
        if error_code(exc.__cause__) == "ResourceNotFoundException":
            return False
        raise
    return True


def store_stack_holds(stacks: StackReader, state: StateSettings) -> bool:
    """Whether the store's own stack is the one that made the studio's named table."""
    stack = stacks.get_stack(state.stack)
    return stack is not None and stack.outputs.get("Table") == state.table


def find_table(dynamodb: Any, settings: Settings, stacks: StackReader, memo: Memo) -> str:
    """The store's table name (read once per run); `UsageError` when there is no store yet."""

    def find() -> str:
        state = settings.state
        if state.table and table_exists(dynamodb, state.table):
            return state.table
        stack = stacks.get_stack(state.stack)
        table = stack.outputs.get("Table", "") if stack is not None else ""
        if not table:
            where = f"table {state.table}" if state.table else f"stack {state.stack}"
            raise UsageError(f"there is no deploy store in this account and region yet ({where})",
                             f"create it: inv cluster.up {settings.default_cluster}")
        return table

    return memo.get(TABLE_KEY, find)


def legacy_table(cluster_outputs: Mapping[str, str]) -> str:
    """The table of a cluster made before the store (its stack's old output), if any."""
    return cluster_outputs.get(LEGACY_OUTPUT, "")


def cluster_store(dynamodb: Any, table: str, cluster: str, legacy: str, memo: Memo):
    """The deploy history and locks of `cluster` in the store's `table`, with its old table
    `legacy` ("" for none) while that is not migrated."""
    from .store import ClusterStore

    store = ClusterStore(dynamodb, table, cluster)
    if legacy and not memo.get(("deploy store", "migrated", cluster, legacy), lambda: store.is_migrated(legacy)):
        store.legacy = legacy
    return store


def store_made(memo: Memo) -> None:
    """The store's stack was just made: where its table is must be read again."""
    memo.forget(TABLE_KEY)
