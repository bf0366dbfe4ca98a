"""`Memo`: an answer many threads of a run ask for is computed once; a failure is not kept."""

from __future__ import annotations

import threading

import pytest

from mvp_tasks.errors import MvpError
from mvp_tasks.memo import Memo, remember


def test_threads_asking_at_once_share_one_computation():
    memo = Memo()
    calls = []
    inside = threading.Event()
    go = threading.Event()

    def compute():
        calls.append(1)
        inside.set()
        assert go.wait(10)
        return "answer"

    answers = []
    first = threading.Thread(target=lambda: answers.append(memo.get("k", compute)))
    first.start()
    assert inside.wait(10)
    others = [threading.Thread(target=lambda: answers.append(memo.get("k", compute))) for _ in range(5)]
    for thread in others:
        thread.start()
    go.set()
    for thread in [first, *others]:
        thread.join(10)

    assert answers == ["answer"] * 6 and calls == [1]
    assert memo.get("k", lambda: "another") == "answer"
    memo.forget("k")
    assert memo.get("k", lambda: "another") == "another"


def test_a_failure_reaches_its_waiters_and_is_not_kept():
    memo = Memo()
    inside = threading.Event()
    go = threading.Event()

    def broken():
        inside.set()
        assert go.wait(10)
        raise MvpError("no engine answers")

    errors = []

    def ask():
        try:
            memo.get("k", broken)
        except MvpError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=ask)
    first.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=ask)
    waiter.start()
    go.set()
    first.join(10)
    waiter.join(10)

    assert errors == ["no engine answers"] * 2
    assert memo.get("k", lambda: "fine now") == "fine now"


def test_without_a_memo_remember_just_computes():
    assert remember(None, "k", lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        remember(Memo(), "k", lambda: 1 / 0)
