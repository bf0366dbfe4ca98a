"""What a person at a terminal sees: `inv` on a pseudo-terminal (not CI), with the rich display.

While targets are applied there is one live line per target (a rich Live display, redrawn in place),
then the outcome lines, the summary table and the recap. The run's state is read back with boto3.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

from conftest import BIN, PROJECT, link_sandbox
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab


def run_on_a_terminal(cwd, args, env, timeout=120.0, interrupt_at: str = "") -> tuple[int, str]:
    """`inv ARGS` on a pseudo-terminal; with `interrupt_at`, SIGINT as soon as that text is on screen."""
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
                if interrupt_at and interrupt_at in b"".join(chunks).decode("utf-8", "replace"):
                    proc.send_signal(signal.SIGINT)
                    interrupt_at = ""
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


def test_ctrl_c_at_the_confirmation_prompt_applies_nothing_and_deletes_the_change_set(tmp_path, git_env,
                                                                                     image_services, moto_server):
    import yaml

    lab = new_lab(tmp_path / "lab", git_env, image_services, moto_server)
    clusters_up(lab)
    lab.ok("app.push", PROJECT, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    lab.ok("app.deploy", PROJECT, "--cluster", "prod", "--yes")
    before = lab.stack(f"{PROJECT}-prod")["Parameters"]
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"mvp": {"projects": {PROJECT: {"parameters": {"DesiredCount": 3}}}}}))

    # prod is protected: the plan (a change set) is shown, then the one question is asked.
    code, screen = run_on_a_terminal(lab.work, ["-f", str(extra), "app.deploy", PROJECT, "--cluster", "prod"],
                                     link_sandbox(lab.work, dict(lab.env)), interrupt_at="?")

    assert code != 0, screen
    assert "Traceback" not in screen
    assert "not confirmed, nothing was changed" in screen, screen
    assert lab.stack(f"{PROJECT}-prod")["Parameters"] == before
    left = [c for c in lab.client("cloudformation").list_change_sets(StackName=f"{PROJECT}-prod")["Summaries"]
            if c.get("ExecutionStatus") not in ("EXECUTE_COMPLETE", "EXECUTE_FAILED", "OBSOLETE")]
    assert left == [], left
    assert lab.lock_item("prod") is None
