"""Ctrl-C and SIGTERM, one way for the whole tool: `handle_interrupts(on_first, on_again)`.

A deploy tool is stopped in two ways: a person presses Ctrl-C (SIGINT), a CI runner cancels a job
(SIGTERM, then SIGKILL a few seconds later). Both mean "stop, and leave nothing half-done", so both
go to the same callbacks. A second one means "stop now": by default the process exits at once with
130, whatever threads are still waiting on AWS.

This module only routes signals: it does not print (the callbacks decide what is said) and does not
import Invoke.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator

__all__ = ["INTERRUPTED", "exit_at_once", "handle_interrupts"]

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a job stopped by Ctrl-C


def exit_at_once(code: int = INTERRUPTED) -> None:
    """End the process now: flush stdout and stderr, then `os._exit(code)`. No `finally` blocks run
    and no thread is waited for (SystemExit would wait for every worker blocked on a call)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def handle_interrupts(on_first: Callable[[str], None],
                      on_again: Callable[[str], None] | None = None) -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM calls `on_first(name)` ("SIGINT" or "SIGTERM") in the
    main thread; it may raise (KeyboardInterrupt aborts a prompt or unwinds to a cleanup) or return
    (the work goes on and is expected to stop itself). Every later one, of either kind, calls
    `on_again(name)`; without `on_again` the process exits at once with 130 (`exit_at_once`).

    The callbacks run as Python runs any signal handler: in the main thread, between two of its
    bytecodes, wherever it is (inside a `print`, holding a lock), and a second signal's inside the
    first's. So keep them short: set an event, raise, write with a guard; never wait for a lock the
    main thread may hold. A main thread blocked in one call without a timeout may notice a signal
    only when that call returns: wait in steps (the engine's 0.2 s) or on `signal.set_wakeup_fd`.

    Outside the main thread (where Python cannot set handlers) it does nothing. On leaving, the
    handlers found on entry are put back; nesting works the same way.

    SIGINT that is ignored on entry stays ignored. A shell that runs a script starts every
    background job (`cmd &`, also `nohup cmd &`) with SIGINT and SIGQUIT ignored, so a Ctrl-C at
    the terminal reaches only the foreground job; Python keeps that SIG_IGN instead of installing
    its KeyboardInterrupt handler, and so does this. Such a job is stopped with SIGTERM, which is
    always handled.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    received: list[str] = []

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        received.append(name)
        if len(received) == 1:
            on_first(name)
        elif on_again is not None:
            on_again(name)
        else:
            exit_at_once()

    signums = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signums.append(signal.SIGINT)
    previous: dict[int, Any] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, before in previous.items():
            # None: the handler on entry was not set from Python and cannot be put back.
            signal.signal(signum, signal.SIG_DFL if before is None else before)
