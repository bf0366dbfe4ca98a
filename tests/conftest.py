"""Shared fixtures: real services on loopback, and the CI rule that a skip is a failure."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str) -> None:
    """Skip when a real component is missing; under CI=true that is a failure, not a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must run every test, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # Whatever skips (a fixture, a marker, a library), CI runs everything: a skip fails there.
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class MotoServer:
    def __init__(self, port: int, proc: subprocess.Popen):
        self.port = port
        self.proc = proc
        self.endpoint = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=10).read()

    def client(self, service: str):
        import boto3

        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A real moto server over HTTP on loopback, shared by the session and reset per test."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        need(False, "moto[server] is not installed")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    env = dict(os.environ, MOTO_ECS_SERVICE_RUNNING="1")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    server = MotoServer(port, proc)
    try:
        wait_http(f"{server.endpoint}/moto-api/data.json")
        yield server
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def aws(moto_server):
    """A clean moto state for one test."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def studio(tmp_path):
    """A copy of the studio repository to run `inv` in, so tests never touch the working tree."""
    dest = tmp_path / "studio"
    ignore = shutil.ignore_patterns(".git", ".venv", ".sandbox", "__pycache__", ".pytest_cache", "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def inv_env(endpoint: str | None = None, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INVOKE_MVP_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
    # Never read the developer's ~/.aws files.
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    env.update(extra)
    return env


def run_inv(cwd: Path, *args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
    """`inv ARGS` as a subprocess, with no terminal (stdin is empty unless `input` is given)."""
    return subprocess.run(
        [str(BIN / "inv"), *args], cwd=cwd, env=env or inv_env(), capture_output=True, text=True,
        timeout=timeout, input=input if input is not None else "", check=False,
    )


def assert_one_line_error(result, *fragments: str) -> None:
    """Bad input: non-zero exit, one clear line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def json_load():
    return json.loads
