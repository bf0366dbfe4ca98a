"""The sandbox is trusted only while it is the sandbox: a repository that used it never falls back
to real AWS quietly once it is down, and a pid in `.sandbox/moto.json` that now names another
program is neither signalled nor sent AWS calls. `inv` runs as a subprocess; what runs is read back
from the processes themselves and from the moto server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import pytest

from conftest import assert_one_line_error, free_port, inv_env, run_inv

pytestmark = pytest.mark.e2e

DOWN = "the sandbox of this repository is down"
FIX = "start it with `inv sandbox.up`, or run `inv sandbox.down --forget` to target AWS"


def offline_env(**extra: str) -> dict:
    """`inv_env` without an endpoint, whose AWS calls could only reach a dead loopback proxy: if the
    tool wrongly aimed at real AWS, nothing would leave this machine."""
    env = inv_env(None, INVOKE_MVP_SANDBOX_DIR=".sbx", AWS_EC2_METADATA_DISABLED="true", **extra)
    dead = f"http://127.0.0.1:{free_port()}"
    env.pop("AWS_ENDPOINT_URL", None)
    # Loopback (the sandbox) is reached directly; anything else only through the dead proxy.
    env.update(HTTPS_PROXY=dead, HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def without_credentials(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}


def answers(port: int) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def stranger():
    """An unrelated live process in a session of its own (as the sandbox's server is): what a
    reused pid would name."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def write_state(studio, pid: int, port: int) -> None:
    (studio / ".sbx").mkdir(exist_ok=True)
    (studio / ".sbx" / "moto.json").write_text(json.dumps({"pid": pid, "port": port}))


def test_sandbox_down_leaves_a_process_that_reused_the_pid_alone_and_says_so(studio, stranger):
    write_state(studio, stranger.pid, free_port())

    down = run_inv(studio, "sandbox.down", env=offline_env())

    assert down.returncode == 0, down.stdout + down.stderr
    assert stranger.poll() is None, "sandbox.down killed a process that is not its moto server"
    assert f"moto.json named pid {stranger.pid} (`sleep 300`), which is not the sandbox's moto server" in down.stdout
    assert "left alone" in down.stdout and "ok: aws  not running" in down.stdout
    assert not (studio / ".sbx" / "moto.json").exists()


def test_no_aws_call_goes_to_an_endpoint_whose_process_is_not_the_sandbox(studio, stranger, aws):
    # The port answers (a moto server, not the sandbox's), the pid is alive: neither makes it ours.
    write_state(studio, stranger.pid, aws.port)

    result = run_inv(studio, "cluster.up", "--name", "stage", env=offline_env())

    assert_one_line_error(result, DOWN, f"moto.json names pid {stranger.pid} (`sleep 300`)", FIX)
    assert aws.client("cloudformation").list_stacks()["StackSummaries"] == []
    assert stranger.poll() is None


def test_after_sandbox_down_tasks_refuse_until_up_or_forget(studio):
    port = free_port()
    env = offline_env(INVOKE_MVP_SANDBOX_PORT=str(port))
    state = studio / ".sbx"
    try:
        up = run_inv(studio, "sandbox.up", "--aws-only", env=env, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert answers(port) and (state / "moto.used").exists()
        ran = run_inv(studio, "cluster.up", "--name", "stage", env=env)
        assert ran.returncode == 0 and f"[sandbox http://127.0.0.1:{port}" in ran.stdout, ran.stdout + ran.stderr
    finally:
        down = run_inv(studio, "sandbox.down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not answers(port) and not (state / "moto.json").exists() and (state / "moto.used").exists()
    assert "AWS tasks refuse to run until `inv sandbox.up`" in down.stdout

    for task in (("app.status",), ("cluster.status",), ("app.deploy", "museum-adventure", "--check")):
        refused = run_inv(studio, *task, env=env)
        assert_one_line_error(refused, DOWN, FIX)
        assert "[AWS" not in refused.stdout

    forget = run_inv(studio, "sandbox.down", "--forget", env=env)
    assert forget.returncode == 0 and "tasks now target AWS" in forget.stdout, forget.stdout + forget.stderr
    assert not (state / "moto.used").exists()
    # Now AWS is the target; without credentials every task says so in one line and fails.
    for task in (("app.status",), ("cluster.status",)):
        result = run_inv(studio, *task, env=without_credentials(env))
        assert_one_line_error(result, "no AWS credentials found")
        assert "[AWS us-east-1]" in result.stdout


def test_app_status_without_credentials_is_one_line_and_fails(studio):
    result = run_inv(studio, "app.status", env=without_credentials(offline_env()))

    assert_one_line_error(result, "no AWS credentials found", "inv sandbox.up")
    assert "NOT_DEPLOYED" not in result.stdout
