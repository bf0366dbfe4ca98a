"""Applying steps: one function per step type. They act, wait and verify; they never ask and never
print (progress goes to the reporter as events of their target)."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from ..aws.discovery import service_names
from ..errors import AwsError, Interrupted, MvpError, UsageError, WaitTimeout
from ..plan.steps import (Action, BreakLock, BuildImage, CancelUpdate, ClearMark, ContinueRollback, DeleteSecret,
                          DeleteStack, EnsureStack, EnsureStore, MigrateHistory, MoveTag, PushImage, PutSecret,
                          RetainDelete, RollBackService, RollService, StackAction, TargetKind, family_revision,
                          wait_command,
                          wait_hint)


class TargetRun:
    """One target being applied: its plan, its guard, its builder, what its steps learnt."""

    def __init__(self, world: Any, plan: Any, guard: Any, cluster: Any, host: str | None = None,
                 slot: Any = None):
        self.world = world
        self.slot = slot  # the executor's `Slot`: given up while the target waits on AWS
        self.plan = plan
        self.guard = guard
        self.cluster = cluster
        self.host = host
        self.builder = None
        self.digest = ""  # what a push gave, or what the target now runs
        self.service = None  # the last ServiceState seen
        self.done = ""  # what was done, when the steps know better than the plan (a secret's version)
        self.record = ""  # the history record's message
        self.rolled_back = ""  # a rollout stopped half-way and rolled back at once: what was done
        self.offer = None  # a rollout stopped half-way, not rolled back: its `RollBackService`, to offer

    def event(self, text: str, failed: bool = False) -> None:
        self.world.reporter.event(text, failed=failed, target=self.plan.key)

    def get_builder(self):
        if self.builder is None:
            self.builder = self.world.builder(self.host)
        return self.builder

    def close(self) -> None:
        if self.builder is not None:
            self.builder.close()
            self.builder = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait on AWS: the target does no work meanwhile, so another may have its slot."""
        if self.slot is None:
            yield
        else:
            with self.slot.waiting():
                yield

    @property
    def timeout(self) -> float:
        return self.world.settings.wait_timeout

    @property
    def poll(self) -> float:
        return self.world.settings.poll_interval


def apply_step(run: TargetRun, step: Any) -> None:
    run.world.checkpoint()
    if step.locks:
        run.guard.lock()
    else:
        run.guard.act()
    APPLY[type(step)](run, step)


# --- stacks --------------------------------------------------------------------------------------


def _printer(run: TargetRun):
    return lambda event: run.event(event.line(), failed=event.failed)


def _follow(run: TargetRun) -> str:
    if run.plan.kind is TargetKind.CLUSTER:
        return f"inv cluster.status {run.plan.cluster}"
    return f"inv app.status {run.plan.project}"


def _wait_stack(run: TargetRun, stacks: Any, name: str, expected: set[str], action: str, *, stack_id: str = "",
                after: str = "") -> Any:
    what = f"stack {name}: {action}"
    run.guard.started_in_aws(what, _follow(run))
    run.world.checkpoint()  # interrupted while starting it: stop following, AWS goes on by itself
    with run.waiting():
        final, events = stacks.wait_for_stack(name, stack_id=stack_id, timeout=run.timeout, poll=run.poll,
                                              after_event_id=after, on_event=_printer(run))
    run.guard.settled_in_aws(what)
    stacks.check_settled(final, events, expected, action)
    return final


