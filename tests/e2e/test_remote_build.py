"""`app.push --host`: the build runs on an SSH build host (a real sshd on 127.0.0.1 with a generated
key; the remote side drives the same private Docker engine), the push lands in the real registry.

The build host is trusted by its host key only: every test says which known_hosts vouches for it
(`mvp.build.known_hosts`, or ~/.ssh/known_hosts in a HOME of the test's own)."""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT, assert_one_line_error, free_port, image_inv_env, run_inv

pytestmark = pytest.mark.e2e


def test_push_builds_on_the_ssh_build_host(studio_repo, git_env, image_services, ssh_server, tmp_path):
    # Its own image repository: the tags read back below were made by this push alone.
    repository = "museum-remote-" + os.urandom(3).hex()
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"mvp:\n  projects:\n    {PROJECT}:\n      repository: {repository}\n")
    env = image_inv_env(git_env, image_services, INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                        INVOKE_MVP_BUILD_KNOWN_HOSTS=str(ssh_server.known_hosts))
    accepted_before = ssh_server.log.read_text().count("Accepted publickey")
    leftovers_before = set(glob.glob("/tmp/mvp-build-*"))

    result = run_inv(studio_repo.work, "-f", str(extra), "app.push", PROJECT, "--host", ssh_server.host,
                     env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on ssh {ssh_server.host}" in result.stdout, result.stdout
    # The commands really went through this sshd, with the generated key.
    assert ssh_server.log.read_text().count("Accepted publickey") > accepted_before
    assert image_services.tags(repository) == sorted([studio_repo.commit, "stage"])
    digest = image_services.digest(repository, studio_repo.commit)
    assert digest and image_services.digest(repository, "stage") == digest
    labels = image_services.image(image_services.ref(repository, studio_repo.commit))["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == studio_repo.commit
    # The uploaded build context was removed from the build host (this very machine).
    assert set(glob.glob("/tmp/mvp-build-*")) == leftovers_before


def test_ssh_host_that_refuses_connections_is_one_clear_line(studio_repo, git_env, ssh_server):
    port = free_port()  # nothing listens there
    host = f"{ssh_server.user}@127.0.0.1:{port}"
    env = image_inv_env(git_env, INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                        INVOKE_MVP_REGISTRY=f"127.0.0.1:{free_port()}")

    result = run_inv(studio_repo.work, "app.build", PROJECT, "--host", host, env=env)

    assert_one_line_error(result, f"cannot run commands on build host {host}", "mvp.build.host")


def test_ssh_key_that_is_not_accepted_is_one_clear_line(studio_repo, git_env, ssh_server, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True,
                   capture_output=True, timeout=30)
    env = image_inv_env(git_env, INVOKE_MVP_BUILD_SSH_KEY=str(stranger),
                        INVOKE_MVP_BUILD_KNOWN_HOSTS=str(ssh_server.known_hosts),
                        INVOKE_MVP_REGISTRY=f"127.0.0.1:{free_port()}")

    result = run_inv(studio_repo.work, "app.build", PROJECT, "--host", ssh_server.host, env=env)

    assert_one_line_error(result, f"cannot run commands on build host {ssh_server.host}", "key")


# --- trusting the build host by its SSH host key ------------------------------------------------------


def own_home(tmp_path: Path, known_hosts: str | None = None) -> Path:
    """A HOME of the test's own (never the developer's ~/.ssh), with ~/.ssh/known_hosts if given."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    if known_hosts is not None:
        (home / ".ssh" / "known_hosts").write_text(known_hosts)
    return home


def own_repository(tmp_path: Path) -> tuple[str, Path]:
    """An image repository no other test uses, and the -f file that gives it to the project."""
    repository = "museum-trust-" + os.urandom(3).hex()
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"mvp:\n  projects:\n    {PROJECT}:\n      repository: {repository}\n")
    return repository, extra


def other_host_key(tmp_path: Path) -> str:
    """The public half of a fresh ed25519 key: what an impostor would present."""
    key = tmp_path / "impostor_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   capture_output=True, timeout=30)
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def accepted(ssh_server) -> int:
    return ssh_server.log.read_text().count("Accepted publickey")


def test_host_in_the_users_known_hosts_builds(studio_repo, git_env, image_services, ssh_server, tmp_path):
    repository, extra = own_repository(tmp_path)
    home = own_home(tmp_path, "# the studio's build host\n" + ssh_server.known_hosts_line)
    env = image_inv_env(git_env, image_services, HOME=str(home), INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key))
    # The control: the same run with a HOME that does not list the host is refused, so what
    # trusts the host below is that line of ~/.ssh/known_hosts.
    stranger_home = tmp_path / "stranger-home"
    stranger_home.mkdir()
    refused = run_inv(studio_repo.work, "-f", str(extra), "app.build", PROJECT, "--host", ssh_server.host,
                      env=dict(env, HOME=str(stranger_home)))
    assert_one_line_error(refused, f"build host 127.0.0.1:{ssh_server.port} is not in known_hosts")
    before = accepted(ssh_server)

    result = run_inv(studio_repo.work, "-f", str(extra), "app.build", PROJECT, "--host", ssh_server.host,
                     env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert accepted(ssh_server) > before
    built = image_services.image(image_services.ref(repository, studio_repo.commit))
    assert built and built["Config"]["Labels"]["org.opencontainers.image.revision"] == studio_repo.commit
    # Trusting is reading: the file is as the test wrote it (no key was added or rewritten).
    assert (home / ".ssh" / "known_hosts").read_text() == "# the studio's build host\n" + ssh_server.known_hosts_line


def test_host_whose_key_changed_is_refused_and_nothing_is_built_or_pushed(studio_repo, git_env, image_services,
                                                                         ssh_server, tmp_path):
    repository, extra = own_repository(tmp_path)
    known_hosts = tmp_path / "known_hosts"
    stale = f"[127.0.0.1]:{ssh_server.port} {other_host_key(tmp_path)}\n"
    known_hosts.write_text("# build hosts\n" + stale)
    # The right key in ~/.ssh/known_hosts does not outvote the configured file, read first.
    home = own_home(tmp_path, ssh_server.known_hosts_line)
    env = image_inv_env(git_env, image_services, HOME=str(home), INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                        INVOKE_MVP_BUILD_KNOWN_HOSTS=str(known_hosts))
    before = accepted(ssh_server)

    result = run_inv(studio_repo.work, "-f", str(extra), "app.push", PROJECT, "--host", ssh_server.host,
                     env=env, timeout=300)

    assert_one_line_error(result, f"build host 127.0.0.1:{ssh_server.port} sent the ssh-ed25519 key "
                          f"{ssh_server.fingerprint}, which does not match {known_hosts} line 2",
                          "possible man-in-the-middle", f"ssh-keygen -R '[127.0.0.1]:{ssh_server.port}' -f {known_hosts}")
    # Refused before authenticating: no key, no command, no build context, no password went there.
    assert accepted(ssh_server) == before
    assert image_services.tags(repository) == []
    assert image_services.image(image_services.ref(repository, studio_repo.commit)) is None
    assert known_hosts.read_text() == "# build hosts\n" + stale


def test_host_in_no_known_hosts_is_refused_with_how_to_trust_it(studio_repo, git_env, image_services, ssh_server,
                                                                 tmp_path):
    repository, extra = own_repository(tmp_path)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    home = own_home(tmp_path)  # no ~/.ssh/known_hosts at all
    env = image_inv_env(git_env, image_services, HOME=str(home), INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                        INVOKE_MVP_BUILD_KNOWN_HOSTS=str(known_hosts))
    before = accepted(ssh_server)

    result = run_inv(studio_repo.work, "-f", str(extra), "app.build", PROJECT, "--host", ssh_server.host, env=env)

    add = f"ssh-keyscan -p {ssh_server.port} 127.0.0.1 >> {known_hosts}"
    assert_one_line_error(result, f"build host 127.0.0.1:{ssh_server.port} is not in known_hosts ({known_hosts}, "
                          "~/.ssh/known_hosts", f"check its key fingerprint {ssh_server.fingerprint} out of band",
                          f"then add it with `{add}`")
    assert accepted(ssh_server) == before
    assert image_services.image(image_services.ref(repository, studio_repo.commit)) is None
    assert not (home / ".ssh" / "known_hosts").exists()

    # The command the line gives is the whole fix (ssh-keyscan asks the sshd on loopback).
    subprocess.run(["bash", "-c", add], check=True, capture_output=True, timeout=30)
    again = run_inv(studio_repo.work, "-f", str(extra), "app.build", PROJECT, "--host", ssh_server.host,
                    env=env, timeout=300)

    assert again.returncode == 0, again.stdout + again.stderr
    assert image_services.image(image_services.ref(repository, studio_repo.commit)) is not None


def test_the_build_folder_on_the_build_host_is_private(studio_repo, git_env, image_services, ssh_server, tmp_path):
    # The container CLI on the build host is a wrapper that records the build context folder's
    # mode and owner while `docker build` runs, then hands over to the real client.
    record = tmp_path / "context-stat"
    wrapper = tmp_path / "docker-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do last=$a; done\n'
        f'case " $* " in *" build "*) stat -c "%a %u %F" "$last" >> {shlex.quote(str(record))};; esac\n'
        f'exec {shlex.quote(image_services.docker_client)} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = image_inv_env(git_env, image_services, INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key),
                        INVOKE_MVP_BUILD_KNOWN_HOSTS=str(ssh_server.known_hosts),
                        INVOKE_MVP_BUILD_DOCKER=str(wrapper))
    leftovers_before = set(glob.glob("/tmp/mvp-build-*"))

    result = run_inv(studio_repo.work, "app.build", PROJECT, "--host", ssh_server.host, env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    # After the context was unpacked into it, the folder is still 0700 and the SSH user's.
    assert record.read_text().splitlines() == [f"700 {os.getuid()} directory"]
    assert set(glob.glob("/tmp/mvp-build-*")) == leftovers_before
