"""Building and publishing a project's image: the steps `app.build`, `app.push` and `ci.release` share.

Plan, show, act, verify, with one outcome per target: the commit image, then the cluster tag.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..image import git
from ..image.docker import Docker
from ..image.registry import OciRegistry
from ..image.runner import Runner
from ..errors import BuildError, UsageError
from ..report import Outcome
from ..settings import BUILD_HOST, ProjectSettings
from ..sandbox import Services, get_services
from .boundary import Run

ECR_HOST = ".dkr.ecr."


@dataclass
class Builder:
    """Where images are built (runner + docker) and published (registry), resolved once per run."""

    run: Run
    runner: Runner
    docker: Docker
    registry: object  # image.registry.Registry
    base_image: str = ""
    network: str = ""

    def close(self) -> None:
        self.runner.close()


def get_sandbox_services(run: Run) -> Services:
    """The sandbox's engine, registry and base image, but only while AWS calls go to an emulator:
    real stacks must never be given loopback image addresses."""
    if not run.aws.target.endpoint_url:
        return Services()
    return get_services(run.settings.sandbox_dir)


def get_registry(run: Run):
    settings = run.settings
    host = settings.registry or get_sandbox_services(run).registry
    if host and ECR_HOST not in host:
        return OciRegistry(host)
    from ..aws.images import EcrRegistry

    return EcrRegistry(run.aws.ecr)


def get_builder(run: Run, host: str | None = None) -> Builder:
    settings = run.settings
    services = get_sandbox_services(run)
    host = host if host is not None else settings.build.host
    if host:
        if not BUILD_HOST.fullmatch(host):
            raise UsageError(f"--host: {host!r} is not an SSH host like user@build.example.com:22")
        connect = {"key_filename": os.path.expanduser(settings.build.ssh_key)} if settings.build.ssh_key else {}
        runner = Runner.remote(host, connect)
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
    return Builder(run, runner, docker, get_registry(run), base_image=services.base_image, network=network)


def check_project_files(run: Run, project: ProjectSettings) -> Path:
    folder = run.settings.root / "projects" / project.name
    if not (folder / "Dockerfile").is_file():
        raise BuildError(f"project {project.name} has no Dockerfile (expected projects/{project.name}/Dockerfile)")
    return folder


def get_revision(run: Run, project: ProjectSettings, *, for_push: bool, allow_dirty: bool) -> git.Revision:
    """The commit to tag with, after the Git LFS check; refuses a dirty tree for a push."""
    local = Runner.local()
    subdir = f"projects/{project.name}"
    # LFS first: with the lfs filter configured but git-lfs missing, `git status` itself fails.
    git.check_lfs(local, run.settings.root, subdir)
    revision = git.get_revision(local, run.settings.root, subdir)
    if revision.dirty and for_push and not allow_dirty:
        raise BuildError(
            f"{subdir}/ has uncommitted changes; a pushed image must be built from a commit",
            "commit them, or pass --allow-dirty for a throwaway image that never gets a cluster tag",
        )
    return revision


def build_args(builder: Builder, project: ProjectSettings) -> dict[str, str]:
    args = dict(project.build_args)
    if builder.base_image:
        # Nothing can be pulled in the sandbox: its locally made base image stands in.
        args["BASE_IMAGE"] = builder.base_image
    return args


def labels(run: Run, project: ProjectSettings, revision: git.Revision) -> dict[str, str]:
    source = git.get_remote_url(Runner.local(), run.settings.root) or f"projects/{project.name}"
    return {
        "org.opencontainers.image.revision": revision.commit,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.title": project.name,
        "studio.mvp.project": project.name,
        "studio.mvp.dirty": "true" if revision.dirty else "false",
    }


def ensure_built(builder: Builder, project: ProjectSettings, revision: git.Revision) -> tuple[str, Outcome]:
    """Build the commit image unless the engine already has it. Returns its reference and the outcome."""
    run = builder.run
    reporter = run.reporter
    ref = builder.registry.ref(project.repository, revision.tag)
    target = f"{project.name}:{revision.tag[:12] if not revision.dirty else revision.tag[:12] + '-dirty'}"
    builder.docker.check_engine()
    if builder.docker.has_image(ref):
        reporter.ok(target, f"image {ref} already built")
        return ref, Outcome.OK
    reporter.plan(target, [f"+ build {ref} for {run.settings.build.platform}" + (f" on {builder.runner.label}" if builder.runner.is_remote else "")])
    if reporter.check:
        reporter.changed(target, "would build the image")
        return ref, Outcome.CHANGED
    folder = check_project_files(run, project)
    kwargs = dict(
        tags=[ref],
        platform=run.settings.build.platform,
        build_args=build_args(builder, project),
        labels=labels(run, project, revision),
        network=builder.network,
        on_line=lambda line: reporter.event(line),
    )
    with reporter.progress(f"building {ref}"):
        if builder.runner.is_remote:
            _build_remote(builder, folder, **kwargs)
        else:
            builder.docker.build(str(folder), **kwargs)
    if not builder.docker.has_image(ref):
        raise BuildError(f"docker build said it succeeded but {ref} is not in the engine")
    reporter.changed(target, f"built {ref}")
    return ref, Outcome.CHANGED


def _build_remote(builder: Builder, folder: Path, **kwargs) -> None:
    """Upload the build context (after the LFS check) as one tarball, build there, clean up."""
    remote_dir = f"/tmp/mvp-build-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "context.tar.gz"
        try:
            with tarfile.open(archive, "w:gz") as tar:
                tar.add(folder, arcname=".")
        except OSError as exc:
            raise BuildError(f"cannot pack the build context {folder}: {exc}") from None
        builder.runner.run(["mkdir", "-p", remote_dir], what="creating the remote build folder")
        try:
            builder.runner.put(str(archive), posixpath.join(remote_dir, "context.tar.gz"))
            builder.runner.run(["tar", "-xzf", posixpath.join(remote_dir, "context.tar.gz"), "-C", remote_dir],
                               what="unpacking the build context")
            builder.docker.build(remote_dir, **kwargs)
        finally:
            builder.runner.run(["rm", "-rf", remote_dir], check=False)


def ensure_pushed(builder: Builder, project: ProjectSettings, revision: git.Revision) -> tuple[str, Outcome]:
    """Publish the commit image unless the registry has it already. Returns (digest, outcome)."""
    run = builder.run
    reporter = run.reporter
    registry = builder.registry
    repo_changes = registry.ensure_repository(project.repository, check=reporter.check)
    if repo_changes:
        reporter.plan(project.repository, repo_changes)
        reporter.changed(project.repository, "repository " + ("would be " if reporter.check else "") + "set up")
    ref = registry.ref(project.repository, revision.tag)
    target = f"{project.name}:{revision.short}" + ("-dirty" if revision.dirty else "")
    digest = registry.get_digest(project.repository, revision.tag)
    if digest:
        reporter.ok(target, f"{ref} already in {registry.describe()} ({digest[:19]})")
        return digest, Outcome.OK
    _, built = ensure_built(builder, project, revision)
    reporter.plan(target, [f"+ push {ref}"])
    if reporter.check:
        reporter.changed(target, "would push the image")
        return "", Outcome.CHANGED
    # The credentials of a login live in a DOCKER_CONFIG made for this push and removed after it.
    with builder.docker.login_session() as docker:
        registry.login(docker)
        with reporter.progress(f"pushing {ref}"):
            docker.push(ref, on_line=lambda line: reporter.event(line))
    digest = registry.get_digest(project.repository, revision.tag)
    if not digest:
        raise BuildError(f"pushed {ref}, but {registry.describe()} does not list it")
    reporter.changed(target, f"pushed {ref} ({digest[:19]})")
    return digest, Outcome.CHANGED


def ensure_tag(builder: Builder, project: ProjectSettings, source_tag: str, target_tag: str,
               expected_digest: str = "", confirm_question: str = "") -> Outcome:
    """Point `target_tag` at the image `source_tag` names, server-side. Verifies the digest after."""
    run = builder.run
    reporter = run.reporter
    registry = builder.registry
    target = f"{project.name}:{target_tag}"
    source_digest = expected_digest or registry.get_digest(project.repository, source_tag)
    if not source_digest:
        if reporter.check:
            reporter.changed(target, f"would point {target_tag} at {source_tag[:12]}")
            return Outcome.CHANGED
        raise BuildError(f"image {registry.ref(project.repository, source_tag)} does not exist; nothing to tag")
    current = registry.get_digest(project.repository, target_tag)
    if current == source_digest:
        reporter.ok(target, f"already {source_tag[:12]} ({source_digest[:19]})")
        return Outcome.OK
    reporter.plan(target, [f"~ tag {target_tag}: {current[:19] if current else 'none'} -> {source_digest[:19]} ({source_tag[:12]})"])
    if reporter.check:
        reporter.changed(target, f"would point {target_tag} at {source_tag[:12]}")
        return Outcome.CHANGED
    if confirm_question:
        reporter.confirm(confirm_question)
    registry.retag(project.repository, source_tag, target_tag)
    after = registry.get_digest(project.repository, target_tag)
    if after != source_digest:
        raise BuildError(f"moved tag {target_tag} but it points at {after}, not {source_digest}")
    reporter.changed(target, f"now {source_tag[:12]} ({source_digest[:19]})")
    return Outcome.CHANGED
