"""Steps and target plans as data: each step says what it would do and, once done, what it did;
the words of a plan (stack actions, target kinds, history actions) are enums equal to the strings
they replaced, so JSON, DynamoDB items and history records read the same."""

from __future__ import annotations

import json

from mvp_tasks.image.git import Revision
from mvp_tasks.image.registry import RepositoryChanges
from mvp_tasks.plan.steps import (Action, BuildImage, DeleteStack, EnsureStack, EnsureStore, MigrateHistory, MoveTag,
                                  PushImage, RollService, StackAction, TargetKind, TargetPlan, wait_hint)
from mvp_tasks.templates import Template

TEMPLATE = Template(path=None, label="t.yml", body="", parameters={}, resources={"A": "AWS::SQS::Queue"})


def stack(action: str, **kw) -> EnsureStack:
    return EnsureStack("web-stage", template=TEMPLATE, parameters={}, tags={}, action=action, **kw)


def test_every_step_says_its_own_past_tense():
    assert [stack(a).done() for a in ("create", "recreate", "update", "protect")] == \
        ["stack created", "stack re-created", "stack updated", "termination protection turned on"]
    assert BuildImage("web", "r/web:c", "linux/amd64", revision=Revision("c" * 40, False)).done() == "built the image"
    assert PushImage("web", "web", "c", "r/web:c", RepositoryChanges("web")).done() == "pushed the image"
    assert MoveTag("web", "stage", "c" * 40, "", "", label="c" * 12).done() == f"pointed stage at {'c' * 12}"
    assert RollService("web-stage").done() == "forced a new deployment"
    assert DeleteStack("web-stage", "CREATE_COMPLETE").done() == "deleted stack web-stage"
    assert EnsureStore(stack("create")).done() == "created the deploy store"
    assert EnsureStore(stack("update")).done() == "upgraded the deploy store"
    assert MigrateHistory("stage", "old-table").done() == "history copied into the deploy store"


def test_a_past_tense_matches_its_summary():
    # What the planner used to make with .replace("create the", "created the") and the like.
    for step, present, past in ((EnsureStore(stack("recreate")), "create the", "created the"),
                                (EnsureStore(stack("update")), "upgrade the", "upgraded the")):
        assert step.done() == step.summary().replace(present, past)


def test_the_enums_equal_the_strings_they_replaced():
    assert [a.value for a in StackAction] == ["create", "recreate", "update", "protect"]
    assert [k.value for k in TargetKind] == ["app", "cluster", "image"]
    assert {a.value for a in Action} >= {"deploy", "release", "promote", "rollback", "update", "destroy", "push",
                                         "build", "cluster.up", "cluster.down", "secret", "unlock"}
    assert Action.DEPLOY == "deploy" and StackAction.UPDATE == "update" and TargetKind.CLUSTER == "cluster"
    assert isinstance(Action.PROMOTE, str)
    # Written as their value wherever they go.
    assert f"{Action.CLUSTER_UP}" == str(Action.CLUSTER_UP) == "cluster.up"
    assert json.dumps({"action": Action.ROLLBACK, "kind": TargetKind.APP}) == '{"action": "rollback", "kind": "app"}'


def test_strings_given_become_the_enums():
    step = stack("recreate")
    assert step.action is StackAction.RECREATE and step.destructive
    plan = TargetPlan("web@stage", kind="cluster", action="cluster.up")
    assert plan.kind is TargetKind.CLUSTER and plan.action is Action.CLUSTER_UP
    assert TargetPlan("web@stage").kind is TargetKind.APP and TargetPlan("web@stage").action is None


def test_the_app_wait_hint():
    assert wait_hint("web", "stage") == "ECS keeps going on its own; wait again with `inv app.wait web --cluster stage`"
