"""Where images are built (a runner + docker) and how: the revision to tag, build args, labels.

Planning asks `get_revision` and `has_image`; applying calls `build` and `push`. Each build gets
its own `Builder` (one Fabric connection per build on a build host), closed when its target ends.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import BuildError, UsageError
from . import git
from .docker import Docker
from .runner import Runner


@dataclass
class Builder:
    runner: Runner
    docker: Docker
    registry: Any  # image.registry.Registry
    platform: str
    base_image: str = ""
    network: str = ""

    def close(self) -> None:
        self.runner.close()

    @property
    def where(self) -> str:
        return self.runner.label if self.runner.is_remote else ""


def make_builder(settings: Any, services: Any, registry: Any, host: str | None = None) -> Builder:
    from ..settings import BUILD_HOST

    host = host if host is not None else settings.build.host
    if host:
        if not BUILD_HOST.fullmatch(host):
            raise UsageError(f"--host: {host!r} is not an SSH host like user@build.example.com:22")
        connect = {"key_filename": os.path.expanduser(settings.build.ssh_key)} if settings.build.ssh_key else {}
        known_hosts = [settings.build.known_hosts] if settings.build.known_hosts else []
        runner = Runner.remote(host, connect, known_hosts=known_hosts)
    else:
        runner = Runner.local()
    docker_host = settings.build.docker_host or services.docker_host
    binary = settings.build.docker
    if binary == "docker" and services.docker_client and not settings.build.docker_host:
        binary = services.docker_client
    network = settings.build.network or ("host" if docker_host and docker_host == services.docker_host else "")
    # The sandbox's Debian client has BuildKit: much faster than the legacy builder (one step per
    # label there). Only for local builds: env vars do not cross SSH unless sshd accepts them.
    env = {"DOCKER_BUILDKIT": "1"} if (not host and binary == services.docker_client and services.docker_client) else {}
    docker = Docker(runner, binary=binary, host=docker_host, env=env)
    return Builder(runner, docker, registry, settings.build.platform, base_image=services.base_image, network=network)


def check_project_files(root: Path, project: Any) -> Path:
    folder = root / "projects" / project.name
    if not (folder / "Dockerfile").is_file():
        raise BuildError(f"project {project.name} has no Dockerfile (expected projects/{project.name}/Dockerfile)")
    return folder


def get_revision(root: Path, project: Any, *, for_push: bool, allow_dirty: bool, memo: Any = None) -> git.Revision:
    """The commit to tag with, after the Git LFS check; refuses a dirty tree for a push. `memo`
    (the run's `Memo`): what git says for every project is asked once per run."""
    local = Runner.local()
    subdir = f"projects/{project.name}"
    # LFS first: with the lfs filter configured but git-lfs missing, `git status` itself fails.
    git.check_lfs(local, root, subdir, memo)
    revision = git.get_revision(local, root, subdir, memo)
    if revision.dirty and for_push and not allow_dirty:
        raise BuildError(
            f"{subdir}/ has uncommitted changes; a pushed image must be built from a commit",
            "commit them, or pass --allow-dirty for a throwaway image that never gets a cluster tag",
        )
    return revision


def build_args(builder: Builder, project: Any) -> dict[str, str]:
    args = dict(project.build_args)
    if builder.base_image:
        # Nothing can be pulled in the sandbox: its locally made base image stands in.
        args["BASE_IMAGE"] = builder.base_image
    return args


def labels(root: Path, project: Any, revision: git.Revision) -> dict[str, str]:
    source = git.get_remote_url(Runner.local(), root) or f"projects/{project.name}"
    return {
        "org.opencontainers.image.revision": revision.commit,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.title": project.name,
        "studio.mvp.project": project.name,
        "studio.mvp.dirty": "true" if revision.dirty else "false",
    }


def build(builder: Builder, root: Path, project: Any, revision: git.Revision, ref: str,
          on_line: Callable[[str], None]) -> None:
    folder = check_project_files(root, project)
    kwargs = dict(
        tags=[ref],
        platform=builder.platform,
        build_args=build_args(builder, project),
        labels=labels(root, project, revision),
        network=builder.network,
        on_line=on_line,
    )
    if builder.runner.is_remote:
        _build_remote(builder, folder, **kwargs)
    else:
        builder.docker.build(str(folder), **kwargs)
    if not builder.docker.has_image(ref):
        raise BuildError(f"docker build said it succeeded but {ref} is not in the engine")


def _build_remote(builder: Builder, folder: Path, **kwargs) -> None:
    """Upload the build context (after the LFS check) as one tarball, build there, clean up."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "context.tar.gz"
        try:
            with tarfile.open(archive, "w:gz") as tar:
                # The folder's own entry ("."), unpacked as root, would give the private folder
                # the mode of the local one: only what is inside it goes into the archive.
                for child in sorted(folder.iterdir()):
                    tar.add(child, arcname=child.name)
        except OSError as exc:
            raise BuildError(f"cannot pack the build context {folder}: {exc}") from None
        # The studio's source is not for the build host's other users: mktemp -d makes it 0700.
        remote_dir = builder.runner.make_private_dir("mvp-build-")
        try:
            builder.runner.put(str(archive), posixpath.join(remote_dir, "context.tar.gz"))
            builder.runner.run(["tar", "-xzf", posixpath.join(remote_dir, "context.tar.gz"), "-C", remote_dir],
                               what="unpacking the build context")
            builder.docker.build(remote_dir, **kwargs)
        finally:
            builder.runner.remove_dir(remote_dir)


def push(builder: Builder, repository: str, tag: str, on_line: Callable[[str], None]) -> str:
    """Push `repository:tag` and return the digest the registry lists for it."""
    registry = builder.registry
    ref = registry.ref(repository, tag)
    # The credentials of a login live in a DOCKER_CONFIG made for this push and removed after it.
    with builder.docker.login_session() as docker:
        registry.login(docker)
        docker.push(ref, on_line=on_line)
    digest = registry.get_digest(repository, tag)
    if not digest:
        raise BuildError(f"pushed {ref}, but {registry.describe()} does not list it")
    return digest
