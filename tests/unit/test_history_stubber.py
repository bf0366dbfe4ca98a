"""The deploy store (history and the deploy lock, a lease) against botocore's Stubber on a real
DynamoDB client.

The lock is a conditional PutItem, renewed by a conditional UpdateItem (the heartbeat); a held lock
is a ConditionalCheckFailedException, which moto answers too, but only the Stubber lets each test
pin the exact request (condition, key, token, expiry, host and pid) and the exact error AWS gives. Each test queues the calls it expects, in order, and ends
with `assert_no_pending_responses()`; an unqueued call fails the test.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from stubs import isolate_from_aws, make_client
from botocore.stub import Stubber
from invoke import Exit, MockContext

from mvp_tasks.state import store as history_module
from mvp_tasks.state.store import ClusterStore as History, LockHeld, Record
from mvp_tasks.errors import AwsError
from mvp_tasks.tasks.boundary import mvp_task

TABLE = "mvp-deploy-state-Table-1Q2W3E4R5T6Y"
CLUSTER = "staging"
PROJECT = "web"
NOW = 1793534400  # 2026-11-01 12:00:00 UTC
NOW_ISO = "2026-11-01T12:00:00.123456+00:00"
TOKEN = "5f0e1d2c3b4a59687766554433221100"
ME = "arn:aws:sts::123456789012:assumed-role/deployer/dana on build-7 (pid 4242)"
OTHER = "arn:aws:sts::123456789012:assumed-role/ci/github-actions on runner-3 (pid 917)"
LOCK_KEY = {"pk": {"S": f"lock#{CLUSTER}#{PROJECT}"}, "sk": {"S": "lock"}}
APP_PK = f"app#{CLUSTER}#{PROJECT}"
HOST = "build-7"
PID = 4242
PID_START = "98765"
OTHER_TOKEN = "0123456789abcdef0123456789abcdef"
HERE = "3d1219c7c4c5404aaa1f6d2a48adfda4/pid:[4026531836]"  # this host: machine id / PID namespace
ELSEWHERE = "77aa0000000000000000000000000000/pid:[4026531836]"
OTHER_RVN = "11112222333344445555666677778888"
CONDITION_FAILED = "The conditional request failed"


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def client(monkeypatch):
    isolate_from_aws(monkeypatch)
    return make_client("dynamodb")


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber


@pytest.fixture
def history(client, stub, monkeypatch):
    # Pin the token and the wall clock, so requests can be matched exactly.
    monkeypatch.setattr(history_module, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=TOKEN)))
    monkeypatch.setattr(history_module, "now_iso", lambda: NOW_ISO)
    monkeypatch.setattr(history_module.socket, "gethostname", lambda: HOST)
    monkeypatch.setattr(history_module.os, "getpid", lambda: PID)
    alive = {PID: PID_START, 917: "555"}  # pid -> start time; any other pid is gone
    monkeypatch.setattr(history_module, "process_start", lambda pid: alive.get(pid))
    return History(client, TABLE, CLUSTER, clock=lambda: NOW + 0.75, monotonic=lambda: MONO.now,
                   sleep=MONO.sleep, here=lambda: HERE)


class Monotonic:
    """The acquirer's own monotonic clock: it moves only when the acquirer sleeps."""

    def __init__(self) -> None:
        self.now = 5000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


MONO = Monotonic()


@pytest.fixture(autouse=True)
def fresh_clock():
    MONO.__init__()


