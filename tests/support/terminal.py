"""`inv` on a pseudo-terminal, as a person runs it: no CI variable, a TERM, and the screen read back."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time
from pathlib import Path

from .signals import spawn, stop

BIN = Path(sys.executable).parent


def run_on_a_terminal(cwd, args, env, timeout=120.0, interrupt_at: str = "",
                      answers: dict[str, str] | None = None) -> tuple[int, str]:
    """`inv ARGS` on a pseudo-terminal; with `interrupt_at`, SIGINT as soon as that text is on
    screen; `answers`: once a prompt's text is on screen, its answer is typed (with Enter)."""
    answers = dict(answers or {})
    master, slave = pty.openpty()
    env = {k: v for k, v in env.items() if k != "CI"}  # a person, not CI
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    # spawn: SIGINT at its default whatever the test run inherited; a session of its own, so the
    # terminal the tests run in is not its controlling terminal (getpass falls back to the pty).
    proc = spawn([BIN / "inv", *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
                screen = b"".join(chunks).decode("utf-8", "replace")
                if interrupt_at and interrupt_at in screen:
                    proc.send_signal(signal.SIGINT)
                    interrupt_at = ""
                for prompt in [p for p in answers if p in screen]:
                    os.write(master, answers.pop(prompt).encode() + b"\r")
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        stop(proc)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")
