"""HEAD is never a surprise: after a new commit, `app.deploy` and `app.status` say that the
cluster's tag does not have it and name the command that ships it; a template with uncommitted
changes is not deployed to a protected cluster unless `--allow-dirty`. `inv` runs as a subprocess
against the moto server, the registry and dockerd; stacks are read back with boto3."""

from __future__ import annotations

import json

import pytest

from conftest import PROJECT, assert_one_line_error, git
from test_lifecycle import index_change, new_lab, shipped_everywhere

pytestmark = pytest.mark.e2e

TEMPLATE = f"projects/{PROJECT}/deploy.yml"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, git_env, image_services, moto_server):
    lab = shipped_everywhere(new_lab(tmp_path_factory.mktemp("head"), git_env, image_services, moto_server))
    first = lab.repo.commit
    out = {"in_step": lab.ok("app.deploy", PROJECT)}
    second = lab.commit(index_change(lab, "a change not pushed yet"), "change the page")
    out["behind"] = lab.ok("app.deploy", PROJECT)
    out["status"] = lab.ok("app.status", PROJECT)
    out["status_json"] = json.loads(lab.ok("app.status", PROJECT, "--json").stdout)
    return lab, out, first, second


def test_a_deploy_in_step_with_head_says_nothing_about_it(shipped):
    _, out, _, _ = shipped
    assert "does not have" not in out["in_step"].stdout + out["in_step"].stderr


def test_a_deploy_behind_head_says_so_and_names_the_commands_that_ship_it(shipped):
    _, out, first, second = shipped
    said = out["behind"].stdout + out["behind"].stderr
    assert f"HEAD {second[:12]} has changes for {PROJECT} that tag stage ({first[:12]}) does not have" in said
    assert f"1 file(s) under projects/{PROJECT}/" in said
    assert f"inv app.push {PROJECT} --cluster stage then inv app.deploy {PROJECT} --cluster stage" in said
    assert f"inv ci.release --cluster stage --only {PROJECT}" in said


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


def test_app_wait_follows_the_service_discovery_names_and_says_it_rolled_out(shipped):
    lab, _, _, _ = shipped
    result = lab.ok("app.wait", PROJECT, "--cluster", "prod")
    service = lab.service("prod", f"{PROJECT}-prod")
    assert service["deployments"][0]["rolloutState"] in ("COMPLETED", "")
    assert (f"ok: {PROJECT}@prod  rolled out; {service['runningCount']}/{service['desiredCount']} tasks running"
            in result.stdout), result.stdout
