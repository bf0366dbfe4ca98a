"""`app.push` with MVP_REGISTRY_USERNAME/PASSWORD against a real registry that requires them: a
docker-registry with htpasswd (Basic) authentication on a free loopback port, the private Docker
engine of scripts/sandbox-services.sh, locally and on the SSH build host. Read back afterwards: the
registry's tags (with credentials), HOME's docker config and the temporary folders."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import PROJECT, assert_one_line_error, free_port, image_inv_env, make_studio_repo, need, run_inv

pytestmark = pytest.mark.e2e

USER, PASSWORD = "ci-bot", "e2e-s3cret-" + os.urandom(6).hex()
SECRETS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AuthRegistry:
    def __init__(self, host: str):
        self.host = host

    def _get(self, path: str, credentials: tuple[str, str] | None):
        request = urllib.request.Request(f"http://{self.host}{path}")
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with _LOOPBACK.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except urllib.error.URLError:
            return 0, b""  # not listening (yet)

    def tags(self, repository: str) -> list[str]:
        status, body = self._get(f"/v2/{repository}/tags/list", (USER, PASSWORD))
        if status == 404:
            return []
        assert status == 200, f"tags/list of {repository}: HTTP {status}"
        return sorted(json.loads(body).get("tags") or [])

    def status_without_credentials(self) -> int:
        return self._get("/v2/", None)[0]


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, image_services):
    """docker-registry on 127.0.0.1:PORT that wants USER/PASSWORD (htpasswd, bcrypt) for everything."""
    need(shutil.which("docker-registry") is not None, "the OCI registry is not installed (apt-get install docker-registry)")
    bcrypt = pytest.importorskip("bcrypt")
    folder = tmp_path_factory.mktemp("auth-registry")
    (folder / "htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    port = free_port()
    (folder / "config.yml").write_text(f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {folder / 'data'}
http:
  addr: 127.0.0.1:{port}
  secret: {os.urandom(8).hex()}
auth:
  htpasswd:
    realm: mvp-tests
    path: {folder / 'htpasswd'}
""")
    log = open(folder / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    registry = AuthRegistry(f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while registry.status_without_credentials() != 401:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the auth registry did not start: {(folder / 'registry.log').read_text()}", pytrace=False)
            time.sleep(0.2)
        yield registry
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def push_env(tmp_path: Path, git_env: dict, image_services, registry: AuthRegistry, **extra: str) -> dict:
    """A HOME and a TMPDIR of the test's own, the auth registry, and the credentials in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    return image_inv_env(git_env, image_services, HOME=str(home), TMPDIR=str(temp), INVOKE_MVP_REGISTRY=registry.host,
                         MVP_REGISTRY_USERNAME=USER, MVP_REGISTRY_PASSWORD=PASSWORD, **extra)


def docker_auths(home: Path) -> dict:
    config = home / ".docker" / "config.json"
    if not config.exists():
        return {}
    return json.loads(config.read_text()).get("auths") or {}


def assert_no_secret(result) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


def test_push_with_credentials_leaves_none_behind(tmp_path, git_env, image_services, auth_registry):
    repo = make_studio_repo(tmp_path / "repo", git_env, lfs=False)
    env = push_env(tmp_path, git_env, image_services, auth_registry)
    home = Path(env["HOME"])
    # A config the user had before: it must come out unchanged, with no credentials added.
    (home / ".docker").mkdir()
    (home / ".docker" / "config.json").write_text('{"auths": {}, "detachKeys": "ctrl-e,e"}')
    # The premise: this registry wants credentials.
    assert auth_registry.status_without_credentials() == 401

    result = run_inv(repo.work, "app.push", PROJECT, env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    # The push went through with the credentials (the registry refuses anything else) ...
    assert auth_registry.tags(PROJECT) == sorted([repo.commit, "stage"])
    # ... and they did not outlive it: not in HOME's docker config, no temporary config left.
    assert docker_auths(home) == {}
    assert json.loads((home / ".docker" / "config.json").read_text()) == {"auths": {}, "detachKeys": "ctrl-e,e"}
    assert list(Path(env["TMPDIR"]).glob("mvp-docker-config-*")) == []
    assert_no_secret(result)


def test_push_with_credentials_and_an_unwritable_home(tmp_path, git_env, image_services, auth_registry):
    # ~/.docker is a regular file: `docker login` used to fail there, with a multi-line dump.
    repo = make_studio_repo(tmp_path / "repo", git_env, lfs=False)
    env = push_env(tmp_path, git_env, image_services, auth_registry)
    (Path(env["HOME"]) / ".docker").write_text("")

    result = run_inv(repo.work, "app.push", PROJECT, env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert repo.commit in auth_registry.tags(PROJECT)
    assert (Path(env["HOME"]) / ".docker").read_text() == ""
    assert list(Path(env["TMPDIR"]).glob("mvp-docker-config-*")) == []
    assert_no_secret(result)


KEYRING_HELPER = """#!{python}
# A stand-in for docker-credential-secretservice: a keyring in a JSON file, or a locked one.
import json, os, sys

path = {keyring!r}
keyring = json.load(open(path)) if os.path.exists(path) else {{}}
verb, data = sys.argv[1], sys.stdin.read()
with open(path + ".log", "a") as log:
    log.write(verb + "\\n")
if verb == "store":
    if {locked!r}:
        print("the keyring is locked")
        sys.exit(1)
    entry = json.loads(data)
    keyring[entry["ServerURL"]] = entry
elif verb == "get":
    if data.strip() not in keyring:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(keyring[data.strip()]))
elif verb == "erase":
    keyring.pop(data.strip(), None)
elif verb == "list":
    print(json.dumps({{k: v["Username"] for k, v in keyring.items()}}))
json.dump(keyring, open(path, "w"))
"""


def with_keyring(tmp_path: Path, env: dict, locked: bool) -> Path:
    """Puts a default credential helper on PATH: docker then stores a login's credentials there,
    not in config.json, whenever the config names no credential store (a fresh one does not)."""
    bin_dir = tmp_path / "keyring-bin"
    bin_dir.mkdir()
    keyring = tmp_path / "keyring.json"
    for name in ("docker-credential-secretservice", "docker-credential-pass"):
        helper = bin_dir / name
        helper.write_text(KEYRING_HELPER.format(python=sys.executable, keyring=str(keyring), locked=locked))
        helper.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return keyring


def test_credentials_docker_put_in_a_credential_helper_are_erased(tmp_path, git_env, image_services, auth_registry):
    repo = make_studio_repo(tmp_path / "repo", git_env, lfs=False)
    env = push_env(tmp_path, git_env, image_services, auth_registry)
    keyring = with_keyring(tmp_path, env, locked=False)

    result = run_inv(repo.work, "app.push", PROJECT, env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert repo.commit in auth_registry.tags(PROJECT)
    # docker stored the login in the helper (the premise), and the logout took it out again.
    assert "store" in Path(f"{keyring}.log").read_text().split()
    assert json.loads(keyring.read_text()) == {}
    assert docker_auths(Path(env["HOME"])) == {}
    assert list(Path(env["TMPDIR"]).glob("mvp-docker-config-*")) == []
    assert_no_secret(result)


def test_a_failed_docker_login_is_one_line(tmp_path, git_env, image_services, auth_registry):
    repo = make_studio_repo(tmp_path / "repo", git_env, lfs=False)
    env = push_env(tmp_path, git_env, image_services, auth_registry)
    with_keyring(tmp_path, env, locked=True)

    result = run_inv(repo.work, "app.push", PROJECT, env=env, timeout=300)

    assert_one_line_error(result, f"docker login to {auth_registry.host} failed: Error saving credentials",
                          "the keyring is locked", "could not store the credentials")
    assert_no_secret(result)
    assert repo.commit not in auth_registry.tags(PROJECT)
    assert list(Path(env["TMPDIR"]).glob("mvp-docker-config-*")) == []


def test_push_on_the_build_host_with_credentials_leaves_none_behind(tmp_path, git_env, image_services,
                                                                   auth_registry, ssh_server):
    import pwd

    repo = make_studio_repo(tmp_path / "repo", git_env, lfs=False)
    env = push_env(tmp_path, git_env, image_services, auth_registry, INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                   INVOKE_MVP_BUILD_KNOWN_HOSTS=str(ssh_server.known_hosts))
    # The build host is this machine, as the sshd's user: its HOME is the real one, read only here.
    host_config = Path(pwd.getpwnam(ssh_server.user).pw_dir) / ".docker" / "config.json"
    host_before = host_config.read_bytes() if host_config.exists() else None
    folder_existed = host_config.parent.exists()
    leftovers_before = set(Path("/tmp").glob("mvp-docker-config-*"))

    try:
        result = run_inv(repo.work, "app.push", PROJECT, "--host", ssh_server.host, env=env, timeout=300)

        assert result.returncode == 0, result.stdout + result.stderr
        assert f"on ssh {ssh_server.host}" in result.stdout, result.stdout
        assert repo.commit in auth_registry.tags(PROJECT)
        host_after = host_config.read_bytes() if host_config.exists() else None
        assert host_after == host_before
        assert set(Path("/tmp").glob("mvp-docker-config-*")) == leftovers_before
        assert_no_secret(result)
    finally:
        # A regression must not leave this test's credentials in the build host user's config.
        if host_before is None and host_config.exists() and auth_registry.host in host_config.read_text():
            host_config.unlink()
        elif host_before is not None and host_config.read_bytes() != host_before:
            host_config.write_bytes(host_before)
        if not folder_existed and host_config.parent.is_dir() and not any(host_config.parent.iterdir()):
            host_config.parent.rmdir()
