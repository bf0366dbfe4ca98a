"""The Reporter: outcomes and the recap, check mode, confirmation without a terminal, plain output."""

from __future__ import annotations

import io
import json
import sys

import pytest

from mvp_tasks.errors import NotConfirmed
from mvp_tasks.report import Outcome, Reporter, Results, Result, is_interactive


class NoReadStdin:
    """A stdin that fails the test if anything tries to read from it."""

    def __init__(self, tty: bool = False):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def read(self, *args):
        raise AssertionError("stdin was read")

    def readline(self, *args):
        raise AssertionError("stdin was read")

    def fileno(self):
        raise AssertionError("stdin was used")


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def reporter(**kwargs) -> tuple[Reporter, io.StringIO]:
    stream = io.StringIO()
    return Reporter(stream=stream, **kwargs), stream


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# --- outcomes and the recap -------------------------------------------------------------------


def test_outcomes_are_counted_in_the_recap():
    r, stream = reporter()
    r.ok("stage")
    r.changed("prod", "updated")
    r.failed("qa", "rolled back")
    recap = r.finish()
    assert recap.counts() == {"ok": 1, "changed": 1, "skipped": 0, "failed": 1}
    assert lines(stream)[-1] == "recap: ok=1 changed=1 skipped=0 failed=1"
    assert recap.failed is True


def test_recap_is_not_failed_without_a_failure():
    r, stream = reporter()
    r.ok("stage")
    r.changed("prod")
    r.result("qa", Outcome.SKIPPED, "not mapped")
    recap = r.finish()
    assert recap.failed is False
    assert lines(stream)[-1] == "recap: ok=1 changed=1 skipped=1 failed=0"


def test_empty_recap():
    recap = Results()
    assert recap.line() == "recap: ok=0 changed=0 skipped=0 failed=0"
    assert recap.failed is False
    recap.add(Result("x", Outcome.FAILED))
    assert recap.failed is True


def test_each_result_is_one_line_with_outcome_target_and_message():
    r, stream = reporter()
    returned = r.result("museum-adventure", Outcome.SKIPPED, "not mapped to qa")
    assert returned == Result("museum-adventure", Outcome.SKIPPED, "not mapped to qa")
    assert lines(stream) == ["skipped: museum-adventure  not mapped to qa"]


# --- check mode -------------------------------------------------------------------------------


def test_check_mode_marks_changed_results():
    r, stream = reporter(check=True)
    r.changed("prod", "stack updated")
    r.changed("stage")
    r.ok("qa", "up to date")
    assert [x.message for x in r.recap.results] == [
        "stack updated (check: nothing was changed)",
        "(check: nothing was changed)",
        "up to date",
    ]
    assert lines(stream)[0] == "would change: prod  stack updated (check: nothing was changed)"


def test_without_check_changed_results_have_no_note():
    r, stream = reporter()
    r.changed("prod", "stack updated")
    assert "check" not in stream.getvalue()


def test_plan_says_would_in_check_mode():
    r, stream = reporter(check=True)
    r.plan("prod", ["~ Service (AWS::ECS::Service)", "+ Queue (AWS::SQS::Queue)"])
    assert lines(stream) == ["  prod: would:", "    ~ Service (AWS::ECS::Service)", "    + Queue (AWS::SQS::Queue)"]


def test_plan_says_will_otherwise():
    r, stream = reporter()
    r.plan("prod", ["- Old (AWS::SQS::Queue)"])
    assert lines(stream) == ["  prod: will:", "    - Old (AWS::SQS::Queue)"]


def test_empty_plan_prints_nothing():
    r, stream = reporter(check=True)
    r.plan("prod", [])
    assert stream.getvalue() == ""


# --- confirmation -----------------------------------------------------------------------------


def test_confirm_with_yes_returns_without_asking(monkeypatch):
    monkeypatch.setattr(sys, "stdin", NoReadStdin())
    import rich.prompt

    def never(*a, **kw):
        raise AssertionError("asked although --yes was given")

    monkeypatch.setattr(rich.prompt.Confirm, "ask", never)
    r, _ = reporter(yes=True, interactive=True)
    assert r.confirm("delete stack prod") is None


def test_confirm_without_terminal_refuses_and_never_reads_stdin(monkeypatch):
    # stdin claims to be a terminal, but the output is not: still no one to ask.
    monkeypatch.setattr(sys, "stdin", NoReadStdin(tty=True))
    monkeypatch.delenv("CI", raising=False)
    r, stream = reporter()
    assert r.interactive is False
    with pytest.raises(NotConfirmed) as info:
        r.confirm("delete stack prod")
    message = str(info.value)
    assert "--yes" in message and "delete stack prod" in message and "no terminal" in message
    assert "\n" not in message


def test_confirm_refuse_hint_is_used(monkeypatch):
    monkeypatch.setattr(sys, "stdin", NoReadStdin())
    r, _ = reporter(interactive=False)
    with pytest.raises(NotConfirmed, match="pass --yes-really"):
        r.confirm("update protected cluster prod", refuse_hint="pass --yes-really")


