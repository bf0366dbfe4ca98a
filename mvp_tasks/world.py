"""What one run works with, built once and shared by the planner's and the executor's threads.

Everything here is safe to use from several threads: boto3 clients are made once under a lock and shared (`AwsClients`: clients are thread-safe, sessions are not),
the registry locks its token cache, answers that many targets share (cluster stacks, the caller
identity, what git and docker say) are computed once per run (`memo`, a `Memo`: threads asking
while one computes wait for its answer), and rollouts are read together (`ServiceReader`). Each build
gets its own runner (one Fabric connection per build), made by `builder()`.

`stop` is set by the first Ctrl-C: every wait sleeps on it, so a waiting target notices at once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .errors import Interrupted, MvpError


class ChangeSets:
    """Change sets made while planning and not yet executed or deleted: whatever happens to the
    run (check mode, a refused confirmation, a failure, Ctrl-C), `World.discard_change_sets`
    deletes the ones left, so none outlives it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], None] = {}

    def add(self, stack: str, name: str) -> None:
        with self._lock:
            self._pending[(stack, name)] = None

    def done(self, stack: str, name: str) -> None:
        with self._lock:
            self._pending.pop((stack, name), None)

    def pending(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._pending)


class World:
    """The run's one context: settings, reporter, AWS clients (made when first used: tasks that
    never call AWS never import boto3), the stop flag, and the answers the run shares."""

    def __init__(self, settings: Any, reporter: Any, aws: Any = None):
        from .aws.services import ServiceReader
        from .memo import Memo

        self.settings = settings
        self.reporter = reporter
        self._aws = aws
        self.stop = threading.Event()
        self.stopped_by = "Ctrl-C"  # what set `stop`: Ctrl-C or SIGTERM, for the history
        # A rollout stopped half-way by Ctrl-C or SIGTERM is rolled back at once (--yes, or
        # mvp.rollback_on_interrupt); set by the boundary. See `rolls_back`.
        self.rollback_on_stop = False
        self.reader = ServiceReader()
        self.change_sets = ChangeSets()
        self._lock = threading.RLock()  # `registry` makes the clients under it too
        self._registry = None
        self.memo = Memo()

    @property
    def aws(self):
        with self._lock:
            if self._aws is None:
                from .aws.clients import AwsClients

                self._aws = AwsClients(get_aws_target(self.settings))
            return self._aws

    # --- waiting that an interrupt cuts short ---------------------------------------------------

    def interrupt(self, by: str) -> None:
        """The first interrupt: nothing new starts, every wait ends (`Interrupted`)."""
        self.stopped_by = by
        self.stop.set()

    def rolls_back(self, timed_out: bool) -> bool:
        """Whether a rollout stopped half-way is rolled back at once rather than offered: after Ctrl-C
        or SIGTERM when the run was told (--yes or `mvp.rollback_on_interrupt`); after the wait
        timeout only by `mvp.rollback_on_interrupt`: a rollout past the timeout may be slow, not
        failing, and --yes (which CI passes to every run) must not revert it."""
        setting = bool(getattr(self.settings, "rollback_on_interrupt", False))
        return setting if timed_out else (setting or self.rollback_on_stop)

    def resume(self) -> None:
        """After an interrupted run, before a second one (the rollback offered for what it stopped):
        waits work again, and the next interrupt stops this one."""
        self.stop = threading.Event()

    def sleep(self, seconds: float) -> None:
        if self.stop.wait(max(seconds, 0)):
            raise Interrupted("interrupted")

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise Interrupted("interrupted")

    def discard_change_sets(self) -> None:
        """Delete every change set planning made that was not executed (see `ChangeSets`)."""
        from .aws.stacks import Stacks

        for stack, name in self.change_sets.pending():
            try:
                # Not `self.stacks()`: this runs after an interrupt too, when sleeping is refused.
                Stacks(self.aws.cloudformation).delete_change_set(stack, name)
            except MvpError as exc:
                if "does not exist" not in str(exc) and "ChangeSetNotFound" not in str(exc):
                    self.reporter.warn(f"could not delete change set {name} of stack {stack}: {exc}")
            self.change_sets.done(stack, name)

    # --- AWS -------------------------------------------------------------------------------------

    def stacks(self):
        from .aws.stacks import Stacks

        return Stacks(self.aws.cloudformation, sleep=self.sleep)

    def services(self):
        from .aws.services import Services

        return Services(self.aws.ecs, sleep=self.sleep, reader=self.reader)

    def logs(self):
        from .aws.logs import Logs

        return Logs(self.aws.logs)

    def secrets(self):
        from .aws.secrets import Secrets

        return Secrets(self.aws.ssm)

    def history(self, cluster: Any):
        """The deploy history and locks of `cluster` in the deploy store (`mvp_tasks/state/`).
        Raises when the cluster's stack is missing or not ready, or there is no store yet."""
        from .state.location import cluster_store, find_table, legacy_table

        outputs = self.cluster_stack(cluster).outputs  # the cluster first: it is there and ready for apps
        table = find_table(self.aws.dynamodb, self.settings, self.stacks(), self.memo)
        return cluster_store(self.aws.dynamodb, table, cluster.name, legacy_table(outputs), self.memo)

    def check_cluster_ready(self, cluster: Any) -> None:
        """Refuse, with the fix, a cluster that is not there and ready for apps: its stack is
        missing or not settled, or there is no deploy store yet (the reads are the run's, once)."""
        from .state.location import find_table

        self.cluster_stack(cluster)
        find_table(self.aws.dynamodb, self.settings, self.stacks(), self.memo)

    def cluster_stack(self, cluster: Any, *, fresh: bool = False):
        """The cluster's stack, ready for apps (read once per run unless `fresh`)."""
        from .aws.stacks import UPDATABLE
        from .errors import StackFailed, UsageError

        def read():
            found = self.stacks().get_stack(cluster.stack_name)
            if found is None:
                raise UsageError(f"cluster {cluster.name} does not exist (no stack {cluster.stack_name})",
                                 f"create it first: inv cluster.up {cluster.name}")
            return found

        key = ("cluster stack", cluster.name)
        if fresh:
            self.memo.forget(key)
        stack = self.memo.get(key, read)
        if stack.status not in UPDATABLE:
            raise StackFailed(f"cluster stack {stack.name} is {stack.status}, not ready for apps",
                              f"wait for it or fix it: inv cluster.status {cluster.name}")
        return stack

    @property
    def caller(self) -> str:
        """Who acts, for the history: the STS caller identity, asked once per run."""

        def ask() -> str:
            try:
                return self.aws.get_caller()
            except MvpError:
                return os.environ.get("USER", "unknown")

        return self.memo.get("caller", ask)

    # --- the studio's git ------------------------------------------------------------------------

    def head_commit(self) -> str:
        """HEAD's commit ("" outside git), asked once per run."""
        from .plan.changes import head_commit

        return head_commit(self.settings.root, self.memo)

    def template_dirty(self, path: str) -> bool:
        """Whether the template at `path` (in the repository) has uncommitted changes."""
        from .plan.changes import dirty_template

        return dirty_template(self.settings.root, path, self.memo)

    def config_dirty(self, keys: list[list[str]]) -> bool:
        """Whether those parts of invoke.yaml have uncommitted changes."""
        from .plan.changes import dirty_config

        return dirty_config(self.settings.root, keys, self.memo)

    # --- images ---------------------------------------------------------------------------------

    def sandbox_services(self):
        """The sandbox's engine, registry and base image, but only while AWS calls go to an
        emulator: real stacks must never be given loopback image addresses."""
        from .sandbox import Services, get_services

        if not self.aws.target.endpoint_url:
            return Services()
        return get_services(self.settings.sandbox_dir)

    @property
    def registry(self):
        with self._lock:
            if self._registry is None:
                self._registry = make_registry(self.settings, self.sandbox_services(), self.aws)
            return self._registry

    def builder(self, host: str | None = None):
        from .image.builder import make_builder

        return make_builder(self.settings, self.sandbox_services(), self.registry, host)


def get_aws_target(settings: Any):
    """Where AWS calls go: AWS_ENDPOINT_URL if set, else the local sandbox if it is up, else AWS,
    unless this repository uses its sandbox and it is down: then nothing (an error saying so),
    since a task meant for the sandbox would otherwise quietly act on real AWS."""
    from .aws.clients import AwsTarget
    from .errors import SandboxError
    from .sandbox import DOWN_HINT, get_down_reason, get_moto_endpoint

    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        return AwsTarget(region=region or "us-east-1", profile=settings.profile, endpoint_url=endpoint)
    sandbox = get_moto_endpoint(settings.sandbox_dir)
    if sandbox:
        return AwsTarget(region=region or "us-east-1", endpoint_url=sandbox, sandbox=True)
    down = get_down_reason(settings.sandbox_dir)
    if down:
        raise SandboxError(down, DOWN_HINT)
    return AwsTarget(region=region, profile=settings.profile)


def make_registry(settings: Any, services: Any, aws: Any):
    from .image.registry import OciRegistry

    host = settings.registry or services.registry
    if host and ".dkr.ecr." not in host:
        return OciRegistry(host)
    from .image.ecr import EcrRegistry

    return EcrRegistry(lambda: aws.ecr)