def lock_put(lease: int = 90, takeover_of: str = "") -> dict:
    put = {
        "TableName": TABLE,
        "Item": {
            **LOCK_KEY,
            "owner": {"S": ME},
            "host": {"S": HOST},
            "host_id": {"S": HERE},
            "pid": {"N": str(PID)},
            "pid_start": {"S": PID_START},
            "token": {"S": TOKEN},
            "rvn": {"S": TOKEN},  # a fresh random version (uuid4 is pinned here)
            "lease": {"N": str(lease)},
            "acquired_at": {"S": NOW_ISO},
            "expires_at": {"N": str(NOW + lease)},
        },
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    if takeover_of:
        # Over the version that was judged, and only that one: never by comparing clocks.
        put.update(ConditionExpression="rvn = :rvn", ExpressionAttributeValues={":rvn": {"S": takeover_of}})
    return put


LOCK_DELETE = {
    "TableName": TABLE,
    "Key": LOCK_KEY,
    "ConditionExpression": "#t = :token",
    "ExpressionAttributeNames": {"#t": "token"},
    "ExpressionAttributeValues": {":token": {"S": TOKEN}},
}
LOCK_GET = {"TableName": TABLE, "Key": LOCK_KEY, "ConsistentRead": True}


def condition_failed(stub: Stubber, operation: str, params: dict) -> None:
    stub.add_client_error(operation, service_error_code="ConditionalCheckFailedException",
                          service_message=CONDITION_FAILED, http_status_code=400, expected_params=params)


# --- 1. acquire and release ------------------------------------------------------------------------


def test_acquire_puts_the_lock_conditionally_and_release_deletes_it_by_token(stub, history):
    stub.add_response("put_item", {}, lock_put(lease=90))
    stub.add_response("delete_item", {}, LOCK_DELETE)

    token = history.acquire(PROJECT, ME, 90)
    assert history.release(PROJECT, token) is True

    stub.assert_no_pending_responses()
    assert token == TOKEN


def test_acquire_truncates_a_fractional_lease_and_clock(stub, history):
    # The condition compares whole seconds: a fractional clock or lease must not reach DynamoDB.
    stub.add_response("put_item", {}, lock_put(lease=90))

    assert history.acquire(PROJECT, ME, 90.9) == TOKEN

    stub.assert_no_pending_responses()


def test_release_of_a_lock_someone_else_now_holds_is_ignored(stub, history):
    # Our lock expired and another run took it: the token no longer matches, and it is theirs.
    condition_failed(stub, "delete_item", LOCK_DELETE)

    assert history.release(PROJECT, TOKEN) is False

    stub.assert_no_pending_responses()


# --- 2. a held lock --------------------------------------------------------------------------------

HELD_SINCE = "2026-11-01T11:52:30.000001+00:00"
HELD_UNTIL = NOW + 1050  # 12:17:30 UTC


def holder_item(host: str = "runner-3", pid: int = 917, token: str = OTHER_TOKEN, owner: str = OTHER,
                host_id: str = ELSEWHERE, rvn: str = OTHER_RVN, lease: int = 90, expires: int = HELD_UNTIL) -> dict:
    item = {
        **LOCK_KEY,
        "owner": {"S": owner},
        "host": {"S": host},
        "pid": {"N": str(pid)},
        "pid_start": {"S": "555"},
        "token": {"S": token},
        "acquired_at": {"S": HELD_SINCE},
        "expires_at": {"N": str(expires)},
    }
    item.update({"host_id": {"S": host_id}} if host_id else {})
    item.update({"rvn": {"S": rvn}} if rvn else {})
    item.update({"lease": {"N": str(lease)}} if lease else {})
    return {"Item": item}


def add_held_lock(stub: Stubber, **holder) -> None:
    """A lock held by a live run elsewhere: found, watched, and renewed while watched."""
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", holder_item(**holder), LOCK_GET)
    if holder.get("host_id", ELSEWHERE) != HERE:
        stub.add_response("get_item", holder_item(**{**holder, "rvn": "9" * 32}), LOCK_GET)


HELD_MESSAGE = (f"another deploy of {PROJECT} to {CLUSTER} is running: held by {OTHER} since 2026-11-01 11:52:30")
HELD_HINT = ("wait for it to finish (if that run died, its lock is taken over 90 s after its last renewal), "
             f"or break the lock: inv app.unlock {PROJECT} --cluster {CLUSTER}")


def test_acquire_of_a_held_lock_names_the_holder_since_when_and_both_ways_out(stub, history):
    add_held_lock(stub)

    with pytest.raises(LockHeld) as raised:
        history.acquire(PROJECT, ME, 90)

    stub.assert_no_pending_responses()
    error = raised.value
    assert isinstance(error, AwsError)
    assert error.message == HELD_MESSAGE
    assert error.hint == HELD_HINT
    assert error.__cause__ is None and error.__suppress_context__


def test_a_holder_on_this_host_whose_process_is_alive_is_not_taken_over(stub, history):
    # Same host (machine id and PID namespace), pid 917 still runs (with the start time its item
    # names): a live run's lock, refused at once without watching it.
    add_held_lock(stub, host=HOST, host_id=HERE)

    with pytest.raises(LockHeld):
        history.acquire(PROJECT, ME, 90)

    stub.assert_no_pending_responses()


def test_a_holder_on_this_host_whose_process_is_gone_is_taken_over_at_once_and_said(stub, history):
    condition_failed(stub, "put_item", lock_put())
    dead = f"arn:aws:sts::123456789012:assumed-role/deployer/dana on {HOST} (pid 31337)"
    stub.add_response("get_item", holder_item(host=HOST, pid=31337, owner=dead, host_id=HERE), LOCK_GET)
    stub.add_response("put_item", {}, lock_put(takeover_of=OTHER_RVN))
    said = []

    assert history.acquire(PROJECT, ME, 90, on_takeover=said.append) == TOKEN

    stub.assert_no_pending_responses()
    assert said == [f"took over the deploy lock of {PROJECT} in {CLUSTER} from {dead} since 2026-11-01 11:52:30: "
                    "its process is gone"]


def test_two_runs_taking_over_one_dead_holder_race_on_its_token_and_the_loser_is_told(stub, history):
    # Both saw the dead holder; the other run's conditional write (on the dead token) landed first,
    # so ours fails, and the lock, read again, is the winner's: held, not ours.
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", holder_item(host=HOST, pid=31337, host_id=HERE), LOCK_GET)
    condition_failed(stub, "put_item", lock_put(takeover_of=OTHER_RVN))
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", holder_item(token="f" * 32, rvn="f" * 32), LOCK_GET)
    stub.add_response("get_item", holder_item(token="f" * 32, rvn="e" * 32), LOCK_GET)  # it renews
    said = []

    with pytest.raises(LockHeld) as raised:
        history.acquire(PROJECT, ME, 90, on_takeover=said.append)

    stub.assert_no_pending_responses()
    assert raised.value.message == HELD_MESSAGE and said == []


def test_our_own_write_whose_answer_was_lost_is_ours(stub, history):
    # botocore retried a PutItem that had landed: the condition fails on our own item.
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", holder_item(host=HOST, pid=PID, token=TOKEN, owner=ME, host_id=HERE), LOCK_GET)

    assert history.acquire(PROJECT, ME, 90) == TOKEN
    stub.assert_no_pending_responses()


# --- the lease: renewal and losing it -------------------------------------------------------------

RENEW = {
    "TableName": TABLE,
    "Key": LOCK_KEY,
    "UpdateExpression": "SET expires_at = :exp, rvn = :rvn, lease = :lease",
    "ConditionExpression": "#t = :token",
    "ExpressionAttributeNames": {"#t": "token"},
    "ExpressionAttributeValues": {":exp": {"N": str(NOW + 90)}, ":rvn": {"S": TOKEN}, ":lease": {"N": "90"},
                                  ":token": {"S": TOKEN}},
}


def test_renew_pushes_the_expiry_on_only_while_the_token_is_ours(stub, history):
    stub.add_response("update_item", {}, RENEW)

    assert history.renew(PROJECT, TOKEN, 90) == NOW + 90
    stub.assert_no_pending_responses()


def test_renew_of_a_lock_taken_by_another_run_is_a_lost_lease_naming_the_holder(stub, history):
    condition_failed(stub, "update_item", RENEW)
    stub.add_response("get_item", holder_item(), LOCK_GET)

    with pytest.raises(history_module.LeaseLost) as raised:
        history.renew(PROJECT, TOKEN, 90)

    stub.assert_no_pending_responses()
    assert raised.value.message == (f"lost the deploy lock of {PROJECT} in {CLUSTER}: it is now held by {OTHER} "
                                    "since 2026-11-01 11:52:30")


def test_renew_of_a_broken_lock_says_it_was_broken(stub, history):
    condition_failed(stub, "update_item", RENEW)
    stub.add_response("get_item", {}, LOCK_GET)

    with pytest.raises(history_module.LeaseLost, match="it was broken \\(inv app.unlock\\)"):
        history.renew(PROJECT, TOKEN, 90)
    stub.assert_no_pending_responses()


def test_held_lock_through_the_task_boundary_exits_1_with_one_line(stub, history):
    add_held_lock(stub)

    @mvp_task
    def deploy(c):
        history.acquire(PROJECT, ME, 90)

    with pytest.raises(Exit) as raised:
        deploy(MockContext())

    stub.assert_no_pending_responses()
    assert raised.value.code == 1
    assert raised.value.message == f"error: {HELD_MESSAGE} ({HELD_HINT})"


def test_lock_released_between_the_put_and_the_get_is_tried_again(stub, history):
    # The holder finished between our PutItem and our GetItem: the lock is free, so try again.
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", {}, LOCK_GET)
    stub.add_response("put_item", {}, lock_put())

    assert history.acquire(PROJECT, ME, 90) == TOKEN
    stub.assert_no_pending_responses()


def test_lock_that_keeps_vanishing_and_being_taken_again_gives_up_after_three_rounds(stub, history):
    for _ in range(3):
        condition_failed(stub, "put_item", lock_put())
        stub.add_response("get_item", {}, LOCK_GET)

    with pytest.raises(LockHeld) as raised:
        history.acquire(PROJECT, ME, 90)

    stub.assert_no_pending_responses()
    assert raised.value.message == f"the deploy lock of {PROJECT} in {CLUSTER} keeps changing hands"


# --- 3. records ------------------------------------------------------------------------------------


def test_record_puts_one_item_with_every_field(stub, history):
    long_message = "deployment ecs-svc/8702395846211486052 was rolled back: " + "x" * 600
    stub.add_response("put_item", {}, {
        "TableName": TABLE,
        "Item": {
            "pk": {"S": APP_PK},
            "sk": {"S": f"at#{NOW_ISO}"},
            "project": {"S": PROJECT},
            "cluster": {"S": CLUSTER},
            "action": {"S": "deploy"},
            "commit": {"S": "4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a"},
            "digest": {"S": "sha256:" + "ab" * 32},
            "outcome": {"S": "failed"},
            "by": {"S": "arn:aws:sts::123456789012:assumed-role/deployer/dana"},
            "at": {"S": NOW_ISO},
            "message": {"S": long_message[:500]},
        },
    })

    record = history.record(PROJECT, action="deploy", commit="4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
                            digest="sha256:" + "ab" * 32, outcome="failed",
                            by="arn:aws:sts::123456789012:assumed-role/deployer/dana", message=long_message)

    stub.assert_no_pending_responses()
    assert record == Record(PROJECT, CLUSTER, "deploy", "4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e6d5c4b3a",
                            "sha256:" + "ab" * 32, "failed", "arn:aws:sts::123456789012:assumed-role/deployer/dana",
                            NOW_ISO, long_message[:500])
    assert not record.succeeded


RECORD_ITEM = {"pk": {"S": APP_PK}, "sk": {"S": f"at#{NOW_ISO}"}, "project": {"S": PROJECT},
               "cluster": {"S": CLUSTER}, "action": {"S": "promote"}, "commit": {"S": "c" * 40},
               "outcome": {"S": "succeeded"}, "by": {"S": ME}, "at": {"S": NOW_ISO}}
RELEASE_FIELDS = dict(action="promote", commit="c" * 40, digest="", outcome="succeeded", by=ME)


def test_record_and_release_is_one_transaction_the_delete_on_our_token(stub, history):
    stub.add_response("transact_write_items", {}, {"TransactItems": [
        {"Put": {"TableName": TABLE, "Item": RECORD_ITEM}}, {"Delete": LOCK_DELETE}]})

    assert history.record_and_release(PROJECT, TOKEN, **RELEASE_FIELDS) is True

    stub.assert_no_pending_responses()


def test_record_and_release_of_a_lock_no_longer_ours_still_writes_the_record(stub, history):
    # The lease ran out and another run holds the lock: the transaction is cancelled on the
    # delete's condition, the record is written alone and their lock is left alone.
    stub.add_client_error("transact_write_items", service_error_code="TransactionCanceledException",
                          service_message="Transaction cancelled, please refer cancellation reasons for specific "
                                          "reasons [None, ConditionalCheckFailed]", http_status_code=400,
                          response_meta={}, modeled_fields={"CancellationReasons": [
                              {"Code": "None"}, {"Code": "ConditionalCheckFailed", "Message": CONDITION_FAILED}]})
    stub.add_response("put_item", {}, {"TableName": TABLE, "Item": RECORD_ITEM})

    assert history.record_and_release(PROJECT, TOKEN, **RELEASE_FIELDS) is False

    stub.assert_no_pending_responses()


def test_record_and_release_cancelled_for_another_reason_writes_the_record_and_keeps_the_lock(stub, history):
    # A heartbeat's renewal in flight conflicts with the transaction: the record is written alone,
    # and the lock (still ours) is left for `release`.
    stub.add_client_error("transact_write_items", service_error_code="TransactionCanceledException",
                          service_message="Transaction cancelled [None, TransactionConflict]", http_status_code=400,
                          modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]})
    stub.add_response("put_item", {}, {"TableName": TABLE, "Item": RECORD_ITEM})

    assert history.record_and_release(PROJECT, TOKEN, **RELEASE_FIELDS) is None

    stub.assert_no_pending_responses()


