"""`Docker.login_session()`: registry credentials that do not outlive the push.

The commands really run, through the local runner and through Fabric over a real sshd on
127.0.0.1, against a stand-in `docker` program that keeps credentials the way the docker CLI does:
`login` writes base64(user:password) into `$DOCKER_CONFIG/config.json` (else ~/.docker), `push`
needs them there, `logout` removes them. Each test reads back the files left on disk."""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from invoke import Result

from mvp_tasks.image.docker import Docker
from mvp_tasks.image.registry import OciRegistry
from mvp_tasks.image.runner import Runner
from mvp_tasks.errors import BuildError

USER, PASSWORD = "ci-bot", "s3cret-Pa55word"
REGISTRY = "registry.example.com:5000"
REF = f"{REGISTRY}/museum-adventure:0123456789ab"
SECRET_FORMS = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())

FAKE_DOCKER = '''\
#!{python}
"""A stand-in for the docker CLI's credential handling; logs every call to {log}."""
import base64, json, os, stat, sys

HOME = {home!r}  # never the real ~: a regression must not write the developer's config
folder = os.environ.get("DOCKER_CONFIG") or os.path.join(HOME, ".docker")
path = os.path.join(folder, "config.json")
args = sys.argv[1:]
while args and args[0] == "--host":
    args = args[2:]
verb = args[0]


def load():
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return {{}}


def save(config):
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(config, handle)


record = {{"argv": sys.argv[1:], "verb": verb, "DOCKER_CONFIG": os.environ.get("DOCKER_CONFIG"),
          "env": {{k: v for k, v in os.environ.items() if k.startswith(("DOCKER", "MVP"))}}}}
if os.path.isdir(os.environ.get("DOCKER_CONFIG") or ""):
    record["mode"] = stat.S_IMODE(os.stat(folder).st_mode)
    record["config_before"] = load()
if verb == "login":
    password = sys.stdin.read()
    user, registry = args[args.index("--username") + 1], args[-1]
    print(f"WARNING! Your password will be stored unencrypted in {{path}}.", file=sys.stderr)
    print("Configure a credential helper to remove this warning. See", file=sys.stderr)
    print("https://docs.docker.com/engine/reference/commandline/login/#credentials-store", file=sys.stderr)
    if os.environ.get("FAKE_DOCKER_REFUSE"):
        print("Error response from daemon: Get \\"http://" + registry + "/v2/\\": unauthorized: "
              "authentication required", file=sys.stderr)
        code = 1
    else:
        config = load()
        config.setdefault("auths", {{}})[registry] = {{"auth": base64.b64encode(f"{{user}}:{{password}}".encode()).decode()}}
        try:
            save(config)
            print("Login Succeeded")
            code = 0
        except OSError as exc:
            print(f"Error saving credentials: mkdir {{folder}}: {{exc.strerror.lower()}}", file=sys.stderr)
            code = 1
elif verb == "push":
    host = args[1].split("/")[0]
    if host not in load().get("auths", {{}}):
        print(f"unauthorized: authentication required for {{host}}", file=sys.stderr)
        code = 1
    else:
        print("The push refers to repository [" + args[1].rsplit(":", 1)[0] + "]")
        print("5f70bf18a086: Pushed")
        code = int(os.environ.get("FAKE_DOCKER_PUSH_EXIT", "0"))
elif verb == "logout":
    config = load()
    config.get("auths", {{}}).pop(args[1], None)
    save(config)
    print(f"Removing login credentials for {{args[1]}}")
    code = 0
else:
    code = 0
with open({log!r}, "a") as handle:
    handle.write(json.dumps(record) + "\\n")
sys.exit(code)
'''


class Stand:
    """The stand-in docker program, its call log and its fake home."""

    def __init__(self, folder: Path):
        self.home = folder / "home"
        self.home.mkdir()
        self.log = folder / "docker-calls.jsonl"
        self.binary = folder / "docker"
        self.binary.write_text(FAKE_DOCKER.format(python=sys.executable, log=str(self.log), home=str(self.home)))
        self.binary.chmod(0o755)

    @property
    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    @property
    def user_config(self) -> Path:
        return self.home / ".docker" / "config.json"


@pytest.fixture
def stand(tmp_path, monkeypatch) -> Stand:
    """The stand-in docker, a private temporary folder for the run and no credentials from outside."""
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("FAKE_DOCKER_REFUSE", raising=False)
    monkeypatch.delenv("FAKE_DOCKER_PUSH_EXIT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "stand" / "home"))
    (tmp_path / "stand").mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return Stand(tmp_path / "stand")


def temp_leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "tmp").iterdir())


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRET_FORMS:
            assert secret not in text


def push_with_login(docker: Docker, registry: str = REGISTRY) -> None:
    with docker.login_session() as session:
        session.login(registry, USER, PASSWORD)
        session.push(REF)


# --- local -------------------------------------------------------------------------------------------


