"""Signals, in one place: the first SIGINT (Ctrl-C) or SIGTERM asks the run to stop, a second ends it.

PROVISIONAL (replaced by the signals branch's version, same API).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def handle_interrupts(on_first: Callable[[str], None], on_again: Callable[[str], None] | None = None) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = [0]

    def handler(signum, frame):
        name = signal.Signals(signum).name
        count[0] += 1
        if count[0] > 1 and on_again is not None:
            on_again(name)
            return
        if count[0] > 1:
            raise SystemExit(130)
        on_first(name)

    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        wanted.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, handler) for sig in wanted}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
