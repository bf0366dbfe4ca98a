"""The container CLI (docker, or podman: same verbs) through the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import BuildError
from .runner import Runner


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
        self.run(*args, on_line=on_line, what=f"docker build of {tags[0]}")

    def push(self, ref: str, on_line: Callable[[str], None] | None = None) -> None:
        self.run("push", ref, on_line=on_line, what=f"docker push of {ref}")

    def login(self, registry: str, username: str, password: str) -> None:
        # The password goes through stdin: never argv, where `ps` and logs would show it.
        self.run("login", "--username", username, "--password-stdin", registry, input=password,
                 what=f"docker login to {registry}")
