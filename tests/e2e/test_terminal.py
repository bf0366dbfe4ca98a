"""What a person at a terminal sees: `inv` on a pseudo-terminal (not CI), with the rich display.

While targets are applied there is one live line per target (a rich Live display, redrawn in place),
then the outcome lines, the summary table and the recap. The run's state is read back with boto3.
"""

from __future__ import annotations

from conftest import PROJECT, link_sandbox
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab

from tests.support.terminal import run_on_a_terminal


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