def _delete(run: TargetRun, stacks: Any, name: str, stack_id: str, protection: bool) -> None:
    undo = None
    if protection:
        stacks.set_termination_protection(name, False)
        ref = stack_id or name

        def protect_again() -> None:
            # Only a stack the delete left standing (refused, DELETE_FAILED) is protected again: one
            # being deleted goes on by itself, and is said to be.
            current = stacks.get_stack(ref)
            if current is None or current.status in ("DELETE_IN_PROGRESS", "DELETE_COMPLETE"):
                raise AwsError(f"stack {name} is {current.status if current else 'gone'}")
            stacks.set_termination_protection(ref, True)

        # A delete that fails must not leave a protected stack unprotected.
        undo = (f"termination protection of stack {name} turned back on", protect_again)
        run.guard.on_undo(*undo)
    after = stacks.get_latest_event_id(stack_id or name)
    stacks.delete_stack(name)
    _wait_stack(run, stacks, name, {"DELETE_COMPLETE"}, "delete", stack_id=stack_id, after=after)
    if undo is not None:
        run.guard.undo.remove(undo)  # deleted: there is nothing left to protect


def apply_ensure_stack(run: TargetRun, step: EnsureStack) -> None:
    stacks = _stacks_as(run, step.role_arn)
    if step.action in (StackAction.CREATE, StackAction.RECREATE):
        if step.old_stack_id:
            old = stacks.get_stack(step.old_stack_id)
            if old is not None and old.status != "DELETE_COMPLETE":
                _delete(run, stacks, step.stack, step.old_stack_id, old.termination_protection)
        stack_id = stacks.create_stack(step.stack, step.template.body, step.parameters, step.tags,
                                       protect=step.protect)
        _wait_stack(run, stacks, step.stack, {"CREATE_COMPLETE"}, "create", stack_id=stack_id)
    elif step.action is StackAction.UPDATE:
        after = stacks.get_latest_event_id(step.stack)
        stacks.execute_change_set(step.stack, step.change_set)
        run.world.change_sets.done(step.stack, step.change_set)
        _wait_stack(run, stacks, step.stack, {"UPDATE_COMPLETE"}, "update", after=after)
        if step.protect:
            stacks.set_termination_protection(step.stack, True)
    elif step.action is StackAction.PROTECT:
        stacks.set_termination_protection(step.stack, True)
    if run.cluster is not None and step.stack == run.cluster.stack_name:
        # The cluster's own stack changed: the rest of the run (its apps planned once it is applied)
        # reads its outputs and its ECS cluster again, not the answer from before.
        run.world.memo.forget(("cluster stack", run.cluster.name))
    if step.service:
        # Read after the operation: its outputs (or resources) name the service, and the task
        # definition it registered (where the template says), which the rollout must run.
        stack = stacks.get_stack(step.stack)
        registered = (stack.outputs.get("TaskDefinitionArn", "") if stack is not None else "")
        _wait_service(run, service_names(run.world, stack, run.cluster, fresh=True), task_definition=registered)


# --- services ------------------------------------------------------------------------------------


