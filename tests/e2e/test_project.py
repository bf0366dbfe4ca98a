"""`project.check` and `project.new` end to end: `inv` as a subprocess in copies of the studio (git
repositories where the test needs one), `ci.release` against the moto server, the OCI registry and
the private Docker engine, read back with boto3 and the registry's HTTP API."""

from __future__ import annotations

import difflib
import signal

import pytest
import yaml

from conftest import (BIN, PROJECT, ROOT, assert_one_line_error, git, inv_env, link_sandbox, make_studio_repo,
                      run_inv)
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab

from tests.support.signals import Child, as_background_job, dispositions

pytestmark = pytest.mark.e2e

NEW = "gift-shop"
TEMPLATE = f"projects/{PROJECT}/deploy.yml"
# A resource with a property S3 buckets do not have: cfn-lint's E3002, on the property's line.
BROKEN_RESOURCE = "  Broken:\n    Type: AWS::S3::Bucket\n    Properties:\n      NotAProperty: 1\n"


def with_broken_resource(text: str) -> tuple[str, int]:
    """The template with BROKEN_RESOURCE first under Resources, and the line of its bad property."""
    lines = text.splitlines(keepends=True)
    at = lines.index("Resources:\n") + 1
    return "".join(lines[:at]) + BROKEN_RESOURCE + "".join(lines[at:]), at + 4


def git_status(work, git_env: dict) -> str:
    return git(work, "status", "--porcelain", "--untracked-files=all", env=git_env).stdout