def test_record_and_release_denied_is_an_error_and_writes_nothing_else(stub, history):
    stub.add_client_error("transact_write_items", service_error_code="AccessDeniedException",
                          service_message="not authorized to perform: dynamodb:PutItem", http_status_code=400)

    with pytest.raises(AwsError):
        history.record_and_release(PROJECT, TOKEN, **RELEASE_FIELDS)

    stub.assert_no_pending_responses()


def test_record_leaves_out_empty_fields(stub, history):
    # A rollback to an image with no commit label has no commit; an empty string would be noise.
    stub.add_response("put_item", {}, {
        "TableName": TABLE,
        "Item": {
            "pk": {"S": APP_PK},
            "sk": {"S": f"at#{NOW_ISO}"},
            "project": {"S": PROJECT},
            "cluster": {"S": CLUSTER},
            "action": {"S": "rollback"},
            "digest": {"S": "sha256:" + "cd" * 32},
            "outcome": {"S": "succeeded"},
            "by": {"S": "dana"},
            "at": {"S": NOW_ISO},
        },
    })

    record = history.record(PROJECT, action="rollback", commit="", digest="sha256:" + "cd" * 32,
                            outcome="succeeded", by="dana")

    stub.assert_no_pending_responses()
    assert record.commit == "" and record.message == "" and record.succeeded