class _Clock:
    """Elapsed time of one wait, as live lines show it: `[12s]`, `[2m05s]`."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __str__(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"[{seconds // 60}m{seconds % 60:02d}s]" if seconds >= 60 else f"[{seconds}s]"


def _wait_service(run: TargetRun, names: tuple[str, str], deployment_id: str = "", task_definition: str = "",
                  *, own_rollback: bool = False) -> None:
    """Follow the rollout of service `names` to its end. A failed one is rolled back at once; one
    stopped half-way (Ctrl-C, SIGTERM, the wait timeout) is rolled back at once when the run says so
    (`World.rolls_back`), else offered after the run. Neither for a rollback's own rollout
    (`own_rollback`, or a target whose action is a rollback): it is not undone by another."""
    from ..aws.services import RolloutFailed, RolloutSeen

    ecs_cluster, service = names
    what = f"service {service}: rollout"
    resume = wait_hint(run.plan.project, run.plan.cluster)
    follow = wait_command(run.plan.project, run.plan.cluster)
    run.guard.started_in_aws(what, follow)
    run.world.checkpoint()
    services = run.world.services()
    clock = _Clock()
    seen = RolloutSeen(deployment_id=deployment_id, task_definition=task_definition)
    undoable = not own_rollback and run.plan.action not in (Action.ROLLBACK, Action.SERVICE_ROLLBACK)

    def quiet(state: Any, _seconds: float) -> None:
        primary = state.primary
        run.event(f"{clock} still waiting for service {service} to run {state.desired} task(s) of deployment "
                  f"{deployment_id or (primary.id if primary else '?')} ({state.progress()}); nothing changed for a "
                  f"minute. ECS keeps going on its own: `{follow}` follows it, `inv app.status {run.plan.project}` "
                  "shows it")

    try:
        with run.waiting():
            run.service = services.wait_for_rollout(
                ecs_cluster, service, deployment_id=deployment_id, timeout=run.timeout, poll=run.poll,
                resume_hint=resume, task_definition=task_definition, failed_tasks=_failed_tasks(run),
                on_progress=lambda state: run.event(f"{clock} {state.progress()}"), on_quiet=quiet,
                elbv2=_client(run, "elbv2"), logs=_client(run, "logs"), seen=seen)
    except RolloutFailed as failed:
        # The rollout is over, failed: what is left to do is going back, not following it.
        run.guard.settled_in_aws(what)
        if failed.deployment_id and not failed.left and not own_rollback:
            _roll_back(run, names, failed.previous_task_definition, failed.task_definition, clock)
        raise
    except (Interrupted, WaitTimeout) as stopped:
        if undoable:
            if not seen.deployment_id or not seen.previous_task_definition:
                try:  # stopped before the watcher learnt it: one look now, to know what to roll back
                    services.look(ecs_cluster, service, seen)
                except MvpError:
                    pass
            if seen.deployment_id:
                _stopped_half_way(run, names, seen, clock, what, timed_out=isinstance(stopped, WaitTimeout))
        raise
    run.guard.settled_in_aws(what)


def _stopped_half_way(run: TargetRun, names: tuple[str, str], seen: Any, clock: _Clock, what: str, *,
                      timed_out: bool) -> None:
    """A rollout this run started and stopped following before it ended: roll it back now when the
    run says so (`World.rolls_back`), else keep the rollback to offer after the run."""
    service = names[1]
    if not seen.previous_task_definition:
        run.event(f"{clock} deployment {seen.deployment_id} of service {service} was left rolling out; nothing "
                  "ran before it to roll back to")
        return
    step = RollBackService(run.plan.project, run.plan.cluster, tuple(names), seen.deployment_id,
                           seen.task_definition, seen.previous_task_definition,
                           protected=bool(getattr(run.cluster, "protected", False)))
    if run.world.rolls_back(timed_out):
        done = _roll_back(run, names, seen.previous_task_definition, seen.task_definition, clock)
        if done:
            run.rolled_back = done
            run.guard.settled_in_aws(what)
            run.guard.started_in_aws(f"service {service}: rollback to {step.back_to}",
                                     wait_command(run.plan.project, run.plan.cluster))
        return
    run.offer = step
    run.event(f"{clock} deployment {seen.deployment_id} of service {service} was left rolling out; ECS goes on "
              "with it unless it is rolled back")


def _roll_back(run: TargetRun, names: tuple[str, str], previous: str, task_definition: str, clock: Any) -> str:
    """The one rollback of the rollout the target is following (its own, under its lock): the
    target's undo first (a cluster tag points back at the image it named before, so the tasks ECS
    starts again pull that image), then `Services.roll_back`, said on the target's live line. What
    was done ("" when nothing was); a failure to roll back is told, never raised over the failure
    that called for it. Only under a lock that is still ours."""
    ecs_cluster, service = names
    try:
        run.guard.lock()  # the lease confirmed: a run that lost its lock does not act
        run.guard.run_undo()
        done = run.world.services().roll_back(ecs_cluster, service, previous, task_definition)
    except MvpError as exc:  # the failure stays what is reported; the rollback's own is told
        run.event(f"{clock} could not roll service {service} back: {exc}", failed=True)
        return ""
    run.event(f"{clock} " + (done or f"service {service}: nothing older to roll back to"), failed=not done)
    return done


def apply_roll_back_service(run: TargetRun, step: RollBackService) -> None:
    """The offered rollback of a rollout stopped half-way, under the app's lock: roll back the
    stopped deployment if it is still the service's (read again now: the person may have taken a
    while to answer, and another run may have deployed since), then follow the service until it
    runs what ran before again."""
    from ..aws.services import NotRolledBack

    ecs_cluster, service = step.names
    services = run.world.services()
    clock = _Clock()
    try:
        done = services.roll_back(ecs_cluster, service, step.previous_task_definition, step.task_definition,
                                  step.deployment_id)
    except NotRolledBack as exc:
        run.done = str(exc)
        return
    if not done:
        raise MvpError(f"service {step.service} was not rolled back: ECS offers no rollback of deployment "
                       f"{step.deployment_id} and nothing older ran before it", f"see `inv app.status {step.project}`")
    run.event(f"{clock} {done}")
    what = f"service {service}: rollback to {step.back_to}"
    run.guard.started_in_aws(what, wait_command(step.project, step.cluster))
    # ECS makes the deployment that ran before the primary again (or a new one of what it ran);
    # until it says so, the stopped one may still be listed as primary.
    deadline = time.monotonic() + run.timeout
    while True:
        state = services.get_service(ecs_cluster, service)
        if state is None:
            raise MvpError(f"service {service} is gone", f"see `inv app.status {step.project}`")
        primary = state.primary
        if primary is not None and primary.id != step.deployment_id:
            break
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"service {service} has not gone back to {step.back_to}",
                              f"see `inv app.status {step.project}`")
        with run.waiting():
            run.world.sleep(min(run.poll, 1.0))
    run.guard.settled_in_aws(what)
    previous = step.previous_task_definition if step.previous_task_definition != step.task_definition else ""
    _wait_service(run, step.names, primary.id, previous, own_rollback=True)


def _failed_tasks(run: TargetRun) -> int:
    from ..defaults import DEFAULTS

    # Settings put together by hand (tests' stand-ins) may lack the key: its declared default.
    rollout = getattr(run.world.settings, "rollout", None)
    return rollout.failed_tasks if rollout is not None else int(DEFAULTS["rollout"]["failed_tasks"])


def _client(run: TargetRun, name: str) -> Any:
    """A client that only explains a failure: a world without it (a test's) explains less."""
    try:
        return run.world.aws.client(name)
    except AttributeError:
        return None


def _app_stack(run: TargetRun, name: str) -> Any:
    stack = run.world.stacks().get_stack(name)
    if stack is None:
        raise MvpError(f"stack {name} is gone", f"deploy it: inv app.deploy {run.plan.project} --cluster {run.plan.cluster}")
    return stack


def apply_roll_service(run: TargetRun, step: RollService) -> None:
    # The service's names as planned, else from the stack as it is now.
    names = step.names or service_names(run.world, _app_stack(run, step.stack), run.cluster)
    ecs_cluster, service = names
    services = run.world.services()
    try:
        if step.task_definition:
            # The service back on the task definition its stack registered (a rollback left it on
            # an older one): a deployment of that, followed as any other (rolled back if it fails).
            deployment = services.update_task_definition(ecs_cluster, service, step.task_definition)
        else:
            deployment = services.force_new_deployment(ecs_cluster, service)
    except AwsError:
        if step.names:
            _app_stack(run, step.stack)  # the stack went away since planning: say so
        raise
    if step.task_definition:
        run.event(f"new deployment {deployment or '?'} of service {service}: "
                  f"{family_revision(step.running)} -> {family_revision(step.task_definition)}")
    else:
        run.event(f"new deployment {deployment or '?'} of service {service}")
    _wait_service(run, names, deployment, task_definition=step.task_definition)


def apply_delete_stack(run: TargetRun, step: DeleteStack) -> None:
    _delete(run, _stacks_as(run, step.role_arn), step.stack, step.stack_id, step.termination_protection)


def _stacks_as(run: TargetRun, role_arn: str) -> Any:
    # CloudFormation acts as the step's service role (create, delete); "" leaves the caller's.
    stacks = run.world.stacks()
    return stacks.with_role(role_arn) if role_arn else stacks


# --- images --------------------------------------------------------------------------------------


def apply_build(run: TargetRun, step: BuildImage) -> None:
    from ..image.builder import build

    project = run.world.settings.project_or_default(step.project)
    run.event(f"building {step.ref}")
    build(run.get_builder(), run.world.settings.root, project, step.revision, step.ref, on_line=run.event)


def apply_push(run: TargetRun, step: PushImage) -> None:
    from ..image.builder import push

    builder = run.get_builder()
    if step.repository_changes:
        # As planned: what the repository needed when the plan was shown, not worked out again.
        builder.registry.apply_repository_changes(step.repository_changes)
        for line in step.repository_changes.lines():
            run.event(line)
    run.event(f"pushing {step.ref}")
    run.digest = push(builder, step.repository, step.tag, on_line=run.event)
    run.event(f"pushed {step.ref} ({run.digest[:19]})")


def apply_move_tag(run: TargetRun, step: MoveTag) -> None:
    from ..image.registry import move_tag

    registry = run.world.registry
    expected = step.to_digest or run.digest
    # What the tag names right now, not when it was planned: another run may have moved it since
    # (a person at the prompt, a CI run in between), and an undo must never undo that run.
    before = registry.get_digest(step.repository, step.tag) or ""
    digest = move_tag(registry, step.repository, step.source, step.tag, expected, current=before)
    run.digest = digest
    run.event(f"{step.repository}:{step.tag} -> {digest[:19]}")
    if before and before != digest:
        # Task definitions name the tag: a circuit-breaker rollback or a replaced task after a
        # failed rollout would otherwise pull the image that just failed.
        def point_back() -> str | None:
            # Compare, then move: only a tag that still names this run's image goes back. Another
            # run that moved it since (one that took the lock after ours was lost) keeps its move.
            now = registry.get_digest(step.repository, step.tag) or ""
            if now != digest:
                return (f"{step.repository}:{step.tag} left at {now[:19] or 'nothing'}, not pointed back at "
                        f"{before[:19]}: another run moved it since")
            move_tag(registry, step.repository, before, step.tag, before)
            return None

        run.guard.on_undo(f"{step.repository}:{step.tag} pointed back at {before[:19]}, the image it named before",
                          point_back)


def apply_ensure_store(run: TargetRun, step: EnsureStore) -> None:
    """Once per run, however many cluster targets carry it (the first applies, the others wait)."""
    from ..state.location import store_made

    def ensure() -> bool:
        apply_ensure_stack(run, step.stack)
        return True

    run.world.memo.get(("deploy store", "ensured"), ensure)
    store_made(run.world.memo)


def apply_migrate_history(run: TargetRun, step: MigrateHistory) -> None:
    store = run.world.history(run.cluster)
    copied = store.migrate(step.table)
    run.event(f"copied {copied} history record(s) of {step.cluster} from {step.table} into the deploy store")


# --- locks and secrets ----------------------------------------------------------------------------


def apply_break_lock(run: TargetRun, step: BreakLock) -> None:
    store = run.world.history(run.cluster)
    if not store.break_lock(step.project, step.token):
        raise UsageError(f"the deploy lock of {step.project} in {step.cluster} changed hands meanwhile; "
                         "nothing was broken", f"look again: inv app.unlock {step.project} --cluster {step.cluster}")
    run.record = run.done = f"broke the deploy lock held by {step.holder}"


def apply_clear_mark(run: TargetRun, step: ClearMark) -> None:
    from ..plan.release import unmark_message

    # Nothing in AWS changes: the history record the guard writes is the change.
    run.record = unmark_message(step.commit)


def apply_put_secret(run: TargetRun, step: PutSecret) -> None:
    version = run.world.secrets().put(step.cluster, step.project, step.key, step.value)
    run.record = f"set secret {step.key} (version {version})"
    run.done = f"secret {step.key} set (version {version})"


def apply_delete_secret(run: TargetRun, step: DeleteSecret) -> None:
    if run.world.secrets().delete(step.cluster, step.project, step.key):
        run.record = run.done = f"removed secret {step.key}"
    else:
        run.done = f"secret {step.key} was already gone"
        run.record = f"secret {step.key} was already gone"


# --- repairs -------------------------------------------------------------------------------------


def apply_continue_rollback(run: TargetRun, step: ContinueRollback) -> None:
    stacks = _stacks_as(run, step.role_arn)
    after = stacks.get_latest_event_id(step.stack)
    stacks.continue_update_rollback(step.stack, step.skip)
    _wait_stack(run, stacks, step.stack, {"UPDATE_ROLLBACK_COMPLETE"}, "continued rollback", after=after)


def apply_cancel_update(run: TargetRun, step: CancelUpdate) -> None:
    stacks = run.world.stacks()
    _still_the_planned_update(run, stacks, step)
    after = stacks.get_latest_event_id(step.stack)
    stacks.cancel_update(step.stack)
    _wait_stack(run, stacks, step.stack, {"UPDATE_ROLLBACK_COMPLETE"}, "cancelled update", after=after)


def _still_the_planned_update(run: TargetRun, stacks: Any, step: CancelUpdate) -> None:
    """Refuse, cancelling nothing, unless the stack is still in the update that was planned: no lock
    keeps another run off the stack while the plan waits to be confirmed, so the hung update may have
    ended meanwhile, and another run may have begun an update of its own (which is not ours to cancel)."""
    from ..plan.steps import utc_time

    now = stacks.get_stack(step.stack)
    if now is None:
        change = "it is gone"
    elif step.stack_id and now.stack_id != step.stack_id:
        change = f"it is another stack of that name now ({now.status})"
    elif now.status != "UPDATE_IN_PROGRESS":
        change = f"that update is over: the stack is {now.status}"
    elif now.last_updated != step.last_updated:
        began = utc_time(now.last_updated) if now.last_updated else "at a time AWS does not give"
        change = f"another update is in progress, begun {began}"
    else:
        return
    if run.plan.kind is TargetKind.CLUSTER:
        repair = f"inv cluster.repair {run.plan.cluster}"
    else:
        repair = f"inv app.repair {run.plan.project} --cluster {run.plan.cluster}"
    raise MvpError(f"stack {step.stack} changed since the cancel was planned ({change}); nothing was cancelled",
                   f"look again: `{repair} --check`")


def apply_retain_delete(run: TargetRun, step: RetainDelete) -> None:
    stacks = _stacks_as(run, step.role_arn)
    ref = step.stack_id or step.stack
    after = stacks.get_latest_event_id(ref)
    stacks.delete_stack_retaining(step.stack, [logical for logical, _, _ in step.retain])
    _wait_stack(run, stacks, step.stack, {"DELETE_COMPLETE"}, "delete", stack_id=step.stack_id, after=after)


APPLY = {
    ContinueRollback: apply_continue_rollback,
    CancelUpdate: apply_cancel_update,
    RetainDelete: apply_retain_delete,
    BreakLock: apply_break_lock,
    ClearMark: apply_clear_mark,
    RollBackService: apply_roll_back_service,
    PutSecret: apply_put_secret,
    DeleteSecret: apply_delete_secret,
    EnsureStore: apply_ensure_store,
    MigrateHistory: apply_migrate_history,
    EnsureStack: apply_ensure_stack,
    RollService: apply_roll_service,
    DeleteStack: apply_delete_stack,
    BuildImage: apply_build,
    PushImage: apply_push,
    MoveTag: apply_move_tag,
}