def test_login_and_push_share_a_private_config_that_is_gone_afterwards(stand, tmp_path):
    user_config = {"auths": {"other.example.com": {"auth": "b3RoZXI6b3RoZXI="}}, "credsStore": "desktop",
                   "HttpHeaders": {"X-Meta-Studio": "mvp"}, "psFormat": "table {{.ID}}"}
    stand.user_config.parent.mkdir()
    stand.user_config.write_text(json.dumps(user_config))
    before = stand.user_config.read_bytes()

    push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    login, push, logout = stand.calls
    assert [c["verb"] for c in (login, push, logout)] == ["login", "push", "logout"]
    folder = login["DOCKER_CONFIG"]
    # One folder for the three commands, made for this run in the temporary folder, mode 0700.
    assert folder and push["DOCKER_CONFIG"] == logout["DOCKER_CONFIG"] == folder
    assert Path(folder).parent == tmp_path / "tmp" and Path(folder).name.startswith("mvp-docker-config-")
    assert login["mode"] == 0o700
    # Of the user's settings only the ones that pick the engine and hold no secret came along.
    assert login["config_before"] == {"HttpHeaders": {"X-Meta-Studio": "mvp"}}
    # The push had the credentials; logout took them out again; then the folder went.
    assert REGISTRY in push["config_before"]["auths"]
    assert not Path(folder).exists()
    assert temp_leftovers(tmp_path) == []
    # The user's own config was never written.
    assert stand.user_config.read_bytes() == before
    # DOCKER_CONFIG is in the environment, not argv; the password is in neither.
    for call in stand.calls:
        assert "--config" not in call["argv"]
        assert_no_secret(json.dumps(call["argv"]), json.dumps(call["env"]))


def test_without_a_login_push_uses_the_users_config(stand, tmp_path):
    stand.user_config.parent.mkdir()
    stand.user_config.write_text(json.dumps({"auths": {REGISTRY: {"auth": SECRET_FORMS[1]}}}))

    with Docker(Runner.local(), binary=str(stand.binary)).login_session() as session:
        session.push(REF)

    [push] = stand.calls
    assert push["verb"] == "push" and push["DOCKER_CONFIG"] is None
    assert temp_leftovers(tmp_path) == []
    assert REGISTRY in json.loads(stand.user_config.read_text())["auths"]


def test_docker_context_is_kept_through_a_link(stand, tmp_path):
    contexts = stand.home / ".docker" / "contexts" / "meta" / "abc"
    contexts.mkdir(parents=True)
    (contexts / "meta.json").write_text('{"Name": "build-box"}')
    stand.user_config.write_text(json.dumps({"currentContext": "build-box"}))

    push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    login = stand.calls[0]
    assert login["config_before"] == {"currentContext": "build-box"}
    assert temp_leftovers(tmp_path) == []
    # Removing the temporary folder removed the link only, not the user's contexts.
    assert (contexts / "meta.json").read_text() == '{"Name": "build-box"}'


def test_a_failed_push_still_logs_out_and_removes_the_folder(stand, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_PUSH_EXIT", "1")

    with pytest.raises(BuildError, match="docker push of"):
        push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    assert [c["verb"] for c in stand.calls] == ["login", "push", "logout"]
    assert temp_leftovers(tmp_path) == []
    assert not stand.user_config.exists()


def test_an_interrupt_during_the_push_still_removes_the_folder(stand, tmp_path):
    class Interrupted:
        """Runs commands for real, but the push is interrupted (Ctrl-C) halfway."""

        def __init__(self):
            self.real = Runner.local().context

        def run(self, command, **kwargs):
            if " push " in command:
                raise KeyboardInterrupt
            return self.real.run(command, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        push_with_login(Docker(Runner(Interrupted()), binary=str(stand.binary)))

    assert [c["verb"] for c in stand.calls] == ["login", "logout"]
    assert temp_leftovers(tmp_path) == []


def test_a_failed_login_is_one_line_with_the_fix_and_leaves_nothing(stand, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_DOCKER_REFUSE", "1")

    with pytest.raises(BuildError) as raised:
        push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"docker login to {REGISTRY} failed: Error response from daemon")
    assert "unauthorized" in text and "MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD" in text
    assert_no_secret(text)
    assert temp_leftovers(tmp_path) == []


def test_a_login_that_cannot_store_the_credentials_is_one_line(stand):
    # What an unwritable HOME did to `docker login` before there was a private DOCKER_CONFIG: here
    # ~/.docker is a regular file, so nothing can be written under it (not even by root).
    stand.user_config.parent.write_text("")

    with pytest.raises(BuildError) as raised:
        Docker(Runner.local(), binary=str(stand.binary)).login(REGISTRY, USER, PASSWORD)

    text = str(raised.value)
    assert "\n" not in text and "WARNING" not in text
    assert f"docker login to {REGISTRY} failed: Error saving credentials: mkdir {stand.home}/.docker" in text
    assert "could not store the credentials" in text
    assert_no_secret(text)


def test_a_login_through_the_session_is_not_affected_by_an_unwritable_home(stand, tmp_path):
    # ~/.docker is a regular file: docker cannot write its config there (not even as root).
    stand.user_config.parent.write_text("")

    push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    assert [c["verb"] for c in stand.calls] == ["login", "push", "logout"]
    assert stand.user_config.parent.read_text() == "" and temp_leftovers(tmp_path) == []


def test_no_temporary_folder_is_one_line(stand, tmp_path, monkeypatch):
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))

    with pytest.raises(BuildError) as raised:
        push_with_login(Docker(Runner.local(), binary=str(stand.binary)))

    text = str(raised.value)
    assert "\n" not in text
    assert "cannot create a private temporary folder" in text and "TMPDIR" in text
    assert stand.calls == []


