"""The status page (`app.status --html FILE`, mvp_tasks/status/page.py) on fixed data: what headless
Chromium renders of it (a screenshot read with Pillow, and the DOM after its inline script ran),
how every value is escaped, how the file's path is checked, and that it is written atomically.

The rendering tests need Debian's `chromium` (scripts/provision.sh installs it) and Pillow (the
test extras); without them they skip, which fails under CI=true.
"""

from __future__ import annotations

import html
import os
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import need
from mvp_tasks.errors import MvpError, UsageError
from mvp_tasks.status import page as status_page
from mvp_tasks.status.page import (
    HEADER_COLOUR, LANE_COLOUR, MOVED_COLOUR, OUTCOME_COLOURS, TAG_MOVED, check_path, render, write,
)

OLD, NEW, HEAD = "1" * 40, "2" * 40, "2" * 40
DIGEST_OLD, DIGEST_NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
EVIL = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'


def record(at: str, action: str, outcome: str, commit: str = OLD, cluster: str = "stage", **extra) -> dict:
    return {"project": "museum-adventure", "cluster": cluster, "action": action, "commit": commit,
            "digest": DIGEST_OLD, "outcome": outcome, "by": "arn:aws:iam::123456789012:user/ci", "at": at,
            "message": "", "duration": "12", "actor": "", "run_url": "", **extra}


def row(app: str, cluster: str, **facts) -> dict:
    base = {
        "app": app, "cluster": cluster, "stack": f"{app}-{cluster}", "stack_status": "CREATE_COMPLETE", "url": "",
        "ecs_cluster": cluster, "service": f"{app}-{cluster}", "task_definition": f"{app}-{cluster}:3",
        "task_definition_arn": f"arn:aws:ecs:us-east-1:123456789012:task-definition/{app}-{cluster}:3",
        "image": f"127.0.0.1:5000/{app}:{cluster}", "digest": DIGEST_OLD, "digest_source": "history",
        "commit": OLD, "tag": cluster, "tag_digest": DIGEST_OLD, "tag_commit": OLD, "tag_moved": False,
        "head": HEAD, "head_dirty": False, "state": "up to date", "action": "", "running": 1, "desired": 1, "rollout": "COMPLETED",
        "deployed_at": "2026-12-01T10:00:00+00:00", "deployed_by": "arn:aws:iam::123456789012:user/ci",
        "last_action": "deploy", "errors": [], "records": [],
    }
    base.update(facts)
    return base


def fixed_rows() -> list[dict]:
    """museum-adventure: stage's tag moved to HEAD's image, which prod runs (up to date); its stage history
    holds a succeeded deploy, then a failed update, then an interrupted one; prod a succeeded
    promotion. imports-app: deployed to stage only, nothing recorded, with a hostile message."""
    return [
        row("museum-adventure", "stage", tag_digest=DIGEST_NEW, tag_commit=NEW, tag_moved=True, state=TAG_MOVED,
            action="inv app.update museum-adventure --cluster stage", records=[
            record("2026-12-01T14:00:00+00:00", "update", "interrupted"),
            record("2026-12-01T12:00:00+00:00", "update", "failed", message=EVIL),
            record("2026-12-01T10:00:00+00:00", "deploy", "succeeded"),
        ]),
        row("museum-adventure", "prod", commit=NEW, digest=DIGEST_NEW, tag_digest=DIGEST_NEW, tag_commit=NEW,
            records=[record("2026-12-01T13:00:00+00:00", "promote", "succeeded", NEW, "prod")]),
        row("imports-app", "stage", stack_status="NOT_DEPLOYED", service="", task_definition="", digest="",
            digest_source="", commit="", tag_digest="", tag_commit="", state="not deployed", rollout="-", deployed_at="",
            errors=[f"history: {EVIL}"]),
    ]


@pytest.fixture
def page(tmp_path) -> Path:
    path = tmp_path / "status.html"
    write(path, render(fixed_rows(), clusters=["stage", "prod"], generated_at="2026-12-01T15:00:00+00:00"))
    return path


def need_chromium():
    from tests.support import chromium

    need(chromium.find() is not None, "chromium is not installed (apt-get install -y chromium; scripts/provision.sh)")
    try:
        import PIL  # noqa: F401
    except ImportError:
        need(False, "Pillow is not installed (pip install -e '.[test]')")
    return chromium


# --- what Chromium draws ---------------------------------------------------------------------------


