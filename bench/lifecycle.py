"""`inv app.update` and a no-op `inv ci.release` against the AWS CLI steps they replace, as ratios.

One moto server (MOTO_ECS_SERVICE_RUNNING=1, so services become stable) on a free loopback port, a
private dockerd + OCI registry (scripts/sandbox-services.sh) and a temporary git copy of the studio
repository. Set-up: `inv cluster.up --name stage`, then `inv ci.release` (builds, pushes and deploys
museum-adventure). Then, alternated in one run so that noise from other load hits all three:

  (a) inv app.update museum-adventure
  (b) aws ecs update-service --force-new-deployment + aws ecs wait services-stable  (what (a) replaces)
  (c) inv ci.release with nothing changed

The medians' ratios (a)/(b) and (c)/(b) are printed. This benchmark reports; it does not gate: it exits
0 once it has measured (1 only when it could not measure, e.g. a component is missing or a command
failed). Only loopback is contacted: every AWS call has the moto endpoint, dummy credentials, and no
~/.aws file is read. Needs root (a private dockerd) and the AWS CLI (`pip install -e '.[bench]'`).
Run: `make bench` or `.venv/bin/python bench/lifecycle.py [--runs 7] [--keep]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT = "museum-adventure"
CLUSTER = "stage"
SERVICE = f"{PROJECT}-{CLUSTER}"
REGION = "us-east-1"
SERVICES_SCRIPT = ROOT / "scripts" / "sandbox-services.sh"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".sandbox", "__pycache__", ".pytest_cache", "*.egg-info")
# Never through a proxy, not even for loopback.
LOOPBACK_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DROP_ENV = ("AWS_", "INVOKE_MVP_", "DOCKER_", "SSH_AUTH_SOCK", "GIT_")
PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
             "no_proxy", "NO_PROXY")


class BenchError(Exception):
    """The benchmark could not measure; one line says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the moto server exited at once (code {proc.returncode})")
        try:
            with LOOPBACK_HTTP.open(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout:.0f} s")


def find_aws() -> Path:
    """The AWS CLI of this virtual environment (the `bench` extra), else one on PATH."""
    for candidate in (BIN / "aws", shutil.which("aws")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BenchError("the AWS CLI is missing; fix: .venv/bin/pip install -e '.[bench]' (or: make bench)")


def check_prerequisites() -> None:
    missing = [name for name in ("git", "git-lfs", "dockerd", "docker-registry") if not shutil.which(name)]
    if missing:
        raise BenchError(f"not installed: {', '.join(missing)}; fix: make provision")
    if os.geteuid() != 0:
        raise BenchError("a private dockerd needs root; run as root")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise BenchError("moto[server] is not installed; fix: .venv/bin/pip install -e '.[test]'") from None


def base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP_ENV) and k not in PROXY_ENV}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def git_env(home: Path) -> dict:
    """A temporary HOME and global git config: the developer's are never read or touched."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / ".gitconfig"
    config.write_text("[user]\n\tname = mvp bench\n\temail = bench@example.invalid\n"
                      "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    return {"HOME": str(home), "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "XDG_CONFIG_HOME": str(home / ".config")}


def aws_env(endpoint: str) -> dict:
    """Dummy credentials, the moto endpoint, no ~/.aws files, no instance metadata lookups."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }


def run(cmd: list[str], *, cwd: Path, env: dict, timeout: float, what: str) -> tuple[float, str]:
    """Run one command; returns (seconds, output). A failure is a BenchError with the output's tail."""
    start = time.perf_counter()
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: no result after {timeout:.0f} s") from None
    elapsed = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join("    | " + line for line in output.strip().splitlines()[-15:])
        raise BenchError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return elapsed, output


