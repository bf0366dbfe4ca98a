"""The container CLI (docker, or podman: same verbs) through the runner."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from ..errors import BuildError
from .runner import CommandResult, Runner, interrupted

# Settings of the user's config.json a temporary DOCKER_CONFIG keeps: they choose the engine
# (so `docker push` finds the image `docker build` made) and hold no secret. Never `auths`,
# `credsStore` or `credHelpers`: login would store the password through them, beyond the run.
PORTABLE_SETTINGS = ("currentContext", "HttpHeaders")


def get_docker_config_dir() -> str:
    """The docker CLI's own config folder on this machine: $DOCKER_CONFIG, else ~/.docker."""
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _login_failure(registry: str, result, password: str, where: str) -> BuildError:
    """One line for a failed `docker login`: docker's last line (never the password) and the fix."""

    def reasons(text: str) -> list[str]:
        if password:
            text = text.replace(password, "***")
        # docker's "WARNING! Your password will be stored unencrypted" is not the reason.
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("WARNING")]

    reason = (reasons(result.stderr) or reasons(result.stdout) or [f"exit {result.exit_code}"])[-1]
    lowered = reason.lower()
    if "credentials" in lowered and ("sav" in lowered or "stor" in lowered):
        fix = "docker could not store the credentials: make TMPDIR writable, or check the credential helper it names"
    elif "unauthorized" in lowered or "denied" in lowered or "incorrect" in lowered or "401" in lowered:
        fix = f"check the credentials for {registry} (MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD, or for ECR the AWS account's)"
    else:
        fix = f"check that {registry} is reachable from the Docker engine and that its credentials are right"
    return BuildError(f"docker login to {registry} failed{where}: {reason}", fix)


def is_cancelled(result: CommandResult) -> bool:
    """Whether `docker build` stopped because it was told to: the CLI catches SIGINT and SIGTERM,
    cancels the build and exits 1 with "context canceled" as its last word (BuildKit marks the
    step it stopped `CANCELED`). Only a signal to the CLI cancels its context; an engine-side
    failure says why instead."""
    if result.ok:
        return False
    for text in (result.stderr, result.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines and lines[-1].lower().endswith("context canceled"):
            return True
    return False


@dataclass(frozen=True)
class Docker:
    runner: Runner
    binary: str = "docker"
    # A daemon address (`unix:///...`, `tcp://127.0.0.1:2375`); empty: the CLI's own default.
    host: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    def _argv(self, *args: str) -> list[str]:
        argv = [self.binary]
        if self.host:
            argv += ["--host", self.host]
        return argv + list(args)

    def run(self, *args: str, input: str | None = None, on_line: Callable[[str], None] | None = None,
            check: bool = True, what: str = "", cwd: str | None = None):
        return self.runner.run(self._argv(*args), input=input, on_line=on_line, check=check, what=what,
                               cwd=cwd, env=self.env or None)

    @property
    def engine(self) -> tuple[str, str, str]:
        """Which engine this CLI talks to (where it runs, which binary, which daemon): targets
        with the same one get the same answer from `check_engine`."""
        return (self.runner.label, self.binary, self.host)

    def check_engine(self) -> None:
        """Fail with one line when the CLI is missing or no engine answers."""
        result = self.run("version", "--format", "{{.Server.Version}}", check=False)
        if result.exit_code == 127:
            raise BuildError(f"{self.binary} is not installed" + (f" on {self.runner.label}" if self.runner.is_remote else ""),
                             "install Docker (apt-get install docker.io) or set mvp.build.docker")
        if not result.ok or not result.stdout.strip():
            where = self.host or "the default Docker socket"
            reason = (result.stderr.strip().splitlines() or ["no answer"])[-1]
            raise BuildError(f"no Docker engine answers at {where}: {reason}",
                             "start one (`inv sandbox.up` starts a private one), or set DOCKER_HOST / mvp.build.docker_host")

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False).ok

    def build(self, context: str, tags: list[str], *, dockerfile: str = "", platform: str = "",
              build_args: Mapping[str, str] | None = None, labels: Mapping[str, str] | None = None,
              network: str = "", on_line: Callable[[str], None] | None = None) -> None:
        args = ["build"]
        for tag in tags:
            args += ["--tag", tag]
        if dockerfile:
            args += ["--file", dockerfile]
        if platform:
            args += ["--platform", platform]
        if network:
            args += ["--network", network]
        for key, value in sorted((build_args or {}).items()):
            args += ["--build-arg", f"{key}={value}"]
        for key, value in sorted((labels or {}).items()):
            args += ["--label", f"{key}={value}"]
        args.append(context)
        what = f"docker build of {tags[0]}"
        result = self.run(*args, on_line=on_line, check=False, what=what)
        if is_cancelled(result):
            # Ctrl-C at a terminal reaches docker as it reaches the tool: the run was interrupted,
            # and says so once; the build did not fail.
            raise interrupted(result, what)
        if not result.ok:
            raise self.runner.failure(result, what)

    def push(self, ref: str, on_line: Callable[[str], None] | None = None) -> None:
        self.run("push", ref, on_line=on_line, what=f"docker push of {ref}")

    def login(self, registry: str, username: str, password: str) -> None:
        """`docker login`; outside a `login_session()` the credentials land in the user's docker
        config for good, so `app.push` logs in only through a session."""
        # The password goes through stdin: never argv, where `ps` and logs would show it.
        result = self.run("login", "--username", username, "--password-stdin", registry, input=password,
                          check=False)
        if result.exit_code == 127:
            raise self.runner.failure(result)
        if not result.ok:
            where = f" on {self.runner.label}" if self.runner.is_remote else ""
            raise _login_failure(registry, result, password, where)

    def login_session(self) -> "LoginSession":
        return LoginSession(self)


