"""Rules of the deploy steps that need no AWS: restoring the cluster tag after a failed rollout,
and recognising an unchanged JSON template."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mvp_tasks.errors import MvpError
from mvp_tasks.report import Reporter
from mvp_tasks.tasks import deploying
from mvp_tasks.tasks.converge import _is_unchanged
from mvp_tasks.templates import Template

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


class FakeRegistry:
    def __init__(self, tags: dict[str, str]):
        self.tags = dict(tags)
        self.retags: list[tuple[str, str]] = []

    def get_digest(self, repository, tag):
        return self.tags.get(tag)

    def retag(self, repository, source, target):
        digest = source if source.startswith("sha256:") else self.tags[source]
        self.retags.append((source, target))
        self.tags[target] = digest
        return digest


class FakeHistory:
    def __init__(self):
        self.items: list[dict] = []
        self.locks = 0

    def acquire(self, project, owner, ttl):
        self.locks += 1
        return "token"

    def release(self, project, token):
        self.locks -= 1

    def record(self, project, **fields):
        self.items.append(fields)


def make_target(registry: FakeRegistry) -> deploying.AppTarget:
    run = SimpleNamespace(reporter=Reporter(stream=io.StringIO(), interactive=False),
                          settings=SimpleNamespace(wait_timeout=60), caller="tester")
    project = SimpleNamespace(name="web", repository="web")
    cluster = SimpleNamespace(name="stage", tag="stage", protected=False)
    return deploying.AppTarget(run, project, cluster, None, None, None, FakeHistory(), registry)


def test_failed_rollout_points_the_tag_back_and_records_the_failure():
    registry = FakeRegistry({"stage": OLD, "c2": NEW})
    target = make_target(registry)
    with pytest.raises(MvpError):
        with deploying.recording(target, "promote", commit="c2", digest=NEW, restore=OLD):
            target.lock()
            registry.retag("web", "c2", "stage")
            raise MvpError("deployment ecs-svc/1 was rolled back by the deployment circuit breaker")
    assert registry.tags["stage"] == OLD
    assert registry.retags == [("c2", "stage"), (OLD, "stage")]
    assert [i["outcome"] for i in target.history.items] == ["failed"]
    assert target.history.locks == 0 and not target.locked
    assert "pointed back" in target.run.reporter.stream.getvalue()


def test_failure_before_anything_changed_leaves_the_tag_and_the_history_alone():
    registry = FakeRegistry({"stage": OLD, "c2": NEW})
    target = make_target(registry)
    with pytest.raises(MvpError):
        with deploying.recording(target, "promote", commit="c2", digest=NEW, restore=OLD):
            raise MvpError("no image to promote")
    assert registry.retags == [] and target.history.items == []


def test_success_keeps_the_new_tag():
    registry = FakeRegistry({"stage": OLD, "c2": NEW})
    target = make_target(registry)
    with deploying.recording(target, "promote", commit="c2", digest=NEW, restore=OLD):
        target.lock()
        registry.retag("web", "c2", "stage")
    assert registry.tags["stage"] == NEW and target.history.locks == 0


def test_json_template_read_back_parsed_counts_as_unchanged(tmp_path):
    body = '{\n  "Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}\n}\n'
    template = Template(path=Path("t.json"), label="t.json", body=body, parameters={},
                        resources={"Logs": "AWS::Logs::LogGroup"})
    stack = SimpleNamespace(name="web-stage", parameters={}, tags={"mvp:cluster": "stage"})
    # boto3 hands JSON templates back already parsed; Stacks.get_template_body re-serialises them.
    same = SimpleNamespace(get_template_body=lambda name: json.dumps(json.loads(body)))
    other = SimpleNamespace(get_template_body=lambda name: json.dumps({"Resources": {}}))
    assert _is_unchanged(same, stack, template, {}, {"mvp:cluster": "stage"}) is True
    assert _is_unchanged(other, stack, template, {}, {"mvp:cluster": "stage"}) is False
