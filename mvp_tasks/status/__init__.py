"""The read model behind `app.status` and `app.logs`: what runs where, and what it logs.

`model` reads the facts (one row per app and cluster), `table` shows them on a terminal, `page`
writes them as one HTML page, `logs` prints an app's container logs. Everything here only reads,
through the run's `World` (AWS calls themselves live in `mvp_tasks/aws/`), and is imported by the
tasks only when they run, never at `inv --list` time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def show_status(world: Any, name: str | None, *, json: bool, target: Path | None = None) -> None:
    """`app.status`: the table (or `--json`) through `world.reporter`, and with a `target` (a path
    that `page.check_path` accepted) the status page too."""
    from datetime import datetime, timezone

    from . import page
    from .model import PAGE_RECORDS, collect
    from .table import show

    rows = collect(world, name, records=PAGE_RECORDS if target else 0)
    if target is not None:
        generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        text = page.render(rows, clusters=list(world.settings.clusters), generated_at=generated,
                           title=f"mvp-studio status: {name}" if name else "mvp-studio status")
        page.write(target, text)
    if json:
        world.reporter.emit_json([{k: v for k, v in r.items() if k != "records"} for r in rows])
        return
    show(world, rows)
    if target is not None:
        world.reporter.info(f"status page written to {target}")