def make_studio(dest: Path, genv: dict) -> None:
    """Copy the studio (work tree, without .git/.venv/.sandbox) and commit it in a fresh repository,
    with an LFS-tracked hero.png as the real repository has."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    shutil.rmtree(dest / "bench" / ".venv", ignore_errors=True)
    (dest / f"projects/{PROJECT}/site/img/hero.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    env = dict(base_env(), **genv)
    for args in (["init", "-q"], ["lfs", "install", "--local"], ["add", "-A"], ["commit", "-q", "-m", "studio"]):
        run(["git", *args], cwd=dest, env=env, timeout=120, what=f"git {' '.join(args)}")


class Stack:
    """The processes and folders this benchmark made, undone in reverse order by close()."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="mvp-bench-lifecycle-"))
        self.moto: subprocess.Popen | None = None
        self.moto_log = None
        self.services_dir: Path | None = None

    def start_moto(self, sandbox_tick: float | None = None) -> str:
        """A plain moto server (services stable at once), or with `sandbox_tick` the sandbox's own
        (mvp_tasks/sandbox_ecs.py: rollouts that progress one step per tick and fail on purpose)."""
        port = free_port()
        self.moto_log = open(self.tmp / "moto.log", "wb")
        if sandbox_tick is None:
            env = dict(base_env(), MOTO_ECS_SERVICE_RUNNING="1")
            argv = ["moto.server", "-H", "127.0.0.1", "-p", str(port)]
        else:
            env = dict(base_env(), MVP_SANDBOX_TICK=str(sandbox_tick))
            argv = ["mvp_tasks.sandbox_ecs", "--host", "127.0.0.1", "--port", str(port)]
        self.moto = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self.moto_log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/data.json", self.moto)
        return endpoint

    def start_services(self, state_dir: Path) -> tuple[Path, str]:
        # Inside the studio (its git-ignored .sandbox): mvp.sandbox.dir must stay in the repository.
        self.services_dir = state_dir
        port = free_port()
        result = subprocess.run(["bash", str(SERVICES_SCRIPT), "start", str(self.services_dir),
                                 "--registry-port", str(port)], env=base_env(), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            tail = "\n".join("    | " + line for line in (result.stdout + result.stderr).strip().splitlines()[-15:])
            raise BenchError(f"sandbox-services.sh start failed (exit {result.returncode}):\n{tail}")
        registry = (self.services_dir / "registry" / "address").read_text().strip()
        return self.services_dir, registry

    def close(self) -> None:
        if self.services_dir is not None:
            subprocess.run(["bash", str(SERVICES_SCRIPT), "stop", str(self.services_dir)], env=base_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
        if self.moto is not None and self.moto.poll() is None:
            self.moto.terminate()
            try:
                self.moto.wait(10)
            except subprocess.TimeoutExpired:
                self.moto.kill()
                self.moto.wait(5)
        if self.moto_log is not None:
            self.moto_log.close()
        if self.keep:
            print(f"kept: {self.tmp}")
        elif not mounted_under(self.tmp):
            # vfs keeps a full copy of every layer: do not leave it in /tmp.
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"left {self.tmp}: something is still mounted under it", file=sys.stderr)


def mounted_under(path: Path) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            return any(line.split()[4].startswith(f"{path}/") for line in fh)
    except OSError:
        return True


def expect(output: str, fragment: str, what: str) -> None:
    if fragment not in output:
        tail = "\n".join("    | " + line for line in output.strip().splitlines()[-15:])
        raise BenchError(f"{what}: expected {fragment!r} in its output:\n{tail}")


def stats(samples: list[float]) -> str:
    return (f"median {statistics.median(samples) * 1000:8.1f} ms  "
            f"(min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})")


def measure(args: argparse.Namespace, stack: Stack) -> None:
    t0 = time.perf_counter()
    check_prerequisites()
    aws = find_aws()
    genv = git_env(stack.tmp / "home")
    studio = stack.tmp / "studio"
    make_studio(studio, genv)
    endpoint = stack.start_moto()
    services_dir, registry = stack.start_services(studio / ".sandbox")
    aws_version = run([str(aws), "--version"], cwd=studio, env=dict(base_env(), **aws_env(endpoint)),
                      timeout=60, what="aws --version")[1].strip()
    inv_env = dict(base_env(), **genv, **aws_env(endpoint),
                   INVOKE_MVP_POLL_INTERVAL="1")
    cli_env = dict(base_env(), **aws_env(endpoint))
    inv = str(BIN / "inv")
    print(f"moto {endpoint}, registry {registry}, {aws_version}")

    run([inv, "cluster.up", "--name", CLUSTER], cwd=studio, env=inv_env, timeout=600, what="inv cluster.up")
    _, out = run([inv, "ci.release"], cwd=studio, env=inv_env, timeout=900, what="inv ci.release (first)")
    expect(out, "failed=0", "inv ci.release (first)")
    setup = time.perf_counter() - t0
    print(f"set-up (copy, moto, dockerd + registry, cluster.up, first ci.release): {setup:.1f} s")

    where = ["--endpoint-url", endpoint, "--region", REGION]
    commands = {  # key: [(what, argv, env, a fragment its output must have)]
        "a": [("inv app.update", [inv, "app.update", PROJECT], inv_env, "changed=1")],
        "b": [("aws ecs update-service",
               [str(aws), "ecs", "update-service", "--cluster", CLUSTER, "--service", SERVICE,
                "--force-new-deployment", *where, "--output", "json"], cli_env, SERVICE),
              ("aws ecs wait services-stable",
               [str(aws), "ecs", "wait", "services-stable", "--cluster", CLUSTER, "--services", SERVICE, *where],
               cli_env, "")],
        "c": [("inv ci.release (no-op)", [inv, "ci.release"], inv_env, "changed=0")],
    }

    def timed(key: str) -> float:
        total = 0.0
        for what, cmd, env, fragment in commands[key]:
            elapsed, out = run(cmd, cwd=studio, env=env, timeout=600, what=what)
            if fragment:
                expect(out, fragment, what)
            if key != "b":
                expect(out, "failed=0", what)
            total += elapsed
        return total

    for key in commands:  # warm the file cache and moto's code paths; not counted
        timed(key)
    samples: dict[str, list[float]] = {key: [] for key in commands}
    t1 = time.perf_counter()
    for i in range(args.runs):
        for key in commands:
            samples[key].append(timed(key))
        last = "  ".join(f"({k}) {v[-1] * 1000:.0f} ms" for k, v in samples.items())
        print(f"  round {i + 1}/{args.runs}: {last}", flush=True)
    measured = time.perf_counter() - t1

    a, b, c = (statistics.median(samples[k]) for k in "abc")
    print()
    labels = {"a": f"(a) inv app.update {PROJECT}",
              "b": "(b) aws ecs update-service + aws ecs wait services-stable",
              "c": "(c) inv ci.release (nothing changed)"}
    for key, label in labels.items():
        print(f"{label:<58} {stats(samples[key])}")
    print(f"ratio (a)/(b) {a / b:.2f}")
    print(f"ratio (c)/(b) {c / b:.2f}")
    print(f"set-up {setup:.1f} s, {args.runs} rounds {measured:.1f} s, total {time.perf_counter() - t0:.1f} s")
    print(f"summary: app.update takes {a / b:.2f}x and a no-op ci.release {c / b:.2f}x the time of the AWS CLI's "
          f"update-service + wait services-stable ({a * 1000:.0f} / {c * 1000:.0f} / {b * 1000:.0f} ms, "
          f"medians of {args.runs})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="measured runs of each command (default 7)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, repository copy)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    # SIGTERM (e.g. a CI timeout) still stops dockerd, the registry and moto.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = Stack(args.keep)
    try:
        measure(args, stack)
    except BenchError as exc:
        print(f"bench/lifecycle.py: could not measure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
