"""Child processes a test sends signals to, started the same way whatever the test run inherited.

A test run started as a background job of a script (`./.ci/run &`, `nohup pytest &`) inherits SIGINT
ignored, and an ignored signal stays ignored across fork and exec: every child then ignores Ctrl-C
too (Python does not install its KeyboardInterrupt handler when SIGINT is ignored at start, and the
tool keeps it ignored). A signal blocked in the test process is blocked in the child as well. So a
child that is to be sent a signal is started with `spawn`, which gives it SIGINT and SIGTERM at
their defaults and unblocked, as a command typed at an interactive shell has them, and a session of
its own: no controlling terminal (it never reads or writes the terminal the tests run in, and a
Ctrl-C there does not reach it), and `stop` ends it and whatever it started.

`Child` adds what a test waits on instead of sleeping: `wait_for_output(text)` (a "ready" line, or
the line a handler prints) and `wait_until(predicate)`, both failing at once if the child ended.

    with Child([BIN / "inv", "app.update", "web"], cwd=work, env=env) as child:
        proxy.wait_for("DescribeStacks")
        child.send(signal.SIGINT)
        child.wait_for_output("Ctrl-C again")       # the first one was handled
        child.send(signal.SIGINT)
        code, out, err = child.finish(timeout=10)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Sequence

__all__ = ["Child", "as_background_job", "dispositions", "spawn", "stop"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _defaults_in_child() -> None:
    # Runs in the child between fork and exec: only calls resolved beforehand, no imports.
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def as_background_job(args: Sequence[Any]) -> list[str]:
    """`args` run as a script runs a background job (`cmd &`): with SIGINT ignored, which exec keeps.
    For `spawn` or `Child`, which would otherwise give the child SIGINT back."""
    return [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                                  "os.execv(sys.argv[1], sys.argv[1:])", *[str(a) for a in args]]


def spawn(args: Sequence[Any], **popen: Any) -> subprocess.Popen:
    """`subprocess.Popen(args, **popen)` for a child that is sent signals: SIGINT and SIGTERM at
    their defaults and unblocked in it, in a new session (its own process group, no controlling
    terminal). End it with `stop`."""
    return subprocess.Popen([str(a) for a in args], preexec_fn=_defaults_in_child, start_new_session=True,
                            **popen)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL to the child's process group if the child still runs, then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie the kernel will not reap
        pass


class Child:
    """`spawn(args)` with stdout and stderr read as they come (text), stdin empty unless told."""

    def __init__(self, args: Sequence[Any], *, stdin: Any = subprocess.DEVNULL, **popen: Any):
        self.proc = spawn(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen)
        self._changed = threading.Condition()
        self._text = {"stdout": "", "stderr": ""}
        self._readers = [threading.Thread(target=self._read, args=(name, getattr(self.proc, name)), daemon=True)
                         for name in self._text]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            with self._changed:
                self._text[name] += line
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return self._text["stdout"]

    @property
    def stderr(self) -> str:
        with self._changed:
            return self._text["stderr"]

    def _ended(self) -> bool:
        return not any(reader.is_alive() for reader in self._readers)

    def wait_for_output(self, text: str, timeout: float = 30) -> str:
        """Block until a whole line holding `text` is on stdout or stderr; return that line. Fails
        if the child closed both first, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for output in self._text.values():
                    for line in output.splitlines(keepends=True):
                        if text in line and line.endswith("\n"):
                            return line.rstrip("\n")
                left = deadline - time.monotonic()
                if self._ended() or left <= 0:
                    why = "the child ended" if self._ended() else f"timed out; the child: {self._state()}"
                    raise AssertionError(f"{text!r} not seen ({why}); "
                                         f"stdout: {self._text['stdout']!r}; stderr: {self._text['stderr']!r}")
                self._changed.wait(min(left, 0.5))

    def _state(self) -> str:
        """The child's state and signal masks (pending, blocked, ignored, caught), from /proc."""
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
                wanted = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "Threads")
                lines = [" ".join(line.split()) for line in fh if line.startswith(wanted)]
            with open(f"/proc/{self.proc.pid}/wchan", encoding="ascii") as fh:
                lines.append(f"wchan: {fh.read()}")
        except OSError as exc:
            return str(exc)
        return "; ".join(lines)

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = 30) -> None:
        """Block until `predicate()` holds (checked every 10 ms: for state outside the child's
        output, such as a file it makes). Fails if the child ended first, or after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"the child ended (exit {self.proc.returncode}) before {what}; "
                                     f"stdout: {self.stdout!r}; stderr: {self.stderr!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting until {what}")
            time.sleep(0.01)

    def send(self, signum: int) -> None:
        """The signal to the child itself (not its group: what the child does with it is tested)."""
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for the child to end and for its output (until whatever it started that shares its
        stdout or stderr closed them too): (exit code, stdout, stderr)."""
        deadline = time.monotonic() + timeout
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        if not self._ended():
            raise subprocess.TimeoutExpired(self.proc.args, timeout, self.stdout, self.stderr)
        return self.proc.returncode, self.stdout, self.stderr

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: Any) -> None:
        stop(self.proc)
        for reader in self._readers:
            reader.join(10)
        if self._ended():  # closing a pipe another thread reads would wait for that read
            for stream in (self.proc.stdout, self.proc.stderr):
                stream.close()


def dispositions(pid: int, signums: Sequence[int] = SIGNALS) -> dict[str, str]:
    """What process `pid` does with each signal, read from /proc (Linux), no signal sent:
    "ignored", "caught" (a handler), "blocked" or "default"."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        masks = {key: int(value, 16) for key, _, value in (line.partition(":") for line in fh)
                 if key in ("SigBlk", "SigIgn", "SigCgt")}
    out = {}
    for signum in signums:
        bit = 1 << (signum - 1)
        out[signal.Signals(signum).name] = ("blocked" if masks["SigBlk"] & bit else "ignored" if masks["SigIgn"] & bit
                                            else "caught" if masks["SigCgt"] & bit else "default")
    return out
