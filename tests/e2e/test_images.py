"""`app.build` and `app.push` end to end: real git + git-lfs repositories with a file:// remote, a
private Docker engine and an OCI registry on loopback (scripts/sandbox-services.sh). Every test reads
the state back from the real service: the registry's HTTP API, `docker image inspect`, git."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import (
    BIN, HERO, LFS_FIX, PROJECT, assert_one_line_error, clone_repo, free_port, git, image_inv_env,
    make_studio_repo, need, run_inv,
)

pytestmark = pytest.mark.e2e

POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"


def git_without_lfs(tmp_path: Path) -> str:
    """A PATH where `git` exists but `git-lfs` does not, plus the venv's bin (where `inv` lives)."""
    real_git = shutil.which("git")
    need(real_git is not None, "git is not installed")
    bin_dir = tmp_path / "bin-no-lfs"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(real_git)
    return os.pathsep.join([str(bin_dir), str(BIN)])


def file_from_image(services, ref: str, path: str) -> bytes:
    """A file's bytes from an image, through a created (never started) container."""
    container = services.docker("create", ref).stdout.strip()
    try:
        archive = services.docker_bytes("cp", f"{container}:{path}", "-")
    finally:
        services.docker("rm", container, check=False)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read()


# --- Git LFS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["app.build", "app.push"])
def test_clone_without_lfs_content_is_refused_with_the_fix(task, studio_repo, tmp_path, git_env):
    clone = clone_repo(studio_repo, tmp_path / "clone", git_env, skip_smudge=True)
    # The premise, read back from the working tree: hero.png is a pointer, not the image.
    assert (clone / HERO).read_bytes().startswith(POINTER_PREFIX)
    assert (clone / HERO).stat().st_size < 1024

    result = run_inv(clone, task, PROJECT, env=image_inv_env(git_env))

    assert_one_line_error(result, HERO, LFS_FIX, "pointer file")

    # The fix the message names works, and the check then passes: what fails next is the (absent)
    # Docker engine, not Git LFS.
    git(clone, "lfs", "pull", "--include", f"projects/{PROJECT}/**", env=git_env)
    assert (clone / HERO).read_bytes() == studio_repo.hero
    again = run_inv(clone, "app.build", PROJECT, env=image_inv_env(
        git_env, INVOKE_MVP_BUILD_DOCKER_HOST="unix:///nonexistent.sock", INVOKE_MVP_REGISTRY=f"127.0.0.1:{free_port()}"))
    assert_one_line_error(again, "no Docker engine answers at unix:///nonexistent.sock")


