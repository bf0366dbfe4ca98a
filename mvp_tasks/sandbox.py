"""The local sandbox: a moto server (AWS APIs) on loopback as a background process.

Its state lives in one git-ignored folder (`mvp.sandbox.dir`, default `.sandbox/`):
`moto.json` says where it listens and which process it is. While that process is alive every
task targets it (see `tasks.boundary.get_aws_target`). Nothing here prints or reads Invoke config.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SandboxError

HOST = "127.0.0.1"
STATE_FILE = "moto.json"


@dataclass(frozen=True)
class MotoState:
    pid: int
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def read_moto_state(state_dir: Path) -> MotoState | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        state = MotoState(pid=int(data["pid"]), port=int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if is_alive(state.pid) else None


def get_moto_endpoint(state_dir: Path) -> str:
    state = read_moto_state(state_dir)
    return state.endpoint if state else ""


def is_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def is_moto_ready(endpoint: str, timeout: float = 2.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_moto(state_dir: Path, port: int, wait: float = 30.0, env: dict | None = None) -> tuple[MotoState, bool]:
    """Start the moto server unless it already runs. Returns its state and whether it was started now."""
    state = read_moto_state(state_dir)
    if state is not None:
        return state, False
    if not is_port_free(port):
        raise SandboxError(
            f"port {HOST}:{port} is taken by another program",
            "stop it, or choose another port with mvp.sandbox.port (INVOKE_MVP_SANDBOX_PORT)",
        )
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise SandboxError("moto is not installed in this environment", "run `make demo` or pip install 'moto[server]'") from None
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "moto.log", "ab")
    child_env = dict(os.environ)
    # The emulator reports services as running only when told how many tasks each runs.
    child_env.setdefault("MOTO_ECS_SERVICE_RUNNING", "1")
    child_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=child_env, start_new_session=True, cwd=str(state_dir),
    )
    log.close()
    state = MotoState(pid=proc.pid, port=port)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SandboxError(f"the moto server exited at once (code {proc.returncode}); see {state_dir / 'moto.log'}")
        if is_moto_ready(state.endpoint):
            (state_dir / STATE_FILE).write_text(json.dumps({"pid": proc.pid, "port": port}))
            return state, True
        time.sleep(0.2)
    proc.kill()
    raise SandboxError(f"the moto server did not answer on {state.endpoint} within {wait:.0f} s; see {state_dir / 'moto.log'}")


def stop_moto(state_dir: Path, wait: float = 10.0) -> bool:
    """Stop the moto server if it runs. Returns whether there was one to stop."""
    state = read_moto_state(state_dir)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    if state is None:
        return False
    try:
        os.killpg(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and is_alive(state.pid):
        time.sleep(0.1)
    if is_alive(state.pid):
        os.killpg(state.pid, signal.SIGKILL)
    return True
