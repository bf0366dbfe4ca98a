"""A command the interrupt stopped is the run's `Interrupted`, not a failure of the command: one
killed by SIGINT or SIGTERM (a terminal's Ctrl-C reaches the whole process group; a CI cancels with
SIGTERM), and a `docker build` the CLI cancelled on that signal ("context canceled")."""

from __future__ import annotations

import pytest
from invoke import MockContext, Result

from mvp_tasks.errors import BuildError
from mvp_tasks.image.docker import Docker
from mvp_tasks.image.runner import Runner
from mvp_tasks.errors import Interrupted

CANCELLED = ("#7 [3/3] RUN echo slow-step-started && sleep 20\n#7 0.140 slow-step-started\n#7 CANCELED\n",
             "context canceled\n")


@pytest.mark.parametrize("code", [-2, -15, 130, 143])
def test_a_command_killed_by_the_interrupt_is_interrupted(code):
    runner = Runner(MockContext(run={"git -C /r status": Result(exited=code)}))

    with pytest.raises(Interrupted) as raised:
        runner.run(["git", "-C", "/r", "status"])

    assert "git -C /r" in str(raised.value) and "was stopped" in str(raised.value)


@pytest.mark.parametrize("code", [1, 2, 127, 137])
def test_other_exits_are_failures(code):
    runner = Runner(MockContext(run={"git -C /r status": Result(exited=code, stderr="fatal: nope\n")}))

    with pytest.raises(BuildError):
        runner.run(["git", "-C", "/r", "status"])


def build(stdout: str, stderr: str, code: int) -> None:
    context = MockContext(run={"docker build --tag x:1 /ctx": Result(exited=code, stdout=stdout, stderr=stderr)})
    Docker(Runner(context)).build("/ctx", ["x:1"])


def test_a_docker_build_cancelled_by_its_cli_is_interrupted():
    with pytest.raises(Interrupted):
        build(*CANCELLED, 1)


def test_a_docker_build_that_failed_is_a_build_error_with_its_tail():
    with pytest.raises(BuildError) as raised:
        build("#7 [3/3] RUN false\n", "ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n",
              1)
    assert "docker build of x:1 failed (exit 1)" in str(raised.value) and "did not complete" in str(raised.value)
