"""Shared fixtures: real services on loopback, and the CI rule that a skip is a failure."""

from __future__ import annotations

import contextlib
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


# Rollout steps of the sandbox's ECS, in seconds: short, so a rollout settles within a poll.
TEST_TICK = "0.1"


@contextlib.contextmanager
def moto_process(tmp_path_factory):
    """The sandbox's own AWS (moto extended by mvp_tasks/sandbox_ecs.py, as `inv sandbox.up` starts
    it) over HTTP on loopback: ECS services roll out and settle at their desired counts."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        need(False, "moto[server] is not installed")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTO_ECS_")}
    env.setdefault("MVP_SANDBOX_TICK", TEST_TICK)
    proc = subprocess.Popen([sys.executable, "-m", "mvp_tasks.sandbox_ecs", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    server = MotoServer(port, proc)
    try:
        wait_http(f"{server.endpoint}/moto-api/data.json")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(30)  # a loaded machine may take a while; never fail a whole session over it
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """The session's moto server, shared and reset per test."""
    with moto_process(tmp_path_factory) as server:
        yield server


@pytest.fixture
def aws(moto_server):
    """A clean moto state for one test."""
    moto_server.reset()
    return moto_server


@pytest.fixture(scope="session")
def ministack_server(tmp_path_factory):
    """The session's ministack server (its own venv, made once per machine), on a free loopback port."""
    from tests.support import ministack

    try:
        program = ministack.ensure_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        need(False, f"ministack {ministack.VERSION} cannot be installed into {ministack.VENV}: {exc}")
    server = ministack.start(program, free_port(), tmp_path_factory.mktemp("ministack") / "ministack.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ministack(ministack_server):
    """A clean ministack for one test; `.endpoint` goes to `inv` as AWS_ENDPOINT_URL."""
    ministack_server.reset()
    return ministack_server


@pytest.fixture
def studio(tmp_path):
    """A copy of the studio repository to run `inv` in, so tests never touch the working tree."""
    dest = tmp_path / "studio"
    ignore = shutil.ignore_patterns(".git", ".venv", ".venv-ministack", ".sandbox", "__pycache__", ".pytest_cache", "*.egg-info")
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


def link_sandbox(cwd: Path, env: dict) -> dict:
    """mvp.sandbox.dir must stay inside the repository: a shared services folder outside it (the
    session's dockerd and registry) is reached through a `.sandbox` link made in the repository,
    as a user sharing one sandbox between clones would do."""
    shared = env.get("INVOKE_MVP_SANDBOX_DIR", "")
    if not shared or not os.path.isabs(shared):
        return env
    root = Path(cwd)
    while not (root / "tasks.py").exists() and root.parent != root:
        root = root.parent
    link = root / ".sandbox"
    if not (root / "tasks.py").exists():
        return env
    if link.is_symlink() and os.readlink(link) != shared:
        link.unlink()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(shared, target_is_directory=True)
    return {k: v for k, v in env.items() if k != "INVOKE_MVP_SANDBOX_DIR"}


def run_inv(cwd: Path, *args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
    """`inv ARGS` as a subprocess, with no terminal (stdin is empty unless `input` is given)."""
    env = link_sandbox(cwd, env or inv_env())
    return subprocess.run(
        [str(BIN / "inv"), *args], cwd=cwd, env=env, capture_output=True, text=True,
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


# --- image pipeline fixtures ---
# Real git + git-lfs repositories with a local file:// remote, a private Docker engine and OCI
# registry (scripts/sandbox-services.sh), and helpers that read the registry and the engine back.
# Used by tests/e2e/test_images.py and tests/e2e/test_remote_build.py.

import dataclasses as _dataclasses  # noqa: E402
import urllib.error as _urlerror  # noqa: E402

PROJECT = "museum-adventure"
HERO = f"projects/{PROJECT}/site/img/hero.png"
LFS_FIX = f'git lfs pull --include "projects/{PROJECT}/**"'
SERVICES_SCRIPT = ROOT / "scripts" / "sandbox-services.sh"
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])
_STUDIO_IGNORE = shutil.ignore_patterns(".git", ".venv", ".sandbox", "__pycache__", ".pytest_cache", "*.egg-info")
# Only loopback is ever contacted: no proxy may see a request, not even a local one.
_LOOPBACK_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def git(cwd: Path, *args: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    """`git ARGS` in `cwd` with the test's own HOME and global config (see `git_env`)."""
    result = subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **env), capture_output=True,
                            text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@pytest.fixture(scope="session")
def git_env(tmp_path_factory) -> dict:
    """Environment for git with a temporary HOME and global config: the developer's is never touched.

    git-lfs is set up in that temporary global config too, so clones smudge LFS files (or not, with
    GIT_LFS_SKIP_SMUDGE=1)."""
    need(shutil.which("git") is not None, "git is not installed (apt-get install git)")
    home = tmp_path_factory.mktemp("git-home")
    config = home / ".gitconfig"
    config.write_text(
        "[user]\n\tname = mvp tests\n\temail = tests@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    env = {"HOME": str(home), "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "XDG_CONFIG_HOME": str(home / ".config")}
    if shutil.which("git-lfs"):
        git(home, "lfs", "install", "--skip-repo", env=env)
    return env


@_dataclasses.dataclass(frozen=True)
class StudioRepo:
    """A studio repository pushed to a bare `origin` over file://."""

    work: Path      # the repository the commit was made in (LFS content checked out)
    origin: Path    # the bare remote
    commit: str
    hero: bytes     # the LFS file's content (empty without LFS)

    @property
    def url(self) -> str:
        return f"file://{self.origin}"


def make_studio_repo(base: Path, git_env: dict, *, lfs: bool = True, files: dict | None = None) -> StudioRepo:
    """Copy the studio into `base/work`, commit it (with a random LFS-tracked hero.png when `lfs`),
    and push it to the bare repository `base/origin.git`."""
    work = base / "work"
    shutil.copytree(ROOT, work, ignore=_STUDIO_IGNORE)
    hero = b""
    if lfs:
        need(shutil.which("git-lfs") is not None, "git-lfs is not installed (apt-get install git-lfs)")
        hero = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)
        (work / HERO).write_bytes(hero)
    else:
        (work / ".gitattributes").unlink(missing_ok=True)
        # Random content still, so every repository has its own commit and image.
        (work / f"projects/{PROJECT}/site/nonce.txt").write_text(os.urandom(16).hex() + "\n")
    for name, content in (files or {}).items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(work, "init", "-q", env=git_env)
    if lfs:
        git(work, "lfs", "install", "--local", env=git_env)
    git(work, "add", "-A", env=git_env)
    git(work, "commit", "-q", "-m", "studio", env=git_env)
    if lfs:
        listed = git(work, "lfs", "ls-files", "--name-only", env=git_env).stdout.split()
        assert HERO in listed, f"{HERO} is not stored in LFS: {listed}"
    origin = base / "origin.git"
    git(base, "init", "-q", "--bare", str(origin), env=git_env)
    git(work, "remote", "add", "origin", f"file://{origin}", env=git_env)
    git(work, "push", "-q", "origin", "main", env=git_env)
    commit = git(work, "rev-parse", "HEAD", env=git_env).stdout.strip()
    return StudioRepo(work, origin, commit, hero)


