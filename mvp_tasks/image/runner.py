"""One runner for shell commands, locally (an Invoke `Context`) or on a build host (a Fabric
`Connection`, which *is* an Invoke `Context`): git, git-lfs and docker helpers never care which.

Commands are argument lists; they are quoted with `shlex.join` only here, at the last step.
Secrets go through standard input (`input=`), never argv or the environment of a logged command.
Streamed output reaches `on_line` as whole lines only, locally and over SSH alike.
A build host is trusted by its SSH host key only: it must be in known_hosts (OpenSSH's files and
`mvp.build.known_hosts`); an unknown or changed key ends the connection before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import BuildError, MvpError

TAIL_LINES = 25
# How a command ends when Ctrl-C (SIGINT) or a CI's cancel (SIGTERM) reaches it: a terminal sends
# the signal to the whole foreground process group, so the command gets it as the tool does.
# Negative: killed by the signal (Invoke gives Popen's return code); 128+N: a shell said so.
INTERRUPT_EXITS = frozenset({-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM})
# What `mktemp -d` may answer on a build host: it is put into later commands and environments.
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")
# OpenSSH's own lists of trusted host keys (UserKnownHostsFile, GlobalKnownHostsFile).
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


class UnknownHostKey(Exception):
    """Raised by the missing-host-key policy: the host is in no known_hosts file we read."""

    def __init__(self, name: str, key: Any):
        super().__init__(f"{name} is not in known_hosts")
        self.name = name
        self.key = key


def _reject_unknown_hosts() -> Any:
    """paramiko's RejectPolicy, keeping the key it refused so the error can show its fingerprint."""
    from paramiko import RejectPolicy

    class RejectUnknownHosts(RejectPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise UnknownHostKey(hostname, key)

    return RejectUnknownHosts()


def get_known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host` on port 22, `[host]:port` elsewhere."""
    return host if port == 22 else f"[{host}]:{port}"


def get_fingerprint(key: Any) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a paramiko key (what `ssh-keygen -lf` shows)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def find_known_host_line(files: Sequence[str], name: str, key: Any) -> tuple[str, int] | None:
    """The first (file, line number) whose entry for `name` holds `key` (hashed names included)."""
    from paramiko.hostkeys import HostKeyEntry, HostKeys

    for path in files:
        try:
            with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as fh:
                lines = list(fh)
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith(("#", "@")):
                continue
            try:
                entry = HostKeyEntry.from_line(line, number)
            except Exception:  # a line paramiko cannot read is not the line that matched
                continue
            if entry is None or entry.key != key:
                continue
            for pattern in entry.hostnames:
                if pattern == name or (pattern.startswith("|1|") and HostKeys.hash_host(name, pattern) == pattern):
                    return path, number
    return None


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def interrupted(self) -> bool:
        """The command ended because the interrupt (Ctrl-C, SIGTERM) reached it."""
        return self.exit_code in INTERRUPT_EXITS

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

    def __init__(self, context: Any, label: str = "local", known_hosts: Sequence[str] = ()):
        self.context = context
        self.label = label
        # The known_hosts files the build host's key was checked against (extra ones first).
        self.known_hosts = tuple(known_hosts)

    @classmethod
    def local(cls) -> "Runner":
        from invoke import Context

        return cls(Context(), "local")

    @classmethod
    def remote(cls, host: str, connect_kwargs: Mapping[str, Any] | None = None, connect_timeout: int = 10,
               known_hosts: Sequence[str] = ()) -> "Runner":
        """A runner on `host` over SSH that trusts the host only by a key in known_hosts: the files
        in `known_hosts` (checked first), then ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts."""
        from fabric import Connection

        connection = Connection(host, connect_kwargs=dict(connect_kwargs or {}), connect_timeout=connect_timeout)
        files = [*known_hosts, USER_KNOWN_HOSTS]
        if os.path.exists(GLOBAL_KNOWN_HOSTS):
            files.append(GLOBAL_KNOWN_HOSTS)
        # Fabric's default is AutoAddPolicy with no known_hosts: whoever answers would get the
        # build context and the registry password. A ProxyJump gateway is checked the same way.
        hop = connection
        while isinstance(hop, Connection):
            _trust_known_hosts_only(hop.client, files, optional={USER_KNOWN_HOSTS, GLOBAL_KNOWN_HOSTS})
            hop = hop.gateway
        return cls(connection, f"ssh {host}", files)

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

    def failure(self, result: CommandResult, what: str = "") -> MvpError:
        """The error for a command that failed: the run's `Interrupted` when the interrupt ended it
        (said once, by the run, not as a failure of the command), else a `BuildError` with its tail."""
        if result.interrupted:
            return interrupted(result, what)
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
            refused = self._host_key_error(exc)
            if refused is not None:
                return refused
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return BuildError(
                f"cannot run commands on build host {self.label[4:]}: {reason}",
                "check mvp.build.host / --host, that sshd runs there and that your key is accepted",
            )
        return BuildError(f"cannot run a local command: {exc}")

    def _host_key_error(self, exc: Exception) -> BuildError | None:
        """One line for a host key that is not trusted, saying how to trust it; None otherwise."""
        from paramiko import BadHostKeyException

        if not isinstance(exc, (UnknownHostKey, BadHostKeyException)):
            return None
        host, port = self.context.host, self.context.port
        name = get_known_hosts_name(host, port)
        keyscan = shlex.join(["ssh-keyscan", *(["-p", str(port)] if port != 22 else []), host])
        # Into the first file read: mvp.build.known_hosts when it is set, else OpenSSH's own.
        add = f"`{keyscan} >> {_shown(self.known_hosts[0])}`"
        if isinstance(exc, UnknownHostKey):
            files = ", ".join(_shown(f) for f in self.known_hosts)
            return BuildError(
                f"build host {host}:{port} is not in known_hosts ({files}): check its key fingerprint "
                f"{get_fingerprint(exc.key)} out of band, then add it with {add}"
            )
        found = find_known_host_line(self.known_hosts, name, exc.expected_key)
        where = f"{_shown(found[0])} line {found[1]}" if found else f"the key known_hosts holds for {name}"
        remove = (f"`{shlex.join(['ssh-keygen', '-R', name, '-f', os.path.expanduser(found[0])])}`"
                  if found else f"remove the old key of {name}")
        return BuildError(
            f"build host {host}:{port} sent the {exc.key.get_name()} key {get_fingerprint(exc.key)}, which does not "
            f"match {where} ({get_fingerprint(exc.expected_key)}): possible man-in-the-middle, nothing was sent; "
            f"if the host's key changed on purpose, check the new fingerprint out of band, then run {remove} "
            f"and add it with {add}"
        )

    def close(self) -> None:
        close = getattr(self.context, "close", None)
        if self.is_remote and close:
            close()


def interrupted(result: CommandResult, what: str = "") -> MvpError:
    """The run's `Interrupted` for a command the interrupt stopped."""
    from ..errors import Interrupted

    return Interrupted(f"interrupted: {what or shlex.join(result.argv[:3])} was stopped")


def _shown(path: str) -> str:
    """A known_hosts path as a person wrote it (~ kept), quoted for a shell when it needs it."""
    return path if path.startswith("~/") and re.fullmatch(r"[~A-Za-z0-9._/-]+", path) else shlex.quote(path)


def _trust_known_hosts_only(client: Any, files: Sequence[str], optional: set[str]) -> None:
    """Load every known_hosts file into `client` and reject any host they do not list."""
    from paramiko.hostkeys import InvalidHostKey

    for path in files:
        full = os.path.expanduser(path)
        if path in optional and not os.path.exists(full):
            continue
        try:
            # Loaded as system keys: paramiko never writes them back.
            client.load_system_host_keys(full)
        except InvalidHostKey as exc:
            raise BuildError(f"known_hosts file {path} has a line that is not a host key: {str(exc.line)[:60]!r}",
                             "fix or remove that line") from None
        except OSError as exc:
            raise BuildError(f"cannot read known_hosts file {path}: {exc.strerror or exc}",
                             "check its permissions" if path in optional else "check mvp.build.known_hosts") from None
    client.set_missing_host_key_policy(_reject_unknown_hosts())
