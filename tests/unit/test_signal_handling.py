"""mvp_tasks/interrupts.py: real SIGINT and SIGTERM sent to a child python that uses
`handle_interrupts`, which says on stdout what its callbacks were given; the test waits for those
lines (never for time) and reads the child's signal dispositions from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is no package: bare `pytest` does not put the root on sys.path
    sys.path.insert(0, str(ROOT))

from mvp_tasks.interrupts import handle_interrupts  # noqa: E402
from tests.support.signals import Child, as_background_job, dispositions  # noqa: E402

# argv[1]: "again" (an on_again that says so), "default" (no on_again) or "raise" (on_first raises).
# The callbacks run between any two bytecodes of the main thread, even inside a `print` of it, and a
# second one inside the first: so every line is written with os.write (no buffer, no lock), but for
# on_first's "first NAME", left in sys.stdout's buffer for exit_at_once or the exit to flush.
CHILD = r"""
import os, select, signal, sys
from mvp_tasks.interrupts import handle_interrupts

mode = sys.argv[1]

def say(*words, fd=1):
    os.write(fd, (" ".join(map(str, words)) + "\n").encode())

def first(name):
    if mode == "raise":
        raise KeyboardInterrupt(name)
    sys.stdout.write(f"first {name}\n")
    say("handled", name, fd=2)  # the test's cue: the callback's last act

def again(name):
    say("again", name, fd=2)

# Python runs a handler between bytecodes: a signal that lands just before a blocking read would
# wait for that read to end. The wakeup fd ends the wait instead.
woken, wake = os.pipe()
os.set_blocking(wake, False)
signal.set_wakeup_fd(wake)
received = b""

def wait_for(command):
    global received
    while True:
        while b"\n" in received:
            line, received = received.split(b"\n", 1)
            if line.decode().strip() == command:
                return
        ready, _, _ = select.select([0, woken], [], [])
        if woken in ready:
            os.read(woken, 512)
        if 0 in ready:
            received += os.read(0, 512) or sys.exit("stdin closed")

before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
try:
    with handle_interrupts(first, again if mode == "again" else None):
        say("inside")
        wait_for("leave")
except KeyboardInterrupt as exc:
    say("caught KeyboardInterrupt", exc)
after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
say("restored", after == before)
wait_for("end")
say("ended")
"""


def start(mode: str, background: bool = False) -> Child:
    args = [sys.executable, "-c", CHILD, mode]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as by default
    return Child(as_background_job(args) if background else args, cwd=ROOT, env=env, stdin=subprocess.PIPE)


def tell(child: Child, command: str) -> None:
    child.proc.stdin.write(command + "\n")
    child.proc.stdin.flush()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_the_first_signal_calls_on_first_with_its_name_and_the_work_goes_on(signum):
    with start("again") as child:
        child.wait_for_output("inside")
        assert dispositions(child.proc.pid) == {"SIGINT": "caught", "SIGTERM": "caught"}
        child.send(signum)
        child.wait_for_output(f"handled {signal.Signals(signum).name}")
        tell(child, "leave")
        child.wait_for_output("restored True")
        tell(child, "end")
        code, out, _ = child.finish(timeout=30)
    assert code == 0
    assert out.splitlines() == ["inside", "restored True", "ended", f"first {signal.Signals(signum).name}"]


def test_every_later_signal_of_either_kind_calls_on_again():
    with start("again") as child:
        child.wait_for_output("inside")
        child.send(signal.SIGINT)
        child.wait_for_output("handled SIGINT")  # else two signals could be handled as one
        child.send(signal.SIGTERM)
        child.wait_for_output("again SIGTERM")
        child.send(signal.SIGINT)
        child.wait_for_output("again SIGINT")
        tell(child, "leave")
        tell(child, "end")
        code, out, err = child.finish(timeout=30)
    assert code == 0
    assert err.splitlines() == ["handled SIGINT", "again SIGTERM", "again SIGINT"]
    assert out.splitlines() == ["inside", "restored True", "ended", "first SIGINT"]


def test_without_on_again_a_second_signal_exits_at_once_with_130_and_flushes_what_was_said():
    with start("default") as child:
        child.wait_for_output("inside")
        child.send(signal.SIGTERM)
        child.wait_for_output("handled SIGTERM")
        assert child.stdout == "inside\n"  # "first SIGTERM" is still in the child's buffer
        child.send(signal.SIGINT)
        code, out, err = child.finish(timeout=30)
    assert code == 130, err
    assert out.splitlines() == ["inside", "first SIGTERM"]  # flushed; no `finally` ran: no "restored"
    assert err == "handled SIGTERM\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_on_first_may_raise_keyboard_interrupt_and_the_handlers_are_put_back(signum):
    with start("raise") as child:
        child.wait_for_output("inside")
        child.send(signum)
        child.wait_for_output(f"caught KeyboardInterrupt {signal.Signals(signum).name}")
        child.wait_for_output("restored True")
        assert dispositions(child.proc.pid) == {"SIGINT": "caught", "SIGTERM": "default"}  # Python's own again
        child.send(signal.SIGTERM)  # the default: the process ends by the signal
        code, out, _ = child.finish(timeout=30)
    assert code == -signal.SIGTERM
    assert "ended" not in out


def test_sigint_ignored_at_start_stays_ignored_and_sigterm_is_handled():
    with start("again", background=True) as child:
        child.wait_for_output("inside")
        assert dispositions(child.proc.pid) == {"SIGINT": "ignored", "SIGTERM": "caught"}
        # Had SIGINT been caught, it would be handled first (the lower number is delivered first,
        # and Python runs pending handlers in that order too).
        child.send(signal.SIGINT)
        child.send(signal.SIGTERM)
        child.wait_for_output("handled SIGTERM")
        tell(child, "leave")
        child.wait_for_output("restored True")
        assert dispositions(child.proc.pid) == {"SIGINT": "ignored", "SIGTERM": "default"}
        tell(child, "end")
        code, out, _ = child.finish(timeout=30)
    assert code == 0
    assert out.splitlines() == ["inside", "restored True", "ended", "first SIGTERM"]


def test_handlers_are_put_back_on_leaving_also_when_nested():
    def previous(signum, frame):  # pragma: no cover - never called
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, previous)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever this test run inherited
    try:
        with handle_interrupts(print):
            outer = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            assert outer[signal.SIGTERM] is not previous
            assert outer[signal.SIGINT] is not signal.default_int_handler
            with handle_interrupts(print):
                assert signal.getsignal(signal.SIGTERM) is not outer[signal.SIGTERM]
            assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == outer
        assert signal.getsignal(signal.SIGTERM) is previous
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_outside_the_main_thread_it_does_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    seen = []

    def work():
        with handle_interrupts(print):
            seen.append({s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)})

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(30)
    assert seen == [before]
