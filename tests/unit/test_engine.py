"""The engine (`apply.executor`): plan side by side, show, confirm once, apply in a bounded pool, and
end with a summary and the exit code; a target's failure never stops another; Ctrl-C undoes what
is in flight and starts nothing new.

Planners are fakes that return `TargetPlan`s of a stub step, and `apply.steps.APPLY` is given a
fake applier for it; the guard, the world and the reporter are the real ones (the deploy history
is an in-process fake, change sets are deleted through a stubbed CloudFormation client).
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from stubs import isolate_from_aws, make_client, make_clocked_world
from botocore.stub import Stubber
from invoke import Exit

from mvp_tasks.settings import StateSettings
from mvp_tasks.apply import executor
from mvp_tasks.apply import steps as apply_steps
from mvp_tasks.tasks.boundary import run_plan, target_stub
from mvp_tasks.errors import MvpError, NotConfirmed
from mvp_tasks.plan.steps import Step, TargetPlan
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.settings import ClusterSettings
from mvp_tasks.world import World

STAGE = ClusterSettings(name="stage", template="cluster.yml", protected=True, promote_from="", tag="stage")
PROD = ClusterSettings(name="prod", template="cluster.yml", protected=True, promote_from="stage", tag="prod")


@dataclass(frozen=True)
class Touch(Step):
    """A stub step: the fake applier does what its target's behaviour says."""

    name: str

    def lines(self) -> list[str]:
        return [f"~ touch {self.name}"]

    def summary(self) -> str:
        return f"touch {self.name}"


