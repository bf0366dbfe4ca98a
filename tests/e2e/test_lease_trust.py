"""A run that lost its deploy lock changes nothing more (issue 18, items 3, 5 and 8), read back from
the moto server (the lock and history items) and from the OCI registry (where a tag points).

- Leases are timed on the acquirer's own clock by the holder's record version: a holder whose
  clock runs 120 s slow keeps a lock it renews; an abandoned one is taken after one lease.
- A run whose lock is broken between two steps stops before the next one and records no success.
- A run whose lock was broken, and another run took it and moved the tag, does not point the tag
  back at its own old image when it is interrupted.
- `app.push --cluster C` moves C's tag under the app's lock and leaves a history record.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, PROJECT, assert_one_line_error, git, link_sandbox
from test_lifecycle import BUILD_TIMEOUT, index_change, new_lab, records, shipped_everywhere

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support import store  # noqa: E402
from tests.support.aws_proxy import AwsProxy  # noqa: E402
from tests.support.signals import Child  # noqa: E402

pytestmark = pytest.mark.e2e


# --- the lease, on the moto server: no clock of another host is ever compared ----------------------


class Monotonic:
    """An acquirer's own monotonic clock, which moves when it sleeps (and `during` runs then)."""

    def __init__(self, during=None) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self.during = during

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        if self.during is not None:
            self.during()


@pytest.fixture
def table(aws):
    return store.create_store(aws.client("cloudformation"))


def _store(aws, table, clock=time.time, **kw):
    """A store of one run; `kw` (its own monotonic clock, sleep, host identity) set as attributes."""
    from mvp_tasks.state.store import ClusterStore

    made = ClusterStore(aws.client("dynamodb"), table, "stage", clock=clock)
    for name, value in kw.items():
        setattr(made, name, value)
    return made


def test_a_holder_whose_clock_runs_120_s_slow_renews_and_keeps_its_lock(aws, table):
    from mvp_tasks.state.store import LockHeld

    # The holder's wall clock is 120 s behind: the expiry it writes is already past on ours.
    holder = _store(aws, table, clock=lambda: time.time() - 120, here=lambda: "holder-machine/pid:[1]")
    token = holder.acquire(PROJECT, "ci on runner-1 (pid 11)", 30)
    renewals = []

    def holder_beats() -> None:  # while we watch, the holder's heartbeat renews, as a live run does
        if not renewals:
            renewals.append(holder.renew(PROJECT, token, 30))

    clock = Monotonic(during=holder_beats)
    acquirer = _store(aws, table, monotonic=lambda: clock.now, sleep=clock.sleep, here=lambda: "other/pid:[2]")

    with pytest.raises(LockHeld, match="another deploy of museum-adventure to stage is running: held by ci on runner-1"):
        acquirer.acquire(PROJECT, "dana on laptop (pid 22)", 30)

    item = store.lock_item(aws.client("dynamodb"), aws.client("cloudformation"), "stage", PROJECT)
    assert item["token"] == token, item  # still the holder's
    assert int(item["expires_at"]) < time.time()  # on our clock its expiry is past: not what decides
    assert renewals and clock.slept < 30
    holder.renew(PROJECT, token, 30)  # and it can go on renewing: the lock is its own


def test_an_abandoned_lock_is_taken_over_after_one_lease_on_the_acquirers_own_clock(aws, table):
    # Its holder's clock ran 2 h fast: by its expiry it would hold the lock for hours more.
    holder = _store(aws, table, clock=lambda: time.time() + 7200, here=lambda: "holder-machine/pid:[1]")
    holder.acquire(PROJECT, "ci on runner-1 (pid 11)", 30)
    clock = Monotonic()
    acquirer = _store(aws, table, monotonic=lambda: clock.now, sleep=clock.sleep, here=lambda: "other/pid:[2]")
    said = []

    token = acquirer.acquire(PROJECT, "dana on laptop (pid 22)", 30, on_takeover=said.append)

    item = store.lock_item(aws.client("dynamodb"), aws.client("cloudformation"), "stage", PROJECT)
    assert item["token"] == token and item["owner"] == "dana on laptop (pid 22)", item
    assert clock.slept == pytest.approx(30)  # one lease, timed here
    assert len(said) == 1 and "not renewed for 30 s" in said[0], said


# --- runs of the tool against the lab (images, registry, moto) ------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory, git_env, image_services, moto_server):
    return shipped_everywhere(new_lab(tmp_path_factory.mktemp("lease"), git_env, image_services, moto_server))


def _held_by_this_test(lab, cluster: str):
    """The app's lock held by a live run on this host (this test's own process)."""
    history = lab.history_api(cluster)
    return history, history.acquire(PROJECT, "someone else (ci on runner-7)", 600)


