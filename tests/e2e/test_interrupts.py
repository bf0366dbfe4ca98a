"""Ctrl-C at the wrong moment leaves nothing half-done.

`inv` runs as a subprocess against the moto server through a loopback proxy that slows every AWS
call (tests/support/aws_proxy.py), and gets SIGINT the moment a chosen call arrives: while
planning a change set, while a stack update runs, right after the deploy lock was written, while a
rollout is followed after a tag moved. Afterwards, read back from the services:
- the exit code is 130, with no traceback;
- no `lock#` item is left;
- no change set is left unexecuted;
- no cluster tag names an image that was not rolled out (a moved tag points back);
- the history says `interrupted`;
- a plain re-run converges at once.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, PROJECT, link_sandbox
from test_lifecycle import BUILD_TIMEOUT, new_lab, shipped_everywhere

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.aws_proxy import AwsProxy  # noqa: E402
from tests.support.signals import Child  # noqa: E402


@pytest.fixture(scope="module")
def lab(tmp_path_factory, git_env, image_services, moto_server):
    return shipped_everywhere(new_lab(tmp_path_factory.mktemp("interrupts"), git_env, image_services, moto_server))


@pytest.fixture
def proxy(lab):
    with AwsProxy(lab.moto.endpoint) as proxy:
        yield proxy


def interrupt(lab, proxy, args: list[str], when: str, *, slow: float = 0.4, service: str | None = None,
              timeout: float = 60, sig: int = signal.SIGINT):
    """Run `inv ARGS` through the proxy and send it `sig` (Ctrl-C's SIGINT unless told) as soon as
    the `when` call arrives."""
    env = link_sandbox(lab.work, dict(lab.env, AWS_ENDPOINT_URL=proxy.url))
    proxy.slow = slow
    try:
        with Child([BIN / "inv", *args], cwd=lab.work, env=env) as child:
            proxy.wait_for(when, service=service, timeout=timeout)
            child.send(sig)
            return child.finish(timeout=timeout)
    finally:
        proxy.slow = 0


def extra_config(tmp_path: Path, count: int) -> str:
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump({"mvp": {"projects": {PROJECT: {"parameters": {"DesiredCount": count}}}}}))
    return str(path)


def assert_clean(lab, cluster: str = "stage") -> None:
    assert lab.lock_item(cluster) is None, lab.lock_item(cluster)
    cfn = lab.client("cloudformation")
    # Executed change sets may linger in the emulator's list (AWS removes them): unexecuted ones must not.
    left = [c for c in cfn.list_change_sets(StackName=f"{PROJECT}-{cluster}")["Summaries"]
            if c.get("ExecutionStatus") not in ("EXECUTE_COMPLETE", "EXECUTE_FAILED", "OBSOLETE")]
    assert left == [], left
    rolled = {r.get("digest") for r in lab.history(cluster) if r.get("outcome") == "succeeded"}
    assert lab.digest(cluster) in rolled, (lab.digest(cluster), rolled)


def assert_interrupted(code: int, out: str, err: str) -> None:
    assert code == 130, out + err
    assert "Traceback" not in out + err, err


def test_ctrl_c_while_the_change_set_is_planned_deletes_it(lab, proxy, tmp_path):
    config = extra_config(tmp_path, 2)
    code, out, err = interrupt(lab, proxy, ["-f", config, "app.deploy", PROJECT], "CreateChangeSet")
    assert_interrupted(code, out, err)
    assert_clean(lab)
    assert lab.stack(f"{PROJECT}-stage")["StackStatus"] != "UPDATE_IN_PROGRESS"


def test_ctrl_c_during_a_stack_update_releases_the_lock_and_says_what_goes_on(lab, proxy, tmp_path):
    config = extra_config(tmp_path, 3)
    code, out, err = interrupt(lab, proxy, ["-f", config, "app.deploy", PROJECT], "ExecuteChangeSet")
    assert_interrupted(code, out, err)
    assert_clean(lab)
    # The emulator settles a stack update at once, so the target may well have finished its step
    # before it saw the interrupt: then it is recorded as done; otherwise as interrupted, and what
    # CloudFormation goes on doing is told.
    newest = lab.history("stage")[-1]
    assert newest["outcome"] in ("interrupted", "succeeded"), newest
    if newest["outcome"] == "interrupted":
        assert "still running in AWS" in out, out
    rerun = lab.ok("-f", config, "app.deploy", PROJECT)
    assert "recap: ok=1" in rerun.stdout or "changed=1" in rerun.stdout


def test_ctrl_c_right_after_the_lock_was_written_releases_it(lab, proxy):
    code, out, err = interrupt(lab, proxy, ["app.update", PROJECT], "PutItem", service="dynamodb")
    assert_interrupted(code, out, err)
    assert_clean(lab)
    lab.ok("app.update", PROJECT)
    assert_clean(lab)


def test_ctrl_c_during_a_promote_rollout_points_the_tag_back(lab, proxy):
    from conftest import git

    before = lab.digest("prod")
    page = lab.work / "projects" / PROJECT / "site" / "index.html"
    page.write_text(page.read_text() + "\n<!-- to promote -->\n")
    git(lab.work, "commit", "-qam", "something to promote", env=lab.git_env)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    assert lab.digest("stage") != before
    code, out, err = interrupt(lab, proxy, ["app.promote", PROJECT, "--tag", "prod", "--yes"], "UpdateService")
    assert_interrupted(code, out, err)
    assert_clean(lab, "prod")
    assert lab.digest("prod") == before, "the moved tag must point back at the image it named before"
    assert "pointed back" in out, out
    assert [r for r in lab.history("prod") if r.get("action") == "promote"][-1]["outcome"] == "interrupted"
    lab.ok("app.promote", PROJECT, "--tag", "prod", "--yes")
    assert lab.digest("prod") == lab.digest("stage")
    assert_clean(lab, "prod")


def test_sigterm_during_a_promote_rollout_is_the_first_ctrl_c(lab, proxy):
    """CI cancellation, `timeout` and systemd stop a run with SIGTERM: the same undo as Ctrl-C."""
    from conftest import git

    before = lab.digest("prod")
    page = lab.work / "projects" / PROJECT / "site" / "index.html"
    page.write_text(page.read_text() + "\n<!-- to promote, then SIGTERM -->\n")
    git(lab.work, "commit", "-qam", "something to promote, stopped by SIGTERM", env=lab.git_env)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    code, out, err = interrupt(lab, proxy, ["app.promote", PROJECT, "--tag", "prod", "--yes"], "UpdateService",
                               sig=signal.SIGTERM)
    assert_interrupted(code, out, err)
    assert "interrupted by SIGTERM: nothing new starts" in out, out
    assert_clean(lab, "prod")
    assert lab.digest("prod") == before, "the moved tag must point back at the image it named before"
    newest = [r for r in lab.history("prod") if r.get("action") == "promote"][-1]
    assert (newest["outcome"], newest["message"]) == ("interrupted", "interrupted (SIGTERM)"), newest
    lab.ok("app.promote", PROJECT, "--tag", "prod", "--yes")
    assert lab.digest("prod") == lab.digest("stage")


def test_a_second_ctrl_c_exits_at_once(lab, proxy):
    env = link_sandbox(lab.work, dict(lab.env, AWS_ENDPOINT_URL=proxy.url))
    proxy.slow = 2.0
    try:
        with Child([BIN / "inv", "app.update", PROJECT], cwd=lab.work, env=env) as child:
            proxy.wait_for("DescribeStacks", timeout=30)
            child.send(signal.SIGINT)
            # The first one was handled (two sent at once may arrive as one).
            child.wait_for_output("Ctrl-C again", timeout=30)
            child.send(signal.SIGINT)
            code, out, err = child.finish(timeout=10)
    finally:
        proxy.slow = 0
    assert code == 130, out + err
    assert "Traceback" not in err
    assert "exiting at once" in err, err
    lab.ok("app.update", PROJECT)


def test_ctrl_c_during_a_release_rollout_points_the_stage_tag_back_and_a_rerun_converges(lab, proxy):
    from conftest import git

    before = lab.digest("stage")
    page = lab.work / "projects" / PROJECT / "site" / "index.html"
    page.write_text(page.read_text() + "\n<!-- to release -->\n")
    git(lab.work, "commit", "-qam", "something to release", env=lab.git_env)
    head = git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()
    code, out, err = interrupt(lab, proxy, ["ci.release"], "UpdateService", timeout=BUILD_TIMEOUT)
    assert_interrupted(code, out, err)
    assert_clean(lab)
    assert lab.digest(head) is not None, "the pushed commit image stays: it is named by its commit only"
    assert lab.digest("stage") == before, "the stage tag must point back at the image it named before"
    assert [r for r in lab.history("stage") if r.get("action") == "release"][-1]["outcome"] == "interrupted"
    rerun = lab.ok("ci.release", timeout=BUILD_TIMEOUT)
    assert "failed=0" in rerun.stdout, rerun.stdout
    assert lab.digest("stage") == lab.digest(head)
    assert_clean(lab)


# --- locks are leases: a run killed outright never strands one ---------------------------------------


def test_a_deploy_killed_with_sigkill_is_taken_over_at_once_by_the_next_run_on_this_host(lab, proxy):
    # Killed once the lock is written and the rollout started: no handler runs, nothing is released.
    code, _, _ = interrupt(lab, proxy, ["app.update", PROJECT], "UpdateService", sig=signal.SIGKILL)
    assert code == -signal.SIGKILL
    held = lab.lock_item("stage")
    assert held is not None, "a run killed outright leaves its lock, as a dead run does"
    pid = held["pid"]
    assert held["host"] == socket.gethostname() and not Path(f"/proc/{pid}").exists(), held

    result = lab.ok("app.update", PROJECT)  # no app.unlock, no waiting for the lease

    said = result.stdout + result.stderr
    assert (f"took over the deploy lock of {PROJECT} in stage from" in said
            and f"(pid {pid})" in said and "its process is gone" in said), said
    assert "rolled out" in result.stdout, result.stdout
    assert_clean(lab)
    assert lab.history("stage")[-1]["action"] == "update" and lab.history("stage")[-1]["outcome"] == "succeeded"


def _foreign_lock(lab, seconds: int, lease: int = 90) -> None:
    """A lock as a run on another machine leaves it when it is killed (its expiry, on its own
    clock, `seconds` ahead; never compared with ours): taken over only once it goes one `lease`
    without a new record version, timed on the acquirer's clock."""
    from tests.support import store

    lab.client("dynamodb").put_item(TableName=lab.table(), Item={
        **store.lock_key("stage", PROJECT), "owner": {"S": "arn:aws:sts::123456789012:user/ci on runner-9 (pid 4242)"},
        "host": {"S": "runner-9"}, "host_id": {"S": "runner-9-machine/pid:[4026531836]"}, "pid": {"N": "4242"},
        "token": {"S": "a" * 32}, "rvn": {"S": "0" * 32}, "lease": {"N": str(lease)},
        "acquired_at": {"S": "2026-12-02T10:00:00.000000+00:00"},
        "expires_at": {"N": str(int(time.time()) + seconds)}})


def test_a_lock_of_a_run_on_another_machine_is_held_while_renewed_and_taken_over_one_lease_after(lab):
    import threading

    from conftest import assert_one_line_error
    from tests.support import store

    _foreign_lock(lab, 3600, lease=4)
    beating = threading.Event()

    def heartbeat() -> None:  # the other machine's run lives: a new record version every second
        n = 0
        while not beating.wait(1):
            n += 1
            lab.client("dynamodb").update_item(TableName=lab.table(), Key=store.lock_key("stage", PROJECT),
                                               UpdateExpression="SET rvn = :v",
                                               ExpressionAttributeValues={":v": {"S": f"{n:032d}"}})

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        refused = lab.inv("app.update", PROJECT)
    finally:
        beating.set()
        beat.join()
    assert_one_line_error(refused, f"another deploy of {PROJECT} to stage is running: held by "
                                   "arn:aws:sts::123456789012:user/ci on runner-9 (pid 4242) since 2026-12-02 10:00:00",
                          "if that run died", f"inv app.unlock {PROJECT} --cluster stage")
    assert lab.lock_item("stage")["token"] == "a" * 32  # not touched

    # Its run died (no more renewals); its expiry, an hour ahead on its clock, does not matter.
    result = lab.ok("app.update", PROJECT)
    said = result.stdout + result.stderr
    assert "rolled out" in result.stdout and "took over the deploy lock" in said and "not renewed for 4 s" in said, said
    assert_clean(lab)


def test_app_unlock_breaks_a_held_lock_after_confirmation_and_records_who_broke_it(lab):
    import json

    from conftest import assert_one_line_error

    nothing = lab.ok("app.unlock", PROJECT, "--cluster", "stage").stdout
    assert "no deploy lock is held" in nothing and "recap: ok=1 changed=0" in nothing
    _foreign_lock(lab, 3600)
    refused = lab.inv("app.unlock", PROJECT, "--cluster", "stage")  # no terminal, no --yes
    assert_one_line_error(refused, f"break the deploy lock of {PROJECT} in stage", "--yes")
    assert lab.lock_item("stage")["token"] == "a" * 32
    checked = lab.ok("app.unlock", PROJECT, "--cluster", "stage", "--check")
    assert "- deploy lock of" in checked.stdout and "runner-9" in checked.stdout
    assert lab.lock_item("stage")["token"] == "a" * 32  # --check breaks nothing

    result = lab.ok("app.unlock", PROJECT, "--cluster", "stage", "--yes", "--json")

    [outcome] = json.loads(result.stdout)
    assert (outcome["target"], outcome["outcome"]) == (f"{PROJECT}@stage", "changed"), outcome
    assert outcome["message"].startswith("broke the deploy lock held by arn:aws:sts::123456789012:user/ci on runner-9 (pid 4242)")
    assert lab.lock_item("stage") is None
    newest = lab.history("stage")[-1]
    assert (newest["action"], newest["outcome"]) == ("unlock", "succeeded"), newest
    assert "runner-9" in newest["message"] and newest["by"]
    entries = json.loads(lab.ok("app.history", PROJECT, "--cluster", "stage", "--json", "--limit", "1").stdout)
    assert entries[0]["action"] == "unlock" and entries[0]["at"] == newest["at"]
    lab.ok("app.update", PROJECT)
    assert_clean(lab)
