"""What a person at a terminal sees: `inv` on a pseudo-terminal (not CI), with the rich display.

While targets are applied there is one live line per target (a rich Live display, redrawn in place),
then the outcome lines, the summary table and the recap. The run's state is read back with boto3.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from conftest import BIN, PROJECT, link_sandbox
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab


def run_on_a_terminal(cwd, args, env, timeout=120.0) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {k: v for k, v in env.items() if k != "CI"}  # a person, not CI
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen([str(BIN / "inv"), *args], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_a_fleet_run_on_a_terminal_draws_live_lines_and_ends_with_the_summary(tmp_path, git_env, image_services,
                                                                             moto_server):
    lab = new_lab(tmp_path, git_env, image_services, moto_server)
    clusters_up(lab)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    lab.ok("app.push", PROJECT, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)

    code, screen = run_on_a_terminal(lab.work, ["fleet.up", "--yes"], link_sandbox(lab.work, dict(lab.env)))

    assert code == 0, screen
    assert "Traceback" not in screen
    assert "\x1b[" in screen, "a terminal gets colour and the live display"
    assert "\x1b[2K" in screen, "the live lines are redrawn in place"
    for cluster in ("stage", "prod"):
        assert f"museum-adventure@{cluster}" in screen
        assert lab.stack(f"{PROJECT}-{cluster}")["StackStatus"] == "CREATE_COMPLETE"
    assert "outcome" in screen and "recap: ok=2 changed=2 skipped=0 failed=0" in screen, screen
