"""Plans, events, outcomes, the one confirmation, the summary and the recap: the only place that prints.

The executor (`apply/executor.py`) shows a whole plan here, asks once, then reports one outcome per
target (ok / changed / skipped / failed, as Ansible does), a summary table and a recap line.
Targets report from the executor's threads, so every print holds one lock. On a terminal the
output is rich (colour, one live line per target while they are applied); otherwise plain lines,
prefixed with the target when several run side by side, for CI logs.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from .errors import NotConfirmed


class Outcome(str, enum.Enum):
    OK = "ok"
    CHANGED = "changed"
    SKIPPED = "skipped"
    FAILED = "failed"


STYLES = {
    Outcome.OK: "green",
    Outcome.CHANGED: "yellow",
    Outcome.SKIPPED: "cyan",
    Outcome.FAILED: "bold red",
}


@dataclass
class Result:
    target: str
    outcome: Outcome
    message: str = ""
    commit: str = ""
    duration: float | None = None
    # A rollout the target stopped half-way and did not roll back: the rollback to offer (a step).
    offer: Any = None


@dataclass
class Results:
    """What a run did: one `Result` per target (as fabric's `GroupResult`), whether it was
    interrupted, and what keeps running in AWS on its own (what -> the command that follows it)."""

    results: list[Result] = field(default_factory=list)
    interrupted: bool = False
    still_running: dict[str, str] = field(default_factory=dict)

    def add(self, result: Result) -> None:
        self.results.append(result)

    def extend(self, other: "Results") -> None:
        self.results += other.results
        self.interrupted = self.interrupted or other.interrupted
        self.still_running.update(other.still_running)

    @property
    def offers(self) -> list[Any]:
        """The rollbacks to offer: rollouts stopped half-way (Ctrl-C, SIGTERM, the wait timeout)."""
        return [r.offer for r in self.results if r.offer is not None]

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    def counts(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for r in self.results:
            counts[r.outcome.value] += 1
        return counts

    @property
    def failed(self) -> bool:
        return any(r.outcome is Outcome.FAILED for r in self.results)

    def line(self) -> str:
        c = self.counts()
        return "recap: " + " ".join(f"{k}={v}" for k, v in c.items())


# C0 and C1 control characters and DEL: ESC, OSC 52 (clipboard), BEL, CR and the like, from stack
# reasons, build output and container logs, would drive the terminal that shows them.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object, keep: str = "\t\n") -> str:
    """`text` with every control character but those in `keep` shown as a visible escape
    (ESC as `\\x1b`): what AWS, a build or a container says reaches a terminal as text only.
    The one filter of every output path (lines, live lines, tables, prompts, logs)."""
    return CONTROL.sub(lambda m: m.group() if m.group() in keep else f"\\x{ord(m.group()):02x}", str(text))


def plain_text(text: object, keep: str = "\t\n"):
    """`text` as a rich `Text`: printable, and never read as markup (AWS and build messages hold
    `[...]`, which rich would parse as tags)."""
    from rich.text import Text

    return Text(printable(text, keep))


def is_interactive(stream: IO | None = None) -> bool:
    """A person is there to answer: stdin and the output are terminals, and this is not CI."""
    stream = stream or sys.stdout
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    try:
        return sys.stdin.isatty() and stream.isatty()
    except (AttributeError, ValueError):
        return False


class Reporter:
    """Prints plans, progress and outcomes; asks for confirmation; keeps the recap.

    `check=True` means nothing may change: the executor shows the plan and applies nothing, and
    what *would* change is reported as `changed` with a "(check)" note.
    """

    def __init__(self, *, check: bool = False, yes: bool = False, stream: IO | None = None,
                 interactive: bool | None = None, json_output: bool = False):
        from rich.console import Console  # rich is only needed once a task runs

        self.stream = stream or sys.stdout
        self.check = check
        self.yes = yes
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.json_output = json_output
        self.console = Console(
            file=self.stream,
            highlight=False,
            # rich would turn ":ok:" or ":x:" inside stack events and ARNs into emoji.
            emoji=False,
            soft_wrap=True,
            force_terminal=self.interactive or None,
            no_color=not self.interactive or None,
        )
        self.recap = Results()  # every result shown, for tasks that report outside the engine
        # Targets report from the executor's threads: one line is printed whole, never interleaved.
        import threading

        self._lock = threading.RLock()
        self._live = None  # the rich Live display while targets are applied on a terminal
        self._status: dict[str, str] = {}
        self._many = False  # more than one target: plain lines carry the target's name
        self.asking = False  # a question waits for its answer (an interrupt then means "no")

    # --- plain output ------------------------------------------------------------------------

    def _print(self, text: str, style: str | None = None) -> None:
        if self.json_output:
            return
        with self._lock:
            console = self._live.console if self._live is not None else self.console
            console.print(plain_text(text), style=style)

    def header(self, text: str) -> None:
        self._print(text, "bold")

    def info(self, text: str) -> None:
        self._print(f"  {text}")

    def warn(self, text: str) -> None:
        self._print(f"  warning: {text}", "yellow")

    def plan(self, target: str, lines: list[str]) -> None:
        """Show what will change (or would, in check mode) before anything is done."""
        prefix = "would" if self.check else "will"
        if not lines:
            return
        self._print(f"  {target}: {prefix}:", "bold")
        for line in lines:
            self._print(f"    {line}", self._line_style(line))

    @staticmethod
    def _line_style(line: str) -> str | None:
        return {"+": "green", "-": "red", "~": "yellow", "!": "bold red"}.get(line[:1])

    def event(self, text: str, failed: bool = False, target: str = "") -> None:
        """One line of progress (a stack event, a rollout count). On a terminal while targets are
        applied, it becomes the target's live line; otherwise a plain line, prefixed with the target
        when several run side by side."""
        with self._lock:
            if self._live is not None and target:
                self._status[target] = text
                self._live.update(self._render(), refresh=False)
                if not failed:
                    return
            prefix = f"[{target}] " if target and self._many else ""
            self._print(f"    {prefix}{text}", "red" if failed else "dim")

    def _render(self):
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(no_wrap=True, overflow="ellipsis", style="dim")
        for target, text in self._status.items():
            # One row each: a newline in a live line is shown, never acted on.
            grid.add_row(plain_text(target, keep="\t"), plain_text(text, keep="\t"))
        return grid

    @contextlib.contextmanager
    def live(self, targets: list[str]) -> Iterator[None]:
        """While targets are applied: one live line per target on a terminal (one rich Live
        display); plain lines prefixed with the target otherwise."""
        self._many = len(targets) > 1
        if not (self.interactive and not self.json_output and targets):
            yield
            return
        from rich.live import Live

        with self._lock:
            self._status = {t: "waiting" for t in targets}
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        try:
            yield
        finally:
            with self._lock:
                live, self._live = self._live, None
                live.stop()

    @contextlib.contextmanager
    def progress(self, text: str) -> Iterator[None]:
        """A live spinner on a terminal; one plain line otherwise."""
        if self.interactive and not self.json_output:
            with self.console.status(plain_text(text, keep="\t")):
                yield
        else:
            self._print(f"  {text}")
            yield

    def table(self, columns: list[str], rows: list[list[str]], title: str = "") -> None:
        if self.json_output:
            return
        columns = [printable(col) for col in columns]
        rows = [[printable(cell) for cell in row] for row in rows]
        if self.interactive:
            from rich.table import Table

            t = Table(title=plain_text(title) if title else None)
            for col in columns:
                t.add_column(plain_text(col))
            for row in rows:
                t.add_row(*(plain_text(cell) for cell in row))
            with self._lock:
                console = self._live.console if self._live is not None else self.console
                console.print(t)
            return
        widths = [max(len(str(x)) for x in [col] + [r[i] for r in rows]) for i, col in enumerate(columns)]
        if title:
            self._print(title)
        self._print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        for row in rows:
            self._print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())

    def emit_json(self, data: object) -> None:
        self.stream.write(json.dumps(data, indent=2, default=str) + "\n")
        self.stream.flush()

    # --- outcomes ----------------------------------------------------------------------------

    def result(self, target: str, outcome: Outcome, message: str = "", *, commit: str = "",
               duration: float | None = None, offer: Any = None) -> Result:
        if self.check and outcome is Outcome.CHANGED:
            message = f"{message} (check: nothing was changed)" if message else "(check: nothing was changed)"
        # Kept printable: the boundary writes each failure's message on stderr as it is here.
        result = Result(target, outcome, printable(message), commit, duration, offer)
        # In check mode nothing changed: what would is never labelled "changed".
        label = "would change" if self.check and outcome is Outcome.CHANGED else outcome.value
        text = f"{label}: {target}"
        if message:
            text += f"  {message}"
        with self._lock:
            self.recap.add(result)
            if self._live is not None:
                self._status.pop(target, None)
                self._live.update(self._render(), refresh=False)
            self._print(text, STYLES[outcome])
        return result

    def summary(self, results: Results | None = None) -> None:
        """A table of every target: outcome, commit, duration and message (for runs of several)."""
        results = (self.recap if results is None else results).results
        if len(results) < 2:
            return
        rows = [[r.target, r.outcome.value, r.commit[:12] or "-",
                 f"{r.duration:.1f}s" if r.duration is not None else "-", r.message or "-"] for r in results]
        self._print("")
        self.table(["target", "outcome", "commit", "duration", "message"], rows)

    def ok(self, target: str, message: str = "") -> Result:
        return self.result(target, Outcome.OK, message)

    def changed(self, target: str, message: str = "") -> Result:
        return self.result(target, Outcome.CHANGED, message)

    def failed(self, target: str, message: str = "") -> Result:
        return self.result(target, Outcome.FAILED, message)

    def finish(self, results: Results | None = None) -> Results:
        """Print the recap line of `results` (default: every result shown); the task boundary
        exits non-zero when anything failed."""
        results = self.recap if results is None else results
        self._print(results.line(), "bold red" if results.failed else "bold")
        return results

    # --- confirmation ------------------------------------------------------------------------

    def confirm(self, question: str, refuse_hint: str = "re-run with --yes") -> None:
        """Ask on a terminal; without one, refuse unless --yes was given. Never waits on a pipe."""
        if self.yes:
            return
        if not self.interactive:
            raise NotConfirmed(f"{question} needs confirmation and there is no terminal to ask on; {refuse_hint}")
        from rich.prompt import Confirm

        self.asking = True
        try:
            answer = Confirm.ask(plain_text(f"{question}?"), console=self.console, default=False)
        except (EOFError, KeyboardInterrupt):
            answer = False
        finally:
            self.asking = False
        if not answer:
            raise NotConfirmed(f"{question}: not confirmed, nothing was changed")