def inserted_lines(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`; fails if any line of `before` was changed or removed."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert not [d for d in diff if d.startswith("- ")], diff
    return [d[2:] for d in diff if d.startswith("+ ")]


# --- project.check ----------------------------------------------------------------------------------


def test_check_passes_on_the_studio(studio):
    result = run_inv(studio, "project.check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 0 errors" in result.stdout, result.stdout
    assert result.stderr == ""


def test_check_names_the_file_and_line_of_a_broken_template(studio):
    path = studio / TEMPLATE
    text, line = with_broken_resource(path.read_text())
    path.write_text(text)

    result = run_inv(studio, "project.check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = result.stderr.splitlines()
    assert errors and all(e.startswith("error: ") for e in errors), result.stderr
    (lint,) = [e for e in errors if "E3002" in e]
    assert lint.startswith(f"error: {TEMPLATE}:{line}:"), lint
    assert "NotAProperty" in lint and "fix: correct the template" in lint
    assert lint in result.stdout and "failed: " in result.stdout
    # Only that project's findings: the named project, with --json for scripts.
    named = run_inv(studio, "project.check", PROJECT, "--json")
    assert named.returncode == 1
    report = yaml.safe_load(named.stdout)
    assert {(f["file"], f["line"]) for f in report["findings"] if f["level"] == "error"} >= {(TEMPLATE, line)}


def test_check_names_the_config_line_of_a_bad_key(studio):
    config = (studio / "invoke.yaml").read_text()
    (studio / "invoke.yaml").write_text(config.replace("      protected: false\n", "      protectd: false\n"))
    line = next(n for n, text in enumerate((studio / "invoke.yaml").read_text().splitlines(), 1) if "protectd" in text)

    result = run_inv(studio, "project.check")

    assert_one_line_error(result, f"error: invoke.yaml:{line}: config mvp.clusters.stage.protectd: unknown key")


def test_check_of_a_project_without_a_dockerfile_and_with_a_pointer_file(studio):
    (studio / f"projects/{PROJECT}/Dockerfile").unlink()
    (studio / f"projects/{PROJECT}/site/img/hero.png").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 4096\n")

    result = run_inv(studio, "project.check", PROJECT)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: projects/{PROJECT}/Dockerfile: the project has no Dockerfile, so no image can be built; "
        f"fix: add one (projects/{PROJECT}/Dockerfile is an example)",
        f"error: projects/{PROJECT}/site/img/hero.png: a Git LFS pointer file, not its content: the image would "
        f'ship the pointer; fix: fetch it with: git lfs pull --include "projects/{PROJECT}/**"',
    ]


# --- project.new: bad input changes nothing ---------------------------------------------------------


@pytest.fixture
def repo(tmp_path, git_env):
    """A committed studio (no services needed: project.new touches only files)."""
    return make_studio_repo(tmp_path, git_env, lfs=False)


@pytest.mark.parametrize("args, fragments", [
    ([PROJECT], [f"projects/{PROJECT}/ exists already"]),
    (["Gift_Shop"], ["'Gift_Shop' is not a valid project name"]),
    (["9lives"], ["'9lives' is not a valid project name"]),
    ([NEW, "--clusters", "stage,qa"], ["unknown cluster 'qa' (configured: prod, stage)"]),
    ([NEW, "--clusters", ""], ["--clusters: the value is empty"]),
    ([NEW, "--port", "70000"], ["--port '70000': give a port number from 1 to 65535"]),
], ids=["existing-project", "bad-name", "leading-digit", "unknown-cluster", "empty-clusters", "bad-port"])
def test_new_refuses_bad_input_in_one_line_and_changes_nothing(repo, git_env, args, fragments):
    env = inv_env(**git_env)
    assert git_status(repo.work, git_env) == ""

    result = run_inv(repo.work, "project.new", *args, env=env)

    assert_one_line_error(result, *fragments)
    assert git_status(repo.work, git_env) == ""


def test_new_refuses_a_configured_name_without_its_folder(tmp_path, git_env):
    config = (ROOT / "invoke.yaml").read_text() + f"    {NEW}:\n      clusters: [stage]\n"
    repo = make_studio_repo(tmp_path, git_env, lfs=False, files={"invoke.yaml": config})

    result = run_inv(repo.work, "project.new", NEW, env=inv_env(**git_env))

    assert_one_line_error(result, f"mvp.projects.{NEW} is configured already")
    assert git_status(repo.work, git_env) == ""


def test_new_from_an_example_that_fails_the_checks_makes_nothing(tmp_path, git_env):
    text, line = with_broken_resource((ROOT / TEMPLATE).read_text())
    repo = make_studio_repo(tmp_path, git_env, lfs=False, files={TEMPLATE: text})

    result = run_inv(repo.work, "project.new", NEW, env=inv_env(**git_env))

    assert_one_line_error(result, "the new project would fail project.check", f"projects/{NEW}/deploy.yml:{line}:",
                          "E3002", "nothing was made")
    assert git_status(repo.work, git_env) == ""


def interrupt_new(repo, git_env, *signums: int, background: bool = False) -> tuple[int, str, str]:
    """`inv project.new NEW`, sent `signums` one after the other while the made files are checked;
    with `background`, started as a script's background job starts it (SIGINT ignored)."""
    env = link_sandbox(repo.work, inv_env(**git_env))
    args = [BIN / "inv", "project.new", NEW]
    with Child(as_background_job(args) if background else args, cwd=repo.work, env=env) as child:
        # The hidden folder the files are made in: from then on, until the checks of the made files
        # (cfn-lint, seconds) are done, nothing is in place yet.
        child.wait_until(lambda: list((repo.work / "projects").glob(f".{NEW}.new-*")),
                         "project.new made its hidden folder")
        assert dispositions(child.proc.pid) == {"SIGINT": "ignored" if background else "caught", "SIGTERM": "caught"}
        for signum in signums:
            child.send(signum)
        return child.finish(timeout=60)


def assert_nothing_made(repo, git_env) -> None:
    assert git_status(repo.work, git_env) == ""
    left = [p.name for p in (repo.work / "projects").iterdir() if p.name.startswith(".")]
    left += [p.name for p in repo.work.glob(".invoke.yaml.*")]
    assert left == [], left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_new_interrupted_while_making_the_files_leaves_nothing(repo, git_env, signum):
    code, stdout, stderr = interrupt_new(repo, git_env, signum)
    assert code == 130, stdout + stderr
    assert stderr.strip() == "interrupted: nothing was made", stderr
    assert_nothing_made(repo, git_env)


def test_new_interrupted_twice_at_once_still_leaves_nothing(repo, git_env):
    code, stdout, stderr = interrupt_new(repo, git_env, signal.SIGINT, signal.SIGTERM)
    assert code == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert_nothing_made(repo, git_env)


def test_new_in_the_background_of_a_script_ignores_ctrl_c_and_stops_on_sigterm(repo, git_env):
    code, stdout, stderr = interrupt_new(repo, git_env, signal.SIGINT, signal.SIGTERM, background=True)
    assert code == 130, stdout + stderr
    assert stderr.strip() == "interrupted: nothing was made", stderr
    assert_nothing_made(repo, git_env)


# --- project.new, a commit, ci.release: the new app runs in stage -------------------------------------


@pytest.fixture(scope="class")
def shipped(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("new-project"), git_env, image_services, moto_server)
    clusters_up(lab, prod=False)
    config_before = (lab.work / "invoke.yaml").read_text()
    out = {"new": lab.ok("project.new", NEW, "--port", "8080")}
    out["status"] = git_status(lab.work, git_env)
    out["check"] = lab.ok("project.check")
    out["commit"] = lab.commit({}, f"{NEW}: new project")
    out["release"] = lab.ok("ci.release", timeout=2 * BUILD_TIMEOUT)
    return lab, out, config_before


class TestNewProjectShips:
    def test_new_made_the_folder_and_the_config_entry_only(self, shipped):
        lab, out, config_before = shipped
        assert sorted(out["status"].splitlines()) == sorted([
            " M invoke.yaml", f"?? projects/{NEW}/Dockerfile", f"?? projects/{NEW}/deploy.yml",
            f"?? projects/{NEW}/nginx.conf", f"?? projects/{NEW}/site/index.html"]), out["status"]
        after = (lab.work / "invoke.yaml").read_text()
        # Comments and layout kept: every line as it was, the entry added as one block.
        assert inserted_lines(config_before, after) == [
            f"    {NEW}:", "      clusters: [stage]", "      parameters:", "        ContainerPort: 8080"]
        config = yaml.safe_load(after)
        assert config["mvp"]["projects"][NEW] == {"clusters": ["stage"], "parameters": {"ContainerPort": 8080}}
        before = yaml.safe_load(config_before)
        del config["mvp"]["projects"][NEW]
        assert config == before
        deploy = (lab.work / f"projects/{NEW}/deploy.yml").read_text()
        assert PROJECT not in deploy and NEW in deploy
        assert "EXPOSE 8080" in (lab.work / f"projects/{NEW}/Dockerfile").read_text()
        assert "ok: 0 errors" in out["check"].stdout, out["check"].stdout

    def test_release_runs_the_new_app_in_stage(self, shipped):
        lab, out, _ = shipped
        commit, release = out["commit"], out["release"]
        assert f"changed: {NEW}@stage  {commit[:12]} released" in release.stdout, release.stdout
        stack = lab.stack(f"{NEW}-stage")
        assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE"
        parameters = lab.parameters(f"{NEW}-stage")
        assert parameters["Image"] == f"{lab.registry}/{NEW}:stage"
        assert parameters["ContainerPort"] == "8080"
        service = lab.service("stage", f"{NEW}-stage")
        assert service is not None and service["desiredCount"] == 1
        definition = lab.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
        (container,) = definition["taskDefinition"]["containerDefinitions"]
        assert container["image"] == f"{lab.registry}/{NEW}:stage"
        digest = lab.digest(commit, NEW)
        assert digest and lab.digest("stage", NEW) == digest
        image = lab.services.image(f"{lab.registry}/{NEW}:{commit}")
        assert image is not None and "8080/tcp" in image["Config"]["ExposedPorts"]
        assert [(r["action"], r["commit"], r["outcome"]) for r in lab.history("stage", NEW)] == [
            ("release", commit, "succeeded")]


# --- ci.release refuses to ship a project that fails project.check ------------------------------------


@pytest.fixture(scope="class")
def refused(tmp_path_factory, git_env, image_services, moto_server):
    config = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    config["mvp"]["projects"]["no-dockerfile"] = {"clusters": ["stage"]}
    files = {"invoke.yaml": yaml.safe_dump(config, sort_keys=False),
             "projects/no-dockerfile/deploy.yml": (ROOT / TEMPLATE).read_text().replace(PROJECT, "no-dockerfile"),
             "projects/no-dockerfile/site/index.html": "<!doctype html><title>x</title>\n"}
    lab = new_lab(tmp_path_factory.mktemp("refused"), git_env, image_services, moto_server, files=files)
    clusters_up(lab, prod=False)
    return lab


class TestReleaseRefusesAFailingProject:
    REFUSAL = ("not shipping no-dockerfile: project.check: projects/no-dockerfile/Dockerfile: "
               "the project has no Dockerfile")

    def test_check_mode_says_failed_not_would_build(self, refused):
        result = refused.inv("ci.release", "--check", timeout=BUILD_TIMEOUT)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"failed: no-dockerfile@stage  {self.REFUSAL}" in result.stdout, result.stdout
        assert "no-dockerfile@stage: would" not in result.stdout
        assert f"error: no-dockerfile@stage: {self.REFUSAL}" in result.stderr.splitlines()[0], result.stderr
        # The other project is planned as usual.
        assert f"would change: {PROJECT}@stage" in result.stdout

    def test_release_of_only_that_project_is_one_line_and_ships_nothing(self, refused):
        stacks = refused.live_stacks()

        result = refused.inv("ci.release", "--only", "no-dockerfile", "--yes", timeout=BUILD_TIMEOUT)

        assert_one_line_error(result, self.REFUSAL, "see `inv project.check no-dockerfile`")
        assert refused.live_stacks() == stacks and refused.stack("no-dockerfile-stage") is None
        assert refused.tags("no-dockerfile") == []

    def test_plan_leaves_it_out_of_the_matrix_and_fails(self, refused):
        result = refused.inv("ci.plan", "--json", timeout=BUILD_TIMEOUT)
        assert result.returncode == 1
        matrix = yaml.safe_load(result.stdout)
        assert [m["project"] for m in matrix] == [PROJECT]
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: no-dockerfile@stage: {self.REFUSAL}"), line

