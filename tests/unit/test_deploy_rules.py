"""Rules of applying an app target that need no AWS: the guard points a moved tag back when the
rollout after it fails, records what happened and releases the lock, and planning recognises an
unchanged stack (a JSON template read back parsed, defaults, List values).

The target runs through the engine's own `_apply_target` with the real guard and the real
`apply_move_tag`; the registry and the history are in-process fakes, and the rollout's applier is
replaced by one that fails or succeeds on demand.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from stubs import make_clocked_world

from mvp_tasks.settings import StateSettings
from mvp_tasks.apply import steps as apply_steps
from mvp_tasks.apply.executor import Engine
from mvp_tasks.state.store import LockHeld
from mvp_tasks.errors import MvpError
from mvp_tasks.plan.stacks import effective_parameters, is_unchanged
from mvp_tasks.plan.steps import MoveTag, RollService, TargetPlan
from mvp_tasks.report import Outcome, Reporter
from mvp_tasks.settings import ClusterSettings
from mvp_tasks.templates import Template

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
CLUSTER = ClusterSettings(name="stage", template="cluster.yml", protected=False, promote_from="", tag="stage")


class FakeRegistry:
    def __init__(self, tags: dict[str, str]):
        self.tags = dict(tags)
        self.retags: list[tuple[str, str]] = []
        self.reads: list[str] = []  # the tags read (a request each to a registry)

    def ref(self, repository, tag):
        return f"registry.example/{repository}:{tag}"

    def get_digest(self, repository, tag):
        self.reads.append(tag)
        return self.tags.get(tag)

    def retag(self, repository, source, target):
        digest = source if source.startswith("sha256:") else self.tags[source]
        self.retags.append((source, target))
        self.tags[target] = digest


class FakeHistory:
    def __init__(self, held: bool = False):
        self.items: list[dict] = []
        self.locks = 0
        self.held = held

    def acquire(self, project, owner, lease, token="", on_takeover=None, **waiting):
        if self.held:
            raise LockHeld(f"another deploy of {project} to stage is running")
        self.locks += 1
        return token

    def renew(self, project, token, lease):  # the check before each later step: still ours
        return 0

    def release(self, project, token):
        self.locks -= 1

    def record(self, project, **fields):
        self.items.append(fields)

    def record_and_release(self, project, token, **fields):
        self.record(project, **fields)
        self.release(project, token)
        return True


def promote(registry: FakeRegistry, history: FakeHistory, rollout, *, stop: bool = False):
    """Apply a promote of c2 to stage (move the tag, then roll the service), as the engine does;
    `rollout` stands in for the rollout's applier. Returns the outcome and the reporter."""
    rep = Reporter(stream=io.StringIO(), interactive=False, yes=True)
    settings = SimpleNamespace(wait_timeout=60, poll_interval=1, parallel=1, clusters={"stage": CLUSTER},
                               state=StateSettings())
    aws = SimpleNamespace(get_caller=lambda: "tester")
    world = make_clocked_world(settings, rep, aws, registry=registry, history=history)
    if stop:
        world.stop.set()
    engine = Engine(world)
    target = TargetPlan("web@stage", kind="app", project="web", cluster="stage", action="promote", commit="c2",
                        digest=NEW, steps=[MoveTag("web", "stage", "c2", OLD, NEW, label="c2"),
                                           RollService("web-stage")])
    original = apply_steps.APPLY[RollService]
    apply_steps.APPLY[RollService] = rollout
    try:
        return engine._apply_target(target, {}).outcome, rep
    finally:
        apply_steps.APPLY[RollService] = original


def rolled_back(run, step):
    raise MvpError("deployment ecs-svc/1 was rolled back by the deployment circuit breaker")


def test_failed_rollout_points_the_tag_back_and_records_the_failure():
    registry = FakeRegistry({"stage": OLD, "c2": NEW})
    history = FakeHistory()

    outcome, rep = promote(registry, history, rolled_back)

    assert outcome is Outcome.FAILED
    assert registry.tags["stage"] == OLD
    assert registry.retags == [("c2", "stage"), (OLD, "stage")]
    assert [(i["outcome"], i["digest"]) for i in history.items] == [("failed", NEW)]
    assert "rolled back by the deployment circuit breaker" in history.items[0]["message"]
    assert history.locks == 0  # taken once, released
    assert f"web:stage pointed back at {OLD[:19]}" in rep.stream.getvalue()


@pytest.mark.parametrize("history, stop", [
    pytest.param(FakeHistory(held=True), False, id="lock-held"),
    pytest.param(FakeHistory(), True, id="interrupted-before-it-started"),
])
def test_failure_before_anything_changed_leaves_the_tag_and_the_history_alone(history, stop):
    registry = FakeRegistry({"stage": OLD, "c2": NEW})

    outcome, _ = promote(registry, history, rolled_back, stop=stop)

    assert outcome is Outcome.FAILED
    assert registry.retags == [] and registry.tags["stage"] == OLD
    assert history.items == [] and history.locks == 0


