"""What planning reads of a run: the `World` (mvp_tasks/world.py) as planners see it.

A Protocol, not an import of world.py: the World is built above plan/ (it asks plan.changes what
git says), so plan/ names what it needs of it and imports nothing from above.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..aws.secrets import Secrets
    from ..aws.services import Services
    from ..aws.stacks import StackInfo, Stacks
    from ..image.registry import Registry
    from ..memo import Memo
    from ..settings import ClusterSettings, Settings
    from ..state.store import ClusterStore


class ChangeSetLog(Protocol):
    """Where planning notes the change sets it makes (`world.ChangeSets`), so none outlives the run."""

    def add(self, stack: str, name: str) -> None: ...

    def done(self, stack: str, name: str) -> None: ...


class World(Protocol):
    settings: Settings
    memo: Memo
    change_sets: ChangeSetLog
    aws: Any  # aws.clients.AwsClients

    @property
    def registry(self) -> Registry: ...

    def stacks(self) -> Stacks: ...

    def services(self) -> Services: ...

    def secrets(self) -> Secrets: ...

    def history(self, cluster: ClusterSettings) -> ClusterStore: ...

    def cluster_stack(self, cluster: ClusterSettings, *, fresh: bool = False) -> StackInfo: ...

    def check_cluster_ready(self, cluster: ClusterSettings) -> None: ...

    def head_commit(self) -> str: ...

    def template_dirty(self, path: str) -> bool: ...

    def config_dirty(self, keys: list[list[str]]) -> bool: ...
