"""HEAD is never a surprise: after a new commit, `fleet.up` and `app.status` say that the
cluster's tag does not have it and name the command that ships it; `app.deploy` ships HEAD's
release (it builds and pushes HEAD's image when the registry has none); a template with
uncommitted changes is previewed (`--check`) but not deployed to a protected cluster unless
`--allow-dirty`. `inv` runs as a subprocess
against the moto server, the registry and dockerd; stacks are read back with boto3."""

from __future__ import annotations

import json

import pytest

from conftest import PROJECT, assert_one_line_error, git
from test_lifecycle import BUILD_TIMEOUT, index_change, new_lab, shipped_everywhere

pytestmark = pytest.mark.e2e

TEMPLATE = f"projects/{PROJECT}/deploy.yml"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, git_env, image_services, moto_server):
    lab = shipped_everywhere(new_lab(tmp_path_factory.mktemp("head"), git_env, image_services, moto_server))
    first = lab.repo.commit
    out = {"in_step": lab.ok("app.deploy", PROJECT)}
    second = lab.commit(index_change(lab, "a change not pushed yet"), "change the page")
    # fleet.up repairs what runs (it does not ship HEAD): it says what HEAD has that the tags do not.
    out["behind"] = lab.ok("fleet.up", "--check")
    out["status"] = lab.ok("app.status", PROJECT)
    out["status_json"] = json.loads(lab.ok("app.status", PROJECT, "--json").stdout)
    out["stage_before_head"] = lab.digest("stage")
    out["deploy_head"] = lab.ok("app.deploy", PROJECT, timeout=BUILD_TIMEOUT)
    return lab, out, first, second


def test_a_deploy_in_step_with_head_says_nothing_about_it(shipped):
    _, out, _, _ = shipped
    assert "does not have" not in out["in_step"].stdout + out["in_step"].stderr


def test_a_deploy_behind_head_says_so_and_names_the_command_that_ships_it(shipped):
    _, out, first, second = shipped
    said = out["behind"].stdout + out["behind"].stderr
    assert f"HEAD {second[:12]} has changes for {PROJECT} that tag stage ({first[:12]}) does not have" in said
    # app.deploy alone ships HEAD (no app.push before it); prod's own way is a release to stage, then a promotion.
    assert (f"(1 file(s) under projects/{PROJECT}/); to ship them: inv app.deploy {PROJECT} --cluster stage\n"
            in said), said
    assert f"inv app.push {PROJECT}" not in said
    assert (f"to ship them: release it to stage (inv ci.release --cluster stage --only {PROJECT}), "
            f"then inv app.promote {PROJECT} --tag prod") in said, said


def test_app_deploy_ships_heads_release_building_and_pushing_its_image(shipped):
    """issue 17: `app.deploy` is `app.push` then the deploy, in one command: HEAD's image (a change
    under the build context: built and pushed), the stage tag moved to it, the service rolled."""
    lab, out, first, second = shipped
    said = out["deploy_head"].stdout
    assert f"~ release {first[:12]} -> {second[:12]}" in said, said
    assert f"+ push {lab.registry}/{PROJECT}:{second}" in said, said
    assert f"changed: {PROJECT}@stage  {second[:12]} deployed (from {first[:12]})" in said, said
    assert lab.digest(second) and lab.digest("stage") == lab.digest(second) != out["stage_before_head"]
    deploys = [r for r in lab.history("stage") if r.get("action") == "deploy"]
    assert (deploys[-1]["commit"], deploys[-1]["digest"], deploys[-1]["outcome"]) == (
        second, lab.digest(second), "succeeded")
    assert "does not have" not in said + out["deploy_head"].stderr
    # A second deploy has nothing to do.
    again = lab.ok("app.deploy", PROJECT)
    assert f"ok: {PROJECT}@stage" in again.stdout, again.stdout


