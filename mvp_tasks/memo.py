"""Answers a run computes once and shares between its threads.

Many targets of one run ask the same question: who the caller is, what the cluster's stack holds,
whether a Docker engine answers, which files changed between two commits. A `Memo` computes each
answer once per run (per key); threads that ask while it is being computed wait for it rather than
asking again. A failure is handed to the threads that waited for that computation, and is not
kept: the next one to ask computes it anew.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable


class _Pending:
    """One computation under way: its waiters sleep on `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Memo:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, Any] = {}
        self._pending: dict[Hashable, _Pending] = {}

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """`compute()`'s answer for `key`, computed once; nothing is held while it runs."""
        with self._lock:
            if key in self._values:
                return self._values[key]
            pending = self._pending.get(key)
            mine = pending is None
            if mine:
                pending = self._pending[key] = _Pending()
        if not mine:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.value
        try:
            pending.value = compute()
        except BaseException as exc:
            pending.error = exc
            raise
        else:
            with self._lock:
                self._values[key] = pending.value
            return pending.value
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()

    def forget(self, key: Hashable) -> None:
        """Drop the answer kept for `key`: the next `get` computes it anew."""
        with self._lock:
            self._values.pop(key, None)


def remember(memo: Memo | None, key: Hashable, compute: Callable[[], Any]) -> Any:
    """`memo.get(key, compute)`, or just `compute()` where there is no memo (a one-off call)."""
    return compute() if memo is None else memo.get(key, compute)