def clone_repo(repo: StudioRepo, dest: Path, git_env: dict, *, skip_smudge: bool = False) -> Path:
    env = dict(git_env, GIT_LFS_SKIP_SMUDGE="1") if skip_smudge else git_env
    git(dest.parent, "clone", "-q", repo.url, str(dest), env=env)
    return dest


@pytest.fixture
def studio_repo(tmp_path, git_env) -> StudioRepo:
    """A fresh studio repository with its own commit (an LFS-tracked random hero.png)."""
    return make_studio_repo(tmp_path, git_env)


def image_inv_env(git_env: dict, services: "ImageServices | None" = None, **extra: str) -> dict:
    """`inv_env` for image tasks: the test's git HOME, the given services (through
    mvp.sandbox.dir), and an AWS endpoint on a dead loopback port so nothing can reach real AWS."""
    env = inv_env(None, **git_env)
    for key in ("DOCKER_HOST", "SSH_AUTH_SOCK", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "all_proxy", "ALL_PROXY"):
        env.pop(key, None)
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    if services is not None:
        env["INVOKE_MVP_SANDBOX_DIR"] = str(services.state_dir)
    env.update(extra)
    return env


@_dataclasses.dataclass(frozen=True)
class ImageServices:
    """The private Docker engine and OCI registry that scripts/sandbox-services.sh started."""

    state_dir: Path
    docker_host: str
    docker_client: str
    registry: str  # 127.0.0.1:PORT

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([self.docker_client, "--host", self.docker_host, *args], capture_output=True,
                                text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    def docker_bytes(self, *args: str) -> bytes:
        result = subprocess.run([self.docker_client, "--host", self.docker_host, *args], capture_output=True,
                                timeout=120, check=False)
        if result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr!r}")
        return result.stdout

    def image(self, ref: str) -> dict | None:
        """`docker image inspect REF` read back from the engine, or None when it has no such image."""
        result = self.docker("image", "inspect", ref, check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.registry}/{repository}:{tag}"

    def _http(self, method: str, path: str, headers: dict | None = None):
        request = urllib.request.Request(f"http://{self.registry}{path}", method=method, headers=headers or {})
        try:
            with _LOOPBACK_HTTP.open(request, timeout=10) as response:
                return response.status, response.headers, response.read()
        except _urlerror.HTTPError as exc:
            return exc.code, exc.headers, b""

    def tags(self, repository: str) -> list[str]:
        """The registry's tag list (`GET /v2/<repo>/tags/list`); [] for an unknown repository."""
        status, _, body = self._http("GET", f"/v2/{repository}/tags/list")
        if status == 404:
            return []
        assert status == 200, f"tags/list of {repository}: HTTP {status}"
        return sorted(json.loads(body).get("tags") or [])

    def digest(self, repository: str, tag: str) -> str | None:
        """The manifest digest a tag names (`HEAD /v2/<repo>/manifests/<tag>`), or None."""
        status, headers, _ = self._http("HEAD", f"/v2/{repository}/manifests/{tag}",
                                        headers={"Accept": MANIFEST_ACCEPT})
        if status == 404:
            return None
        assert status == 200, f"manifest {repository}:{tag}: HTTP {status}"
        return headers["Docker-Content-Digest"]


