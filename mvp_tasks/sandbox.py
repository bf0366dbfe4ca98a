"""The local sandbox: a moto server (AWS APIs) on loopback as a background process.

Its state lives in one git-ignored folder (`mvp.sandbox.dir`, default `.sandbox/`):
`moto.json` says where it listens and which process it is (pid, start time, command line). While
that very process runs every task targets it (see `world.get_aws_target`); a pid that now names
another program (the server died, the pid was reused) is never signalled nor sent AWS calls.
`moto.used`, written by `sandbox.up` and left by `sandbox.down`, says this repository works
against its sandbox: while it is there and the server is down, AWS tasks refuse instead of
quietly targeting real AWS (`sandbox.down --forget` removes it). Nothing here prints or reads
Invoke config.
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
USED_FILE = "moto.used"
USED_TEXT = ("This repository's tasks target its local sandbox: while this file is here and the sandbox is down,\n"
             "AWS tasks refuse to run. `inv sandbox.up` starts it again; `inv sandbox.down --forget` (or removing\n"
             "this file) makes tasks target AWS again.\n")
DOWN_HINT = "start it with `inv sandbox.up`, or run `inv sandbox.down --forget` to target AWS"


@dataclass(frozen=True)
class MotoState:
    pid: int
    port: int
    # /proc/PID/stat's start time (clock ticks after boot): with the pid, it names one process
    # for good. "" in a state file written before it was recorded.
    start_time: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"


def get_process(pid: int) -> tuple[str, str] | None:
    """(start time, command line) of process `pid`, or None when there is none to read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # The command name (field 2) may hold spaces and parentheses: split after its last ")".
            fields = fh.read().rsplit(") ", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return fields[19], command
    except (OSError, IndexError):
        pass
    # No /proc (not Linux): the command line from ps, and no start time.
    try:
        result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return ("", result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else None


# What `start_moto` runs: the tool's extension of moto (earlier versions ran moto's own server).
SERVER_MODULES = ("mvp_tasks.sandbox_ecs", "moto.server")


def is_moto_command(command: str, port: int) -> bool:
    words = command.split()
    return any(module in words for module in SERVER_MODULES) and str(port) in words


def get_stranger(state: MotoState) -> str:
    """"" when `state`'s pid is the sandbox's moto server (or runs no more); else what runs under
    that pid instead: the pid was reused by another program, which is never ours to signal."""
    if not is_alive(state.pid):
        return ""
    found = get_process(state.pid)
    if found is None:
        return f"pid {state.pid} (a process this user cannot inspect)"
    start_time, command = found
    if is_moto_command(command, state.port) and (not state.start_time or not start_time
                                                  or start_time == state.start_time):
        return ""
    from .report import printable

    # Another program's command line, shown in an error line: as text only.
    shown = printable(command if len(command) <= 80 else command[:77] + "...", keep="")
    return f"pid {state.pid} (`{shown}`)"


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


def read_state_file(state_dir: Path) -> MotoState | None:
    """What `moto.json` says, whatever runs now (None: no readable file)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return MotoState(pid=int(data["pid"]), port=int(data["port"]), start_time=str(data.get("start_time") or ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_moto_state(state_dir: Path) -> MotoState | None:
    """The sandbox's moto server while it runs: the process `moto.json` names, checked by its start
    time and command line (a reused pid is not it)."""
    state = read_state_file(state_dir)
    if state is None or not is_alive(state.pid) or get_stranger(state):
        return None
    return state


def get_down_reason(state_dir: Path) -> str:
    """"" unless this repository used its sandbox (`moto.used`, or a `moto.json` left behind) and
    the sandbox's moto server is not running now: then what to say instead of targeting AWS."""
    if read_moto_state(state_dir) is not None:
        return ""
    state = read_state_file(state_dir)
    if not (state_dir / USED_FILE).exists() and state is None:
        return ""
    stranger = get_stranger(state) if state is not None else ""
    return "the sandbox of this repository is down" + (
        f" ({STATE_FILE} names {stranger}, which is not its moto server)" if stranger else "")


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


def require_writable(state_dir: Path) -> None:
    """Refuse, before anything starts or stops, a sandbox folder this user cannot write to."""
    folder = state_dir if state_dir.exists() else state_dir.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SandboxError(
            f"the sandbox folder {folder} is not writable",
            "make it writable: chmod u+w, or chattr -i when it is immutable; or point mvp.sandbox.dir at another "
            "folder inside the repository",
        )


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
    require_writable(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        log = open(state_dir / "moto.log", "ab")
    except OSError as exc:
        raise SandboxError(f"cannot write the sandbox folder {state_dir}: {exc.strerror or exc}",
                           "make it writable, or point mvp.sandbox.dir at another folder inside the repository") from None
    child_env = dict(os.environ)
    child_env.update(env or {})
    # moto, with ECS services that roll out like ECS's and fail on purpose (mvp_tasks/sandbox_ecs.py).
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvp_tasks.sandbox_ecs", "--host", HOST, "--port", str(port)],
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
            found = get_process(proc.pid)
            state = MotoState(pid=proc.pid, port=port, start_time=found[0] if found else "")
            (state_dir / STATE_FILE).write_text(json.dumps({"pid": proc.pid, "port": port,
                                                            "start_time": state.start_time}))
            (state_dir / USED_FILE).write_text(USED_TEXT)
            return state, True
        time.sleep(0.2)
    proc.kill()
    raise SandboxError(f"the moto server did not answer on {state.endpoint} within {wait:.0f} s; see {state_dir / 'moto.log'}")


@dataclass(frozen=True)
class Stopped:
    """What `stop_moto` did: whether it stopped the server, and the process it left alone (a pid
    in `moto.json` that names another program now), if any."""

    stopped: bool
    stranger: str = ""


def stop_moto(state_dir: Path, wait: float = 10.0, forget: bool = False) -> Stopped:
    """Stop the moto server if it runs; only the process `moto.json` names *and* that is still the
    server it started (same start time, a moto command line) is signalled. `forget`: remove
    `moto.used` too, so tasks target AWS again."""
    recorded = read_state_file(state_dir)
    state = read_moto_state(state_dir)
    stranger = get_stranger(recorded) if recorded is not None else ""
    used = state_dir / USED_FILE
    if recorded is None and not (state_dir / STATE_FILE).exists() and not (forget and used.exists()):
        return Stopped(False)
    require_writable(state_dir)
    try:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if forget:
            used.unlink(missing_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot write the sandbox folder {state_dir}: {exc.strerror or exc}",
                           "make it writable, or point mvp.sandbox.dir at another folder inside the repository") from None
    if state is None:
        return Stopped(False, stranger)
    try:
        # The server was started in a session of its own: its group is its pid.
        os.killpg(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        return Stopped(False)
    except PermissionError:
        os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and is_alive(state.pid):
        time.sleep(0.1)
    if is_alive(state.pid) and not get_stranger(state):
        os.killpg(state.pid, signal.SIGKILL)
    return Stopped(True)


# --- the image-side services: private dockerd, OCI registry, base image -------------------------
# They are started by scripts/sandbox-services.sh (shell: it manages daemons the way an operator
# would); these functions run it and read the files it leaves (see its header for the interface).

SERVICES_SCRIPT = "scripts/sandbox-services.sh"
BASE_IMAGE = "mvp-sandbox/httpd:latest"


@dataclass(frozen=True)
class Services:
    docker_host: str = ""
    docker_client: str = ""
    registry: str = ""
    base_image: str = ""

    @property
    def any(self) -> bool:
        return bool(self.docker_host or self.registry)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def get_services(state_dir: Path) -> Services:
    """What the sandbox's image-side services offer right now (empty fields: not running)."""
    registry = _read(state_dir / "registry" / "address")
    registry_pid = _read(state_dir / "registry" / "registry.pid")
    if registry and registry_pid.isdigit() and not is_alive(int(registry_pid)):
        registry = ""
    docker_host = _read(state_dir / "docker" / "host")
    dockerd_pid = _read(state_dir / "docker" / "dockerd.pid")
    if docker_host and dockerd_pid.isdigit() and not is_alive(int(dockerd_pid)):
        docker_host = ""
    return Services(
        docker_host=docker_host,
        docker_client=_read(state_dir / "docker" / "client") if docker_host else "",
        registry=registry,
        base_image=BASE_IMAGE if docker_host else "",
    )


def run_services_script(root: Path, action: str, state_dir: Path, registry_port: int | None = None,
                        on_line=None) -> int:
    script = root / SERVICES_SCRIPT
    if not script.is_file():
        raise SandboxError(f"{SERVICES_SCRIPT} is missing from {root}")
    argv = ["bash", str(script), action, str(state_dir)]
    if registry_port:
        argv += ["--registry-port", str(registry_port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, cwd=str(root))
    assert proc.stdout is not None
    for line in proc.stdout:
        if on_line:
            on_line(line.rstrip("\n"))
    return proc.wait()
