"""`plan/parameters.py`: the one place template values and the container environment are
layered, asked by the planner (`app.deploy`, `cluster.up`) and by `project.check` alike."""

from __future__ import annotations

import pytest

from mvp_tasks.checks import Checker
from mvp_tasks.errors import TemplateError
from mvp_tasks.plan import parameters, planner
from mvp_tasks.templates import load_template

from test_app_settings import settings_with, world_with
from test_planner import APP_TEMPLATE, C1, CLUSTER_TEMPLATE, D1, PROJECT, ROOT, SETTINGS

PLACEHOLDERS = {"project": PROJECT, "cluster": "prod", "image": "r/p:prod", "tag": "prod", "commit": C1}


def layered_settings():
    return settings_with(parameters={"DesiredCount": 1, "Cpu": "{cluster}"}, environment={"A": "{project}", "B": "2"},
                         secrets=["S1"], per_cluster={"prod": {"parameters": {"DesiredCount": 3},
                                                                "environment": {"B": "{tag}"},
                                                                "secrets": ["S2"]}})


def test_the_cluster_s_own_values_layer_over_the_project_s_with_placeholders_filled():
    settings = layered_settings()
    project, prod, stage = settings.projects[PROJECT], settings.clusters["prod"], settings.clusters["stage"]

    assert parameters.layered(project, prod, "parameters", PLACEHOLDERS) == {"DesiredCount": "3", "Cpu": "prod"}
    assert parameters.layered(project, stage, "parameters", {**PLACEHOLDERS, "cluster": "stage"}) == \
        {"DesiredCount": "1", "Cpu": "stage"}
    assert parameters.layered(project, prod, "environment", PLACEHOLDERS) == {"A": PROJECT, "B": "prod"}
    assert list(parameters.secret_values(project, prod)) == ["S1", "S2"]
    assert list(parameters.secret_values(project, stage)) == ["S1"]


def test_sources_name_the_key_each_value_was_written_under():
    project = layered_settings().projects[PROJECT]

    assert [s.key for s in parameters.app_sources(project, "environment")] == \
        [f"mvp.projects.{PROJECT}.environment", f"mvp.projects.{PROJECT}.per_cluster.prod.environment"]
    assert [s.key for s in parameters.app_sources(project, "parameters", "stage")] == \
        [f"mvp.projects.{PROJECT}.parameters"]
    with pytest.raises(TemplateError, match=rf"mvp\.projects\.{PROJECT}\.per_cluster\.prod\.environment\.B"):
        settings = settings_with(per_cluster={"prod": {"environment": {"B": "{nope}"}}})
        parameters.layered(settings.projects[PROJECT], settings.clusters["prod"], "environment", PLACEHOLDERS)


def test_which_parameters_a_template_takes():
    template = load_template(ROOT / APP_TEMPLATE, ROOT)
    project = SETTINGS.projects[PROJECT]

    assert parameters.undeclared(template, ["DesiredCount", "Nope"]) == ["Nope"]
    given = parameters.app_given_names(project, SETTINGS.clusters["stage"])
    assert {"ClusterName", "Image", "EnvironmentName", "ProjectName"} <= given
    assert parameters.unfilled(template, given) == [n for n in template.required_parameters() if n not in given]
    assert parameters.unfilled(template, set(template.parameters)) == []


def test_the_well_known_names_are_those_the_planner_passes():
    cluster, project = SETTINGS.clusters["stage"], SETTINGS.projects[PROJECT]

    passed = parameters.app_well_known(project, cluster, "img", C1)
    assert set(parameters.APP_WELL_KNOWN) == {"ClusterName", *passed}
    assert passed["ImageTag"] == cluster.tag and passed["Commit"] == C1
    assert tuple(parameters.cluster_well_known(cluster)) == parameters.CLUSTER_WELL_KNOWN
    assert set(parameters.APP_STAND_INS) == set(parameters.app_placeholders(project, cluster, "img", C1))
    template = load_template(ROOT / CLUSTER_TEMPLATE, ROOT)
    taken = parameters.cluster_parameters(template, cluster)
    assert taken == {k: v for k, v in parameters.cluster_well_known(cluster).items() if k in template.parameters}


def test_the_planner_and_project_check_layer_through_the_same_functions(monkeypatch):
    settings = layered_settings()
    project, prod = settings.projects[PROJECT], settings.clusters["prod"]
    calls: list[tuple[str, str, str]] = []
    real = parameters.layered

    def spy(project, cluster, what, placeholders):
        calls.append((caller, cluster.name, what))
        return real(project, cluster, what, placeholders)

    monkeypatch.setattr(parameters, "layered", spy)
    caller = "check"
    Checker(settings).check_project(project, [prod], lfs=False)
    caller = "plan"
    world, _ = world_with(settings, {"prod": ["S1", "S2"]}, tags={"prod": D1, C1: D1})
    planner.plan_deploy(world, project, prod, allow_dirty=True)

    assert ("check", "prod", "environment") in calls
    assert {("plan", "prod", "parameters"), ("plan", "prod", "environment")} <= set(calls)


def test_a_bad_placeholder_is_named_at_the_same_key_by_the_check_and_by_the_planner():
    settings = settings_with(per_cluster={"prod": {"environment": {"B": "{nope}"}}})
    project, prod = settings.projects[PROJECT], settings.clusters["prod"]
    key = f"mvp.projects.{PROJECT}.per_cluster.prod.environment.B"

    findings = Checker(settings).check_project(project, [prod], lfs=False)
    assert any(f.message.startswith(f"config {key}: unknown placeholder {{nope}}") for f in findings), findings
    world, _ = world_with(settings, tags={"prod": D1, C1: D1})
    with pytest.raises(TemplateError, match=f"config {key}: unknown placeholder"):
        planner.plan_deploy(world, project, prod, allow_dirty=True)
