"""A release is a commit (DESIGN.md's worked example, issue 17), end to end: `inv` as a subprocess
against a moto server, the sandbox's registry and dockerd; every check reads back from
CloudFormation, ECS, the registry and the deploy store.

    A  the studio as it is: ci.release to stage (built), app.promote to prod
    B  per_cluster.prod.parameters.DesiredCount: 3: stage unchanged (no build, no stack update),
       the promotion gives prod B's stack (DesiredCount 3); app.rollback prod returns it to A whole,
       and B is marked bad for prod: app.promote and ci.release skip it, app.unmark clears the mark
       (under the deploy lock: refused while another run holds it)
    C  per_cluster.prod.environment.LOG_LEVEL: a new commit that ships to prod (no build)
    D  a template change released to stage; E  another, not released: the promotion gives prod D's
       template, not HEAD's

The emulator's services settle at their own desired count (mvp_tasks/sandbox_ecs.py), so a
three-task service settles; desiredCount and the stack parameter are what is read.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import PROJECT, assert_one_line_error
from test_lifecycle import BUILD_TIMEOUT, clusters_up, new_lab

pytestmark = pytest.mark.e2e

TEMPLATE = f"projects/{PROJECT}/deploy.yml"
HOLDER = "someone else (ci on runner-7)"
STAGE, PROD = f"{PROJECT}-stage", f"{PROJECT}-prod"


def config_change(lab, change) -> dict[str, str]:
    data = yaml.safe_load((lab.work / "invoke.yaml").read_text())
    change(data["mvp"]["projects"][PROJECT])
    return {"invoke.yaml": yaml.safe_dump(data, sort_keys=False)}


def prod_values(project: dict, **values) -> None:
    own = project.setdefault("per_cluster", {}).setdefault("prod", {})
    for what, items in values.items():
        own.setdefault(what, {}).update(items)


def template_change(lab, old: str, new: str) -> dict[str, str]:
    text = (lab.work / TEMPLATE).read_text()
    assert old in text
    return {TEMPLATE: text.replace(old, new)}


def template_body(lab, stack: str) -> str:
    body = lab.client("cloudformation").get_template(StackName=stack)["TemplateBody"]
    return body if isinstance(body, str) else yaml.safe_dump(body)


def builds(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if "+ build " in line]


@pytest.fixture(scope="module")
def story(tmp_path_factory, git_env, image_services, moto_server):
    lab = new_lab(tmp_path_factory.mktemp("releases"), git_env, image_services, moto_server)
    clusters_up(lab)
    s: dict = {"a": lab.repo.commit}
    s["release_a"] = lab.ok("ci.release", "--cluster", "stage", timeout=BUILD_TIMEOUT)
    lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["digest_a"] = lab.digest("stage")
    s["prod_count_a"] = lab.parameters(PROD)["DesiredCount"]
    s["prod_desired_a"] = lab.service("prod", PROD)["desiredCount"]
    s["stage_a"] = lab.stack_state(STAGE)

    # B: a value of prod's only.
    s["b"] = lab.commit(config_change(lab, lambda p: prod_values(p, parameters={"DesiredCount": 3})),
                        "museum-adventure: three tasks in prod")
    s["release_b"] = lab.ok("ci.release", "--cluster", "stage", timeout=BUILD_TIMEOUT)
    s["stage_b"] = lab.stack_state(STAGE)
    s["stage_digest_b"] = lab.digest("stage")
    s["promote_b"] = lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["prod_count_b"] = lab.parameters(PROD)["DesiredCount"]
    s["prod_desired_b"] = lab.service("prod", PROD)["desiredCount"]
    prod_service = lab.service("prod", PROD)
    s["prod_running_b"] = (prod_service["runningCount"], [d["rolloutState"] for d in prod_service["deployments"]])
    s["prod_digest_b"] = lab.digest("prod")

    s["rollback"] = lab.ok("app.rollback", PROJECT, "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["prod_count_rolled"] = lab.parameters(PROD)["DesiredCount"]
    s["prod_desired_rolled"] = lab.service("prod", PROD)["desiredCount"]
    s["prod_digest_rolled"] = lab.digest("prod")
    s["history_rolled"] = lab.history("prod")
    s["promote_bad"] = lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["release_bad"] = lab.ok("ci.release", "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["history_skipped"] = lab.history("prod")
    # app.unmark takes the deploy lock: refused while another run holds it.
    held = lab.history_api("prod")
    token = held.acquire(PROJECT, HOLDER, 600)
    try:
        s["unmark_locked"] = lab.inv("app.unmark", PROJECT, "--cluster", "prod", "--commit", s["b"][:10], "--yes")
        s["history_locked"] = lab.history("prod")
    finally:
        held.release(PROJECT, token)
    s["unmark"] = lab.ok("app.unmark", PROJECT, "--cluster", "prod", "--commit", s["b"][:10], "--yes")
    s["release_unmarked"] = lab.ok("ci.release", "--cluster", "prod", "--check", timeout=BUILD_TIMEOUT)
    s["history_unmarked"] = lab.history("prod")

    # C: a newer commit for prod ships, with what it changes shown.
    s["c"] = lab.commit(config_change(lab, lambda p: prod_values(p, environment={"LOG_LEVEL": "debug"})),
                        "museum-adventure: debug logs in prod")
    s["release_c"] = lab.ok("ci.release", "--cluster", "prod", "--yes", timeout=BUILD_TIMEOUT)
    s["prod_count_c"] = lab.parameters(PROD)["DesiredCount"]

    # D released to stage, E (HEAD) not: the promotion gives prod D's template.
    s["d"] = lab.commit(template_change(lab, "Value: '60'", "Value: '61'"), "museum-adventure: a 61 s delay")
    s["release_d"] = lab.ok("ci.release", "--cluster", "stage", timeout=BUILD_TIMEOUT)
    s["e"] = lab.commit(template_change(lab, "Value: '61'", "Value: '62'"), "museum-adventure: a 62 s delay")
    s["promote_d"] = lab.ok("app.promote", "--tag", "prod", "--yes", timeout=BUILD_TIMEOUT)
    return lab, s


def test_a_config_only_commit_for_prod_does_not_touch_stage_and_the_promotion_ships_it(story):
    lab, s = story
    assert s["prod_count_a"] == "1" and s["prod_desired_a"] == 1
    # stage: unchanged, no build, no new image, no stack update.
    assert f"ok: {PROJECT}@stage  unchanged since {s['a'][:12]}" in s["release_b"].stdout, s["release_b"].stdout
    assert builds(s["release_b"]) == []
    assert s["stage_b"] == s["stage_a"] and s["stage_digest_b"] == s["digest_a"]
    assert lab.digest(s["b"]) is None  # no image was built or tagged for B
    # prod: B's stack (its DesiredCount), A's image.
    said = s["promote_b"].stdout
    assert f"~ release {s['a'][:12]} -> {s['b'][:12]}" in said, said
    assert "~ parameter DesiredCount: 1 -> 3" in said or "+ parameter DesiredCount: 3" in said, said
    assert builds(s["promote_b"]) == []
    assert s["prod_count_b"] == "3" and s["prod_desired_b"] == 3
    # The README's per-cluster example settles: three tasks run in prod, one deployment, COMPLETED.
    assert s["prod_running_b"] == (3, ["COMPLETED"]), s["prod_running_b"]
    assert "running 3/3" in said, said
    assert s["prod_digest_b"] == s["digest_a"]
    promotes = [r for r in lab.history("prod") if r["action"] == "promote"]
    assert [(r["commit"], r["digest"]) for r in promotes][:2] == [(s["a"], s["digest_a"]), (s["b"], s["digest_a"])]


def test_a_rollback_returns_prod_to_the_earlier_release_whole(story):
    lab, s = story
    said = s["rollback"].stdout
    assert f"~ release {s['b'][:12]} -> {s['a'][:12]}" in said, said
    assert f"rolled back to {s['a'][:12]}; {s['b'][:12]} marked bad for {PROJECT} in prod" in said, said
    assert s["prod_count_rolled"] == "1" and s["prod_desired_rolled"] == 1
    assert s["prod_digest_rolled"] == s["digest_a"]
    last = s["history_rolled"][-1]
    assert (last["action"], last["commit"], last["outcome"]) == ("rollback", s["a"], "succeeded")


def test_a_commit_marked_bad_is_neither_promoted_nor_released_and_says_what_clears_it(story):
    lab, s = story
    for key in ("promote_bad", "release_bad"):
        said = s[key].stdout
        assert f"skipped: {PROJECT}@prod  {s['b'][:12]} is marked bad for {PROJECT} in prod" in said, said
        assert f"inv app.unmark {PROJECT} --cluster prod --commit {s['b'][:12]}" in said, said
    # Nothing changed: no record, the tag and the stack as the rollback left them.
    assert s["history_skipped"] == s["history_rolled"]


def test_app_unmark_is_refused_while_another_run_holds_the_deploy_lock(story):
    lab, s = story
    assert_one_line_error(s["unmark_locked"], f"another deploy of {PROJECT} to prod is running", f"held by {HOLDER}")
    # Nothing recorded: the mark stays until the unmark that got the lock.
    assert s["history_locked"] == s["history_skipped"]


def test_app_unmark_clears_the_mark_with_a_history_record(story):
    lab, s = story
    assert f"changed: {PROJECT}@prod  {s['b'][:12]} no longer marked bad for {PROJECT} in prod" in \
        s["unmark"].stdout, s["unmark"].stdout
    new = s["history_unmarked"][len(s["history_skipped"]):]
    assert [(r["action"], r["outcome"], r.get("commit", "")) for r in new] == [("unmark", "succeeded", "")]
    assert s["b"] in new[0]["message"]
    # B may ship again (shown, not shipped: --check).
    assert f"would change: {PROJECT}@prod" in s["release_unmarked"].stdout, s["release_unmarked"].stdout


def test_a_newer_commit_ships_and_its_plan_shows_what_changes(story):
    lab, s = story
    said = s["release_c"].stdout
    assert f"~ release {s['a'][:12]} -> {s['c'][:12]}" in said, said
    assert "+ environment LOG_LEVEL: debug" in said, said
    assert builds(s["release_c"]) == []  # a config-only commit: A's image, retagged
    assert f"changed: {PROJECT}@prod  {s['c'][:12]} released" in said, said
    assert s["prod_count_c"] == "3"
    assert lab.digest(s["c"]) == s["digest_a"]


def test_the_promotion_gives_prod_the_template_of_the_commit_stage_runs_not_heads(story):
    lab, s = story
    assert f"changed: {PROJECT}@prod  {s['d'][:12]} promoted" in s["promote_d"].stdout, s["promote_d"].stdout
    prod, stage = template_body(lab, PROD), template_body(lab, STAGE)
    assert delay(prod) == delay(stage) == "61", (delay(prod), delay(stage))  # D's, not HEAD's (E: 62)


def delay(body: str) -> str:
    """The load balancer idle timeout a template body gives (the value D and E change)."""
    import re

    # Key before Value as the template has it, or after it (a body re-serialised with sorted keys).
    found = re.search(r"idle_timeout\.timeout_seconds['\"]?\s*,?\s*['\"]?Value['\"]?\s*:\s*['\"]?(\d+)", body) or \
        re.search(r"Value['\"]?\s*:\s*['\"]?(\d+)['\"]?\s*,?\s*['\"]?Key['\"]?\s*:\s*['\"]?idle_timeout", body)
    return found.group(1) if found else ""