def test_full_clone_passes_the_lfs_check_and_builds_with_the_real_content(studio_repo, tmp_path, git_env,
                                                                         image_services):
    clone = clone_repo(studio_repo, tmp_path / "clone", git_env)
    assert (clone / HERO).read_bytes() == studio_repo.hero
    ref = image_services.ref(PROJECT, studio_repo.commit)

    result = run_inv(clone, "app.build", PROJECT, env=image_inv_env(git_env, image_services), timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "recap: ok=0 changed=1" in result.stdout, result.stdout
    assert image_services.image(ref) is not None
    # What the image ships is the LFS content, byte for byte, not a pointer file.
    shipped = file_from_image(image_services, ref, "/usr/share/nginx/html/img/hero.png")
    assert shipped == studio_repo.hero


def test_repository_without_lfs_passes_even_without_git_lfs(tmp_path, git_env, image_services):
    repo = make_studio_repo(tmp_path, git_env, lfs=False)
    env = image_inv_env(git_env, image_services, PATH=git_without_lfs(tmp_path))

    result = run_inv(repo.work, "app.build", PROJECT, "--check", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "would change: " in result.stdout and "  build the image" in result.stdout, result.stdout
    # Check mode built nothing.
    assert image_services.image(image_services.ref(PROJECT, repo.commit)) is None


@pytest.mark.parametrize("setup", ["filter-configured", "never-installed"])
def test_missing_git_lfs_is_one_clear_line(setup, studio_repo, tmp_path, git_env):
    if setup == "filter-configured":
        # git-lfs was set up (filter.lfs.* in the config, required) and is gone now: even `git status`
        # cannot run the clean filter any more.
        repo, env_git = studio_repo.work, git_env
    else:
        # git-lfs was never installed: no filter config at all, only the .gitattributes of the repo.
        config = tmp_path / "plain.gitconfig"
        config.write_text("[user]\n\tname = mvp tests\n\temail = tests@example.invalid\n")
        env_git = dict(git_env, GIT_CONFIG_GLOBAL=str(config))
        repo = clone_repo(studio_repo, tmp_path / "clone", git_env, skip_smudge=True)
        assert "filter.lfs" not in git(repo, "config", "--list", env=env_git).stdout
    env = image_inv_env(env_git, PATH=git_without_lfs(tmp_path))
    # The premise: this PATH has git, but git has no `lfs` command.
    probe = git(repo, "lfs", "version", env=dict(env_git, PATH=env["PATH"]), check=False)
    assert probe.returncode != 0 and "not a git command" in probe.stderr, probe.stderr

    result = run_inv(repo, "app.build", PROJECT, env=env)

    assert_one_line_error(result, "git-lfs is not installed", "apt-get install git-lfs", LFS_FIX)


# --- push to a real registry -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, git_env, image_services):
    """One `inv app.push museum-adventure` of a fresh commit, and the registry state right after it."""
    repo = make_studio_repo(tmp_path_factory.mktemp("pushed"), git_env)
    env = image_inv_env(git_env, image_services)
    result = run_inv(repo.work, "app.push", PROJECT, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    state = {
        "tags": image_services.tags(PROJECT),
        "commit_digest": image_services.digest(PROJECT, repo.commit),
        "stage_digest": image_services.digest(PROJECT, "stage"),
    }
    return repo, env, result, state


def test_push_publishes_the_commit_tag_and_moves_stage(pushed, image_services):
    repo, _, result, state = pushed

    assert re.fullmatch(r"[0-9a-f]{40}", repo.commit)
    assert repo.commit in state["tags"] and "stage" in state["tags"], state["tags"]
    assert state["commit_digest"] and state["commit_digest"].startswith("sha256:")
    assert state["stage_digest"] == state["commit_digest"]
    # The engine's copy is the one in the registry.
    image = image_services.image(image_services.ref(PROJECT, repo.commit))
    assert f"{image_services.registry}/{PROJECT}@{state['commit_digest']}" in image["RepoDigests"]
    # One target (the commit's image): the plan names the build, the push and the tag move; its result
    # line says both the push and the tag.
    ref = image_services.ref(PROJECT, repo.commit)
    assert f"  {PROJECT}:{repo.commit[:12]}: will:" in result.stdout, result.stdout
    assert f"+ build {ref}" in result.stdout and f"+ push {ref}" in result.stdout, result.stdout
    assert f"~ tag stage: none -> the pushed image ({repo.commit[:12]})" in result.stdout, result.stdout
    assert f"changed: {PROJECT}:{repo.commit[:12]}  pushed {ref}, tagged stage" in result.stdout, result.stdout
    assert "recap: ok=0 changed=1 skipped=0 failed=0" in result.stdout, result.stdout


def test_built_image_carries_the_commit_labels(pushed, image_services):
    repo, _, _, _ = pushed

    image = image_services.image(image_services.ref(PROJECT, repo.commit))

    labels = image["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == repo.commit
    assert labels["org.opencontainers.image.title"] == PROJECT
    assert labels["org.opencontainers.image.source"] == repo.url
    assert labels["studio.mvp.dirty"] == "false"


def test_second_push_builds_and_pushes_nothing(pushed, image_services):
    repo, env, _, state = pushed
    ref = image_services.ref(PROJECT, repo.commit)
    # The premise: stage still names this commit (nothing in between moved it).
    assert image_services.digest(PROJECT, "stage") == state["commit_digest"]
    before = image_services.image(ref)
    tags_before = image_services.tags(PROJECT)

    result = run_inv(repo.work, "app.push", PROJECT, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    # One target, ok: the image is in the registry and stage already names it; no plan was shown.
    assert f"ok: {PROJECT}:{repo.commit[:12]}  {ref} already in " in result.stdout, result.stdout
    assert f"and tagged stage ({state['commit_digest'][:19]})" in result.stdout, result.stdout
    assert "recap: ok=1 changed=0 skipped=0 failed=0" in result.stdout, result.stdout
    assert "will:" not in result.stdout, result.stdout
    assert "building" not in result.stdout and "pushing" not in result.stdout, result.stdout
    after = image_services.image(ref)
    assert (after["Id"], after["Created"]) == (before["Id"], before["Created"])
    assert image_services.tags(PROJECT) == tags_before
    assert image_services.digest(PROJECT, repo.commit) == state["commit_digest"]
    assert image_services.digest(PROJECT, "stage") == state["commit_digest"]


def test_push_to_prod_moves_the_prod_tag(pushed, image_services):
    repo, env, _, state = pushed

    refused = run_inv(repo.work, "app.push", PROJECT, "--cluster", "prod", env=env)
    # prod is protected: without a terminal, moving its tag needs --yes.
    assert_one_line_error(refused, "protected cluster prod", "--yes")
    assert image_services.digest(PROJECT, "prod") is None

    result = run_inv(repo.work, "app.push", PROJECT, "--cluster", "prod", "--yes", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert image_services.digest(PROJECT, "prod") == state["commit_digest"]
    assert image_services.digest(PROJECT, "stage") == state["commit_digest"]
    # The image was already pushed: only the prod tag moved (no build, no push).
    assert f"~ tag prod: none -> {state['commit_digest'][:19]} ({repo.commit[:12]})" in result.stdout, result.stdout
    assert "+ build" not in result.stdout and "+ push" not in result.stdout, result.stdout
    assert "building" not in result.stdout and "pushing" not in result.stdout, result.stdout
    assert f"changed: {PROJECT}:{repo.commit[:12]}  prod now {repo.commit[:12]}" in result.stdout, result.stdout
    assert "recap: ok=0 changed=1 skipped=0 failed=0" in result.stdout, result.stdout

    again = run_inv(repo.work, "app.push", PROJECT, "--cluster", "prod", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"ok: {PROJECT}:{repo.commit[:12]}  " in again.stdout, again.stdout
    assert f"and tagged prod ({state['commit_digest'][:19]})" in again.stdout, again.stdout
    assert "recap: ok=1 changed=0 skipped=0 failed=0" in again.stdout, again.stdout


@pytest.mark.parametrize("cluster, fragment", [
    ("nosuch", "unknown cluster 'nosuch'"),
    ("a;b", "is not a valid cluster name"),
])
def test_unknown_cluster_is_one_clear_line(pushed, image_services, cluster, fragment):
    repo, env, _, _ = pushed
    tags_before = image_services.tags(PROJECT)

    result = run_inv(repo.work, "app.push", PROJECT, "--cluster", cluster, env=env)

    assert_one_line_error(result, fragment)
    assert image_services.tags(PROJECT) == tags_before


def test_dirty_tree_is_refused_and_allow_dirty_never_gets_a_cluster_tag(studio_repo, tmp_path, git_env,
                                                                         image_services):
    # Its own image repository, so "stage was not created" can be read back from the registry.
    repository = "museum-dirty-" + os.urandom(3).hex()
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"mvp:\n  projects:\n    {PROJECT}:\n      repository: {repository}\n")
    env = image_inv_env(git_env, image_services)
    page = studio_repo.work / f"projects/{PROJECT}/site/index.html"
    page.write_text(page.read_text() + "<!-- work in progress -->\n")

    refused = run_inv(studio_repo.work, "-f", str(extra), "app.push", PROJECT, env=env)

    assert_one_line_error(refused, "uncommitted changes", "--allow-dirty")
    assert image_services.tags(repository) == []

    result = run_inv(studio_repo.work, "-f", str(extra), "app.push", PROJECT, "--allow-dirty", env=env, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    tags = image_services.tags(repository)
    assert len(tags) == 1 and re.fullmatch(rf"{studio_repo.commit}-dirty-[0-9a-f]{{8}}", tags[0]), tags
    assert image_services.digest(repository, "stage") is None
    # One target, the dirty image: pushed, and its result line says no cluster tag was given (no tag
    # move was even planned).
    dirty_ref = image_services.ref(repository, tags[0])
    assert f"+ push {dirty_ref}" in result.stdout, result.stdout
    assert "~ tag" not in result.stdout, result.stdout
    assert (f"changed: {PROJECT}:{studio_repo.commit[:12]}-dirty  pushed {dirty_ref}; "
            "dirty builds never get a cluster tag") in result.stdout, result.stdout
    assert "recap: ok=0 changed=1 skipped=0 failed=0" in result.stdout, result.stdout
    labels = image_services.image(image_services.ref(repository, tags[0]))["Config"]["Labels"]
    assert labels["studio.mvp.dirty"] == "true"
    assert labels["org.opencontainers.image.revision"] == studio_repo.commit


@pytest.mark.parametrize("step, marker", [
    ('RUN echo "mvp-test: about to fail" && false', "mvp-test: about to fail"),
    ("COPY missing-file.txt /missing-file.txt", "missing-file.txt"),
])
def test_build_failure_exits_non_zero_with_the_build_output_tail(tmp_path, git_env, image_services, step, marker):
    dockerfile = f"ARG BASE_IMAGE=scratch\nFROM ${{BASE_IMAGE}}\n{step}\n"
    repo = make_studio_repo(tmp_path, git_env, lfs=False, files={"projects/broken-app/Dockerfile": dockerfile})

    result = run_inv(repo.work, "app.build", "broken-app", env=image_inv_env(git_env, image_services), timeout=300)

    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "docker build of" in result.stderr and "failed" in result.stderr, result.stderr
    assert marker in result.stderr, result.stderr
    assert image_services.image(image_services.ref("broken-app", repo.commit)) is None


# --- bad input: one clear line, non-zero exit, no traceback -----------------------------------------


@pytest.mark.parametrize("task", ["app.build", "app.push"])
def test_unknown_project_is_one_clear_line(studio, git_env, task):
    result = run_inv(studio, task, "nosuch-app", env=image_inv_env(git_env))

    assert_one_line_error(result, "unknown project 'nosuch-app'", "projects/nosuch-app/")


@pytest.mark.parametrize("task", ["app.build", "app.push"])
@pytest.mark.parametrize("name", ["museum/adventure", "..", "../museum-adventure", "museum adventure", "a;b",
                                  "$(x)", "a`id`"])
def test_project_names_with_path_or_shell_characters_are_refused(studio, git_env, task, name):
    result = run_inv(studio, task, name, env=image_inv_env(git_env))

    assert_one_line_error(result, "is not a valid project name", repr(name))
    assert not (studio / "x").exists() and not (studio / "id").exists()


def test_project_without_dockerfile_is_one_clear_line(studio, git_env):
    (studio / "projects" / "no-image").mkdir()
    (studio / "projects" / "no-image" / "README.md").write_text("no Dockerfile here\n")

    result = run_inv(studio, "app.build", "no-image", env=image_inv_env(git_env))

    assert_one_line_error(result, "project no-image has no Dockerfile", "projects/no-image/Dockerfile")


def test_unreachable_docker_engine_is_one_clear_line(studio_repo, git_env):
    need(shutil.which("docker") is not None or os.access("/usr/bin/docker", os.X_OK),
         "the docker CLI is not installed (apt-get install docker.io)")
    # An OCI registry names the image without asking anybody (ECR would need AWS for its host name).
    env = image_inv_env(git_env, INVOKE_MVP_BUILD_DOCKER_HOST="unix:///nonexistent.sock",
                        INVOKE_MVP_REGISTRY=f"127.0.0.1:{free_port()}")

    result = run_inv(studio_repo.work, "app.build", PROJECT, env=env)

    assert_one_line_error(result, "no Docker engine answers at unix:///nonexistent.sock")


def test_unreachable_registry_is_one_clear_line(studio_repo, git_env):
    port = free_port()
    env = image_inv_env(git_env, INVOKE_MVP_REGISTRY=f"127.0.0.1:{port}")

    result = run_inv(studio_repo.work, "app.push", PROJECT, env=env)

    assert_one_line_error(result, f"registry 127.0.0.1:{port} cannot be reached")