QUERY = {
    "TableName": TABLE,
    "KeyConditionExpression": "pk = :pk AND begins_with(sk, :at)",
    "ExpressionAttributeValues": {":pk": {"S": APP_PK}, ":at": {"S": "at#"}},
    "ScanIndexForward": False,
}


def item(at: str, action: str, outcome: str, commit: str = "", message: str = "") -> dict:
    data = {
        "pk": {"S": APP_PK},
        "sk": {"S": f"at#{at}"},
        "project": {"S": PROJECT},
        "cluster": {"S": CLUSTER},
        "action": {"S": action},
        "digest": {"S": "sha256:" + action[0] * 64},
        "outcome": {"S": outcome},
        "by": {"S": "arn:aws:sts::123456789012:assumed-role/deployer/dana"},
        "at": {"S": at},
    }
    if commit:
        data["commit"] = {"S": commit}
    if message:
        data["message"] = {"S": message}
    return data


# Newest first, as a Query with ScanIndexForward=False answers.
ITEMS = [
    item("2026-11-01T11:40:00.000000+00:00", "deploy", "failed", "c" * 40,
         message="deployment ecs-svc/1 was rolled back by the deployment circuit breaker"),
    item("2026-11-01T10:05:00.000000+00:00", "rollback", "succeeded"),  # no commit: not trusted as current
    item("2026-10-31T16:20:00.000000+00:00", "promote", "succeeded", "b" * 40),
    item("2026-10-30T09:00:00.000000+00:00", "deploy", "succeeded", "a" * 40),
]