def _mounted_under(path: Path) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            return any(line.split()[4].startswith(f"{path}/") for line in fh)
    except OSError:
        return True


@pytest.fixture(scope="session")
def image_services(tmp_path_factory) -> ImageServices:
    """A private dockerd, an OCI registry on a free loopback port and the base image
    mvp-sandbox/httpd:latest, for the whole session; stopped (and their data removed) at the end."""
    client = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
    need(client is not None and shutil.which("dockerd") is not None,
         "the Docker engine is not installed (apt-get install docker.io)")
    need(shutil.which("docker-registry") is not None, "the OCI registry is not installed (apt-get install docker-registry)")
    need(any(os.access(p, os.X_OK) for p in ("/bin/busybox", "/usr/bin/busybox")),
         "busybox is not installed (apt-get install busybox-static), needed for the base image")
    need(os.geteuid() == 0, "a private dockerd needs root")
    state = tmp_path_factory.mktemp("image-services")
    port = free_port()
    # Without DOCKER_HOST the script starts its own engine instead of using one found there.
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    started = subprocess.run(["bash", str(SERVICES_SCRIPT), "start", str(state), "--registry-port", str(port)],
                             capture_output=True, text=True, timeout=300, env=env, check=False)
    try:
        if started.returncode != 0:
            pytest.fail(f"sandbox-services.sh start failed ({started.returncode}):\n{started.stdout}\n{started.stderr}",
                        pytrace=False)
        services = ImageServices(
            state_dir=state,
            docker_host=(state / "docker" / "host").read_text().strip(),
            docker_client=(state / "docker" / "client").read_text().strip(),
            registry=(state / "registry" / "address").read_text().strip(),
        )
        assert services.registry == f"127.0.0.1:{port}", services
        yield services
    finally:
        subprocess.run(["bash", str(SERVICES_SCRIPT), "stop", str(state)], capture_output=True, text=True,
                       timeout=120, env=env, check=False)
        # vfs keeps a full copy of every layer: do not leave it in /tmp once nothing is mounted there.
        if not _mounted_under(state):
            shutil.rmtree(state / "docker" / "data", ignore_errors=True)


@_dataclasses.dataclass(frozen=True)
class SshServer:
    """A real sshd on 127.0.0.1 that accepts `key` for the current user."""

    port: int
    user: str
    key: Path
    log: Path
    host_key: Path     # the sshd's public host key
    known_hosts: Path  # one line that trusts that key for [127.0.0.1]:port, for mvp.build.known_hosts

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {' '.join(self.host_key.read_text().split()[:2])}\n"

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` of the host key, as `ssh-keygen -lf` shows it."""
        shown = subprocess.run(["ssh-keygen", "-lf", str(self.host_key)], capture_output=True, text=True,
                               timeout=30, check=True).stdout
        return shown.split()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> SshServer:
    """sshd with its own config, host key and authorized key, in the foreground (-D) as our child."""
    import pwd

    need(os.access("/usr/sbin/sshd", os.X_OK), "sshd is not installed (apt-get install openssh-server)")
    need(shutil.which("ssh-keygen") is not None, "ssh-keygen is not installed (apt-get install openssh-client)")
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mvp-tests-{name}",
                        "-f", str(folder / name)], check=True, capture_output=True, timeout=30)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {folder / 'host_key'}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UseDNS no",
        "PrintMotd no",
        # Fabric's put() uploads the build context over SFTP.
        "Subsystem sftp internal-sftp",
        "",
    ]))
    os.makedirs("/run/sshd", exist_ok=True)
    log = folder / "sshd.log"
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not _wait_port(port, proc):
            pytest.fail(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text() if log.exists() else ''}",
                        pytrace=False)
        server = SshServer(port, pwd.getpwuid(os.getuid()).pw_name, folder / "client_key", log,
                           folder / "host_key.pub", folder / "known_hosts")
        # Trusted only where a test says so: the test's own known_hosts, never the developer's.
        server.known_hosts.write_text(server.known_hosts_line)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
