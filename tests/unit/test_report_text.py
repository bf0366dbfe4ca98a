"""What AWS, a build or a container says is shown as text, on every output path of the reporter:
never parsed as rich markup (a parameter name like `[/mvp/stage/web/API_KEY]` is a closing tag to
rich), never passed to the terminal as control sequences (ESC, OSC 52, C1 codes)."""

from __future__ import annotations

import io
import re
import sys

import pytest

from mvp_tasks.report import Outcome, Reporter, printable
from mvp_tasks.status.logs import format_event

MARKUP = "parameter [/mvp/stage/web/API_KEY] updated [bold]x[/bold]"
# A clear-screen, an OSC 52 clipboard write (ended by BEL), a C1 CSI, a carriage return and DEL.
HOSTILE = "a\x1b[2Jb \x1b]52;c;ZXZpbA==\x07 c\x9b31m d\re\x7f"
SHOWN = "a\\x1b[2Jb \\x1b]52;c;ZXZpbA==\\x07 c\\x9b31m d\\x0de\\x7f"
# What may reach a plain stream: printable text, tabs and newlines only.
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal() -> tuple[Reporter, TtyStream]:
    stream = TtyStream()
    return Reporter(stream=stream, interactive=True), stream


def plain() -> tuple[Reporter, io.StringIO]:
    stream = io.StringIO()
    return Reporter(stream=stream, interactive=False), stream


def without_styles(text: str) -> str:
    """A terminal's output without rich's own SGR and cursor sequences (what rich may send)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


# --- markup ------------------------------------------------------------------------------------


def test_a_live_line_with_brackets_is_shown_as_it_is():
    r, stream = terminal()
    with r.live(["web@stage", "api@stage"]):
        r.event(MARKUP, target="web@stage")
        r.event(MARKUP, failed=True, target="api@stage")
        r.result("web@stage", Outcome.CHANGED, MARKUP)
    assert MARKUP in without_styles(stream.getvalue())


def test_a_table_cell_with_brackets_on_a_terminal_is_shown_as_it_is():
    r, stream = terminal()
    r.table(["target", "message"], [["web@stage", MARKUP]], title="[/title]")
    out = without_styles(stream.getvalue())
    assert "[/mvp/stage/web/API_KEY]" in out and "[bold]x[/bold]" in out and "[/title]" in out


def test_plan_lines_and_progress_with_brackets_on_a_terminal():
    r, stream = terminal()
    r.plan("web@stage", [f"~ {MARKUP}"])
    with r.progress(MARKUP):
        pass
    assert MARKUP in without_styles(stream.getvalue())


def test_a_question_with_brackets_is_asked_as_it_is(monkeypatch):
    r, stream = terminal()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    r.confirm("delete [/mvp/stage/web/API_KEY]")
    assert "delete [/mvp/stage/web/API_KEY]?" in without_styles(stream.getvalue())


# --- control characters ------------------------------------------------------------------------


def test_printable_shows_control_characters_and_keeps_tabs_and_newlines():
    assert printable(HOSTILE) == SHOWN
    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable("a\nb", keep="\t") == "a\\x0ab"
    assert printable("café ünïcode ✓") == "café ünïcode ✓"


def test_every_plain_output_path_shows_control_characters():
    r, stream = plain()
    r.header(HOSTILE)
    r.info(HOSTILE)
    r.warn(HOSTILE)
    r.plan("web@stage", [HOSTILE])
    r.event(HOSTILE, target="web@stage")
    with r.progress(HOSTILE):
        pass
    r.table(["message"], [[HOSTILE]], title=HOSTILE)
    r.failed("web@stage", HOSTILE)
    out = stream.getvalue()
    assert not RAW_CONTROL.search(out), repr(out)
    assert out.count(SHOWN) == 9, out


def test_every_terminal_output_path_shows_control_characters(monkeypatch):
    r, stream = terminal()
    r.info(HOSTILE)
    r.plan("web@stage", [HOSTILE])
    with r.live(["web@stage"]):
        r.event(HOSTILE, target="web@stage")
        r.event(HOSTILE, failed=True, target="web@stage")
    with r.progress(HOSTILE):
        pass
    r.table(["message"], [[HOSTILE]])
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    r.confirm(HOSTILE)
    out = without_styles(stream.getvalue())
    assert not RAW_CONTROL.search(out), repr(out)
    assert SHOWN in out


def test_a_failure_message_is_kept_printable_for_the_error_line_on_stderr():
    r, _ = plain()
    r.failed("web@stage", f"stack failed: {HOSTILE}")
    assert r.recap.failures[0].message == f"stack failed: {SHOWN}"


def test_a_container_log_line_is_shown_not_obeyed():
    line = format_event({"timestamp": 0, "logStreamName": "web/web/0123456789", "message": f"{HOSTILE}\n"})
    assert line == f"00:00:00 01234567 {SHOWN}"
    assert format_event({"timestamp": 0, "logStreamName": "s", "message": "a\tb\nc"}).endswith("a\tb\nc")


@pytest.mark.parametrize("text", ["\x1b]52;c;ZXZpbA==\x1b\\", "\x90secret\x9c", "\x00\x01\x1f"])
def test_no_control_character_survives(text):
    assert not RAW_CONTROL.search(printable(text)) and "\\x" in printable(text)