def query_response(items: list[dict]) -> dict:
    return {"Items": items, "Count": len(items), "ScannedCount": len(items)}


def test_get_records_queries_newest_first_and_parses_items(stub, history):
    stub.add_response("query", query_response(ITEMS), {**QUERY, "Limit": 3})

    records = history.get_records(PROJECT, limit=3)

    stub.assert_no_pending_responses()
    assert [(r.at, r.action, r.outcome, r.commit) for r in records] == [
        ("2026-11-01T11:40:00.000000+00:00", "deploy", "failed", "c" * 40),
        ("2026-11-01T10:05:00.000000+00:00", "rollback", "succeeded", ""),
        ("2026-10-31T16:20:00.000000+00:00", "promote", "succeeded", "b" * 40),
        ("2026-10-30T09:00:00.000000+00:00", "deploy", "succeeded", "a" * 40),
    ]
    assert records[0] == Record(PROJECT, CLUSTER, "deploy", "c" * 40, "sha256:" + "d" * 64, "failed",
                                "arn:aws:sts::123456789012:assumed-role/deployer/dana",
                                "2026-11-01T11:40:00.000000+00:00",
                                "deployment ecs-svc/1 was rolled back by the deployment circuit breaker")


def test_get_current_skips_failed_records_and_records_without_commit(stub, history):
    stub.add_response("query", query_response(ITEMS), {**QUERY, "Limit": 50})

    current = history.get_current(PROJECT)

    stub.assert_no_pending_responses()
    assert current is not None
    assert (current.action, current.commit, current.at) == ("promote", "b" * 40, "2026-10-31T16:20:00.000000+00:00")


