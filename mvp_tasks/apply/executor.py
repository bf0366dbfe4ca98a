"""The engine: plan every target side by side, then apply a confirmed plan in parallel, and return
what happened as a value. After aws/chalice's deployer + executor and Sceptre's plan executor.

    boundary -> Engine.plan (reads only) -> Plan -> boundary shows it and asks once
             -> Engine.apply (parallel, never asks) -> Results -> boundary (summary, exit code)

- Planning never mutates (but for change sets, which it notes and which are deleted unless
  applied); applying never asks, never prints but through the reporter, and knows nothing of the
  command line: a target's failure is a `Result`, and the run's `Results` go back to the boundary.
- `mvp.parallel` (`--parallel N`) bounds the targets *working* at once (`Slots`): a target that
  waits on AWS (a stack operation, a rollout) gives its slot up for the wait, so twenty rollouts
  are followed together whatever N is. Targets start in plan order, and one back from a wait goes
  before any that has not started. Planning only reads: it runs wider (`plan_width`).
- Ordering: a target starts once every target it depends on has succeeded (a cluster before its
  apps); steps within a target run in order.
- Interrupts: the boundary sets `world.stop` (first Ctrl-C or SIGTERM). Nothing new starts; every
  target in flight undoes what it left half-done (a moved tag, its lock, an open change set) and
  records `interrupted`; what keeps running in AWS by itself is in the results.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

from ..errors import Interrupted, MvpError
from ..plan.steps import Plan, TargetPlan
from ..report import Outcome, Result, Results
from ..world import World
from .guard import Guard
from .steps import TargetRun, apply_step

Planner = Callable[[World], TargetPlan]

# Threads for targets at once: every target of a fleet, waiting or working (Slots bound the work).
MAX_THREADS = 64


def plan_width(parallel: int, targets: int) -> int:
    """Threads that plan side by side: planning only reads, so wider than `parallel`."""
    return max(1, min(targets, max(parallel * 4, 16)))


class Slots:
    """At most `size` targets working at once; a target waiting on AWS hands its slot on.

    Each target queues for a slot when it is submitted (`queue`, in the engine's thread, so turns
    follow the plan's order); one coming back from a wait queues ahead of those not started yet, to
    finish what it began. After Ctrl-C (`stop`) nobody waits for a slot any more: a target not yet
    started does not start, and one back from a wait goes on at once to undo and record."""

    def __init__(self, size: int, stop: threading.Event):
        self.stop = stop
        self._cond = threading.Condition()
        self._free = size
        self._starting: deque[Slot] = deque()
        self._resuming: deque[Slot] = deque()

    def queue(self) -> "Slot":
        slot = Slot(self)
        with self._cond:
            self._starting.append(slot)
        return slot

    def _turn(self, slot: "Slot", line: deque) -> bool:
        """Wait until `slot` heads its line and a slot is free; False (and out of line) after Ctrl-C."""
        with self._cond:
            while True:
                if self.stop.is_set():
                    line.remove(slot)
                    self._cond.notify_all()
                    return False
                if self._free > 0 and line[0] is slot and (line is self._resuming or not self._resuming):
                    break
                self._cond.wait(0.2)  # a timeout, to notice Ctrl-C
            line.popleft()
            self._free -= 1
            self._cond.notify_all()
            return True

    def _resume(self, slot: "Slot") -> bool:
        with self._cond:
            self._resuming.append(slot)
        return self._turn(slot, self._resuming)

    def _give_back(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


class Slot:
    """One target's place in `Slots`."""

    def __init__(self, slots: Slots):
        self.slots = slots
        self.held = False

    def start(self) -> bool:
        """Wait for this target's turn to work; False: interrupted before it came."""
        self.held = self.slots._turn(self, self.slots._starting)
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots._give_back()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a wait on AWS: the slot is someone else's until the wait ends."""
        self.release()
        try:
            yield
        finally:
            self.held = self.slots._resume(self)


def _message(exc: BaseException) -> str:
    from ..aws.clients import translate

    if isinstance(exc, MvpError):
        return str(exc)
    mapped = translate(exc)
    if mapped is not None:
        return str(mapped)
    if os.environ.get("MVP_DEBUG"):
        import traceback

        return f"unexpected {type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))
    return f"unexpected {type(exc).__name__}: {exc} (set MVP_DEBUG=1 for the traceback)"


class Engine:
    """Plans and applies for one run of one task, on the run's one `World`."""

    def __init__(self, world: World, parallel: int | None = None, host: str | None = None):
        self.world = world
        self.reporter = world.reporter
        self.parallel = max(1, int(parallel or world.settings.parallel))
        self.host = host
        self._lock = threading.Lock()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        # Whatever happened (check mode, a refused confirmation, a failure, an interrupt), no change
        # set that planning made outlives the run unless it was executed.
        self.world.discard_change_sets()

    # --- planning ---------------------------------------------------------------------------------

    def plan(self, title: str, planners: list[tuple[TargetPlan, Planner]], confirm: str = "") -> Plan:
        """Run every planner side by side. `planners` pairs a placeholder (key, kind, project,
        cluster) with the function that plans it; a planner that fails makes a failed target."""
        plan = Plan(title, confirm=confirm)
        results: dict[str, TargetPlan] = {}

        def one(stub: TargetPlan, planner: Planner) -> TargetPlan:
            try:
                self.world.checkpoint()
                return planner(self.world)
            except Interrupted:
                stub.error = "interrupted while planning"
            except Exception as exc:  # noqa: BLE001 - a failed plan is a failed target
                stub.error = _message(exc)
            return stub

        if len(planners) == 1:
            # One target: its planning error is the task's error, one line like any bad input.
            stub, planner = planners[0]
            self.world.checkpoint()
            results[stub.key] = planner(self.world)
        else:
            with futures.ThreadPoolExecutor(plan_width(self.parallel, len(planners)), thread_name_prefix="plan") as pool:
                running = {pool.submit(one, stub, planner): stub.key for stub, planner in planners}
                self._wait_all(running)
                for future, key in running.items():
                    results[key] = future.result()
        plan.targets = [results[stub.key] for stub, _ in planners]
        if self.world.stop.is_set():
            raise Interrupted("interrupted while planning; nothing was changed")
        return plan

    @staticmethod
    def _wait_all(running: dict) -> None:
        pending = set(running)
        while pending:
            # A timeout, so the main thread keeps handling Ctrl-C.
            _, pending = futures.wait(pending, timeout=0.2)

    # --- settling and applying ------------------------------------------------------------------

    def settle(self, plan: Plan) -> Results:
        """The results of the targets with nothing to apply: ok, skipped, or failed while planning."""
        results = Results()
        for target in plan.targets:
            if target.error:
                results.add(self.reporter.result(target.key, Outcome.FAILED, target.error))
            elif target.skip:
                results.add(self.reporter.result(target.key, Outcome.SKIPPED, target.skip))
            elif not target.changes:
                results.add(self.reporter.result(target.key, Outcome.OK, target.note, commit=target.commit))
        return results

    def apply(self, plan: Plan) -> Results:
        """Apply every target of a confirmed plan that has changes; the results of all of them."""
        results = self.settle(plan)
        self._apply(plan.changes, plan.targets, results)
        results.interrupted = self.world.stop.is_set()
        return results

    # --- applying ---------------------------------------------------------------------------------

    def _apply(self, targets: list[TargetPlan], everything: list[TargetPlan], results: Results) -> None:
        # Targets with nothing to apply are settled already: one whose planning failed must hold
        # its dependents back exactly as a failed apply would.
        outcome: dict[str, Outcome] = {
            t.key: Outcome.FAILED if t.error else Outcome.SKIPPED if t.skip else Outcome.OK
            for t in everything if not t.changes}
        keys = {t.key for t in targets} | set(outcome)
        pending = list(targets)
        running: dict[futures.Future, TargetPlan] = {}
        slots = Slots(self.parallel, self.world.stop)
        width = max(1, min(len(targets), MAX_THREADS))

        def not_started(target: TargetPlan, why: str) -> None:
            outcome[target.key] = Outcome.SKIPPED
            results.add(self.reporter.result(target.key, Outcome.SKIPPED, f"not started: {why}", commit=target.commit))

        with futures.ThreadPoolExecutor(width, thread_name_prefix="apply") as pool, \
                self.reporter.live([t.key for t in targets]):
            while pending or running:
                if self.world.stop.is_set():
                    for target in pending:
                        not_started(target, "interrupted")
                    pending = []
                for target in list(pending):
                    if len(running) >= width:
                        break
                    deps = [d for d in target.depends_on if d in keys]
                    failed = [d for d in deps if outcome.get(d) in (Outcome.FAILED, Outcome.SKIPPED)]
                    if failed:
                        pending.remove(target)
                        not_started(target, f"{failed[0]} did not succeed")
                    elif all(d in outcome for d in deps):
                        pending.remove(target)
                        # Queued for a slot here, in plan order; its thread waits for its turn.
                        slot = slots.queue()
                        running[pool.submit(self._apply_target, target, results.still_running, slot)] = target
                if not running:
                    # Left only with targets whose dependencies can never finish: do not spin.
                    for target in pending:
                        not_started(target, "waiting on nothing")
                    pending = []
                    continue
                done, _ = futures.wait(running, timeout=0.2, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    target = running.pop(future)
                    result = future.result()
                    outcome[target.key] = result.outcome
                    results.add(result)

    def _apply_target(self, plan: TargetPlan, still_running: dict[str, str], slot: Slot | None = None) -> Result:
        """Apply one target once its slot comes (`slot`: its place in the engine's `Slots`; none:
        at once, as the only target)."""
        if slot is None:
            return self._work(plan, still_running, None)
        if not slot.start():
            return self.reporter.result(plan.key, Outcome.SKIPPED, "not started: interrupted", commit=plan.commit)
        try:
            return self._work(plan, still_running, slot)
        finally:
            slot.release()

    def _work(self, plan: TargetPlan, still_running: dict[str, str], slot: Slot | None) -> Result:
        started = time.monotonic()
        cluster = self.world.settings.clusters.get(plan.cluster)
        run = None
        guard = None
        try:
            if plan.deferred is not None:
                # Its dependencies are applied now: plan it for real (it was confirmed with the rest).
                planned = plan.deferred(self.world)
                plan.deferred = None
                plan.steps, plan.commit, plan.digest = planned.steps, planned.commit, planned.digest
                plan.note, plan.done, plan.action = planned.note, planned.done, planned.action or plan.action
                if not plan.steps:
                    return self._result(plan, Outcome.OK, plan.note, started)
                self.reporter.plan(plan.key, plan.lines())
            guard = Guard(self.world, plan, cluster)
            run = TargetRun(self.world, plan, guard, cluster, self.host, slot=slot)
            for step in plan.steps:
                apply_step(run, step)
            guard.forget_undo()
            if guard.record("succeeded", run.record, digest=run.digest) != "succeeded":
                # Its lock was lost before the end: what it did is not its own to report as done.
                lost = guard.lost
                return self._result(plan, Outcome.FAILED, lost.message if lost is not None else "lost its lock",
                                    started)
            message = run.done or plan.done or "done"
            if run.service is not None:
                message += f"; service {run.service.name} running {run.service.running}/{run.service.desired}"
            return self._result(plan, Outcome.CHANGED, message, started)
        except Interrupted:
            rolled_back = f"; {run.rolled_back}" if run is not None and run.rolled_back else ""
            if guard is not None:
                guard.run_undo()
                guard.record("interrupted", f"interrupted ({self.world.stopped_by}){rolled_back}")
            return self._result(plan, Outcome.FAILED, "interrupted" + rolled_back, started,
                                offer=run.offer if run is not None else None)
        except BaseException as exc:  # noqa: BLE001 - one target's failure never stops another
            message = _message(exc)
            if run is not None and run.rolled_back:
                message += f"; {run.rolled_back}"
            if guard is not None:
                guard.run_undo()
                guard.record("failed", message)
            return self._result(plan, Outcome.FAILED, message, started, offer=run.offer if run is not None else None)
        finally:
            if guard is not None:
                guard.release()
                with self._lock:
                    still_running.update(guard.running)
            if run is not None:
                run.close()

    def _result(self, plan: TargetPlan, outcome: Outcome, message: str, started: float, offer: Any = None) -> Result:
        return self.reporter.result(plan.key, outcome, message, commit=plan.commit,
                                    duration=time.monotonic() - started, offer=offer)
