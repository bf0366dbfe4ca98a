"""The deploy lock as a lease, through the Guard that holds it for one target, against botocore's
Stubber on a real DynamoDB client: the heartbeat renews it; a run that lost it stops before its
next step, says why, and does not delete the lock it no longer holds.

The heartbeat runs every third of the lease; these tests use a lease of 3 s, so each waits about
one second for a beat (waiting for the stub to have answered, never asserting on time).
"""

from __future__ import annotations

import io
import os
import socket
import time
from types import SimpleNamespace

import pytest
from botocore.stub import ANY, Stubber
from stubs import isolate_from_aws, make_client

from mvp_tasks.apply import guard as guard_module
from mvp_tasks.apply.guard import Guard
from mvp_tasks.apply.steps import TargetRun, apply_step
from mvp_tasks.plan.steps import MoveTag, TargetPlan
from mvp_tasks.report import Reporter
from mvp_tasks.settings import ClusterSettings, StateSettings
from mvp_tasks.state import store as store_module
from mvp_tasks.state.store import ClusterStore, LeaseLost
from mvp_tasks.world import World

TABLE = "mvp-deploy-state-Table-1Q2W3E4R5T6Y"
CLUSTER = ClusterSettings(name="staging", template="cluster.yml", protected=False, promote_from="", tag="stage")
PROJECT = "web"
TOKEN = "5f0e1d2c3b4a59687766554433221100"
LEASE = 3
NOW = 1793534400
LOCK_KEY = {"pk": {"S": f"lock#staging#{PROJECT}"}, "sk": {"S": "lock"}}
OTHER = "arn:aws:sts::123456789012:user/ops on laptop-2 (pid 77)"
HERE = "3d1219c7c4c5404aaa1f6d2a48adfda4/pid:[4026531836]"


@pytest.fixture
def dynamodb(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("dynamodb")
    with Stubber(client) as stub:
        yield SimpleNamespace(client=client, stub=stub)


@pytest.fixture
def guard(dynamodb, monkeypatch):
    monkeypatch.setattr(guard_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=TOKEN)))
    store = ClusterStore(dynamodb.client, TABLE, CLUSTER.name, clock=lambda: NOW, here=lambda: HERE)
    settings = SimpleNamespace(state=StateSettings(lease=LEASE), wait_timeout=60, poll_interval=1,
                               clusters={CLUSTER.name: CLUSTER})
    world = World(settings, Reporter(stream=io.StringIO(), interactive=False, yes=True),
                  SimpleNamespace(get_caller=lambda: "tester"))
    world.history = lambda cluster: store  # the store's table was found already
    plan = TargetPlan(f"{PROJECT}@staging", project=PROJECT, cluster=CLUSTER.name, action="promote")
    return Guard(world, plan, CLUSTER)


def lock_put() -> dict:
    return {
        "TableName": TABLE,
        "Item": {**LOCK_KEY, "owner": {"S": f"tester on {socket.gethostname()} (pid {os.getpid()})"},
                 "host": {"S": socket.gethostname()}, "host_id": {"S": HERE}, "pid": {"N": str(os.getpid())},
                 "pid_start": {"S": store_module.process_start(os.getpid()) or ""}, "token": {"S": TOKEN},
                 "rvn": ANY, "lease": {"N": str(LEASE)},
                 "acquired_at": {"S": store_module.now_iso()}, "expires_at": {"N": str(NOW + LEASE)}},
        "ConditionExpression": "attribute_not_exists(pk)",
    }


RENEW = {"TableName": TABLE, "Key": LOCK_KEY, "UpdateExpression": "SET expires_at = :exp, rvn = :rvn, lease = :lease",
         "ConditionExpression": "#t = :token", "ExpressionAttributeNames": {"#t": "token"},
         "ExpressionAttributeValues": {":exp": {"N": str(NOW + LEASE)}, ":rvn": ANY, ":lease": {"N": str(LEASE)},
                                       ":token": {"S": TOKEN}}}