def test_get_current_of_a_project_never_deployed_is_none(stub, history):
    stub.add_response("query", query_response([]), {**QUERY, "Limit": 50})

    assert history.get_current(PROJECT) is None

    stub.assert_no_pending_responses()


# --- 4. other DynamoDB errors are not swallowed ----------------------------------------------------

MISSING_TABLE = "Requested resource not found"


@pytest.mark.parametrize("operation, params, call", [
    pytest.param("put_item", lock_put(), lambda h: h.acquire(PROJECT, ME, 90), id="acquire"),
    pytest.param("delete_item", LOCK_DELETE, lambda h: h.release(PROJECT, TOKEN), id="release"),
    pytest.param("get_item", LOCK_GET, lambda h: h.get_lock(PROJECT), id="get_lock"),
    pytest.param("query", {**QUERY, "Limit": 50}, lambda h: h.get_records(PROJECT), id="get_records"),
])
def test_missing_table_is_an_aws_error_not_a_held_or_free_lock(stub, history, operation, params, call):
    stub.add_client_error(operation, service_error_code="ResourceNotFoundException", service_message=MISSING_TABLE,
                          http_status_code=400, expected_params=params)

    with pytest.raises(AwsError) as raised:
        call(history)

    stub.assert_no_pending_responses()  # and no GetItem after a failed acquire
    assert type(raised.value) is AwsError
    assert str(raised.value) == f"ResourceNotFoundException: {MISSING_TABLE}"