class FakeHistory:
    """Every cluster's deploy history and lock, in memory (thread-safe: targets run side by side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[tuple[str, str, str]] = []  # (project, outcome, message)
        self.held: dict[str, str] = {}

    def acquire(self, project, owner, lease, token="", on_takeover=None, **waiting):
        with self._lock:
            self.held[project] = token
        return token

    def renew(self, project, token, lease):  # the check before each later step: still ours
        return 0

    def release(self, project, token):
        with self._lock:
            if self.held.get(project) == token:
                del self.held[project]

    def record(self, project, *, outcome, message="", **fields):
        with self._lock:
            self.records.append((project, outcome, message))

    def record_and_release(self, project, token, **fields):
        self.record(project, **fields)
        with self._lock:
            if self.held.get(project) != token:
                return False
            del self.held[project]
            return True


@pytest.fixture
def cfn(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("cloudformation")
    with Stubber(client) as stub:
        yield SimpleNamespace(client=client, stub=stub)


@pytest.fixture
def engine(monkeypatch, cfn):
    """`run_plan` on a world with the fake history, and a fake applier for `Touch` steps.

    `engine.behave[name]` says what applying the step `name` does: a function of (run, step).
    `engine.log` lists ("start"/"end", name) in the order appliers ran."""
    history = FakeHistory()
    worlds: list = []
    log: list[tuple[str, str]] = []
    behave: dict = {}

    make = {"world": lambda settings, rep, aws: make_clocked_world(settings, rep, aws, history=history)}

    def apply_touch(run, step):
        log.append(("start", step.name))
        try:
            behave.get(step.name, lambda run, step: None)(run, step)
        finally:
            log.append(("end", step.name))

    monkeypatch.setitem(apply_steps.APPLY, Touch, apply_touch)

    def run(planners, *, yes=True, check=False, parallel=4, interactive=False):
        rep = Reporter(stream=io.StringIO(), interactive=interactive, yes=yes, check=check)
        settings = SimpleNamespace(wait_timeout=60, poll_interval=1, parallel=parallel,
                                   clusters={"stage": STAGE, "prod": PROD}, state=StateSettings())
        world = make["world"](settings, rep, SimpleNamespace(cloudformation=cfn.client, get_caller=lambda: "tester"))
        worlds.append(world)
        engine.reporter = rep
        run_plan(world, "test", planners, parallel=parallel)

    engine = SimpleNamespace(run=run, history=history, worlds=worlds, log=log, behave=behave, reporter=None,
                             make=make)
    return engine


def app(name: str, cluster: str = "stage", *, protected: bool = False, depends_on: tuple = (),
        change_set: str = "") -> tuple[TargetPlan, object]:
    """A placeholder and a planner for the app `name` in `cluster`, planned to one Touch step."""
    key = f"{name}@{cluster}"

    def planner(world):
        if change_set:
            world.change_sets.add(f"{name}-{cluster}", change_set)
        return TargetPlan(key, kind="app", project=name, cluster=cluster, action="deploy", commit="c" * 40,
                          steps=[Touch(name, protected=protected)], depends_on=depends_on, done=f"{name} done")

    return target_stub(name, cluster, depends_on=depends_on), planner


def cluster(name: str) -> tuple[TargetPlan, object]:
    def planner(world):
        return TargetPlan(name, kind="cluster", cluster=name, action="cluster.up", steps=[Touch(name)],
                          done="stack updated")

    return target_stub(cluster=name), planner


def failing_planner(key: str, error: str, **kw) -> tuple[TargetPlan, object]:
    def planner(world):
        raise MvpError(error)

    return TargetPlan(key, **kw), planner


def results(engine) -> dict[str, tuple[Outcome, str]]:
    return {r.target: (r.outcome, r.message) for r in engine.reporter.recap.results}


def fail(message: str):
    def behave(run, step):
        raise MvpError(message)

    return behave


# --- side by side ----------------------------------------------------------------------------------


def test_two_independent_targets_run_side_by_side_and_one_failing_does_not_stop_the_other(engine):
    # Each applier waits until both are inside: only targets applied at the same time get past it.
    both_in = threading.Barrier(2, timeout=10)

    def broken(run, step):
        both_in.wait()
        raise MvpError("the rollout of a was rolled back")

    engine.behave.update(a=broken, b=lambda run, step: both_in.wait())

    with pytest.raises(Exit) as raised:
        engine.run([app("a"), app("b")], parallel=2)

    assert raised.value.code == 1
    assert results(engine) == {"a@stage": (Outcome.FAILED, "the rollout of a was rolled back"),
                               "b@stage": (Outcome.CHANGED, "b done")}
    assert sorted(engine.history.records) == [("a", "failed", "the rollout of a was rolled back"),
                                              ("b", "succeeded", "")]
    assert engine.history.held == {}  # both locks released


def test_the_pool_is_bounded_by_parallel(engine):
    inside = []
    most = []
    guard = threading.Lock()

    def count(run, step):
        with guard:
            inside.append(step.name)
            most.append(len(inside))
        time.sleep(0.05)
        with guard:
            inside.remove(step.name)

    for name in "abcde":
        engine.behave[name] = count

    engine.run([app(name) for name in "abcde"], parallel=2)

    assert max(most) == 2
    assert all(outcome is Outcome.CHANGED for outcome, _ in results(engine).values())


def test_a_target_waiting_on_aws_gives_its_slot_up_and_gets_it_back_before_new_ones_start(engine):
    # parallel 1: b (then c) may work only while a waits; a, back from its wait, goes before c.
    b_started = threading.Event()

    def waits(run, step):
        with run.waiting():  # what following a stack operation or a rollout does
            assert b_started.wait(10), "b did not start while a was waiting"

    def works(run, step):
        b_started.set()
        time.sleep(0.2)  # a is back from its wait meanwhile, and queues for the slot

    engine.behave.update(a=waits, b=works)

    engine.run([app("a"), app("b"), app("c")], parallel=1)

    assert engine.log == [("start", "a"), ("start", "b"), ("end", "b"), ("end", "a"), ("start", "c"), ("end", "c")]
    assert all(outcome is Outcome.CHANGED for outcome, _ in results(engine).values())


def test_planning_runs_wider_than_parallel():
    assert executor.plan_width(4, 20) == 16
    assert executor.plan_width(8, 40) == 32
    assert executor.plan_width(4, 3) == 3
    assert executor.plan_width(1, 1) == 1


# --- dependencies ----------------------------------------------------------------------------------


def test_a_target_depending_on_a_failed_one_is_skipped_and_one_on_a_success_runs_after_it(engine):
    engine.behave["prod"] = fail("stack prod ended in UPDATE_ROLLBACK_COMPLETE")

    with pytest.raises(Exit):
        engine.run([cluster("prod"), cluster("stage"), app("a", "prod", depends_on=("prod",)),
                    app("b", "stage", depends_on=("stage",))])

    assert results(engine) == {
        "prod": (Outcome.FAILED, "stack prod ended in UPDATE_ROLLBACK_COMPLETE"),
        "stage": (Outcome.CHANGED, "stack updated"),
        "a@prod": (Outcome.SKIPPED, "not started: prod did not succeed"),
        "b@stage": (Outcome.CHANGED, "b done"),
    }
    assert ("start", "a") not in engine.log
    assert engine.log.index(("end", "stage")) < engine.log.index(("start", "b"))


def test_a_target_depending_on_one_whose_planning_failed_is_skipped(engine):
    # The cluster's plan failed (its template, a throttled read): it did not succeed, so its apps
    # must not start, as they would not after a failed apply of the cluster.
    with pytest.raises(Exit):
        engine.run([failing_planner("prod", "template cluster.yml: YAML error", kind="cluster", cluster="prod"),
                    app("a", "prod", depends_on=("prod",))])

    assert results(engine)["prod"] == (Outcome.FAILED, "template cluster.yml: YAML error")
    assert results(engine)["a@prod"] == (Outcome.SKIPPED, "not started: prod did not succeed")
    assert ("start", "a") not in engine.log


def test_a_dependency_with_nothing_to_do_does_not_hold_its_dependents(engine):
    def up_to_date(world):
        return TargetPlan("stage", kind="cluster", cluster="stage", note="stack stage up to date")

    engine.run([(TargetPlan("stage", kind="cluster", cluster="stage"), up_to_date),
                app("b", "stage", depends_on=("stage",))])

    assert results(engine) == {"stage": (Outcome.OK, "stack stage up to date"), "b@stage": (Outcome.CHANGED, "b done")}


# --- planning --------------------------------------------------------------------------------------


def test_a_target_whose_planning_fails_is_failed_and_the_others_are_applied(engine):
    with pytest.raises(Exit) as raised:
        engine.run([failing_planner("a@stage", "ThrottlingException: Rate exceeded", project="a", cluster="stage"),
                    app("b")])

    assert raised.value.code == 1
    assert results(engine) == {"a@stage": (Outcome.FAILED, "ThrottlingException: Rate exceeded"),
                               "b@stage": (Outcome.CHANGED, "b done")}


def test_one_target_whose_planning_fails_is_the_tasks_error(engine):
    with pytest.raises(MvpError, match="bad template"):
        engine.run([failing_planner("a@stage", "bad template", project="a", cluster="stage")])

    assert engine.log == []


def test_check_mode_plans_and_shows_only_and_discards_the_change_sets(engine, cfn):
    cfn.stub.add_response("delete_change_set", {}, {"StackName": "a-stage", "ChangeSetName": "mvp-1"})

    engine.run([app("a", change_set="mvp-1", protected=True)], check=True, yes=False)

    cfn.stub.assert_no_pending_responses()
    assert engine.log == []
    assert results(engine) == {"a@stage": (Outcome.CHANGED, "touch a (check: nothing was changed)")}
    assert "a@stage: would:" in engine.reporter.stream.getvalue()
    assert engine.worlds[0].change_sets.pending() == []


# --- one confirmation ------------------------------------------------------------------------------


def test_the_plan_is_confirmed_once_and_a_refusal_applies_nothing_and_discards_change_sets(engine, cfn):
    for name in ("a", "b"):
        cfn.stub.add_response("delete_change_set", {}, {"StackName": f"{name}-stage", "ChangeSetName": f"mvp-{name}"})
    asked = []
    original = Reporter.confirm

    def confirm(self, question, *args, **kwargs):
        asked.append(question)
        return original(self, question, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Reporter, "confirm", confirm)
        with pytest.raises(NotConfirmed) as raised:
            engine.run([app("a", protected=True, change_set="mvp-a"), app("b", protected=True, change_set="mvp-b")],
                       yes=False)

    cfn.stub.assert_no_pending_responses()
    assert asked == ["apply this plan to 2 target(s) (change protected cluster stage)"]
    assert str(raised.value) == ("apply this plan to 2 target(s) (change protected cluster stage) needs confirmation "
                                 "and there is no terminal to ask on; re-run with --yes")
    assert engine.log == [] and engine.history.records == []
    assert engine.worlds[0].change_sets.pending() == []
    out = engine.reporter.stream.getvalue()
    assert "a@stage: will:" in out and "b@stage: will:" in out  # the whole plan, shown before asking


def test_a_plan_with_nothing_risky_asks_nothing(engine):
    engine.run([app("a"), app("b")], yes=False)

    assert {outcome for outcome, _ in results(engine).values()} == {Outcome.CHANGED}


# --- interrupts ------------------------------------------------------------------------------------


def test_interrupt_undoes_the_target_in_flight_records_interrupted_and_skips_the_rest(engine):
    undone = []

    def interrupted(run, step):
        run.guard.on_undo("web:stage pointed back at sha256:aaaa", lambda: undone.append(step.name))
        run.world.stop.set()  # what the first Ctrl-C does
        run.world.sleep(30)  # a wait notices at once

    engine.behave["a"] = interrupted

    with pytest.raises(Exit) as raised:
        engine.run([app("a"), app("b"), app("c", depends_on=("a",))], parallel=1)

    assert raised.value.code == 130
    assert undone == ["a"]
    assert engine.history.records == [("a", "interrupted", "interrupted (Ctrl-C)")]
    assert engine.history.held == {}
    assert results(engine) == {"a@stage": (Outcome.FAILED, "interrupted"),
                               "b@stage": (Outcome.SKIPPED, "not started: interrupted"),
                               "c@stage": (Outcome.SKIPPED, "not started: interrupted")}
    assert engine.log == [("start", "a"), ("end", "a")]
    assert "warning: a@stage: web:stage pointed back at sha256:aaaa" in engine.reporter.stream.getvalue()


def test_interrupt_while_planning_changes_nothing_and_exits_130(engine, cfn):
    cfn.stub.add_response("delete_change_set", {}, {"StackName": "a-stage", "ChangeSetName": "mvp-a"})

    def planned_then_interrupted(world):
        world.change_sets.add("a-stage", "mvp-a")
        world.stop.set()
        return TargetPlan("a@stage", kind="app", project="a", cluster="stage", steps=[Touch("a")])

    with pytest.raises(Exit) as raised:
        engine.run([(TargetPlan("a@stage", project="a", cluster="stage"), planned_then_interrupted), app("b")],
                   parallel=1)

    cfn.stub.assert_no_pending_responses()
    assert raised.value.code == 130
    assert engine.log == []
    assert "interrupted while planning; nothing was changed" in engine.reporter.stream.getvalue()


@pytest.fixture
def python_sigint():
    """SIGINT handled as Python does by default, whatever the suite's parent did with it (a
    background job of a script starts with SIGINT ignored, and an ignored SIGINT stays ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_reaches_the_target_waiting_in_another_thread(monkeypatch, engine, python_sigint):
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)
    # A real World: its waits sleep on the stop event that the SIGINT handler sets.
    engine.make["world"] = World

    def wait_for_ctrl_c(run, step):
        if signal.getsignal(signal.SIGINT) is before:
            raise AssertionError("the run's SIGINT handler is not installed")
        os.kill(os.getpid(), signal.SIGINT)
        run.world.sleep(30)

    engine.behave["stage"] = wait_for_ctrl_c
    started = time.monotonic()

    with pytest.raises(Exit) as raised:
        engine.run([cluster("stage"), cluster("prod")], parallel=1)

    assert time.monotonic() - started < 10
    assert raised.value.code == 130
    assert results(engine) == {"stage": (Outcome.FAILED, "interrupted"),
                               "prod": (Outcome.SKIPPED, "not started: interrupted")}
    assert "interrupted: nothing new starts" in engine.reporter.stream.getvalue()
    assert signal.getsignal(signal.SIGINT) is before  # restored


