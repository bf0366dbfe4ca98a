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
from botocore.stub import Stubber
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


@pytest.fixture
def dynamodb(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("dynamodb")
    with Stubber(client) as stub:
        yield SimpleNamespace(client=client, stub=stub)


@pytest.fixture
def guard(dynamodb, monkeypatch):
    monkeypatch.setattr(guard_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=TOKEN)))
    store = ClusterStore(dynamodb.client, TABLE, CLUSTER.name, clock=lambda: NOW)
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
                 "host": {"S": socket.gethostname()}, "pid": {"N": str(os.getpid())},
                 "pid_start": {"S": store_module.process_start(os.getpid()) or ""}, "token": {"S": TOKEN},
                 "acquired_at": {"S": store_module.now_iso()}, "expires_at": {"N": str(NOW + LEASE)}},
        "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
        "ExpressionAttributeValues": {":now": {"N": str(NOW)}},
    }


RENEW = {"TableName": TABLE, "Key": LOCK_KEY, "UpdateExpression": "SET expires_at = :exp",
         "ConditionExpression": "#t = :token", "ExpressionAttributeNames": {"#t": "token"},
         "ExpressionAttributeValues": {":exp": {"N": str(NOW + LEASE)}, ":token": {"S": TOKEN}}}
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
    dynamodb.stub.add_response("delete_item", {}, RELEASE)
    guard.lock()  # the next step: the lease is still ours, nothing is asked
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