def test_throttled_acquire_is_an_aws_error_not_a_held_lock(stub, history):
    # The Stubber bypasses retries, so the error reaches the wrapper as it would after the last attempt.
    stub.add_client_error("put_item", service_error_code="ProvisionedThroughputExceededException",
                          service_message="The level of configured provisioned throughput for the table was "
                                          "exceeded. Consider increasing your provisioning level with the "
                                          "UpdateTable API.",
                          http_status_code=400, expected_params=lock_put())

    with pytest.raises(AwsError) as raised:
        history.acquire(PROJECT, ME, 90)

    stub.assert_no_pending_responses()
    assert not isinstance(raised.value, LockHeld)
    assert str(raised.value).startswith("ProvisionedThroughputExceededException: The level of configured")


def test_access_denied_on_record_says_what_the_policy_must_allow(stub, history):
    stub.add_client_error("put_item", service_error_code="AccessDeniedException",
                          service_message="User: arn:aws:sts::123456789012:assumed-role/readonly/dana is not "
                                          "authorized to perform: dynamodb:PutItem on resource: "
                                          f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
                          http_status_code=400)

    with pytest.raises(AwsError) as raised:
        history.record(PROJECT, action="deploy", commit="a" * 40, digest="sha256:" + "a" * 64,
                       outcome="succeeded", by="dana")

    stub.assert_no_pending_responses()
    assert raised.value.message.startswith("access denied: User: ")
    assert "dynamodb:PutItem" in raised.value.message
    assert raised.value.hint == "the caller's IAM policy must allow this action"


# --- who a holder is: its host by machine id and PID namespace, its process by /proc or signal 0 ----


def test_a_holder_with_this_hostname_but_another_machine_id_or_pid_namespace_is_not_taken_over_by_pid(stub, history):
    # A container on this machine: same hostname, a pid that names nothing here. Not "gone": it is
    # watched for one lease, and it renews, so it is refused.
    condition_failed(stub, "put_item", lock_put())
    stub.add_response("get_item", holder_item(host=HOST, pid=31337, host_id=HERE.split("/")[0] + "/pid:[4026532999]"),
                      LOCK_GET)
    stub.add_response("get_item", holder_item(host=HOST, pid=31337, rvn="9" * 32), LOCK_GET)

    with pytest.raises(LockHeld):
        history.acquire(PROJECT, ME, 90)
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("host_id, here, start, expected", [
    (HERE, HERE, None, "dead"),  # same machine and namespace, no such process
    (HERE, HERE, "555", "alive"),  # runs, with the start time the item names
    (HERE, HERE, "", "alive"),  # runs (signal 0), /proc cannot say when it started
    (HERE, HERE, "556", "dead"),  # the pid names another process now
    (ELSEWHERE, HERE, None, "unknown"),  # another machine: only its lease can tell
    (HERE.split("/")[0] + "/pid:[1]", HERE, None, "unknown"),  # another PID namespace
    ("", HERE, None, "unknown"),  # a lock written by an older version: hostname only
    (HERE, "", None, "unknown"),  # we cannot tell who we are (macOS, no /proc)
])
def test_liveness_of_a_holder_needs_both_machine_id_and_pid_namespace(host_id, here, start, expected):
    holder = history_module.Holder.from_item(holder_item(host=HOST, host_id=host_id)["Item"])
    assert holder.liveness_here(here, start_of=lambda pid: start) == expected


