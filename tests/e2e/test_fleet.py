"""A fleet end to end: a studio of six apps, released, promoted and rolled back as one plan each.

`inv` runs as a subprocess against the moto server, the sandbox's registry and dockerd; every
step's state is read back with boto3 and the registry's HTTP API:

    ci.plan --json      lists every app (nothing runs yet)
    ci.release          releases them side by side; ci.plan --json is then []
    app.promote --tag prod          promotes all of them, one confirmed plan
    (a second commit, released and promoted)
    app.rollback --cluster prod     brings every app back to the commit it ran before
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PROJECT, git
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab, records

ROOT = Path(__file__).resolve().parents[2]
EXTRA = [f"app-{n}" for n in range(1, 6)]
APPS = [PROJECT, *EXTRA]


def fleet_files() -> dict[str, str]:
    """Five more apps like museum-adventure (its Dockerfile and template), each with its own page."""
    source = ROOT / "projects" / PROJECT
    files = {}
    for name in EXTRA:
        files[f"projects/{name}/Dockerfile"] = (source / "Dockerfile").read_text()
        files[f"projects/{name}/deploy.yml"] = (source / "deploy.yml").read_text()
        files[f"projects/{name}/site/index.html"] = f"<h1>{name}</h1>\n"
    config = (ROOT / "invoke.yaml").read_text().rstrip("\n") + "\n"
    config += "".join(f"    {name}:\n      clusters: [stage, prod]\n" for name in EXTRA)
    files["invoke.yaml"] = config
    return files


def commit_change(lab, message: str) -> str:
    for name in APPS:
        page = lab.work / "projects" / name / "site" / "index.html"
        page.write_text(page.read_text() + f"\n<!-- {message} -->\n")
    git(lab.work, "add", "-A", env=lab.git_env)
    git(lab.work, "commit", "-q", "-m", message, env=lab.git_env)
    return git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()


def plan_json(lab, cluster: str = "stage") -> list[dict]:
    result = lab.ok("ci.plan", "--cluster", cluster, "--json")
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("fleet"), git_env, image_services, moto_server, files=fleet_files())
    clusters_up(lab)
    first = lab.repo.commit
    out = {"plan_before": plan_json(lab)}
    out["release"] = lab.ok("ci.release", "--parallel", "4", timeout=BUILD_TIMEOUT * 2)
    out["plan_after"] = plan_json(lab)
    out["stage_digests_1"] = {name: lab.digest("stage", name) for name in APPS}
    out["promote"] = lab.ok("app.promote", "--tag", "prod", "--yes", "--parallel", "4", timeout=BUILD_TIMEOUT)
    out["prod_digests_1"] = {name: lab.digest("prod", name) for name in APPS}
    second = commit_change(lab, "second release")
    out["release_2"] = lab.ok("ci.release", timeout=BUILD_TIMEOUT * 2)
    out["promote_2"] = lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    out["prod_digests_2"] = {name: lab.digest("prod", name) for name in APPS}
    out["rollback"] = lab.ok("app.rollback", "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    out["prod_digests_3"] = {name: lab.digest("prod", name) for name in APPS}
    return lab, out, first, second


def test_plan_lists_every_app_with_its_reason_then_nothing(fleet):
    lab, out, first, _ = fleet
    assert sorted(entry["project"] for entry in out["plan_before"]) == sorted(APPS)
    assert all(entry["cluster"] == "stage" and entry["reasons"] for entry in out["plan_before"])
    assert all("nothing deployed yet" in entry["reasons"] for entry in out["plan_before"])
    assert out["plan_after"] == []


def test_release_ships_every_app_and_reads_back_from_aws_and_the_registry(fleet):
    lab, out, first, _ = fleet
    release = out["release"].stdout
    for name in APPS:
        stack = lab.stack(f"{name}-stage")
        assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE", name
        digest = out["stage_digests_1"][name]
        assert digest and digest == lab.digest(first, name), name
        assert f"changed: {name}@stage" in release, release
        rec = records(lab, "stage", "release", name)
        assert rec and rec[0]["commit"] == first and rec[0]["outcome"] == "succeeded", rec
        assert lab.lock_item("stage", name) is None
    assert "recap: ok=0 changed=6 skipped=0 failed=0" in release
    # The summary table names every target with its outcome and commit.
    summary = release[release.index("target"):]
    assert all(name in summary for name in APPS) and first[:12] in summary


def test_promote_gives_prod_the_stage_image_of_every_app(fleet):
    lab, out, first, _ = fleet
    for name in APPS:
        assert out["prod_digests_1"][name] == out["stage_digests_1"][name], name
        stack = lab.stack(f"{name}-prod")
        assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE", name
        assert records(lab, "prod", "promote", name)[0]["commit"] == first
    assert "recap: ok=0 changed=6 skipped=0 failed=0" in out["promote"].stdout


def test_a_second_release_and_promote_move_every_app(fleet):
    lab, out, first, second = fleet
    for name in APPS:
        assert out["prod_digests_2"][name] == lab.digest(second, name) != out["prod_digests_1"][name], name
    assert "recap: ok=0 changed=6" in out["release_2"].stdout
    assert "recap: ok=0 changed=6" in out["promote_2"].stdout


def test_rollback_without_a_name_brings_every_app_back_to_its_previous_commit(fleet):
    lab, out, first, second = fleet
    for name in APPS:
        assert out["prod_digests_3"][name] == out["prod_digests_1"][name], name
        newest = records(lab, "prod", "rollback", name)[-1]
        assert (newest["commit"], newest["outcome"]) == (first, "succeeded"), newest
    assert "recap: ok=0 changed=6" in out["rollback"].stdout


def test_a_rollback_without_terminal_or_yes_is_refused_and_changes_nothing(fleet):
    lab, out, _, _ = fleet
    before = {name: lab.digest("prod", name) for name in APPS}
    result = lab.inv("app.rollback", "--cluster", "prod")
    assert result.returncode == 1
    assert "needs confirmation" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert {name: lab.digest("prod", name) for name in APPS} == before
    cfn = lab.client("cloudformation")
    for name in APPS:
        left = [c for c in cfn.list_change_sets(StackName=f"{name}-prod")["Summaries"]
                if c.get("ExecutionStatus") not in ("EXECUTE_COMPLETE", "EXECUTE_FAILED", "OBSOLETE")]
        assert left == [], left


def test_history_lists_every_action_newest_first_with_who_and_how_long(fleet):
    lab, out, first, second = fleet
    entries = json.loads(lab.ok("app.history", PROJECT, "--cluster", "prod", "--json").stdout)
    assert [(e["action"], e["commit"]) for e in entries[:3]] == [
        ("rollback", first), ("promote", second), ("promote", first)], entries
    assert all(e["outcome"] == "succeeded" and e["digest"].startswith("sha256:") and e["by"] for e in entries)
    assert all(float(e["duration"]) >= 0 for e in entries[:3]), entries
    both = json.loads(lab.ok("app.history", PROJECT, "--json", "--limit", "50").stdout)
    assert {e["cluster"] for e in both} == {"stage", "prod"}
    assert [e["at"] for e in both] == sorted((e["at"] for e in both), reverse=True)
    table = lab.ok("app.history", PROJECT, "--limit", "2").stdout
    assert "rollback" in table and first[:12] in table and len(table.strip().splitlines()) == 4, table

    github = dict(lab.env, GITHUB_ACTOR="octocat", GITHUB_SERVER_URL="https://github.example",
                  GITHUB_REPOSITORY="studio/mono", GITHUB_RUN_ID="42")
    lab.ok("app.update", "app-1", "--cluster", "stage", env=github)
    newest = json.loads(lab.ok("app.history", "app-1", "--cluster", "stage", "--json", "--limit", "1").stdout)[0]
    assert (newest["action"], newest["actor"], newest["run_url"]) == (
        "update", "octocat", "https://github.example/studio/mono/actions/runs/42"), newest


FIELDS = ("cluster", "action", "outcome", "commit", "digest", "at")


def test_history_json_of_every_app_is_the_deploy_stores_items_newest_first(fleet):
    """`app.history --json` against the store's items read with boto3, for every app: each entry is
    one item (its sort key is its time), as many as the limit allows, newest first."""
    lab, out, first, second = fleet
    for name in APPS:
        items = [i for cluster in ("stage", "prod") for i in lab.history(cluster, name)]
        assert {i["cluster"] for i in items} == {"stage", "prod"} and len(items) >= 5, items
        assert all(i["sk"] == f"at#{i['at']}" for i in items), items
        newest = sorted(items, key=lambda i: i["at"], reverse=True)
        expected = [tuple(i.get(k, "") for k in FIELDS) for i in newest]
        assert len(set(expected)) == len(expected), expected  # one item per entry: none listed twice
        # The default limit (20) is more than any app has: everything; then only the newest two.
        for limit, args in ((20, ()), (2, ("--limit", "2"))):
            entries = json.loads(lab.ok("app.history", name, "--json", *args).stdout)
            listed = [tuple(e[k] for k in FIELDS) for e in entries]
            assert listed == expected[:limit], (name, limit, listed, expected)
        # What the fleet did is there: both releases in stage, both promotions and the rollback in prod.
        done = {(i["cluster"], i["action"], i["commit"]) for i in items if i["outcome"] == "succeeded"}
        assert {("stage", "release", first), ("stage", "release", second), ("prod", "promote", first),
                ("prod", "promote", second), ("prod", "rollback", first)} <= done, (name, done)


# --- a fleet through faults: every app on its own line, and nothing one app does stops another ---


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, git_env, image_services, moto_server):
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.support.aws_proxy import AwsProxy

    lab = new_lab(tmp_path_factory.mktemp("faulty"), git_env, image_services, moto_server, files=fleet_files())
    clusters_up(lab)
    with AwsProxy(lab.moto.endpoint, seed=7) as proxy:
        yield lab, proxy


def result_lines(stdout: str) -> dict[str, str]:
    lines = {}
    for line in stdout.splitlines():
        for outcome in ("ok", "changed", "skipped", "failed"):
            if line.startswith(f"{outcome}: ") and "@stage" in line:
                lines[line.split()[1]] = outcome
    return lines


def test_at_a_20_percent_fault_rate_every_app_converges_in_one_run(faulty):
    lab, proxy = faulty
    proxy.fault_rate, proxy.faults = 0.2, ("throttle", "5xx", "reset")
    result = lab.inv("ci.release", env=dict(lab.env, AWS_ENDPOINT_URL=proxy.url), timeout=BUILD_TIMEOUT * 3)
    proxy.fault_rate = 0
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(call.fault for call in proxy.calls), "the proxy injected no fault"
    assert result_lines(result.stdout) == {f"{name}@stage": "changed" for name in APPS}, result.stdout
    for name in APPS:
        assert lab.stack(f"{name}-stage")["StackStatus"] == "CREATE_COMPLETE"
        assert lab.digest("stage", name) == lab.digest(lab.repo.commit, name)
        assert lab.lock_item("stage", name) is None


def test_at_a_60_percent_fault_rate_every_app_is_reported_and_a_plain_rerun_converges(faulty):
    lab, proxy = faulty
    commit_change(lab, "through heavy faults")
    # 5xx and resets only: botocore backs off 50 ms x 2^n after those (1 s x 2^n after throttles),
    # which keeps the run short while most calls still need retries and some exhaust them.
    proxy.fault_rate, proxy.faults = 0.6, ("5xx", "reset")
    result = lab.inv("ci.release", env=dict(lab.env, AWS_ENDPOINT_URL=proxy.url), timeout=BUILD_TIMEOUT * 3)
    proxy.fault_rate = 0
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert set(result_lines(result.stdout)) == {f"{name}@stage" for name in APPS}, result.stdout
    assert "recap: " in result.stdout
    failed = [k for k, v in result_lines(result.stdout).items() if v == "failed"]
    assert (result.returncode != 0) == bool(failed), result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == len(failed)

    rerun = lab.ok("ci.release", timeout=BUILD_TIMEOUT * 3)
    assert "failed=0" in rerun.stdout, rerun.stdout
    head = git(lab.work, "rev-parse", "HEAD", env=lab.git_env).stdout.strip()
    assert plan_json(lab) == []
    for name in APPS:
        assert lab.digest("stage", name) == lab.digest(head, name), name
        assert lab.lock_item("stage", name) is None


# --- fleet.up: everything in invoke.yaml from nothing, as one plan -------------------------------


def test_fleet_up_creates_the_clusters_then_their_apps_and_is_then_converged(tmp_path, git_env, image_services,
                                                                           moto_server):
    lab = new_lab(tmp_path, git_env, image_services, moto_server)
    lab.ok("app.push", PROJECT, timeout=BUILD_TIMEOUT)
    lab.ok("app.push", PROJECT, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    assert lab.stack("stage") is None and lab.stack("prod") is None

    refused = lab.inv("fleet.up")
    assert refused.returncode == 1 and "needs confirmation" in refused.stderr, refused.stdout + refused.stderr
    assert lab.stack("stage") is None, "a refused plan changes nothing"

    result = lab.ok("fleet.up", "--yes", timeout=BUILD_TIMEOUT)
    assert f"+ planned once stage is applied" in result.stdout, result.stdout
    for cluster in ("stage", "prod"):
        assert lab.stack(cluster)["StackStatus"] == "CREATE_COMPLETE"
        assert lab.stack(f"{PROJECT}-{cluster}")["StackStatus"] == "CREATE_COMPLETE"
        assert f"changed: {PROJECT}@{cluster}" in result.stdout, result.stdout
    assert lab.stack("prod")["EnableTerminationProtection"] is True
    assert "recap: ok=0 changed=4 skipped=0 failed=0" in result.stdout

    again = json.loads(lab.ok("fleet.up", "--check", "--json").stdout)
    assert sorted(r["target"] for r in again) == sorted(["stage", "prod", f"{PROJECT}@stage", f"{PROJECT}@prod"])
    assert {r["outcome"] for r in again} == {"ok"}, again