class LoginSession:
    """`docker login` and `docker push` whose credentials do not outlive the push, as docker/login-action
    does with `logout: true`. The first `login` makes a private DOCKER_CONFIG folder for this run (on
    the build host for remote builds); leaving the `with` block logs out and removes it, on success,
    failure or Ctrl-C alike. Without a login, push uses the user's own docker config and whatever
    credentials it holds. DOCKER_CONFIG goes through the environment: a path, never a secret."""

    def __init__(self, docker: Docker):
        self.docker = docker
        self.config_dir = ""
        self.registries: list[str] = []

    def _docker(self) -> Docker:
        if not self.config_dir:
            return self.docker
        return replace(self.docker, env={**self.docker.env, "DOCKER_CONFIG": self.config_dir})

    def login(self, registry: str, username: str, password: str) -> None:
        if not self.config_dir:
            self.config_dir = self.docker.runner.make_private_dir("mvp-docker-config-")
            if not self.docker.runner.is_remote:
                self._keep_portable_settings()
        self.registries.append(registry)
        self._docker().login(registry, username, password)

    def push(self, ref: str, on_line: Callable[[str], None] | None = None) -> None:
        self._docker().push(ref, on_line=on_line)

    def _keep_portable_settings(self) -> None:
        # Only for local runs: a build host's docker is used as it comes (its default engine or
        # mvp.build.docker_host), so there is nothing of the user's to keep there.
        source = get_docker_config_dir()
        try:
            with open(os.path.join(source, "config.json"), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            return
        kept = {key: config[key] for key in PORTABLE_SETTINGS if isinstance(config, dict) and key in config}
        if not kept:
            return
        contexts = os.path.join(source, "contexts")
        try:
            with open(os.path.join(self.config_dir, "config.json"), "w", encoding="utf-8") as handle:
                json.dump(kept, handle)
            if "currentContext" in kept and os.path.isdir(contexts):
                # A link, not a copy: the contexts' TLS keys stay where they are, and removing the
                # folder removes only the link.
                os.symlink(contexts, os.path.join(self.config_dir, "contexts"))
        except OSError as exc:
            raise BuildError(f"cannot write the temporary docker config {self.config_dir}: {exc.strerror or exc}",
                             "set TMPDIR to a writable folder") from None

    @staticmethod
    def _logout(docker: Docker, registry: str) -> None:
        # Erases the credentials wherever login put them: this folder's config.json, or a credential
        # helper docker chose by itself (a config without `credsStore` makes it use
        # docker-credential-secretservice or -pass when one is installed).
        try:
            docker.run("logout", registry, check=False)
        except BuildError:
            pass  # the build host went away: removing the folder is tried all the same

    def __enter__(self) -> "LoginSession":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.config_dir:
            return
        docker, folder = self._docker(), self.config_dir
        self.config_dir = ""
        try:
            for registry in self.registries:
                self._logout(docker, registry)
        finally:
            try:
                problem = docker.runner.remove_dir(folder)
            except BuildError as error:  # the build host went away
                problem = error.message
        if problem and exc_type is None:
            where = f" on {docker.runner.label}" if docker.runner.is_remote else ""
            raise BuildError(f"could not remove the temporary docker config {folder}{where}: {problem}",
                             "remove it by hand: it holds the registry credentials")
