"""Pure unit tests of the build helpers: git / git-lfs (`build.git`), the container CLI
(`build.docker.Docker`), the runner's quoting and failures, and the OCI registry's URL logic.

Commands go to a recording fake context (or `invoke.MockContext`): nothing runs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from invoke import MockContext, Result

from mvp_tasks.image import git
from mvp_tasks.image.docker import Docker
from mvp_tasks.image.registry import OciRegistry, manifest_digest
from mvp_tasks.image.runner import Runner
from mvp_tasks.errors import BuildError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)


class FakeContext:
    """Records every command (the exact shell string) and its keyword arguments; answers from
    `answers`: {regex: Result}, first match wins; unmatched commands succeed with no output."""

    def __init__(self, answers: dict[str, Result] | None = None):
        self.answers = answers or {}
        self.calls: list[tuple[str, dict]] = []

    def run(self, command: str, **kwargs) -> Result:
        self.calls.append((command, kwargs))
        for pattern, result in self.answers.items():
            if re.search(pattern, command):
                return result
        return Result(command=command, exited=0)

    @property
    def commands(self) -> list[str]:
        return [c for c, _ in self.calls]


def fake_runner(answers: dict[str, Result] | None = None) -> tuple[Runner, FakeContext]:
    context = FakeContext(answers)
    return Runner(context), context


# --- git: revision tags ----------------------------------------------------------------------------


def test_clean_tree_is_tagged_with_the_full_commit():
    runner, context = fake_runner({r"rev-parse": Result(stdout=COMMIT + "\n"), r"status": Result(stdout="")})

    revision = git.get_revision(runner, Path("/repo"), "projects/app")

    assert revision == git.Revision(COMMIT, False)
    assert revision.tag == COMMIT and revision.short == COMMIT[:12]
    assert context.commands == [
        "git -C /repo rev-parse --verify 'HEAD^{commit}'",
        "git -C /repo status --porcelain -z --untracked-files=all -- projects/app",
    ]


def test_dirty_tree_gets_a_hash_of_its_change_in_the_tag():
    status, diff = " M projects/app/site/index.html\n", "diff --git a/x b/x\n+new line\n"
    runner, context = fake_runner({r"rev-parse": Result(stdout=COMMIT), r"status": Result(stdout=status),
                                   r"diff HEAD": Result(stdout=diff)})

    revision = git.get_revision(runner, Path("/repo"), "projects/app")

    expected = hashlib.sha256((status + diff).encode()).hexdigest()[:8]
    assert revision.dirty and revision.dirty_hash == expected
    assert revision.tag == f"{COMMIT}-dirty-{expected}"
    assert context.commands[-1] == "git -C /repo diff HEAD --binary -- projects/app"


def test_two_different_dirty_changes_never_share_a_tag():
    def revision_for(diff: str) -> git.Revision:
        runner, _ = fake_runner({r"rev-parse": Result(stdout=COMMIT), r"status": Result(stdout=" M a\n"),
                                 r"diff HEAD": Result(stdout=diff)})
        return git.get_revision(runner, Path("/repo"), "projects/app")

    assert revision_for("+one\n").tag != revision_for("+two\n").tag
    assert revision_for("+one\n").tag == revision_for("+one\n").tag


def test_get_commit_through_invoke_mock_context():
    context = MockContext(run={"git -C /repo rev-parse --verify 'HEAD^{commit}'": Result(stdout=COMMIT + "\n")})

    assert git.get_commit(Runner(context), Path("/repo")) == COMMIT


@pytest.mark.parametrize("answer, fragment", [
    (Result(exited=127, stderr="git: not found"), "git is not installed"),
    (Result(exited=128, stderr="fatal: not a git repository"), "is not a git repository with a commit"),
    (Result(stdout="not-a-sha\n"), "unexpected commit id"),
])
def test_get_commit_failures_are_one_clear_error(answer, fragment):
    runner, _ = fake_runner({r"rev-parse": answer})

    with pytest.raises(BuildError, match=re.escape(fragment)):
        git.get_commit(runner, Path("/repo"))


def test_remote_url_never_carries_credentials():
    runner, _ = fake_runner({r"remote.origin.url": Result(stdout="https://user:s3cret@git.example.com/studio.git\n")})

    assert git.get_remote_url(runner, Path("/repo")) == "https://git.example.com/studio.git"


# --- git-lfs: pointer detection ---------------------------------------------------------------------


def test_pointer_file_detection(tmp_path):
    pointer = tmp_path / "pointer.png"
    pointer.write_text(POINTER)
    big = tmp_path / "big.bin"
    big.write_bytes(POINTER.encode() + b"\0" * 2048)   # starts like one, but far too large
    content = tmp_path / "real.png"
    content.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    small_text = tmp_path / "note.txt"
    small_text.write_text("version 2 of the notes\n")

    assert git.is_pointer_file(pointer)
    assert not git.is_pointer_file(big)
    assert not git.is_pointer_file(content)
    assert not git.is_pointer_file(small_text)
    assert not git.is_pointer_file(tmp_path / "missing.png")


@pytest.mark.parametrize("where, text, expected", [
    (".gitattributes", "*.png filter=lfs diff=lfs merge=lfs -text\n", True),
    ("projects/app/.gitattributes", "*.mp4 filter=lfs diff=lfs merge=lfs -text\n", True),
    (".gitattributes", "# *.png filter=lfs diff=lfs merge=lfs -text\n*.svg text\n", False),
    (".gitattributes", "*.sh text eol=lf\n", False),
    (None, "", False),
])
def test_uses_lfs(tmp_path, where, text, expected):
    if where:
        path = tmp_path / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    assert git.uses_lfs(tmp_path) is expected


def lfs_repo(tmp_path: Path) -> Path:
    (tmp_path / ".gitattributes").write_text("*.png filter=lfs diff=lfs merge=lfs -text\n")
    img = tmp_path / "projects" / "app" / "site" / "img"
    img.mkdir(parents=True)
    (img / "hero.png").write_text(POINTER)                                  # listed, not checked out
    (img / "map.png").write_bytes(b"\x89PNG" + b"\1" * 4096)               # listed, checked out
    (img / "stray.png").write_text(POINTER)                                 # not listed: still a pointer
    return tmp_path


def test_pointer_files_are_found_from_lfs_ls_files_and_by_content(tmp_path):
    root = lfs_repo(tmp_path)
    listing = {"files": [
        {"name": "projects/app/site/img/hero.png", "checkout": False},
        {"name": "projects/app/site/img/map.png", "checkout": True},
    ]}
    runner, context = fake_runner({r"lfs version": Result(stdout="git-lfs/3.3.0\n"),
                                   r"lfs ls-files": Result(stdout=json.dumps(listing))})

    pointers = git.get_lfs_pointer_files(runner, root, "projects/app")

    assert pointers == ["projects/app/site/img/hero.png", "projects/app/site/img/stray.png"]
    assert f"git -C {root} lfs ls-files --json --include 'projects/app/**'" in context.commands


def test_check_lfs_names_the_pointer_files_and_the_fix(tmp_path):
    root = lfs_repo(tmp_path)
    runner, _ = fake_runner({r"lfs version": Result(stdout="git-lfs/3.3.0\n"),
                             r"lfs ls-files": Result(stdout='{"files": null}')})

    with pytest.raises(BuildError) as raised:
        git.check_lfs(runner, root, "projects/app")

    text = str(raised.value)
    assert "\n" not in text
    assert "projects/app/site/img/hero.png" in text and "projects/app/site/img/stray.png" in text
    assert 'git lfs pull --include "projects/app/**"' in text


def test_check_lfs_shortens_a_long_list(tmp_path):
    (tmp_path / ".gitattributes").write_text("*.png filter=lfs -text\n")
    img = tmp_path / "projects" / "app"
    img.mkdir(parents=True)
    for i in range(8):
        (img / f"p{i}.png").write_text(POINTER)
    runner, _ = fake_runner({r"lfs ls-files": Result(exited=1)})

    with pytest.raises(BuildError, match=r"8 Git LFS file\(s\).*and 3 more"):
        git.check_lfs(runner, tmp_path, "projects/app")


def test_missing_git_lfs_is_a_clear_error(tmp_path):
    root = lfs_repo(tmp_path)
    runner, _ = fake_runner({r"lfs version": Result(exited=1, stderr="git: 'lfs' is not a git command.")})

    with pytest.raises(BuildError, match="git-lfs is not installed") as raised:
        git.check_lfs(runner, root, "projects/app")
    assert "apt-get install git-lfs" in str(raised.value)


def test_repository_without_lfs_runs_no_lfs_command(tmp_path):
    (tmp_path / "projects" / "app").mkdir(parents=True)
    (tmp_path / "projects" / "app" / "looks-like.txt").write_text(POINTER)
    runner, context = fake_runner()

    assert git.get_lfs_pointer_files(runner, tmp_path, "projects/app") == []
    git.check_lfs(runner, tmp_path, "projects/app")
    assert context.calls == []


# --- docker: the exact argv --------------------------------------------------------------------------


def test_build_argv_with_platform_build_args_labels_network_and_host():
    runner, context = fake_runner()
    docker = Docker(runner, binary="/usr/bin/docker", host="unix:///run/x/docker.sock")

    docker.build("/ctx", ["127.0.0.1:5000/app:abc"], platform="linux/amd64",
                 build_args={"VERSION": "1 2", "BASE_IMAGE": "mvp-sandbox/httpd:latest"},
                 labels={"org.opencontainers.image.revision": COMMIT, "a.b": "x;y"}, network="host")

    assert context.commands == [
        "/usr/bin/docker --host unix:///run/x/docker.sock build --tag 127.0.0.1:5000/app:abc "
        "--platform linux/amd64 --network host "
        "--build-arg BASE_IMAGE=mvp-sandbox/httpd:latest --build-arg 'VERSION=1 2' "
        f"--label 'a.b=x;y' --label org.opencontainers.image.revision={COMMIT} /ctx"
    ]


def test_build_argv_without_host_or_options():
    runner, context = fake_runner()

    Docker(runner).build(".", ["app:1", "app:latest"], dockerfile="Dockerfile.prod")

    assert context.commands == ["docker build --tag app:1 --tag app:latest --file Dockerfile.prod ."]


def test_build_failure_carries_the_output_tail():
    output = "\n".join(f"line {i}" for i in range(40)) + "\nThe command '/bin/sh -c false' returned a non-zero code: 1"
    runner, _ = fake_runner({r" build ": Result(exited=1, stdout=output)})

    with pytest.raises(BuildError) as raised:
        Docker(runner).build(".", ["app:1"])

    text = str(raised.value)
    assert "docker build of app:1 failed (exit 1)" in text
    assert "returned a non-zero code: 1" in text and "line 39" in text and "line 5\n" not in text


def test_login_puts_the_password_on_stdin_only():
    runner, context = fake_runner()

    Docker(runner, host="tcp://127.0.0.1:2375").login("123.dkr.ecr.us-east-1.amazonaws.com", "AWS", "p4ss-w0rd")

    (command, kwargs), = context.calls
    assert command == ("docker --host tcp://127.0.0.1:2375 login --username AWS --password-stdin "
                       "123.dkr.ecr.us-east-1.amazonaws.com")
    assert "p4ss-w0rd" not in command
    assert kwargs["in_stream"].getvalue() == "p4ss-w0rd"
    assert "p4ss-w0rd" not in repr(kwargs.get("env"))


def test_push_and_has_image_argv():
    runner, context = fake_runner({r"image inspect": Result(exited=1)})
    docker = Docker(runner, host="unix:///d.sock")

    docker.push("127.0.0.1:5000/app:abc")
    assert not docker.has_image("127.0.0.1:5000/app:abc")

    assert context.commands == [
        "docker --host unix:///d.sock push 127.0.0.1:5000/app:abc",
        "docker --host unix:///d.sock image inspect --format '{{.Id}}' 127.0.0.1:5000/app:abc",
    ]


@pytest.mark.parametrize("answer, fragment", [
    (Result(exited=127, stderr="docker: not found"), "docker is not installed"),
    (Result(exited=1, stderr="Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"),
     "no Docker engine answers at unix:///x.sock: Cannot connect to the Docker daemon"),
    (Result(exited=0, stdout=""), "no Docker engine answers at unix:///x.sock"),
])
def test_check_engine_failures(answer, fragment):
    runner, _ = fake_runner({r"version": answer})

    with pytest.raises(BuildError, match=re.escape(fragment)) as raised:
        Docker(runner, host="unix:///x.sock").check_engine()
    assert "\n" not in str(raised.value)


def test_runner_quotes_every_argument():
    runner, context = fake_runner()

    runner.run(["echo", "a;b", "$(x)", "two words", "it's"])

    assert context.commands == ["echo 'a;b' '$(x)' 'two words' 'it'\"'\"'s'"]


def test_runner_exit_127_is_not_installed():
    runner, _ = fake_runner({r".": Result(exited=127)})

    with pytest.raises(BuildError, match="podman is not installed"):
        runner.run(["podman", "version"])


# --- OCI registry: URLs and scheme --------------------------------------------------------------------


@pytest.mark.parametrize("host, scheme", [
    ("127.0.0.1:5000", "http"),
    ("127.1.2.3:5000", "http"),
    ("localhost:5000", "http"),
    ("localhost", "http"),
    ("[::1]:5000", "http"),
    ("registry.example.com", "https"),
    ("10.0.0.5:5000", "https"),
    ("127.0.0.1.nip.io:5000", "https"),
    ("localhost.example.com", "https"),
    ("my-localhost:5000", "https"),
])
def test_plain_http_only_for_loopback(host, scheme):
    registry = OciRegistry(host)

    assert registry.scheme == scheme
    assert registry.base == f"{scheme}://{host}"


def test_registry_urls_and_refs():
    registry = OciRegistry("127.0.0.1:5000")

    assert registry.ref("museum-adventure", "stage") == "127.0.0.1:5000/museum-adventure:stage"
    assert registry._url("museum-adventure", "manifests", "stage") == \
        "http://127.0.0.1:5000/v2/museum-adventure/manifests/stage"
    assert registry._url("museum-adventure", "tags", "list") == "http://127.0.0.1:5000/v2/museum-adventure/tags/list"


def test_registry_with_a_namespace_prefix():
    registry = OciRegistry("registry.example.com/studio/")

    assert registry.scheme == "https"
    assert registry.ref("app", "1") == "registry.example.com/studio/app:1"
    assert registry._url("app", "manifests", "1") == "https://registry.example.com/v2/studio/app/manifests/1"


def test_manifest_digest_is_the_sha256_of_the_bytes():
    body = b'{"schemaVersion": 2}'

    assert manifest_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()


def test_unreachable_registry_is_a_build_error():
    from conftest import free_port

    registry = OciRegistry(f"127.0.0.1:{free_port()}", timeout=2)

    with pytest.raises(BuildError, match="cannot be reached"):
        registry.get_digest("app", "stage")
