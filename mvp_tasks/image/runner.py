"""One runner for shell commands, locally (an Invoke `Context`) or on a build host (a Fabric
`Connection`, which *is* an Invoke `Context`): git, git-lfs and docker helpers never care which.

Commands are argument lists; they are quoted with `shlex.join` only here, at the last step.
Secrets go through standard input (`input=`), never argv or the environment of a logged command.
Streamed output reaches `on_line` as whole lines only, locally and over SSH alike.
"""

from __future__ import annotations

import io
import re
import shlex
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import BuildError

TAIL_LINES = 25
# What `mktemp -d` may answer on a build host: it is put into later commands and environments.
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(text[-lines:])


class _LineSink(io.TextIOBase):
    """A file-like object that hands each complete output line to a callback and keeps a tail.

    Invoke (and Fabric, which reuses its runner) writes whatever chunk a read returned and calls
    `flush()` after every write, so a chunk often ends in the middle of a line: `flush()` must not
    pass the partial line on. Only `finish()`, once the command is over, hands over the rest."""

    def __init__(self, on_line: Callable[[str], None] | None):
        self.on_line = on_line
        self.buffer = ""
        self.tail: deque[str] = deque(maxlen=200)

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        if self.on_line:
            self.on_line(line)

    def flush(self) -> None:
        # Called after every chunk; the partial line waits for the rest (see the class docstring).
        pass

    def finish(self) -> None:
        """Pass on the last line when the output did not end with a newline."""
        if self.buffer:
            self._emit(self.buffer)
            self.buffer = ""


class Runner:
    """Runs argument lists on `context` (Invoke Context or Fabric Connection)."""

    def __init__(self, context: Any, label: str = "local"):
        self.context = context
        self.label = label

    @classmethod
    def local(cls) -> "Runner":
        from invoke import Context

        return cls(Context(), "local")

    @classmethod
    def remote(cls, host: str, connect_kwargs: Mapping[str, Any] | None = None, connect_timeout: int = 10) -> "Runner":
        from fabric import Connection

        connection = Connection(host, connect_kwargs=dict(connect_kwargs or {}), connect_timeout=connect_timeout)
        return cls(connection, f"ssh {host}")

    @property
    def is_remote(self) -> bool:
        return self.label != "local"

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None,
            env: Mapping[str, str] | None = None, on_line: Callable[[str], None] | None = None,
            check: bool = True, what: str = "") -> CommandResult:
        """Run `argv`; stream its output lines to `on_line` if given; raise `BuildError` on failure
        (with the output's tail) unless `check=False`."""
        argv = tuple(str(a) for a in argv)
        command = shlex.join(argv)
        kwargs: dict[str, Any] = {"warn": True, "hide": True, "pty": False,
                                  "in_stream": io.StringIO(input) if input is not None else False}
        if env:
            kwargs["env"] = dict(env)
        out = err = None
        if on_line is not None:
            out, err = _LineSink(on_line), _LineSink(on_line)
            kwargs.update(out_stream=out, err_stream=err, hide=False)
        try:
            if cwd:
                with self.context.cd(cwd):
                    result = self.context.run(command, **kwargs)
            else:
                result = self.context.run(command, **kwargs)
        except Exception as exc:  # connection failures from paramiko/socket, missing shells
            raise self._connection_error(exc) from None
        finally:
            for sink in (out, err):
                if sink is not None:
                    sink.finish()
        stdout = result.stdout if out is None else "\n".join(out.tail)
        stderr = result.stderr if err is None else "\n".join(err.tail)
        done = CommandResult(argv, result.exited, stdout, stderr)
        if check and not done.ok:
            raise self.failure(done, what)
        return done

    def failure(self, result: CommandResult, what: str = "") -> BuildError:
        program = result.argv[0] if result.argv else "command"
        where = f" on {self.label}" if self.is_remote else ""
        if result.exit_code == 127:
            return BuildError(f"{program} is not installed{where} (exit 127)",
                              "install it, or set mvp.build.docker / PATH to point at it")
        tail = result.tail(12).replace("\n", "\n    ")
        title = what or f"`{shlex.join(result.argv[:3])}`"
        return BuildError(f"{title} failed{where} (exit {result.exit_code}); last output:\n    {tail}")

    def put(self, local_path: str, remote_path: str) -> None:
        if not self.is_remote:
            raise BuildError("put() needs a remote build host")
        try:
            self.context.put(local_path, remote=remote_path)
        except Exception as exc:
            raise self._connection_error(exc) from None

    def make_private_dir(self, prefix: str) -> str:
        """A new folder only this user can open (mode 0700), in the temporary folder of wherever the
        commands run (this machine, or the build host): for files that must not outlive the run."""
        if not self.is_remote:
            try:
                return tempfile.mkdtemp(prefix=prefix)
            except OSError as exc:
                raise BuildError(f"cannot create a private temporary folder: {exc.strerror or exc}",
                                 "set TMPDIR to a writable folder") from None
        # mktemp -d makes the folder with mode 0700, under $TMPDIR or /tmp of the build host.
        result = self.run(["mktemp", "-d", "-t", f"{prefix}XXXXXXXXXX"], check=False)
        path = result.stdout.strip()
        if not result.ok or not SAFE_PATH.fullmatch(path):
            reason = (result.stderr.strip().splitlines() or [f"mktemp answered {path[:80]!r}"])[-1]
            raise BuildError(f"cannot create a private temporary folder on build host {self.label[4:]}: {reason}",
                             "make TMPDIR (or /tmp) writable there")
        return path

    def remove_dir(self, path: str) -> str:
        """Remove a folder `make_private_dir` made, with everything in it. Returns "" when it is gone,
        else why not (the caller decides whether that is an error)."""
        if not self.is_remote:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                return f"{exc.strerror or exc}: {exc.filename or path}"
            return ""
        result = self.run(["rm", "-rf", "--", path], check=False)
        return "" if result.ok else (result.stderr.strip().splitlines() or [f"exit {result.exit_code}"])[-1]

    def _connection_error(self, exc: Exception) -> BuildError:
        if self.is_remote:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return BuildError(
                f"cannot run commands on build host {self.label[4:]}: {reason}",
                "check mvp.build.host / --host, that sshd runs there and that your key is accepted",
            )
        return BuildError(f"cannot run a local command: {exc}")

    def close(self) -> None:
        close = getattr(self.context, "close", None)
        if self.is_remote and close:
            close()
