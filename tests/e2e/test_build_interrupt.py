"""Ctrl-C during `app.build` is an interrupt, said once: exit 130, the target `interrupted`, no
`docker build ... failed` with its output tail. At a terminal Ctrl-C reaches the whole foreground process group, so `docker build`
gets SIGINT too and cancels: that cancelled build is the interrupt, not a build failure. `inv` runs
as a subprocess against the private Docker engine; the engine is read back afterwards."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import BIN, PROJECT, link_sandbox
from test_lifecycle import new_lab

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.signals import Child  # noqa: E402

pytestmark = pytest.mark.e2e

DOCKERFILE = f"projects/{PROJECT}/Dockerfile"


@pytest.fixture
def slow_build(tmp_path, git_env, image_services, moto_server):
    """A studio whose image takes a while to build (a RUN step that sleeps), committed."""
    lab = new_lab(tmp_path, git_env, image_services, moto_server, reset=False)
    dockerfile = (lab.work / DOCKERFILE).read_text().replace(
        "EXPOSE 80", "RUN echo slow-step-started && sleep 20\nEXPOSE 80")
    commit = lab.commit({DOCKERFILE: dockerfile}, "a slow build")
    return lab, commit


def test_ctrl_c_during_a_build_is_one_interrupted_line_and_exit_130(slow_build):
    lab, commit = slow_build
    env = link_sandbox(lab.work, dict(lab.env))
    with Child([BIN / "inv", "app.build", PROJECT], cwd=lab.work, env=env) as child:
        child.wait_for_output("slow-step-started", timeout=240)
        # What a terminal's Ctrl-C does: SIGINT to the whole foreground process group, docker too.
        os.killpg(child.proc.pid, signal.SIGINT)
        code, out, err = child.finish(timeout=120)

    said = out + err
    key = f"{PROJECT}:{commit[:12]}"
    assert code == 130, said
    assert "Traceback" not in said, said
    # The interrupt, not a failed build: the target's message is "interrupted", once on stdout and
    # once on stderr, and the run's last line says so.
    assert "docker build of" not in said, said
    assert f"{key}  interrupted\n" in out, out
    assert err.count(f"error: {key}: interrupted\n") == 1, err
    assert err.rstrip().splitlines()[-1] == "interrupted: nothing is left running", err
    assert "see above" not in said, said
    # Nothing was tagged with the commit: the build did not finish.
    assert lab.services.image(f"{lab.registry}/{PROJECT}:{commit}") is None