def test_success_keeps_the_new_tag():
    registry = FakeRegistry({"stage": OLD, "c2": NEW})
    history = FakeHistory()

    outcome, rep = promote(registry, history, lambda run, step: None)

    assert outcome is Outcome.CHANGED
    # The tag is read before the move (what to point back at, and whether to move it at all) and
    # after it (that it names the image now): not once more in between.
    assert registry.reads == ["stage", "stage"]
    assert registry.tags["stage"] == NEW and registry.retags == [("c2", "stage")]
    assert [(i["outcome"], i["digest"]) for i in history.items] == [("succeeded", NEW)]
    assert history.locks == 0
    assert "pointed back" not in rep.stream.getvalue()


OTHER = "sha256:" + "c" * 64


@pytest.mark.parametrize("tag_at_apply, retags", [
    # Another run promoted c2 already: this run moves nothing, so there is nothing to point back.
    pytest.param(NEW, [], id="already-moved-to-this-image"),
    # Another run moved the tag elsewhere: the undo restores what it named right before this move.
    pytest.param(OTHER, [("c2", "stage"), (OTHER, "stage")], id="moved-elsewhere"),
])
def test_undo_points_the_tag_back_at_what_it_named_right_before_the_move_not_at_the_plans_view(tag_at_apply, retags):
    # Planned while the tag named OLD; by the time the lock is taken (a person at the prompt, a CI
    # run in between) the tag names something else. A failed rollout must not undo the other run.
    registry = FakeRegistry({"stage": tag_at_apply, "c2": NEW})
    history = FakeHistory()

    outcome, rep = promote(registry, history, rolled_back)

    assert outcome is Outcome.FAILED
    assert registry.retags == retags
    assert registry.tags["stage"] == tag_at_apply
    assert f"pointed back at {OLD[:19]}" not in rep.stream.getvalue()


# --- recognising an unchanged stack ----------------------------------------------------------------


def test_json_template_read_back_parsed_counts_as_unchanged():
    body = '{\n  "Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}\n}\n'
    template = Template(path=Path("t.json"), label="t.json", body=body, parameters={},
                        resources={"Logs": "AWS::Logs::LogGroup"})
    stack = SimpleNamespace(name="web-stage", parameters={}, tags={"mvp:cluster": "stage"})
    # boto3 hands JSON templates back already parsed; Stacks.get_template_body re-serialises them.
    same = SimpleNamespace(get_template_body=lambda name: json.dumps(json.loads(body)))
    other = SimpleNamespace(get_template_body=lambda name: json.dumps({"Resources": {}}))
    assert is_unchanged(same, stack, template, {}, {"mvp:cluster": "stage"}) is True
    assert is_unchanged(other, stack, template, {}, {"mvp:cluster": "stage"}) is False


TEMPLATE = Template(path=Path("t.yml"), label="t.yml", body="Resources: {}\n", resources={"Logs": "AWS::Logs::LogGroup"},
                    parameters={"Image": {"Type": "String"}, "DesiredCount": {"Type": "Number", "Default": 2},
                                "Subnets": {"Type": "List<AWS::EC2::Subnet::Id>", "Default": ["subnet-1", "subnet-2"]},
                                "Secret": {"Type": "String", "NoEcho": True, "Default": "x"}})


def test_effective_parameters_are_what_describe_stacks_lists():
    assert effective_parameters(TEMPLATE, {"Image": "web:stage", "DesiredCount": "3", "Undeclared": "x"}) == {
        "Image": "web:stage", "DesiredCount": "3", "Subnets": "subnet-1,subnet-2", "Secret": "x"}
    assert effective_parameters(TEMPLATE, {}) == {"DesiredCount": "2", "Subnets": "subnet-1,subnet-2", "Secret": "x"}


def test_a_no_echo_parameter_is_never_unchanged_and_list_values_compare_either_way():
    body = TEMPLATE.body
    template = Template(path=Path("t.yml"), label="t.yml", body=body, resources={"Logs": "AWS::Logs::LogGroup"},
                        parameters={"Subnets": {"Type": "CommaDelimitedList"}})
    read = SimpleNamespace(get_template_body=lambda name: body)
    # The emulator reads List values back as "['a', 'b']", AWS as "a,b": the same value.
    stack = SimpleNamespace(name="web-stage", parameters={"Subnets": "['subnet-1', 'subnet-2']"}, tags={})
    assert is_unchanged(read, stack, template, {"Subnets": "subnet-1,subnet-2"}, {}) is True
    # NoEcho values read back as '****': never known to be unchanged, and no template is read.
    never = SimpleNamespace(get_template_body=lambda name: pytest.fail("the template must not be read"))
    assert is_unchanged(never, SimpleNamespace(name="x", parameters={}, tags={}), TEMPLATE, {}, {}) is False
    # A drift check leaves what it cannot read out, and compares the rest.
    hidden = SimpleNamespace(name="x", parameters={"Image": "web:stage", "Secret": "****"}, tags={})
    same = SimpleNamespace(get_template_body=lambda name: TEMPLATE.body)
    assert is_unchanged(same, hidden, TEMPLATE, {"Image": "web:stage", "Secret": "x"}, {}, unknown_is_same=True) is True
    assert is_unchanged(same, hidden, TEMPLATE, {"Image": "web:prod", "Secret": "x"}, {}, unknown_is_same=True) is False
    other = SimpleNamespace(get_template_body=lambda name: "Resources: {Other: {}}\n")
    assert is_unchanged(other, hidden, TEMPLATE, {"Image": "web:stage", "Secret": "x"}, {}, unknown_is_same=True) is False
