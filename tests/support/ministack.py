"""ministack, the second emulator: CloudFormation's failure paths for real (rollbacks that end in
UPDATE_ROLLBACK_COMPLETE or UPDATE_ROLLBACK_FAILED, per-resource events, DELETE_FAILED, the checks
of ContinueUpdateRollback/CancelUpdateStack). It pins its own botocore, so it lives in a virtual
environment of its own, `.venv-ministack/` at the repository's root (gitignored), made once per
machine: by `make ministack` (part of `make test`) or, failing that, by the first test that needs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VERSION = "1.5.33"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-ministack"
STAMP = VENV / f".installed-{VERSION}"


def ensure_venv(python: str = "python3") -> Path:
    """The `ministack` program of the repository's own ministack venv, made when missing."""
    program = VENV / "bin" / "ministack"
    if STAMP.exists() and program.exists():
        return program
    if not (VENV / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                    "--no-input", "-q", f"ministack=={VERSION}"], check=True)
    STAMP.touch()
    return program


class Ministack:
    """A ministack server on a loopback port; `endpoint` is what `inv` gets as AWS_ENDPOINT_URL."""

    def __init__(self, port: int, proc: subprocess.Popen):
        self.port = port
        self.proc = proc
        self.endpoint = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/_ministack/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=30).read()

    def client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(program: Path, port: int, log: Path, timeout: float = 60.0) -> Ministack:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(BIND_HOST="127.0.0.1", GATEWAY_PORT=str(port))
    out = open(log, "wb")
    proc = subprocess.Popen([str(program)], stdout=out, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL)
    out.close()
    server = Ministack(port, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ministack exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.endpoint}/_ministack/health", timeout=2):
                return server
        except Exception:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"ministack did not answer on {server.endpoint} within {timeout} s")


if __name__ == "__main__":  # `make ministack`
    print(ensure_venv(sys.argv[1] if len(sys.argv) > 1 else "python3"))