def test_chromium_draws_the_matrix_above_a_timeline_of_outcome_coloured_marks(page, tmp_path):
    chromium = need_chromium()
    shot = chromium.screenshot(page, tmp_path / "status.png", 1280, 900)
    mask = lambda colour: chromium.colour_mask(shot, colour)  # noqa: E731

    # The matrix: its header band, one column per cluster (two) beside the app column, so wide.
    header = chromium.dense_bbox(mask(HEADER_COLOUR), 200)
    assert header is not None, "the matrix's header is not drawn"
    assert header[2] - header[0] > 400 and header[3] - header[1] >= 20, header
    # The timeline's lanes, all below the matrix: museum-adventure has two (stage, prod), imports-app none.
    lanes = chromium.dense_bbox(mask(LANE_COLOUR), 200)
    assert lanes is not None, "no timeline lane is drawn"
    assert lanes[1] > header[3], (header, lanes)
    assert lanes[2] - lanes[0] > 700, lanes
    # The "tag moved" cell is drawn inside the matrix, between its header and the timeline.
    moved = chromium.dense_bbox(mask(MOVED_COLOUR), 100)
    assert moved is not None and header[1] < moved[1] and moved[3] < lanes[1], (header, moved, lanes)

    # On the lanes (not the legend above them): a green mark for each of the two succeeded records,
    # a red one for the failed record, an orange one for the interrupted record.
    on_lanes = shot.crop(lanes)
    one_mark = status_page.MARK_W * status_page.MARK_H
    counts = {o: chromium.count(chromium.colour_mask(on_lanes, c)) for o, c in OUTCOME_COLOURS.items()}
    assert counts["succeeded"] >= 2 * one_mark * 0.8, counts
    assert one_mark * 0.8 <= counts["failed"] <= one_mark * 1.2, counts
    assert one_mark * 0.8 <= counts["interrupted"] <= one_mark * 1.2, counts
    # Over time, left to right: the deploy (10:00) before the failed update (12:00), before the
    # interrupted one (14:00, the newest: at the right end of the shared axis).
    boxes = {o: chromium.colour_mask(on_lanes, c).getbbox() for o, c in OUTCOME_COLOURS.items()}
    assert boxes["succeeded"][0] < boxes["failed"][0] < boxes["interrupted"][0], boxes
    assert boxes["interrupted"][2] > (lanes[2] - lanes[0]) * 0.9, boxes
    # The failed and interrupted records are in the first lane (stage), the promotion in the second.
    assert boxes["failed"][3] < boxes["succeeded"][3], boxes


def test_the_dom_after_the_inline_script_ran_holds_the_matrix_and_the_timeline(page):
    chromium = need_chromium()
    dom = chromium.dump_dom(page)

    # The script ran (the Content-Security-Policy allows it by its hash): it says how old the page is.
    assert re.search(r'<span class="ago" data-at="[^"]+">\(\d+ (s|min|h|days) ago\)</span>', dom), dom[:2000]
    # The matrix: one row per app, one cell per cluster; imports-app is not mapped to prod.
    cells = re.findall(r'<td class="cell (\w+)" data-cluster="(\w+)" data-state="([^"]+)">', dom)
    assert cells == [("moved", "stage", TAG_MOVED), ("ok", "prod", "up to date"),
                     ("absent", "stage", "not deployed")], cells
    assert dom.count('<tr data-app="') == 2 and "not mapped" in dom
    stage = dom.split('data-cluster="stage"', 1)[1].split("</td>", 1)[0]
    assert TAG_MOVED in stage and NEW[:12] in stage and OLD[:12] in stage
    # The timeline: one mark per record, each with its outcome.
    marks = re.findall(r'<rect class="mark (\w+)"', dom)
    assert sorted(marks) == ["failed", "interrupted", "succeeded", "succeeded"], marks
    assert dom.count('<section class="app-history"') == 2 and "No history recorded yet." in dom
    # Nothing hostile became an element: no <img>, one <script> (the page's own).
    assert "<img" not in dom and dom.count("<script") == 1
    assert "&lt;img src=x onerror=" in dom


# --- the HTML itself -------------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_every_value_is_escaped():
    rows = fixed_rows()
    rows[0]["records"][0]["action"] = EVIL
    rows[0]["task_definition"] = EVIL
    rows[1]["url"] = 'https://example.invalid/"><script>x</script>'
    text = render(rows, clusters=["stage", "prod"], title=EVIL)
    parser = _Elements()
    parser.feed(text)
    assert "img" not in parser.tags and parser.tags.count("script") == 1
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert '"><script>x' not in text


