"""`make venv`: pip's noise stays in .venv/install.log unless the install fails, and the stamp
(.venv/.installed-<cksum of pyproject.toml>) still decides whether to install at all.

Runs the real Makefile with make, in a copy of the repository's Makefile and pyproject.toml whose
.venv/bin/python is a stand-in that answers `-m pip install` like a fresh pip (warnings and all)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, need

FAKE_PYTHON = """#!/bin/sh
# A stand-in for the venv's python: `-m pip install ...` is noisy, and fails when told to.
echo "$*" >> "$(dirname "$0")/../pip-calls"
echo "Obtaining file://$PWD"
echo "WARNING: Running pip as the 'root' user can result in broken permissions" >&2
echo "DEPRECATION: Legacy editable install of mvp-tasks is deprecated" >&2
if [ -e "$(dirname "$0")/../pip-fails" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement moto[server]>=5" >&2
  exit 1
fi
echo "Successfully installed mvp-tasks-0.1.0"
"""


@pytest.fixture
def project(tmp_path) -> Path:
    need(shutil.which("make") is not None, "make is not installed (apt-get install make)")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def make(project: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *targets], cwd=project, capture_output=True, text=True,
                          timeout=60, check=False)


def stamps(project: Path) -> list[str]:
    return sorted(p.name for p in (project / ".venv").glob(".installed-*"))


def pip_calls(project: Path) -> list[str]:
    calls = project / ".venv" / "pip-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def cksum(project: Path) -> str:
    return subprocess.run(["cksum", "pyproject.toml"], cwd=project, capture_output=True, text=True,
                          check=True).stdout.split()[0]


def test_a_successful_install_shows_one_line_and_keeps_the_rest_in_the_log(project):
    result = make(project, "venv")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "installing the tool and its test dependencies into .venv (log: .venv/install.log)"]
    log = (project / ".venv" / "install.log").read_text()
    assert "WARNING: Running pip as the 'root' user" in log and "Successfully installed" in log
    assert pip_calls(project) == ["-m pip install --disable-pip-version-check --no-input -e .[test]"]
    assert stamps(project) == [f".installed-{cksum(project)}"]


def test_the_stamp_skips_a_second_install_and_a_changed_pyproject_installs_again(project):
    assert make(project, "venv").returncode == 0
    first = stamps(project)

    again = make(project, "venv")

    assert again.returncode == 0 and "installing" not in again.stdout
    assert len(pip_calls(project)) == 1

    with open(project / "pyproject.toml", "a") as handle:
        handle.write("\n# changed\n")
    changed = make(project, "venv")

    assert changed.returncode == 0 and "installing" in changed.stdout
    assert len(pip_calls(project)) == 2
    assert stamps(project) == [f".installed-{cksum(project)}"] != first


def test_a_failed_install_shows_pips_output_and_leaves_no_stamp(project):
    (project / ".venv" / "pip-fails").write_text("")

    result = make(project, "venv")

    assert result.returncode != 0
    assert "ERROR: Could not find a version that satisfies the requirement moto[server]>=5" in result.stderr
    assert "WARNING: Running pip as the 'root' user" in result.stderr
    assert "make: pip install -e '.[test]' failed (full log: .venv/install.log)" in result.stderr
    assert stamps(project) == []

    # Fixed, the next run installs (no stale stamp stands in the way).
    (project / ".venv" / "pip-fails").unlink()
    assert make(project, "venv").returncode == 0
    assert stamps(project) == [f".installed-{cksum(project)}"]
