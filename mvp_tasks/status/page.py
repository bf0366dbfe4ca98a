"""`app.status --html FILE`: one self-contained HTML page of the studio's status.

The page holds the app x cluster matrix (what runs: commit, digest, task definition, tasks,
rollout state, and the row's state: `up to date` (green, the only green: nothing to do), `behind
HEAD`, `drift`, "tag moved, not rolled out", `rolling`, `failed` (the only red), `not deployed`,
`orphan`) and, for each app, a timeline of its recent history: one
mark per record on a time axis shared by every app, one lane per cluster, coloured by outcome.

It needs no server and no network: CSS is inline, the one small script (it says how old the page
is) is allowed by a Content-Security-Policy hash, nothing else may load. Every value is escaped.
The file is written atomically (a temporary file in the same folder, then a rename), so a browser
or a web server reading it never sees half a page.

Only the standard library: this module is imported by the task, never at `inv --list` time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import MvpError, UsageError

# Outcome colours of the timeline's marks (the tests look for them in a screenshot).
OUTCOME_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00"}
OTHER_COLOUR = "#757575"
LANE_COLOUR = "#e8ecf2"
HEADER_COLOUR = "#24364b"
MOVED_COLOUR = "#fff1c2"
# A cell's background by its row's state (`status.model.decide_state`): green only when there is
# nothing to do, red only when something failed, amber where a person has something to do.
UP_TO_DATE_COLOUR = "#e3f4e6"
FAILED_COLOUR = "#fde8e8"
ROLLING_COLOUR = "#e6eefb"
STATE_CLASSES = {"up to date": "ok", "behind HEAD": "behind", "drift": "drift", "tag moved, not rolled out": "moved",
                 "rolling": "rolling", "failed": "broken", "not deployed": "absent", "orphan": "orphan",
                 "unknown": "unknown"}

TAG_MOVED = "tag moved, not rolled out"

# The timeline's geometry, in CSS pixels.
GUTTER = 110  # the cluster names left of the lanes
PLOT = 820  # the time axis
PAD = 14  # room either side so a mark at either end is drawn whole
LANE = 40
MARK_W, MARK_H = 12, 18
LABEL_GAP = 56  # at least this far apart, marks of one lane get their action written under them


def h(value: Any) -> str:
    """Escaped for text and for attribute values alike."""
    return escape("" if value is None else str(value), quote=True)


# --- the file -------------------------------------------------------------------------------------


def check_path(value: str) -> Path:
    """The page's path, refused (one `UsageError`) unless its folder exists and can be written,
    and the path itself is not a folder or a file that cannot be replaced."""
    text = (value or "").strip()
    if not text:
        raise UsageError("--html: give the file to write the status page to, e.g. --html status.html")
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = Path.cwd() / path
    parent = path.parent
    if path.is_dir():
        raise UsageError(f"--html {value}: is a folder; give a file name, e.g. {Path(value) / 'status.html'}")
    if not parent.exists():
        raise UsageError(f"--html {value}: folder {parent} does not exist", "create it first or pick another path")
    if not parent.is_dir():
        raise UsageError(f"--html {value}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--html {value}: cannot write in folder {parent} (permission denied)")
    if path.exists() and not path.is_file():
        raise UsageError(f"--html {value}: is not a regular file; give a file name")
    return path


def write(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temporary file beside it, flushed, then renamed over."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a page is for everyone to read
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MvpError(f"could not write the status page {path}: {exc.strerror or exc}") from None


# --- the page -------------------------------------------------------------------------------------

STYLE = f"""
body {{ font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2733; margin: 24px;
       background: #ffffff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
h2 {{ font-size: 16px; margin: 28px 0 8px; }}
h3 {{ font-size: 14px; margin: 18px 0 4px; }}
.meta {{ color: #4a5868; margin: 0 0 16px; }}
code {{ font: 12px/1.3 ui-monospace, "SFMono-Regular", Menlo, monospace; }}
table.matrix {{ border-collapse: collapse; }}
table.matrix th {{ background: {HEADER_COLOUR}; color: #ffffff; text-align: left; padding: 8px 12px; }}
table.matrix td {{ border: 1px solid #c9d1db; padding: 8px 12px; vertical-align: top; min-width: 220px; }}
table.matrix td.app {{ font-weight: 600; min-width: 0; background: #f5f7fa; }}
td.absent {{ color: #6b7785; background: #fafbfc; }}
td.ok {{ background: {UP_TO_DATE_COLOUR}; }}
td.moved, td.behind, td.drift, td.orphan {{ background: {MOVED_COLOUR}; }}
td.rolling {{ background: {ROLLING_COLOUR}; }}
td.broken {{ background: {FAILED_COLOUR}; }}
td.unknown {{ background: #f1f3f6; }}
.state {{ font-weight: 600; }}
.warn {{ color: #7a4b00; font-weight: 600; }}
.err {{ color: #8a1f1f; }}
.ok .state {{ color: #135d2a; }}
.src {{ color: #4a5868; }}
.legend span {{ display: inline-block; margin-right: 16px; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }}
svg.timeline {{ display: block; }}
svg.timeline text {{ font: 11px system-ui, sans-serif; fill: #3a4654; }}
details {{ margin: 4px 0 0; }}
table.records {{ border-collapse: collapse; margin-top: 6px; }}
table.records td, table.records th {{ border-bottom: 1px solid #e1e6ec; padding: 2px 10px 2px 0;
                                      text-align: left; vertical-align: top; }}
"""

# Says how old the page is (it is a snapshot); the only script, allowed by its hash.
SCRIPT = """
(function () {
  var now = Date.now();
  document.querySelectorAll("[data-at]").forEach(function (el) {
    var s = Math.max(0, Math.round((now - Date.parse(el.getAttribute("data-at"))) / 1000));
    var t = s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" :
            s < 129600 ? Math.round(s / 3600) + " h" : Math.round(s / 86400) + " days";
    el.textContent = "(" + t + " ago)";
  });
})();
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    return f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"


def render(rows: list[Mapping[str, Any]], *, clusters: Iterable[str] = (), generated_at: str = "",
           title: str = "mvp-studio status") -> str:
    """The page for `rows` (the rows of `app.status --json`; each may carry `records`: its app's
    history in that cluster, newest first, as dicts of Record's fields)."""
    generated_at = generated_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    seen = {r["cluster"] for r in rows}
    columns = [c for c in clusters if c in seen] + sorted(seen - set(clusters))
    apps: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        apps.setdefault(row["app"], {})[row["cluster"]] = row
    head = next((r.get("head", "") for r in rows if r.get("head")), "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{h(_csp())}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{h(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{h(title)}</h1>",
        f'<p class="meta">generated {h(_shown(generated_at))} UTC '
        f'<span class="ago" data-at="{h(generated_at)}"></span> &middot; HEAD '
        f'<code>{h(head[:12] or "-")}</code> (the commit <code>inv app.push</code> would tag; '
        "<em>up to date</em> = HEAD&rsquo;s release of the app in that cluster is what runs)</p>",
        '<h2 id="matrix">What runs where</h2>',
        _matrix(apps, columns),
        '<h2 id="history">Recent history</h2>',
        _legend(rows),
        _timelines(apps, columns),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _matrix(apps: Mapping[str, Mapping[str, Mapping[str, Any]]], columns: list[str]) -> str:
    if not apps:
        return '<p class="meta">No project is mapped to a cluster.</p>'
    out = ['<table class="matrix" id="status-matrix"><thead><tr><th>app</th>']
    out += [f"<th>{h(c)}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for app, cells in apps.items():
        out.append(f'<tr data-app="{h(app)}"><td class="app">{h(app)}</td>')
        for cluster in columns:
            row = cells.get(cluster)
            out.append(_cell(row) if row is not None else '<td class="absent">not mapped</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cell(row: Mapping[str, Any]) -> str:
    deployed = row.get("stack_status", "NOT_DEPLOYED") != "NOT_DEPLOYED"
    moved = bool(row.get("tag_moved"))
    errors = [e for e in row.get("errors", []) if deployed or not str(e).startswith("history: ")]
    state = row.get("state") or ("not deployed" if not deployed else "unknown")
    css = STATE_CLASSES.get(state, "unknown")
    lines = [f'<span class="state">{h(state)}</span>']
    if row.get("orphan"):
        lines.append(f'stack <code>{h(row.get("stack", ""))}</code> ({h(row.get("stack_status", ""))})')
        lines.append(f'<span class="warn orphan" title="{h(row.get("unshipped", ""))}">not in invoke.yaml</span>: '
                     f'<code>{h(row.get("action", ""))}</code>')
        return (f'<td class="cell {css}" data-cluster="{h(row.get("cluster", ""))}" data-state="{h(state)}">'
                + "<br>".join(lines) + "</td>")
    if deployed:
        commit = row.get("commit", "")
        digest = row.get("digest", "")
        lines.append(f'runs <code class="commit">{h(commit[:12] or "-")}</code>')
        lines.append(f'<code class="digest">{h(digest[:19] or "-")}</code> '
                     f'<span class="src">({h(row.get("digest_source") or "digest unknown")})</span>')
        if row.get("task_definition"):
            lines.append(f'task def <code>{h(row["task_definition"])}</code>')
        tasks = f'{row.get("running", 0)}/{row.get("desired", 0)}' if row.get("service") else "-"
        lines.append(f"tasks {h(tasks)} &middot; {h(row.get('rollout', '-'))}")
        if row.get("deployed_at"):
            lines.append(f'<span class="src">{h(row.get("last_action", ""))} {h(row["deployed_at"][:16].replace("T", " "))}'
                         "</span>")
    tag = row.get("tag_commit", "")[:12] or row.get("tag_digest", "")[7:19]
    if moved:
        lines.append(f'<span class="warn">{TAG_MOVED}</span>: tag <code>{h(row.get("tag", ""))}</code> is '
                     f"<code>{h(tag or '-')}</code>")
    elif tag:
        lines.append(f'<span class="src">tag <code>{h(row.get("tag", ""))}</code> is <code>{h(tag)}</code></span>')
    if row.get("service_drift"):
        lines.append(f'<span class="warn drift">drift: {h(row["service_drift"])}</span>')
    for difference in row.get("drift") or []:
        lines.append(f'<span class="warn drift">drift: {h(difference)}</span>')
    if row.get("unshipped"):
        # The whole line (its commands too) on hover; the cell says only that there is one.
        lines.append(f'<span class="warn unshipped" title="{h(row["unshipped"])}">HEAD has changes '
                     "for it here</span>")
    if row.get("action") and state != "up to date":
        lines.append(f'<span class="src">to do: <code>{h(row["action"])}</code></span>')
    for error in errors:
        lines.append(f'<span class="err">could not read the {h(error)}</span>')
    url = str(row.get("url", ""))
    if url.startswith(("http://", "https://")):
        lines.append(f'<a href="{h(url)}">{h(url)}</a>')
    return (f'<td class="cell {css}" data-cluster="{h(row.get("cluster", ""))}" data-state="{h(state)}">'
            + "<br>".join(lines) + "</td>")


def _legend(rows: list[Mapping[str, Any]]) -> str:
    # Only the outcomes the timeline shows: a page where nothing failed draws no red at all.
    seen = {str(r.get("outcome", "")) for row in rows for r in row.get("records") or []}
    items = [f'<span><i style="background:{c}"></i>{h(o)}</span>' for o, c in OUTCOME_COLOURS.items() if o in seen]
    if any(o not in OUTCOME_COLOURS for o in seen):
        items.append(f'<span><i style="background:{OTHER_COLOUR}"></i>other</span>')
    if not items:
        return ""
    return '<p class="legend">' + "".join(items) + "</p>"


def _shown(at: str) -> str:
    """An ISO 8601 time as `YYYY-MM-DD HH:MM:SS` in UTC (as given where it does not parse)."""
    when = _when(at)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else str(at)


def _when(at: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _timelines(apps: Mapping[str, Mapping[str, Mapping[str, Any]]], columns: list[str]) -> str:
    records = {app: [(cluster, r) for cluster, row in cells.items() for r in row.get("records", [])]
               for app, cells in apps.items()}
    times = [t for items in records.values() for _, r in items if (t := _when(r.get("at", ""))) is not None]
    if not times:
        return '<p class="meta">No history recorded yet.</p>'
    start, end = min(times), max(times)
    if end - start < timedelta(minutes=1):
        start, end = start - timedelta(minutes=30), end + timedelta(minutes=30)
    out = []
    for app, items in records.items():
        lanes = [c for c in columns if c in apps[app]]
        out.append(f'<section class="app-history" data-app="{h(app)}"><h3>{h(app)}</h3>')
        if not items:
            out.append('<p class="meta">No history recorded yet.</p></section>')
            continue
        out.append(_svg(app, lanes, items, start, end))
        out.append(_record_table(items))
        out.append("</section>")
    return "\n".join(out)


def _svg(app: str, lanes: list[str], items: list[tuple[str, Mapping[str, Any]]], start: datetime,
         end: datetime) -> str:
    width = GUTTER + PLOT + 2 * PAD
    height = LANE * len(lanes) + 24
    span = (end - start).total_seconds()
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="history of {h(app)}">']
    for i, lane in enumerate(lanes):
        y = i * LANE
        parts.append(f'<text x="0" y="{y + 22}">{h(lane)}</text>')
        parts.append(f'<rect class="lane" x="{GUTTER}" y="{y + 2}" width="{PLOT + 2 * PAD}" height="{LANE - 4}" '
                     f'fill="{LANE_COLOUR}"/>')
    last_label: dict[str, float] = {}
    # Oldest first, so a newer mark is drawn over an older one it touches.
    for cluster, record in sorted(items, key=lambda item: str(item[1].get("at", ""))):
        when = _when(record.get("at", ""))
        if when is None or cluster not in lanes:
            continue
        x = GUTTER + PAD + PLOT * (when - start).total_seconds() / span
        y = lanes.index(cluster) * LANE
        outcome = str(record.get("outcome", ""))
        colour = OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)
        tip = " ".join(str(v) for v in (record.get("at", ""), record.get("action", ""), outcome,
                                        str(record.get("commit", ""))[:12], record.get("message", "")) if v)
        parts.append(f'<rect class="mark {h(outcome)}" data-outcome="{h(outcome)}" x="{x - MARK_W / 2:.1f}" '
                     f'y="{y + 5}" width="{MARK_W}" height="{MARK_H}" fill="{colour}"><title>{h(tip)}</title></rect>')
        if x - last_label.get(cluster, -1e9) >= LABEL_GAP:
            anchor = "start" if x < GUTTER + LABEL_GAP else ("end" if x > GUTTER + PLOT + 2 * PAD - LABEL_GAP else "middle")
            edge = {"start": x - MARK_W / 2, "middle": x, "end": x + MARK_W / 2}[anchor]
            parts.append(f'<text x="{edge:.1f}" y="{y + LANE - 6}" text-anchor="{anchor}">'
                         f'{h(record.get("action", ""))}</text>')
            last_label[cluster] = x
    y_axis = LANE * len(lanes) + 16
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        when = start + (end - start) * frac
        x = GUTTER + PAD + PLOT * frac
        parts.append(f'<text x="{x:.1f}" y="{y_axis}" text-anchor="{anchor}">{h(when.strftime("%Y-%m-%d %H:%M"))}'
                     "</text>")
    parts.append("</svg>")
    return "".join(parts)


def _record_table(items: list[tuple[str, Mapping[str, Any]]]) -> str:
    rows = sorted(items, key=lambda item: str(item[1].get("at", "")), reverse=True)
    out = [f"<details><summary>{len(rows)} record(s), newest first</summary><table class=\"records\">",
           "<tr><th>at (UTC)</th><th>cluster</th><th>action</th><th>outcome</th><th>commit</th><th>by</th>"
           "<th>took</th><th>message</th></tr>"]
    for cluster, r in rows:
        outcome = str(r.get("outcome", ""))
        colour = OUTCOME_COLOURS.get(outcome, OTHER_COLOUR)
        by = r.get("actor") or str(r.get("by", "")).rsplit(":", 1)[-1]
        run_url = str(r.get("run_url", ""))
        message = h(r.get("message", ""))
        if run_url.startswith("https://"):
            message += f' <a href="{h(run_url)}">run</a>'
        out.append(
            f"<tr><td>{h(str(r.get('at', ''))[:19].replace('T', ' '))}</td><td>{h(cluster)}</td>"
            f"<td>{h(r.get('action', ''))}</td><td style=\"color:{colour}\">{h(outcome)}</td>"
            f"<td><code>{h(str(r.get('commit', ''))[:12])}</code></td><td>{h(by)}</td>"
            f"<td>{h(str(r.get('duration', '')) + 's' if r.get('duration') else '')}</td><td>{message}</td></tr>")
    out.append("</table></details>")
    return "".join(out)