# --- deferred planning (fleet.up: the apps of a cluster the plan creates) ---------------------------


def test_a_deferred_target_is_planned_after_its_dependency_is_applied_and_confirmed_with_the_rest(engine):
    planned_when: list = []

    def cluster_planner(world):
        return TargetPlan("stage", kind="cluster", cluster="stage", steps=[Touch("stage")], done="stage done")

    def later(world):
        planned_when.append(list(engine.log))
        return TargetPlan("a@stage", project="a", cluster="stage", action="deploy", steps=[Touch("a")],
                          done="a done")

    def deferring(world):
        return TargetPlan("a@stage", project="a", cluster="stage", depends_on=("stage",), deferred=later,
                          deferred_protected=True, note="its cluster stage is created first")

    with pytest.raises(NotConfirmed):
        engine.run([(TargetPlan("stage", kind="cluster", cluster="stage"), cluster_planner),
                    (TargetPlan("a@stage", project="a", cluster="stage"), deferring)], yes=False)
    assert engine.log == [] and planned_when == [], "refusing the one question applies and plans nothing"

    engine.run([(TargetPlan("stage", kind="cluster", cluster="stage"), cluster_planner),
                (TargetPlan("a@stage", project="a", cluster="stage"), deferring)])
    assert planned_when == [[("start", "stage"), ("end", "stage")]]
    assert engine.log[-2:] == [("start", "a"), ("end", "a")]
    out = engine.reporter.stream.getvalue()
    assert "+ planned once stage is applied (its cluster stage is created first)" in out
    assert "changed: a@stage  a done" in out and "recap: ok=0 changed=2" in out


def test_a_placeholder_is_keyed_as_its_planner_keys_the_target():
    shown = lambda t: (t.key, t.kind, t.project, t.cluster)  # noqa: E731
    assert shown(target_stub("web", "stage")) == ("web@stage", "app", "web", "stage")
    assert shown(target_stub(cluster="stage")) == ("stage", "cluster", "", "stage")
    assert shown(target_stub("web", kind="image", key="web:abc")) == ("web:abc", "image", "web", "")
