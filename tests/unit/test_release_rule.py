"""The rule of which changes count for which app in which cluster (`plan.changes.release_reasons`),
on plain data: the files a commit changed and invoke.yaml before and after it."""

from __future__ import annotations

import copy

from mvp_tasks.plan.changes import builds_image, config_changes, release_reasons

CONFIG = {"mvp": {
    "registry": "", "region": "us-east-1",
    "clusters": {"stage": {"template": "infrastructure/fargate_cluster.yml"},
                 "prod": {"template": "infrastructure/fargate_cluster.yml", "protected": True,
                          "promote_from": "stage"}},
    "projects": {
        "museum": {"clusters": ["stage", "prod"], "parameters": {"DesiredCount": 1},
                   "environment": {"MODE": "demo"}, "secrets": ["API_KEY"],
                   "per_cluster": {"prod": {"parameters": {"DesiredCount": 2}}}},
        "shop": {"clusters": ["stage"]},
    },
}}


def changed(edit) -> dict:
    after = copy.deepcopy(CONFIG)
    edit(after["mvp"])
    return after


def reasons(files, after=None, project="museum", cluster="stage"):
    return release_reasons(files, CONFIG, after if after is not None else CONFIG, project, cluster)


def test_a_per_cluster_prod_change_counts_for_prod_only():
    after = changed(lambda m: m["projects"]["museum"]["per_cluster"]["prod"]["parameters"].update(DesiredCount=3))
    assert reasons(["invoke.yaml"], after, cluster="stage") == []
    assert reasons(["invoke.yaml"], after, cluster="prod") == [
        "its settings in invoke.yaml (mvp.projects.museum.per_cluster.prod.parameters.DesiredCount)"]
    assert not builds_image(["invoke.yaml"], CONFIG, after, "museum")


def test_a_new_per_cluster_entry_counts_for_its_cluster_only():
    after = changed(lambda m: m["projects"]["museum"]["per_cluster"].update(stage={"environment": {"X": "1"}}))
    assert reasons(["invoke.yaml"], after, cluster="prod") == []
    assert reasons(["invoke.yaml"], after, cluster="stage") == [
        "its settings in invoke.yaml (mvp.projects.museum.per_cluster.stage.environment.X)"]


def test_the_projects_own_parameters_environment_and_secrets_count_everywhere():
    after = changed(lambda m: m["projects"]["museum"].update(
        environment={"MODE": "live"}, secrets=["API_KEY", "DB_URL"]))
    for cluster in ("stage", "prod"):
        assert reasons(["invoke.yaml"], after, cluster=cluster) == [
            "its settings in invoke.yaml (mvp.projects.museum.environment.MODE, mvp.projects.museum.secrets.DB_URL)"]
    removed = changed(lambda m: m["projects"]["museum"].update(secrets=[]))
    assert config_changes(CONFIG, removed, "museum", "stage") == ["projects.museum.secrets.API_KEY"]


def test_empty_sections_equal_missing_ones():
    after = changed(lambda m: m["projects"]["shop"].update(environment={}, parameters=None, secrets=[]))
    assert reasons(["invoke.yaml"], after, project="shop") == []


def test_another_apps_files_and_settings_count_for_nothing():
    after = changed(lambda m: m["projects"]["shop"].update(parameters={"DesiredCount": 4}))
    files = ["projects/shop/site/index.html", "projects/shop/deploy.yml", "invoke.yaml"]
    assert reasons(files, after, cluster="stage") == []
    assert reasons(files, after, cluster="prod") == []
    assert reasons(files, after, project="shop") != []


def test_the_apps_build_context_needs_an_image_its_template_does_not():
    assert reasons(["projects/museum/site/index.html"]) == ["1 file(s) under projects/museum/"]
    assert builds_image(["projects/museum/site/index.html"], CONFIG, CONFIG, "museum")
    assert reasons(["projects/museum/deploy.yml"]) == ["its template projects/museum/deploy.yml"]
    assert not builds_image(["projects/museum/deploy.yml"], CONFIG, CONFIG, "museum")
    # Build arguments shape the image.
    after = changed(lambda m: m["projects"]["museum"].update(build_args={"THEME": "dark"}))
    assert builds_image(["invoke.yaml"], CONFIG, after, "museum")


def test_a_cluster_template_is_the_clusters_not_an_apps():
    assert reasons(["infrastructure/fargate_cluster.yml"]) == []
    # A cluster's own parameters and protection shape the cluster stack, not the app's.
    after = changed(lambda m: m["clusters"]["prod"].update(parameters={"VpcCidr": "10.9.0.0/16"}, protected=False))
    assert reasons(["invoke.yaml"], after, cluster="prod") == []
    # Its tag names the app's image there.
    after = changed(lambda m: m["clusters"]["prod"].update(tag="live"))
    assert reasons(["invoke.yaml"], after, cluster="prod") == ["its settings in invoke.yaml (mvp.clusters.prod.tag)"]
    assert reasons(["invoke.yaml"], after, cluster="stage") == []


def test_the_tools_own_code_counts_for_every_app_everywhere():
    for cluster in ("stage", "prod"):
        assert reasons(["mvp_tasks/plan/planner.py"], cluster=cluster) == [
            "the tool's own files: mvp_tasks/plan/planner.py"]
    assert reasons(["README.md", "docs/commands.md", ".github/workflows/deploy.yml"]) == []


