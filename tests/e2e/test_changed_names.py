"""A commit that changes only files whose names git would quote (non-ASCII bytes, spaces) is a
change: `inv ci.plan` lists the project. `inv` runs as a subprocess against the moto server, the
registry and dockerd, in a real git repository; what was released is read back from the store."""

from __future__ import annotations

import json

import pytest

from conftest import PROJECT
from test_lifecycle import BUILD_TIMEOUT, new_lab, records

pytestmark = pytest.mark.e2e


def planned(lab) -> dict[str, list[str]]:
    result = lab.ok("ci.plan", "--cluster", "stage", "--json")
    return {entry["project"]: entry["reasons"] for entry in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def released(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("names"), git_env, image_services, moto_server)
    lab.ok("cluster.up", "--name", "stage")
    lab.ok("ci.release", "--cluster", "stage", timeout=BUILD_TIMEOUT)
    assert records(lab, "stage", "release")[-1]["commit"] == lab.repo.commit
    assert planned(lab) == {}  # the premise: stage runs HEAD
    return lab


def test_a_commit_changing_only_a_non_ascii_name_is_planned(released):
    lab = released
    lab.commit({f"projects/{PROJECT}/site/img/café.png": "not really a picture\n"}, "add café.png")

    assert planned(lab) == {PROJECT: [f"1 file(s) under projects/{PROJECT}/"]}


def test_a_name_with_spaces_is_one_file_named_whole(released):
    lab = released
    lab.ok("ci.release", "--cluster", "stage", timeout=BUILD_TIMEOUT)
    assert planned(lab) == {}
    # A shared file (it changes every project): the reason names it, spaces and all.
    lab.commit({"mvp_tasks/notes with space.txt": "hello\n"}, "add a spaced name")

    assert planned(lab) == {PROJECT: ["the tool's own files: mvp_tasks/notes with space.txt"]}
