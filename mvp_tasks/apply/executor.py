"""The engine: plan every target side by side, show the whole plan, ask once, apply in parallel,
and end with a summary. After aws/chalice's deployer + executor and Sceptre's plan executor.

    flags -> settings -> plan (reads only) -> show -> confirm once -> apply (parallel) -> summary

- Planning never mutates (but for change sets, which it notes and which are deleted unless
  applied); applying never asks. `--check` is plan + show.
- `mvp.parallel` (`--parallel N`) bounds the targets *working* at once (`Slots`): a target that
  waits on AWS (a stack operation, a rollout) gives its slot up for the wait, so twenty rollouts
  are followed together whatever N is. Targets start in plan order, and one back from a wait goes
  before any that has not started. Planning only reads: it runs wider (`plan_width`).
- A target's failure is a value in the results, never an exception that ends the run. Ordering: a
  target starts once every target it depends on has succeeded (a cluster before its apps); steps
  within a target run in order.
- Ctrl-C: the first stops anything new from starting; every target in flight undoes what it left
  half-done (a moved tag, its lock, an open change set) and records `interrupted`; what keeps
  running in AWS by itself is told, and the exit code is 130. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from invoke import Exit

from ..errors import MvpError
from ..plan.steps import Plan, TargetPlan
from ..report import Outcome
from ..world import Interrupted, World
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


@dataclass
class Outcomes:
    interrupted: bool = False
    failed: bool = False


def _message(exc: BaseException) -> str:
    from ..aws.clients import translate

    if isinstance(exc, MvpError):
        return str(exc)
    mapped = translate(exc)
    if mapped is not None:
        return str(mapped)
    if os.environ.get("MVP_DEBUG"):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return f"unexpected {type(exc).__name__}: {exc} (set MVP_DEBUG=1 for the traceback)"


class Engine:
    def __init__(self, run: Any, parallel: int | None = None, host: str | None = None):
        self.run = run
        self.reporter = run.reporter
        self.world = World(run.settings, run.reporter, run.aws)
        self.parallel = max(1, int(parallel or run.settings.parallel))
        self.host = host
        self._interrupts = 0
        self._asking = False
        self._previous_handler: Any = None

    # --- interrupts -------------------------------------------------------------------------------

    def _on_sigint(self, signum, frame) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            sys.stderr.write("interrupted again: exiting at once; AWS may still be working "
                             "(check with `inv app.status`)\n")
            sys.stderr.flush()
            os._exit(130)
        self.world.stop.set()
        if self._asking:
            # At the prompt: nothing was applied yet. Abort the question (the prompt takes it as a
            # "no"), so the change sets planning made are deleted on the way out.
            raise KeyboardInterrupt
        self.reporter.warn("interrupted: nothing new starts; the targets in flight undo what they left "
                           "half-done (Ctrl-C again to exit at once)")

    def __enter__(self) -> "Engine":
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.world.discard_change_sets()
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

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

    # --- showing and asking -----------------------------------------------------------------------

    def show(self, plan: Plan) -> None:
        for target in plan.targets:
            for warning in target.warnings:
                self.reporter.warn(f"{target.key}: {warning}")
            if target.changes:
                lines = target.lines()
                if target.reasons:
                    self.reporter.info(f"{target.key}: {'; '.join(target.reasons)}")
                self.reporter.plan(target.key, lines)

    def confirm(self, plan: Plan) -> None:
        question = plan.question()
        if question:
            self._asking = True
            try:
                self.reporter.confirm(question)
            finally:
                self._asking = False

    # --- the whole run ----------------------------------------------------------------------------

    def execute(self, plan: Plan) -> Outcomes:
        """Show, then (unless --check) confirm once and apply; report every target and a summary."""
        self.show(plan)
        for target in plan.targets:
            if target.error:
                self.reporter.result(target.key, Outcome.FAILED, target.error)
            elif target.skip:
                self.reporter.result(target.key, Outcome.SKIPPED, target.skip)
            elif not target.changes:
                self.reporter.result(target.key, Outcome.OK, target.note, commit=target.commit)
        changing = plan.changes
        if self.reporter.check:
            for target in changing:
                self.reporter.result(target.key, Outcome.CHANGED, target.would(), commit=target.commit)
            return Outcomes(failed=any(t.error for t in plan.targets))
        if changing:
            try:
                self.confirm(plan)
            except MvpError:
                self.world.discard_change_sets()
                raise
        self._apply(changing, plan.targets)
        interrupted = self.world.stop.is_set()
        return Outcomes(interrupted=interrupted, failed=self.reporter.recap.failed)

    def finish(self, outcomes: Outcomes) -> None:
        self.world.discard_change_sets()
        self.reporter.summary()
        recap = self.reporter.finish()
        if self.reporter.json_output:
            self.reporter.emit_json([
                {"target": r.target, "outcome": r.outcome.value, "commit": r.commit,
                 "duration": round(r.duration, 3) if r.duration is not None else None, "message": r.message}
                for r in recap.results])
        # Every failed target once more on stderr, one line each, where CI and scripts look for errors.
        for result in recap.results:
            if result.outcome is Outcome.FAILED:
                sys.stderr.write(f"error: {result.target}: {result.message}\n")
        sys.stderr.flush()
        if outcomes.interrupted:
            raise Exit("interrupted: see above for what keeps running in AWS", code=130)
        if recap.failed or outcomes.failed:
            raise Exit(code=1)

    # --- applying ---------------------------------------------------------------------------------

    def _apply(self, targets: list[TargetPlan], everything: list[TargetPlan] = ()) -> None:
        # Targets with nothing to apply are settled already: one whose planning failed must hold
        # its dependents back exactly as a failed apply would.
        outcome: dict[str, Outcome] = {
            t.key: Outcome.FAILED if t.error else Outcome.SKIPPED if t.skip else Outcome.OK
            for t in everything if not t.changes}
        keys = {t.key for t in targets} | set(outcome)
        pending = list(targets)
        running: dict[futures.Future, TargetPlan] = {}
        still_running: dict[str, str] = {}
        slots = Slots(self.parallel, self.world.stop)
        width = max(1, min(len(targets), MAX_THREADS))
        with futures.ThreadPoolExecutor(width, thread_name_prefix="apply") as pool, \
                self.reporter.live([t.key for t in targets]):
            while pending or running:
                if self.world.stop.is_set():
                    for target in pending:
                        self.reporter.result(target.key, Outcome.SKIPPED, "not started: interrupted",
                                             commit=target.commit)
                    pending = []
                for target in list(pending):
                    if len(running) >= width:
                        break
                    deps = [d for d in target.depends_on if d in keys]
                    failed = [d for d in deps if outcome.get(d) in (Outcome.FAILED, Outcome.SKIPPED)]
                    if failed:
                        pending.remove(target)
                        outcome[target.key] = Outcome.SKIPPED
                        self.reporter.result(target.key, Outcome.SKIPPED, f"not started: {failed[0]} did not succeed",
                                             commit=target.commit)
                    elif all(d in outcome for d in deps):
                        pending.remove(target)
                        # Queued for a slot here, in plan order; its thread waits for its turn.
                        slot = slots.queue()
                        running[pool.submit(self._apply_target, target, still_running, slot)] = target
                if not running:
                    if pending:
                        # Left only with targets whose dependencies can never finish: do not spin.
                        for target in pending:
                            self.reporter.result(target.key, Outcome.SKIPPED, "not started: waiting on nothing",
                                                 commit=target.commit)
                        pending = []
                    continue
                done, _ = futures.wait(running, timeout=0.2, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    target = running.pop(future)
                    outcome[target.key] = future.result()
        if still_running:
            self.reporter.warn("still running in AWS on its own:")
            for what, follow in sorted(still_running.items()):
                self.reporter.info(f"{what}; follow it with `{follow}`")

    def _apply_target(self, plan: TargetPlan, still_running: dict[str, str], slot: Slot | None = None) -> Outcome:
        """Apply one target once its slot comes (`slot`: its place in the engine's `Slots`; none:
        at once, as the only target)."""
        if slot is None:
            return self._work(plan, still_running, None)
        if not slot.start():
            self.reporter.result(plan.key, Outcome.SKIPPED, "not started: interrupted", commit=plan.commit)
            return Outcome.SKIPPED
        try:
            return self._work(plan, still_running, slot)
        finally:
            slot.release()

    def _work(self, plan: TargetPlan, still_running: dict[str, str], slot: Slot | None) -> Outcome:
        started = time.monotonic()
        cluster = self.run.settings.clusters.get(plan.cluster)
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
            guard.record("succeeded", digest=run.digest)
            message = plan.done or "done"
            if run.service is not None:
                message += f"; service {run.service.name} running {run.service.running}/{run.service.desired}"
            return self._result(plan, Outcome.CHANGED, message, started)
        except Interrupted:
            if guard is not None:
                guard.run_undo()
                guard.record("interrupted", "interrupted (Ctrl-C)")
            return self._result(plan, Outcome.FAILED, "interrupted", started)
        except BaseException as exc:  # noqa: BLE001 - one target's failure never stops another
            message = _message(exc)
            if guard is not None:
                guard.run_undo()
                guard.record("failed", message)
            return self._result(plan, Outcome.FAILED, message, started)
        finally:
            if guard is not None:
                guard.release()
                still_running.update(guard.running)
            if run is not None:
                run.close()

    def _result(self, plan: TargetPlan, outcome: Outcome, message: str, started: float) -> Outcome:
        self.reporter.result(plan.key, outcome, message, commit=plan.commit, duration=time.monotonic() - started)
        return outcome


def run_plan(run: Any, title: str, planners: list[tuple[TargetPlan, Planner]], *, confirm: str = "",
             parallel: int | None = None, host: str | None = None) -> None:
    """The whole engine for one task: plan side by side, show, ask once, apply, summary, exit code."""
    with Engine(run, parallel=parallel, host=host) as engine:
        try:
            plan = engine.plan(title, planners, confirm=confirm)
            outcomes = engine.execute(plan)
        except Interrupted as exc:
            run.reporter.warn(str(exc))
            engine.finish(Outcomes(interrupted=True))
            return
        engine.finish(outcomes)