def test_registry_login_goes_through_the_session(stand, tmp_path, monkeypatch):
    monkeypatch.setenv("MVP_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MVP_REGISTRY_PASSWORD", PASSWORD)

    with Docker(Runner.local(), binary=str(stand.binary)).login_session() as session:
        OciRegistry(REGISTRY).login(session)
        session.push(REF)

    assert [c["verb"] for c in stand.calls] == ["login", "push", "logout"]
    assert stand.calls[0]["DOCKER_CONFIG"] and not stand.user_config.exists()
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("stderr, fix", [
    ("Error response from daemon: Get \"https://r.example/v2/\": unauthorized: incorrect username or password",
     "check the credentials for r.example"),
    ("Error saving credentials: error storing credentials - err: exit status 1, out: `pass not initialized`",
     "could not store the credentials"),
    ("Error response from daemon: Get \"https://r.example/v2/\": dial tcp: lookup r.example: no such host",
     "check that r.example is reachable"),
])
def test_login_failures_are_one_line_without_the_password(stderr, fix):
    class Context:
        def run(self, command, **kwargs):
            return Result(command=command, exited=1,
                          stderr=f"WARNING! Your password will be stored unencrypted.\n{stderr}\n",
                          stdout=f"echo {PASSWORD}\n")

    with pytest.raises(BuildError) as raised:
        Docker(Runner(Context())).login("r.example", USER, PASSWORD)

    text = str(raised.value)
    assert "\n" not in text and fix in text and stderr.splitlines()[-1][:40] in text
    assert_no_secret(text)


# --- on a build host over SSH ------------------------------------------------------------------------


def test_on_a_build_host_the_folder_is_made_and_removed_there(stand, ssh_server):
    runner = Runner.remote(ssh_server.host, {"key_filename": str(ssh_server.key)}, known_hosts=[str(ssh_server.known_hosts)])
    try:
        push_with_login(Docker(runner, binary=str(stand.binary)))
    finally:
        runner.close()

    login, push, logout = stand.calls
    folder = login["DOCKER_CONFIG"]
    # mktemp -d on the host: its temporary folder (the sshd session's, /tmp), mode 0700.
    assert folder and Path(folder).name.startswith("mvp-docker-config-")
    assert login["mode"] == 0o700 and login["config_before"] == {}
    assert push["DOCKER_CONFIG"] == logout["DOCKER_CONFIG"] == folder
    assert REGISTRY in push["config_before"]["auths"]
    assert not os.path.exists(folder)
    assert not stand.user_config.exists()
    for call in stand.calls:
        assert "--config" not in call["argv"]
        assert_no_secret(json.dumps(call["argv"]), json.dumps(call["env"]))


def test_a_failed_push_on_a_build_host_still_removes_the_folder(stand, ssh_server, tmp_path):
    # The push fails because the registry refuses the credentials (the stand-in is told so by the
    # registry's name: it has no credentials for another host).
    runner = Runner.remote(ssh_server.host, {"key_filename": str(ssh_server.key)}, known_hosts=[str(ssh_server.known_hosts)])
    try:
        with pytest.raises(BuildError, match="docker push of"):
            with Docker(runner, binary=str(stand.binary)).login_session() as session:
                session.login("other.example.com", USER, PASSWORD)
                session.push(REF)
    finally:
        runner.close()

    login = stand.calls[0]
    assert [c["verb"] for c in stand.calls] == ["login", "push", "logout"]
    assert not os.path.exists(login["DOCKER_CONFIG"])


def test_no_temporary_folder_on_a_build_host_is_one_line():
    class Host:
        def run(self, command, **kwargs):
            if command.startswith("mktemp"):
                return Result(command=command, exited=1,
                              stderr="mktemp: failed to create directory via template '/tmp/x': No space left on device\n")
            raise AssertionError(f"nothing else may run: {command}")

    runner = Runner(Host(), "ssh builder@build.example.com")

    with pytest.raises(BuildError) as raised:
        push_with_login(Docker(runner))

    text = str(raised.value)
    assert "\n" not in text
    assert "cannot create a private temporary folder on build host builder@build.example.com" in text
    assert "No space left on device" in text


def test_a_strange_mktemp_answer_is_refused():
    class Host:
        def __init__(self):
            self.commands: list[str] = []

        def run(self, command, **kwargs):
            self.commands.append(command)
            return Result(command=command, exited=0, stdout="/tmp/x; rm -rf ~\n")

    host = Host()

    with pytest.raises(BuildError, match="cannot create a private temporary folder"):
        push_with_login(Docker(Runner(host, "ssh b@h")))
    assert len(host.commands) == 1