def _kill_raising(error):
    def kill(pid, signal):
        if error is not None:
            raise error
    return kill


@pytest.mark.parametrize("error, expected", [
    (ProcessLookupError(), None), (PermissionError(), ""), (None, "")])
def test_without_proc_the_signal_0_probe_says_whether_a_process_runs(tmp_path, error, expected):
    # No /proc (macOS): a missing /proc entry is not "gone"; the kernel is asked.
    assert history_module.process_start(4242, proc=str(tmp_path / "no-proc"), kill=_kill_raising(error)) == expected


def test_with_proc_the_start_time_is_read_and_a_zombie_is_gone(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (a (b) c) S " + " ".join(str(n) for n in range(1, 30)))
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "stat").write_text("8 (z) Z " + " ".join(str(n) for n in range(1, 30)))
    assert history_module.process_start(7, proc=str(tmp_path), kill=_kill_raising(AssertionError())) == "19"
    assert history_module.process_start(8, proc=str(tmp_path), kill=_kill_raising(AssertionError())) is None


@pytest.mark.parametrize("files, link, expected", [
    ({"/etc/machine-id": "abc\n"}, "pid:[4026531836]", "abc/pid:[4026531836]"),
    ({"/var/lib/dbus/machine-id": "def\n"}, "pid:[9]", "def/pid:[9]"),
    ({}, "pid:[9]", ""),  # no machine id (macOS, a bare container): unknown
    ({"/etc/machine-id": "abc\n"}, None, ""),  # no PID namespace to read: unknown
])
def test_the_host_identity_is_machine_id_and_pid_namespace_or_nothing(files, link, expected):
    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    def readlink(path):
        if link is None:
            raise FileNotFoundError(path)
        return link

    assert history_module.host_identity(read=read, readlink=readlink) == expected


# --- a lease is timed on the acquirer's own clock, by the holder's record version -----------------


def test_an_abandoned_lock_is_taken_over_after_one_lease_on_the_acquirers_clock(stub, history):
    # Its expiry (the holder's clock) says it runs for another 17 minutes: never read. Its version
    # does not change for one lease (90 s, timed by our monotonic clock): taken over on that version.
    condition_failed(stub, "put_item", lock_put())
    for _ in range(46):  # the first read, then a look every 2 s for 90 s
        stub.add_response("get_item", holder_item(), LOCK_GET)
    stub.add_response("put_item", {}, lock_put(takeover_of=OTHER_RVN))
    said, waited = [], []

    assert history.acquire(PROJECT, ME, 90, on_takeover=said.append, on_wait=waited.append) == TOKEN

    stub.assert_no_pending_responses()
    assert sum(MONO.slept) == pytest.approx(90)
    assert waited == [f"the deploy lock of {PROJECT} in {CLUSTER} is held by {OTHER} since 2026-11-01 11:52:30: "
                      "waiting up to 90 s for it to be renewed (taken over if it is not)"]
    assert said == [f"took over the deploy lock of {PROJECT} in {CLUSTER} from {OTHER} since 2026-11-01 11:52:30: "
                    "not renewed for 90 s (one lease, timed here)"]


def test_a_lock_of_an_older_version_is_taken_over_on_its_token_and_expiry(stub, history):
    old = holder_item(host_id="", rvn="", lease=0)
    condition_failed(stub, "put_item", lock_put())
    for _ in range(46):
        stub.add_response("get_item", old, LOCK_GET)
    put = lock_put()
    put.update(ConditionExpression="#t = :theirs AND expires_at = :exp AND attribute_not_exists(rvn)",
               ExpressionAttributeNames={"#t": "token"},
               ExpressionAttributeValues={":theirs": {"S": OTHER_TOKEN}, ":exp": {"N": str(HELD_UNTIL)}})
    stub.add_response("put_item", {}, put)

    assert history.acquire(PROJECT, ME, 90) == TOKEN
    stub.assert_no_pending_responses()
