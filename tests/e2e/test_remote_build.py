"""`app.push --host`: the build runs on an SSH build host (a real sshd on 127.0.0.1 with a generated
key; the remote side drives the same private Docker engine), the push lands in the real registry."""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

from conftest import PROJECT, assert_one_line_error, free_port, image_inv_env, run_inv

pytestmark = pytest.mark.e2e


def test_push_builds_on_the_ssh_build_host(studio_repo, git_env, image_services, ssh_server, tmp_path):
    # Its own image repository: the tags read back below were made by this push alone.
    repository = "museum-remote-" + os.urandom(3).hex()
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"mvp:\n  projects:\n    {PROJECT}:\n      repository: {repository}\n")
    env = image_inv_env(git_env, image_services, INVOKE_MVP_BUILD_SSH_KEY=str(ssh_server.key))
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
                        INVOKE_MVP_REGISTRY=f"127.0.0.1:{free_port()}")

    result = run_inv(studio_repo.work, "app.build", PROJECT, "--host", ssh_server.host, env=env)

    assert_one_line_error(result, f"cannot run commands on build host {ssh_server.host}", "key")
