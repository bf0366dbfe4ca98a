"""`app.status` on a terminal: the table of rows (`status.model`), fitted to the terminal's width.

Every fact fits a wide output (a pipe, a CI log, a wide terminal); narrower, the short columns;
narrower still, one block of lines per row. What does not fit a cell (what to do about the row's
state, a moved tag, drift of the stack from its release or of the service from its stack, HEAD's
changes, a read that failed, the app's URL where the URL column is not shown) is a note line.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

from .model import BEHIND, NOT_DEPLOYED, TAG_MOVED, read_head


WIDE = ["app", "cluster", "state", "task def", "runs", "digest", "from", "tag", "tasks", "rollout",
        "deployed (UTC)", "by", "stack", "url"]
SHORT = ["app", "cluster", "state", "runs", "tag", "tasks", "rollout"]


def terminal_width(reporter: Any) -> int | None:
    """The width the table must fit: COLUMNS when set, else the terminal's; None when the output
    is no terminal (a pipe, a CI log: no width to fit)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return reporter.console.width if reporter.interactive else None


def _state(row: dict) -> str:
    # The one long state is said whole in its note line; its cell must fit 80 columns.
    state = row.get("state") or "-"
    return "tag moved" if state == TAG_MOVED else state


def _tasks(row: dict) -> str:
    return f"{row['running']}/{row['desired']}" if row["service"] else "-"


def _tag(row: dict, n: int) -> str:
    return row["tag_commit"][:n] or row["tag_digest"][7:7 + n] or "-"


def _wide(row: dict) -> list[str]:
    return [row["app"], row["cluster"], _state(row), row["task_definition"] or "-", row["commit"][:12] or "-",
            row["digest"][7:19] or "-", row["digest_source"] or "-", _tag(row, 12), _tasks(row),
            row["rollout"], row["deployed_at"][:16].replace("T", " ") or "-", _short_arn(row["deployed_by"]) or "-",
            row["stack_status"], row["url"] or "-"]


def _short(row: dict) -> list[str]:
    return [row["app"], row["cluster"], _state(row), row["commit"][:7] or "-", _tag(row, 7), _tasks(row),
            row["rollout"]]


def _table_width(columns: list[str], table: list[list[str]], boxed: bool) -> int:
    widths = [max(len(str(x)) for x in [col] + [r[i] for r in table]) for i, col in enumerate(columns)]
    # rich's boxed table: a border before each column and after the last, one space each side.
    return sum(widths) + (3 * len(widths) + 1 if boxed else 2 * (len(widths) - 1))


def notes(row: dict, *, url: bool = False) -> list[str]:
    """What a person must know about a row beyond its cells (`url`: its URL too, where the table
    shown has no URL column)."""
    out = []
    if url and row.get("url"):
        out.append(f"url {row['url']}")
    if row.get("orphan"):
        out.append(row["unshipped"])
        return out
    if row.get("action") and row.get("state") not in (BEHIND, NOT_DEPLOYED):
        out.append(f"{row['state']}: {row['action']}")
    elif row.get("state") == NOT_DEPLOYED and row.get("action"):
        out.append(f"{NOT_DEPLOYED}: to ship it: {row['action']}")
    if row.get("service_drift"):
        out.append(f"drift: {row['service_drift']} (a rollout of the stack's failed or was stopped, and the "
                   "service was rolled back): the release is not out")
    for difference in row.get("drift") or []:
        out.append(f"drift from its release {row['commit'][:12]}: {difference}")
    if row["tag_moved"]:
        out.append(f"{TAG_MOVED}: tag {row['tag']} is {_tag(row, 12)}, the service runs "
                   f"{row['commit'][:12] or row['digest'][:19]} ({row['digest_source']})")
    if row.get("unshipped"):
        out.append(row["unshipped"])
    for error in row["errors"]:
        # A missing history where nothing is deployed is no news (a cluster not up yet).
        if error.startswith("history: ") and row["stack_status"] == "NOT_DEPLOYED":
            continue
        out.append(f"could not read the {error}")
    return out


def show(world: Any, rows: list[dict]) -> None:
    """The table, through `world.reporter`: every fact on a wide output; shorter columns where that
    does not fit the terminal; one block per row where even those do not."""
    reporter = world.reporter
    width = terminal_width(reporter)
    head = rows[0]["head"] if rows else read_head(world.settings)["commit"]
    _line(reporter, f"HEAD {head[:12] or '-'}: the commit app.push would tag; state `up to date`: HEAD's "
                    "release of the app in that cluster is what runs", width)
    wide = [_wide(r) for r in rows]
    short = [_short(r) for r in rows]
    url_column = width is None or _table_width(WIDE, wide, reporter.interactive) <= width
    if url_column:
        reporter.table(WIDE, wide)
    elif _table_width(SHORT, short, reporter.interactive) <= width:
        reporter.table(SHORT, short)
    else:
        for row in rows:
            _blocks(reporter, row, width)
    for row in rows:
        for note in notes(row, url=not url_column):
            _line(reporter, f"{row['app']}@{row['cluster']}: {note}", width)


def _blocks(reporter: Any, row: dict, width: int) -> None:
    _line(reporter, f"{row['app']}@{row['cluster']}  {_state(row)}  tasks {_tasks(row)}  {row['rollout']}", width)
    _line(reporter, f"  runs {row['commit'][:12] or '-'}  {row['task_definition'] or '-'}  "
                    f"{row['digest'][:19] or '-'} ({row['digest_source'] or '-'})", width)
    _line(reporter, f"  tag {row['tag']} {_tag(row, 12)}  {row['tag_digest'][:19] or '-'}", width)


def _line(reporter: Any, text: str, width: int | None) -> None:
    """One line through the reporter (which indents it by two), wrapped to `width`."""
    if width is None:
        reporter.info(text)
        return
    for part in textwrap.wrap(text, width=max(width - 2, 20), subsequent_indent="    ",
                              break_long_words=True, break_on_hyphens=False) or [""]:
        reporter.info(part)


def _short_arn(arn: str) -> str:
    return arn.rsplit(":", 1)[-1] if arn.startswith("arn:") else arn