def test_status_says_it_too_for_every_cluster(shipped):
    # Since issue 17 status compares HEAD with the release each cluster runs (not with its tag) and
    # says `behind HEAD` with the command that ships it: ci.release, or a release to stage then a promotion.
    _, out, first, second = shipped
    assert f"HEAD {second[:12]} has changes for {PROJECT} in stage that its release {first[:12]} does not have" \
        in " ".join(out["status"].stdout.split())
    rows = {r["cluster"]: r for r in out["status_json"]["apps"]} if isinstance(out["status_json"], dict) \
        else {r["cluster"]: r for r in out["status_json"]}
    assert f"{first[:12]} does not have" in rows["stage"]["unshipped"]
    assert f"inv ci.release --cluster stage --only {PROJECT} && inv app.promote {PROJECT} --tag prod" \
        in rows["prod"]["unshipped"]
    for cluster in ("stage", "prod"):
        assert rows[cluster]["state"] == "behind HEAD", rows[cluster]
        assert rows[cluster]["head_changes"] == [f"1 file(s) under projects/{PROJECT}/"], rows[cluster]
    assert rows["stage"]["action"] == f"inv ci.release --cluster stage --only {PROJECT}"
    assert rows["prod"]["action"] == f"inv ci.release --cluster stage --only {PROJECT} && inv app.promote {PROJECT} --tag prod"


def test_a_dirty_template_is_refused_for_a_protected_cluster_unless_allowed(shipped):
    lab, _, _, _ = shipped
    path = lab.work / TEMPLATE
    path.write_text(path.read_text().replace("Value: '60'", "Value: '61'"))
    try:
        before = lab.stack_state(f"{PROJECT}-prod")
        prod_tag = lab.digest("prod")
        # A preview never needs a commit (issue 17 item 6): the change is shown, nothing changes.
        preview = lab.ok("app.deploy", PROJECT, "--cluster", "prod", "--check")
        assert "uncommitted changes and cluster prod is protected: this preview shows them" in preview.stdout + \
            preview.stderr, preview.stdout + preview.stderr
        assert f"~ stack {PROJECT}-prod" in preview.stdout, preview.stdout
        assert f"would change: {PROJECT}@prod" in preview.stdout, preview.stdout
        assert lab.stack_state(f"{PROJECT}-prod") == before and lab.digest("prod") == prod_tag
        refused = lab.inv("app.deploy", PROJECT, "--cluster", "prod", "--yes")
        assert_one_line_error(refused, f"template {TEMPLATE} has uncommitted changes", "cluster prod is protected",
                              "--allow-dirty")
        assert lab.stack_state(f"{PROJECT}-prod") == before
        lab.ok("app.deploy", PROJECT, "--cluster", "prod", "--yes", "--allow-dirty")
        balancer = lab.outputs(f"{PROJECT}-prod")["LoadBalancerDns"]
        assert balancer
        cfn_template = lab.client("cloudformation").get_template(StackName=f"{PROJECT}-prod")["TemplateBody"]
        assert "'61'" in cfn_template or "61" in json.dumps(cfn_template)
        # An unprotected cluster takes it as it is.
        lab.ok("app.deploy", PROJECT, "--cluster", "stage")
    finally:
        git(lab.work, "checkout", "--", TEMPLATE, env=lab.git_env)


def test_a_dirty_cluster_template_is_previewed_but_not_applied_to_a_protected_cluster(shipped):
    lab, _, _, _ = shipped
    cluster_template = "infrastructure/fargate_cluster.yml"
    path = lab.work / cluster_template
    path.write_text(path.read_text() + "\n# an uncommitted change\n")
    try:
        before = lab.stack_state("prod")
        preview = lab.ok("cluster.up", "prod", "--check")
        assert "uncommitted changes and cluster prod is protected: this preview shows them" in preview.stdout, \
            preview.stdout
        refused = lab.inv("cluster.up", "prod", "--yes")
        assert_one_line_error(refused, f"template {cluster_template} has uncommitted changes",
                              "cluster prod is protected", "--allow-dirty")
        assert lab.stack_state("prod") == before
    finally:
        git(lab.work, "checkout", "--", cluster_template, env=lab.git_env)


def test_app_wait_follows_the_service_discovery_names_and_says_it_rolled_out(shipped):
    lab, _, _, _ = shipped
    result = lab.ok("app.wait", PROJECT, "--cluster", "prod")
    service = lab.service("prod", f"{PROJECT}-prod")
    assert service["deployments"][0]["rolloutState"] in ("COMPLETED", "")
    assert (f"ok: {PROJECT}@prod  rolled out; {service['runningCount']}/{service['desiredCount']} tasks running"
            in result.stdout), result.stdout