def test_the_registry_counts_for_every_app():
    after = changed(lambda m: m.update(registry="registry.example.com/team"))
    assert reasons(["invoke.yaml"], after, project="shop") == ["its settings in invoke.yaml (mvp.registry)"]


def test_an_unreadable_config_counts():
    assert release_reasons(["invoke.yaml"], CONFIG, None, "museum", "stage") == [
        "invoke.yaml (not readable as YAML at one of the two commits)"]


# --- bad marks: the release a rollback left --------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from mvp_tasks.plan.release import bad_commits  # noqa: E402


def rec(action, commit, outcome="succeeded", at="2026-01-01T00:00:00"):
    return SimpleNamespace(action=action, commit=commit, outcome=outcome, at=at, succeeded=outcome == "succeeded")


def test_a_rollback_marks_the_release_it_left_bad():
    history = [rec("rollback", "A"), rec("promote", "B"), rec("promote", "A")]  # newest first
    assert list(bad_commits(history)) == ["B"]
    assert bad_commits(history)["B"].commit == "A"


def test_shipping_the_bad_commit_again_on_purpose_clears_the_mark():
    history = [rec("deploy", "B"), rec("rollback", "A"), rec("promote", "B"), rec("promote", "A")]
    assert bad_commits(history) == {}


def test_a_newer_commit_is_not_marked_and_failed_or_unrelated_records_do_not_count():
    history = [rec("release", "C"), rec("secret", ""), rec("rollback", "A"), rec("release", "B", "failed"),
               rec("release", "B"), rec("release", "A")]
    assert list(bad_commits(history)) == ["B"]


def test_rolling_back_twice_marks_only_the_last_release_left():
    history = [rec("rollback", "B"), rec("rollback", "A"), rec("promote", "B"), rec("promote", "A")]
    assert list(bad_commits(history)) == ["A"]


def unmark(commit, at="2026-01-02T00:00:00"):
    from mvp_tasks.plan.release import unmark_message

    return SimpleNamespace(action="unmark", commit="", outcome="succeeded", at=at, succeeded=True,
                           message=unmark_message(commit))


A40, B40 = "a" * 40, "b" * 40


def test_app_unmark_clears_a_mark_and_a_later_rollback_marks_again():
    marked = [rec("rollback", A40), rec("promote", B40), rec("promote", A40)]
    assert list(bad_commits([unmark(B40), *marked])) == []
    # An unmark older than the rollback does not clear the mark that rollback made.
    assert list(bad_commits([*marked[:1], unmark(B40), *marked[1:]])) == [B40]


def test_the_unmark_record_is_not_a_release():
    from mvp_tasks.plan.release import releases, unmarked_commit

    assert releases([unmark(B40)]) == []
    assert unmarked_commit(unmark(B40)) == B40 and unmarked_commit(rec("deploy", B40)) == ""


def test_the_bad_line_names_the_unmark_command():
    from mvp_tasks.plan.release import bad_line

    line = bad_line("museum", "prod", B40, rec("rollback", A40))
    assert f"inv app.unmark museum --cluster prod --commit {B40[:12]}" in line
    assert "a newer commit that changes museum ships as usual" in line


# --- a file the run reads at two commits is read once where git says it is the same -----------------


def _commit(repo, files: dict[str, str], message: str) -> str:
    import subprocess

    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_file_the_same_at_both_commits_is_read_once_and_a_changed_one_at_each(tmp_path, monkeypatch):
    import subprocess

    from mvp_tasks.image import git
    from mvp_tasks.memo import Memo
    from mvp_tasks.plan import changes

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    old = _commit(tmp_path, {"projects/a/deploy.yml": "A1\n", "projects/b/deploy.yml": "B1\n"}, "one")
    new = _commit(tmp_path, {"projects/b/deploy.yml": "B2\n", "projects/a/site/index.html": "x\n"}, "two")
    shown: list[str] = []
    real = git.git
    monkeypatch.setattr(git, "git", lambda runner, root, *args, **kw: (
        shown.append(args[1]) if args[0] == "show" else None) or real(runner, root, *args, **kw))
    memo = Memo()
    # What a promotion reads: each app's template at the release it moves to, then at the one it leaves.
    assert changes.file_at(tmp_path, new, "projects/a/deploy.yml", memo) == "A1\n"
    assert changes.file_at(tmp_path, old, "projects/a/deploy.yml", memo, same_at=new) == "A1\n"
    assert changes.file_at(tmp_path, new, "projects/b/deploy.yml", memo) == "B2\n"
    assert changes.file_at(tmp_path, old, "projects/b/deploy.yml", memo, same_at=new) == "B1\n"
    assert shown == [f"{new}:projects/a/deploy.yml", f"{new}:projects/b/deploy.yml", f"{old}:projects/b/deploy.yml"]
    # A commit this clone does not have is asked of git on its own, as before ("": not there).
    gone = "0" * 40
    assert changes.file_at(tmp_path, gone, "projects/a/deploy.yml", memo, same_at=new) == ""
    assert shown[-1] == f"{gone}:projects/a/deploy.yml"