RELEASE = {"TableName": TABLE, "Key": LOCK_KEY, "ConditionExpression": "#t = :token",
           "ExpressionAttributeNames": {"#t": "token"}, "ExpressionAttributeValues": {":token": {"S": TOKEN}}}


def answered(stub: Stubber, timeout: float = 10.0) -> None:
    """Wait until the stub has given every queued answer (the heartbeat thread asks on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stub.assert_no_pending_responses()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.fixture(autouse=True)
def fixed_iso(monkeypatch):
    monkeypatch.setattr(store_module, "now_iso", lambda: "2026-11-01T12:00:00.000000+00:00")


def test_the_heartbeat_renews_the_lease_while_the_run_lives_and_the_release_deletes_it(dynamodb, guard):
    dynamodb.stub.add_response("put_item", {}, lock_put())
    dynamodb.stub.add_response("update_item", {}, RENEW)

    guard.lock()
    answered(dynamodb.stub)  # one beat: the lease pushed on, on the condition that it is ours
    dynamodb.stub.add_response("update_item", {}, RENEW)
    dynamodb.stub.add_response("delete_item", {}, RELEASE)
    guard.lock()  # the next step: the lease renewed once more, synchronously, before it
    guard.release()

    dynamodb.stub.assert_no_pending_responses()
    assert not guard._heartbeat.is_alive() or guard._beating.is_set()


def test_a_run_whose_lease_was_taken_stops_before_its_next_step_says_why_and_leaves_the_lock(dynamodb, guard):
    dynamodb.stub.add_response("put_item", {}, lock_put())
    dynamodb.stub.add_client_error("update_item", service_error_code="ConditionalCheckFailedException",
                                   service_message="The conditional request failed", http_status_code=400,
                                   expected_params=RENEW)
    dynamodb.stub.add_response("get_item", {"Item": {
        **LOCK_KEY, "owner": {"S": OTHER}, "host": {"S": "laptop-2"}, "pid": {"N": "77"},
        "token": {"S": "f" * 32}, "acquired_at": {"S": "2026-11-01T12:01:00.000000+00:00"},
        "expires_at": {"N": str(NOW + 600)}}}, {"TableName": TABLE, "Key": LOCK_KEY, "ConsistentRead": True})
    moved = []
    registry = SimpleNamespace(get_digest=lambda repo, tag: moved.append(tag) or "sha256:" + "1" * 64)
    guard.world._registry = registry
    run = TargetRun(guard.world, guard.plan, guard, CLUSTER)
    step = MoveTag("web", "stage", "a" * 40, "sha256:" + "1" * 64, "sha256:" + "2" * 64)

    guard.lock()
    answered(dynamodb.stub)  # the beat found the lock another's
    with pytest.raises(LeaseLost) as raised:
        apply_step(run, step)
    guard.release()  # no DeleteItem: the lock is the other run's now

    dynamodb.stub.assert_no_pending_responses()
    assert moved == []  # the step did not even read the registry
    assert raised.value.message == (f"lost the deploy lock of {PROJECT} in staging: it is now held by {OTHER} "
                                    "since 2026-11-01 12:01:00; stopped before its next change")
    assert raised.value.hint == f"see who did it: inv app.history {PROJECT} --cluster staging"


def test_a_heartbeat_that_cannot_renew_before_the_lease_runs_out_loses_it(dynamodb, guard):
    # Beats at 1 s and 2 s fail; the next would come when the 3 s lease has run out: lost.
    dynamodb.stub.add_response("put_item", {}, lock_put())
    for _ in range(2):
        dynamodb.stub.add_client_error("update_item", service_error_code="InternalServerError",
                                       service_message="Internal server error", http_status_code=500,
                                       expected_params=RENEW)

    guard.lock()
    answered(dynamodb.stub)
    deadline = time.monotonic() + 10
    while guard.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LeaseLost, match="could not renew the deploy lock of web in staging before its lease ran out"):
        guard.lock()
    guard.release()
    dynamodb.stub.assert_no_pending_responses()


# --- a run that lost its lock changes nothing more ------------------------------------------------


def broken_renewal(stub: Stubber) -> None:
    stub.add_client_error("update_item", service_error_code="ConditionalCheckFailedException",
                          service_message="The conditional request failed", http_status_code=400,
                          expected_params=RENEW)
    stub.add_response("get_item", {}, {"TableName": TABLE, "Key": LOCK_KEY, "ConsistentRead": True})


class FakeRegistry:
    """Tags of one repository, moved server-side as `move_tag` asks."""

    def __init__(self, tags: dict[str, str]):
        self.tags = dict(tags)
        self.reads: list[str] = []

    def get_digest(self, repository: str, tag: str) -> str | None:
        self.reads.append(tag)
        return self.tags.get(tag) or (tag if tag.startswith("sha256:") else None)

    def retag(self, repository: str, source: str, tag: str) -> None:
        self.tags[tag] = self.get_digest(repository, source)


OLD, OURS, THEIRS = ("sha256:" + c * 64 for c in "123")


def test_a_lock_broken_between_two_steps_stops_the_run_before_the_next_even_before_a_heartbeat(dynamodb, guard):
    # The lease is 3 s: no beat comes before the second step. The check before it is a renewal of
    # its own, which DynamoDB refuses: the lock is gone (`app.unlock`).
    dynamodb.stub.add_response("put_item", {}, lock_put())
    registry = FakeRegistry({"stage": OLD, "abc": OURS})
    guard.world._registry = registry
    run = TargetRun(guard.world, guard.plan, guard, CLUSTER)

    guard.lock()  # the first step
    broken_renewal(dynamodb.stub)
    with pytest.raises(LeaseLost, match="it was broken .inv app.unlock.; stopped before its next change"):
        apply_step(run, MoveTag("web", "stage", "abc", OLD, OURS))
    guard.release()

    dynamodb.stub.assert_no_pending_responses()
    assert registry.reads == [] and registry.tags["stage"] == OLD


def test_a_run_that_lost_its_lease_does_not_undo_and_says_so_once(dynamodb, guard):
    dynamodb.stub.add_response("put_item", {}, lock_put())
    registry = FakeRegistry({"stage": OLD, "abc": OURS})
    guard.world._registry = registry
    run = TargetRun(guard.world, guard.plan, guard, CLUSTER)
    apply_step(run, MoveTag("web", "stage", "abc", OLD, OURS))  # takes the lock, moves the tag
    registry.tags["stage"] = THEIRS  # the run that took the lock over moved it since
    broken_renewal(dynamodb.stub)

    guard.run_undo()
    guard.release()

    dynamodb.stub.assert_no_pending_responses()
    assert registry.tags["stage"] == THEIRS
    said = guard.world.reporter.stream.getvalue()
    assert said.count("left as it is, not undone") == 1, said
    assert "web:stage pointed back at" in said and "its deploy lock is not its own any more" in said, said


def test_the_tag_undo_is_a_compare_and_swap_on_this_runs_digest(dynamodb, guard):
    dynamodb.stub.add_response("put_item", {}, lock_put())
    registry = FakeRegistry({"stage": OLD, "abc": OURS})
    guard.world._registry = registry
    run = TargetRun(guard.world, guard.plan, guard, CLUSTER)
    apply_step(run, MoveTag("web", "stage", "abc", OLD, OURS))
    registry.tags["stage"] = THEIRS  # moved by someone else, though our lease still holds
    dynamodb.stub.add_response("update_item", {}, RENEW)
    dynamodb.stub.add_response("delete_item", {}, RELEASE)

    guard.run_undo()
    guard.release()

    dynamodb.stub.assert_no_pending_responses()
    assert registry.tags["stage"] == THEIRS
    said = guard.world.reporter.stream.getvalue()
    assert f"web:stage left at {THEIRS[:19]}, not pointed back at {OLD[:19]}: another run moved it since" in said, said