def test_app_push_to_a_cluster_takes_the_apps_lock_and_records_the_push(lab):
    lab.commit(index_change(lab, "pushed under the lock"), "a change to push")
    commit = git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()
    before = lab.digest("stage")
    pushes = len(records(lab, "stage", "push"))
    history, token = _held_by_this_test(lab, "stage")
    try:
        refused = lab.inv("app.push", PROJECT, "--cluster", "stage", timeout=BUILD_TIMEOUT)
        assert_one_line_error(refused, f"another deploy of {PROJECT} to stage is running",
                              "held by someone else (ci on runner-7)")
        assert lab.digest("stage") == before  # the tag did not move
        assert lab.lock_item("stage")["token"] == token  # still theirs
        assert len(records(lab, "stage", "push")) == pushes
    finally:
        history.release(PROJECT, token)

    lab.ok("app.push", PROJECT, "--cluster", "stage", timeout=BUILD_TIMEOUT)

    assert lab.digest("stage") == lab.digest(commit) != before
    newest = records(lab, "stage", "push")[-1]
    assert (newest["outcome"], newest["commit"], newest["digest"]) == ("succeeded", commit, lab.digest(commit))
    assert lab.lock_item("stage") is None


def test_a_run_whose_lock_is_broken_between_two_steps_stops_before_the_next(lab):
    lab.commit(index_change(lab, "pushed while the lock is broken"), "another change to push")
    commit = git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()
    before = lab.digest("stage")
    env = link_sandbox(lab.work, dict(lab.env))
    with Child([BIN / "inv", "app.push", PROJECT, "--cluster", "stage"], cwd=lab.work, env=env) as child:
        # The lock is written before the build (the first step); the test breaks it right away, as
        # `app.unlock` does, and another run's lock takes its place.
        child.wait_until(lambda: lab.lock_item("stage") is not None, "the lock written", timeout=BUILD_TIMEOUT)
        dynamodb = lab.client("dynamodb")
        dynamodb.put_item(TableName=lab.table(), Item={
            **store.lock_key("stage", PROJECT), "owner": {"S": "the next run"}, "token": {"S": "b" * 32},
            "rvn": {"S": "c" * 32}, "lease": {"N": "90"}, "acquired_at": {"S": "2026-12-02T10:00:00.000000+00:00"},
            "expires_at": {"N": str(int(time.time()) + 90)}})
        code, out, err = child.finish(timeout=BUILD_TIMEOUT)

    assert code == 1, out + err
    assert "lost the deploy lock" in out + err and "stopped before its next change" in out + err, out + err
    assert lab.digest("stage") == before, "the tag must not move once the lock is lost"
    assert lab.lock_item("stage")["token"] == "b" * 32  # the next run's lock, left alone
    assert not [r for r in records(lab, "stage", "push") if r.get("commit") == commit and r["outcome"] == "succeeded"]
    lab.client("dynamodb").delete_item(TableName=lab.table(), Key=store.lock_key("stage", PROJECT))


def test_two_runs_racing_over_a_broken_lease_the_tag_stays_where_the_new_holder_put_it(lab):
    # Run A promotes stage's image to prod and is held in its rollout; its lock is broken
    # (`app.unlock`) and run B pushes a new commit to prod under the lock. Then A is interrupted:
    # it must not point prod back at the image it named before A moved it.
    before = lab.digest("prod")
    lab.commit(index_change(lab, "promoted by A"), "for A")
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    a_digest = lab.digest("stage")
    assert a_digest != before
    with AwsProxy(lab.moto.endpoint) as proxy:
        proxy.slow = 0.4  # every call of A is held a moment: long enough to hold its rollout's first
        env = link_sandbox(lab.work, dict(lab.env, AWS_ENDPOINT_URL=proxy.url))
        with Child([BIN / "inv", "app.promote", PROJECT, "--tag", "prod", "--yes"], cwd=lab.work, env=env) as a:
            proxy.wait_for("UpdateService", timeout=120)
            proxy.slow = 600  # A's rollout call (and any later call of A) is held here
            assert lab.digest("prod") == a_digest
            lab.ok("app.unlock", PROJECT, "--cluster", "prod", "--yes")
            b_commit = lab.commit(index_change(lab, "pushed by B"), "for B")
            lab.ok("app.push", PROJECT, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
            b_digest = lab.digest("prod")
            assert b_digest == lab.digest(b_commit) not in (before, a_digest)
            a.send(signal.SIGINT)
            a.wait_for_output("nothing new starts", timeout=30)  # A knows it is interrupted
            proxy.slow = 0
            code, out, err = a.finish(timeout=120)

    assert code == 130, out + err
    assert lab.digest("prod") == b_digest, "A's undo must not reset the tag B moved"
    said = out + err
    assert f"@prod: {PROJECT}:prod pointed back" not in said, said
    assert "left as it is, not undone" in said and "its deploy lock is not its own any more" in said, said
    promote = records(lab, "prod", "promote")[-1]
    assert promote["outcome"] == "interrupted", promote
    assert records(lab, "prod", "push")[-1]["commit"] == b_commit
    assert lab.lock_item("prod") is None