def test_the_page_loads_nothing_and_links_only_http():
    rows = fixed_rows()
    rows[0]["url"] = "javascript:alert(1)"
    rows[0]["records"][1]["run_url"] = "javascript:alert(2)"
    rows[1]["url"] = "http://museum-stage.example.invalid"
    text = render(rows, clusters=["stage", "prod"])
    assert "javascript:" not in text
    assert '<a href="http://museum-stage.example.invalid">' in text
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1))
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", directives["script-src"]), directives
    assert not re.search(r'\s(src|href)="(https?:)?//(?!museum-stage)', text)  # no external resource
    assert "<link" not in text


def test_no_history_and_no_rows():
    rows = [row("museum-adventure", "stage")]
    assert "No history recorded yet." in render(rows, clusters=["stage"])
    assert "No project is mapped to a cluster." in render([], clusters=["stage"])


# --- the file --------------------------------------------------------------------------------------


def test_the_path_must_be_in_a_folder_that_exists_and_can_be_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_path("status.html") == tmp_path / "status.html"
    with pytest.raises(UsageError, match=r"--html nosuch/status.html: folder .*nosuch does not exist"):
        check_path("nosuch/status.html")
    with pytest.raises(UsageError, match="is a folder"):
        check_path(str(tmp_path))
    with pytest.raises(UsageError, match="give the file"):
        check_path("  ")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not a folder"):
        check_path("file/status.html")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UsageError, match="cannot write"):
            check_path(str(locked / "status.html"))


def test_the_page_is_written_atomically_and_readable(tmp_path, monkeypatch):
    path = tmp_path / "status.html"
    path.write_text("the old page")
    write(path, "<!DOCTYPE html><p>new</p>")
    assert path.read_text() == "<!DOCTYPE html><p>new</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.html"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(status_page.os, "replace", broken)
    with pytest.raises(MvpError, match="could not write the status page .*No space left on device"):
        write(path, "<p>newer</p>")
    assert path.read_text() == "<!DOCTYPE html><p>new</p>"  # the old page stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.html"]


def test_a_cell_says_head_has_changes_for_it_with_the_whole_line_on_hover():
    line = "HEAD 5e1f has changes for shop in stage that its release a0e3 does not have (1 file(s)); to ship them: <inv>"
    rows = [row("shop", "stage", unshipped=line, state="behind HEAD"), row("shop", "prod")]
    text = render(rows, clusters=["stage", "prod"], title="t")
    assert text.count("HEAD has changes for it here") == 1
    assert f'title="{line.replace("<", "&lt;").replace(">", "&gt;")}"' in text


def test_a_cell_says_its_service_runs_another_task_definition_than_its_stack():
    rows = [row("shop", "stage", state="drift", action="inv app.deploy shop --cluster stage",
                service_drift="service runs shop-stage:3, the stack shop-stage:4"), row("shop", "prod")]
    text = render(rows, clusters=["stage", "prod"], title="t")
    assert text.count('<span class="warn drift">drift: service runs shop-stage:3, the stack shop-stage:4</span>') == 1
    assert "to do: <code>inv app.deploy shop --cluster stage</code>" in text


def test_only_a_failed_cell_is_red_and_an_up_to_date_one_is_green(tmp_path):
    """The colours a person acts on: a failed row's cell is red; with nothing to do, the page has no
    red (the e2e test asserts the same of a real studio's page)."""
    chromium = need_chromium()
    fine = [row("shop", "stage"), row("shop", "prod")]
    failed = [row("shop", "stage"), row("shop", "prod", state="failed", rollout="FAILED",
                                        action="see inv app.history shop --cluster prod")]
    shots = {}
    for name, rows in (("fine", fine), ("failed", failed)):
        path = tmp_path / f"{name}.html"
        write(path, render(rows, clusters=["stage", "prod"], generated_at="2026-12-01T15:00:00+00:00"))
        shots[name] = chromium.screenshot(path, tmp_path / f"{name}.png", 1280, 600)
    assert chromium.count(chromium.red_mask(shots["fine"])) == 0
    assert chromium.count(chromium.red_mask(shots["failed"])) > 2000  # the failed cell's background
    green = chromium.colour_mask(shots["fine"], status_page.UP_TO_DATE_COLOUR)
    assert chromium.count(green) > 2 * 2000  # both cells