def test_confirm_on_a_terminal_refused_answer(monkeypatch):
    import rich.prompt

    asked = {}

    def answer(prompt, *, console=None, default=None, **kw):
        asked.update(prompt=prompt, default=default)
        return False

    monkeypatch.setattr(rich.prompt.Confirm, "ask", answer)
    r, _ = reporter(interactive=True)
    with pytest.raises(NotConfirmed, match="not confirmed, nothing was changed"):
        r.confirm("delete stack prod")
    assert {**asked, "prompt": str(asked["prompt"])} == {"prompt": "delete stack prod?", "default": False}


def test_confirm_on_a_terminal_accepted_answer(monkeypatch):
    import rich.prompt

    monkeypatch.setattr(rich.prompt.Confirm, "ask", lambda *a, **kw: True)
    r, _ = reporter(interactive=True)
    assert r.confirm("delete stack prod") is None


@pytest.mark.parametrize("interrupt", [EOFError, KeyboardInterrupt])
def test_confirm_interrupted_prompt_is_a_refusal(monkeypatch, interrupt):
    import rich.prompt

    def ask(*a, **kw):
        raise interrupt

    monkeypatch.setattr(rich.prompt.Confirm, "ask", ask)
    r, _ = reporter(interactive=True)
    with pytest.raises(NotConfirmed):
        r.confirm("delete stack prod")


# --- output modes -----------------------------------------------------------------------------


def test_json_output_suppresses_the_human_lines():
    r, stream = reporter(json_output=True, check=True)
    r.header("clusters")
    r.info("region us-east-1")
    r.warn("drift")
    r.plan("prod", ["~ Service"])
    r.event("UPDATE_IN_PROGRESS")
    with r.progress("waiting"):
        pass
    r.table(["name"], [["stage"]])
    r.ok("stage")
    r.finish()
    assert stream.getvalue() == ""
    r.emit_json({"stage": {"status": "CREATE_COMPLETE"}})
    assert json.loads(stream.getvalue()) == {"stage": {"status": "CREATE_COMPLETE"}}
    # The outcomes are still kept for the exit code.
    assert r.recap.counts()["ok"] == 1


def test_plain_table_prints_aligned_columns():
    r, stream = reporter()
    r.table(["NAME", "STATUS", "UPDATED"], [
        ["stage", "CREATE_COMPLETE", "2024-05-01"],
        ["production", "-", ""],
    ], title="clusters")
    out = lines(stream)
    assert out == [
        "clusters",
        "NAME        STATUS           UPDATED",
        "stage       CREATE_COMPLETE  2024-05-01",
        "production  -",
    ]
    # Each column starts at the same offset on every line: the widest cell plus two spaces.
    assert out[1].index("STATUS") == out[2].index("CREATE_COMPLETE") == out[3].index("-") == len("production") + 2
    assert out[1].index("UPDATED") == out[2].index("2024-05-01")


def test_plain_output_is_verbatim():
    r, stream = reporter()
    # Stack events and ARNs hold brackets and colons; neither markup nor emoji codes may rewrite them.
    text = "arn:aws:ecs:us-east-1:123:ok:x [bold]x[/bold] :cat: :x:"
    r.info(text)
    r.event("UPDATE_FAILED [Service] reason: :warning:", failed=True)
    assert lines(stream) == [f"  {text}", "    UPDATE_FAILED [Service] reason: :warning:"]


def test_plain_output_does_not_wrap_or_colour_long_lines():
    r, stream = reporter()
    target = "x" * 300
    r.ok(target, "done")
    assert lines(stream) == [f"ok: {target}  done"]
    assert "\x1b[" not in stream.getvalue()


def test_progress_without_a_terminal_is_one_plain_line():
    r, stream = reporter()
    with r.progress("waiting for stack prod"):
        r.event("UPDATE_IN_PROGRESS")
    assert lines(stream) == ["  waiting for stack prod", "    UPDATE_IN_PROGRESS"]


# --- is_interactive ---------------------------------------------------------------------------


def test_is_interactive_on_terminals(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stdin", NoReadStdin(tty=True))
    assert is_interactive(TtyStream()) is True


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_is_interactive_false_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(sys, "stdin", NoReadStdin(tty=True))
    assert is_interactive(TtyStream()) is False


def test_is_interactive_false_when_stdin_is_a_pipe(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stdin", NoReadStdin(tty=False))
    assert is_interactive(TtyStream()) is False


def test_is_interactive_false_when_stdin_is_closed(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    stdin = io.StringIO()
    stdin.close()
    monkeypatch.setattr(sys, "stdin", stdin)
    assert is_interactive(TtyStream()) is False


def test_reporter_under_ci_never_asks(monkeypatch):
    import rich.prompt

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(sys, "stdin", NoReadStdin(tty=True))
    monkeypatch.setattr(rich.prompt.Confirm, "ask", lambda *a, **kw: pytest.fail("asked under CI"))
    r = Reporter(stream=TtyStream())
    assert r.interactive is False
    with pytest.raises(NotConfirmed, match="--yes"):
        r.confirm("delete stack prod")
