"""Per-cluster app settings, environment and secrets: their validation, how they reach the
app's template, and the planner's refusal of a secret not set yet (over test_planner's fakes)."""

from __future__ import annotations

import json

import pytest

from mvp_tasks.aws.secrets import SecretInfo
from mvp_tasks.aws.stacks import Change
from mvp_tasks.errors import TemplateError, UsageError
from mvp_tasks.plan import parameters, planner
from mvp_tasks.plan.steps import EnsureStack
from mvp_tasks.settings import check_env_name, load_settings
from mvp_tasks.aws.secrets import secret_arn
from mvp_tasks.templates import load_template, parse_template, with_container_settings

from test_planner import APP_TEMPLATE, C1, D1, PROJECT, ROOT, app_stack, clusters_and, config, make_world, rec
from test_settings import config_error, with_project


def settings_with(**project):
    return load_settings(config(projects={PROJECT: {"clusters": ["stage", "prod"], **project}}), ROOT)


class FakeSecrets:
    def __init__(self, keys):
        self.keys = keys
        self.calls = []

    def list(self, cluster, project):
        self.calls.append((cluster, project))
        return [SecretInfo(k, f"/mvp/{cluster}/{project}/{k}", "2026-01-01 00:00:00", 1, "SecureString")
                for k in self.keys.get(cluster, [])]


def world_with(settings, secrets=None, *apps, **kw):
    world = clusters_and(*apps, settings=settings, **kw) if apps else make_world(settings=settings, **kw)
    fake = FakeSecrets(secrets or {})
    world.secrets = lambda: fake
    return world, fake


def container(step) -> dict:
    data = parse_template(step.template.body, step.template.label)
    return data["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]


# --- settings ----------------------------------------------------------------------------------


def test_per_cluster_values_layer_over_the_project_s_own():
    settings = settings_with(parameters={"DesiredCount": 1, "Cpu": 256}, environment={"A": "1", "B": "2"},
                             secrets=["S1"], per_cluster={"prod": {"parameters": {"DesiredCount": 3},
                                                                    "environment": {"B": "prod"},
                                                                    "secrets": ["S2", "S1"]}})
    project = settings.projects[PROJECT]
    placeholders = {"project": PROJECT, "cluster": "c"}
    assert parameters.layered(project, settings.clusters["prod"], "parameters", placeholders) == \
        {"DesiredCount": "3", "Cpu": "256"}
    assert parameters.layered(project, settings.clusters["stage"], "parameters", placeholders) == \
        {"DesiredCount": "1", "Cpu": "256"}
    assert parameters.layered(project, settings.clusters["prod"], "environment", placeholders) == {"A": "1", "B": "prod"}
    assert parameters.layered(project, settings.clusters["stage"], "environment", placeholders) == {"A": "1", "B": "2"}
    assert project.secrets_for("prod") == ("S1", "S2") and project.secrets_for("stage") == ("S1",)


def test_per_cluster_for_a_cluster_the_project_is_not_mapped_to_is_refused_naming_the_key():
    config_error(with_project("museum-adventure", per_cluster={"qa": {"parameters": {"DesiredCount": 2}}}),
                 "mvp.projects.museum-adventure.per_cluster.qa", "not mapped to cluster qa")


@pytest.mark.parametrize("keys, fragments", [
    ({"environment": {"1ABC": "x"}}, ["mvp.projects.museum-adventure.environment.1ABC", "environment variable"]),
    ({"environment": {"A": {"nested": 1}}}, ["mvp.projects.museum-adventure.environment.A", "string or number"]),
    ({"secrets": ["ok", "not-ok"]}, ["mvp.projects.museum-adventure.secrets", "'not-ok'"]),
    ({"secrets": {"A": 1}}, ["mvp.projects.museum-adventure.secrets", "list of secret names"]),
    ({"per_cluster": {"stage": {"colour": "red"}}}, ["per_cluster.stage.colour", "unknown key"]),
    ({"per_cluster": {"stage": {"secrets": ["9"]}}}, ["per_cluster.stage.secrets", "'9'"]),
    ({"environment": {"TOKEN": "x"}, "secrets": ["TOKEN"]}, ["TOKEN is both"]),
    ({"secrets": ["TOKEN"], "per_cluster": {"stage": {"environment": {"TOKEN": "x"}}}},
     ["per_cluster.stage", "TOKEN is both"]),
])
def test_bad_environment_and_secrets_are_one_line_naming_the_key(keys, fragments):
    config_error(with_project("museum-adventure", **keys), *fragments)


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A\nB", "x" * 129])
def test_a_secret_name_on_the_command_line_must_be_an_environment_variable_name(name):
    with pytest.raises(UsageError, match="not an environment variable name"):
        check_env_name(name, "KEY")


# --- the template ------------------------------------------------------------------------------


def test_nothing_configured_keeps_the_template_text_as_it_is():
    template = load_template(ROOT / APP_TEMPLATE, ROOT)
    assert with_container_settings(template, {}, {}, "k") is template


def test_environment_and_secrets_fill_the_first_container_over_its_own_entries(tmp_path):
    source = parse_template((ROOT / APP_TEMPLATE).read_text(), APP_TEMPLATE)
    web = source["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    web["Environment"] = [{"Name": "KEEP", "Value": "own"}, {"Name": "B", "Value": "template"}]
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps(source))
    template = load_template(path, tmp_path)
    arn = secret_arn("stage", PROJECT, "S")
    filled = with_container_settings(template, {"B": "config", "A": "1"}, {"S": arn}, "k")
    web = json.loads(filled.body)["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert web["Environment"] == [{"Name": "KEEP", "Value": "own"}, {"Name": "A", "Value": "1"},
                                  {"Name": "B", "Value": "config"}]
    assert web["Secrets"] == [{"Name": "S", "ValueFrom": arn}]
    assert arn["Fn::Sub"].endswith(f":parameter/mvp/stage/{PROJECT}/S")
    again = with_container_settings(template, {"A": "1", "B": "config"}, {"S": arn}, "k")
    assert again.body == filled.body  # the same config sends the same text: an unchanged app stays unchanged


def test_a_template_without_one_task_definition_cannot_take_them(tmp_path):
    path = tmp_path / "deploy.yml"
    path.write_text("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n")
    with pytest.raises(TemplateError, match="exactly one AWS::ECS::TaskDefinition"):
        with_container_settings(load_template(path, tmp_path), {"A": "1"}, {}, "mvp.projects.x")


# --- the planner -------------------------------------------------------------------------------


def test_a_secret_not_set_yet_refuses_the_deploy_naming_the_command_that_sets_it():
    settings = settings_with(secrets=["API_KEY", "DB_URL"])
    world, fake = world_with(settings, {"stage": ["DB_URL"]}, tags={"stage": D1, C1: D1})
    with pytest.raises(UsageError) as info:
        planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    # The message names no target: the summary's `error: TARGET: message` line does, once.
    assert str(info.value).startswith(f"secret API_KEY of {PROJECT} is configured but not set in stage")
    assert f"inv app.secret.set {PROJECT} API_KEY --cluster stage" in str(info.value)
    assert fake.calls == [("stage", PROJECT)]
    assert world.change_sets.pending() == [] and world.stacks().created == []


def test_set_secrets_and_environment_reach_the_planned_template_by_arn():
    settings = settings_with(environment={"GREETING": "hi {cluster}"}, secrets=["API_KEY"])
    world, _ = world_with(settings, {"stage": ["API_KEY"]}, tags={"stage": D1, C1: D1})
    plan = planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    web = container(plan.steps[0])
    assert web["Environment"] == [{"Name": "GREETING", "Value": "hi stage"}]
    assert web["Secrets"] == [{"Name": "API_KEY", "ValueFrom": secret_arn("stage", PROJECT, "API_KEY")}]


def test_no_secrets_configured_reads_no_secrets():
    settings = settings_with()
    world, fake = world_with(settings, tags={"stage": D1, C1: D1})
    planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    assert fake.calls == []


def test_per_cluster_parameters_show_old_to_new_for_that_cluster_only():
    settings = settings_with(per_cluster={"prod": {"parameters": {"DesiredCount": 3}}})
    change = {"museum-adventure-prod": [Change("Modify", "Service", "AWS::ECS::Service")]}
    world, _ = world_with(settings, None, app_stack("stage"), app_stack("prod"), tags={"stage": D1, "prod": D1, C1: D1},
                          records={"stage": [rec("deploy", C1, D1)], "prod": [rec("deploy", C1, D1, cluster="prod")]},
                          changes=change)
    prod = planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["prod"])
    assert [type(s) for s in prod.steps] == [EnsureStack]
    assert prod.steps[0].parameter_changes == (("DesiredCount", "1", "3"),)
    assert "  ~ parameter DesiredCount: 1 -> 3" in prod.lines()
    stage = planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    assert stage.steps == [] and "running" in stage.note


def test_a_per_cluster_parameter_the_template_lacks_is_named_where_it_was_written():
    settings = settings_with(per_cluster={"prod": {"parameters": {"DesiredCuont": 3}}})
    world, _ = world_with(settings, tags={"prod": D1, C1: D1})
    with pytest.raises(TemplateError, match=r"mvp\.projects\.museum-adventure\.per_cluster\.prod\.parameters\.DesiredCuont"):
        planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["prod"])


# --- a dirty template and a protected cluster ---------------------------------------------------


def test_a_dirty_template_is_refused_for_a_protected_cluster_unless_allowed():
    settings = settings_with()
    world, _ = world_with(settings, tags={"prod": D1, "stage": D1, C1: D1})
    world.dirty = {APP_TEMPLATE}
    project = settings.projects[PROJECT]
    with pytest.raises(UsageError, match="has uncommitted changes and cluster prod is protected.*--allow-dirty"):
        planner.plan_deploy(world, project, settings.clusters["prod"])
    assert world.change_sets.pending() == []
    assert planner.plan_deploy(world, project, settings.clusters["prod"], allow_dirty=True).steps
    assert planner.plan_deploy(world, project, settings.clusters["stage"]).steps  # unprotected: as it is


def test_a_preview_of_a_dirty_template_for_a_protected_cluster_is_a_warning_not_a_refusal():
    """issue 17 item 6: --check needs no commit; only applying is refused without --allow-dirty."""
    settings = settings_with()
    world, _ = world_with(settings, tags={"prod": D1, "stage": D1, C1: D1})
    world.dirty = {APP_TEMPLATE}
    prod = settings.clusters["prod"]
    path = f"projects/{PROJECT}/deploy.yml"
    warning = planner.check_clean_template(world, path, prod, False, "app.deploy", settings.projects[PROJECT],
                                           check=True)
    assert "uncommitted changes and cluster prod is protected: this preview shows them" in warning
    warnings: list[str] = []
    step, _ = planner.app_stack_step(world, settings.projects[PROJECT], prod, C1, check=True, warnings=warnings)
    assert step is not None and warnings == [warning]
    with pytest.raises(UsageError, match="nothing was changed"):
        planner.check_clean_template(world, path, prod, False, "app.deploy", settings.projects[PROJECT])


def test_a_dirty_cluster_template_is_refused_for_a_protected_cluster_unless_allowed():
    settings = settings_with()
    world, _ = world_with(settings)
    world.dirty = {"infrastructure/fargate_cluster.yml"}
    with pytest.raises(UsageError, match="cluster prod is protected.*--allow-dirty to cluster.up"):
        planner.plan_cluster(world, settings.clusters["prod"])
    planner.plan_cluster(world, settings.clusters["prod"], allow_dirty=True)
    planner.plan_cluster(world, settings.clusters["stage"])  # unprotected: as it is
    # A preview needs no commit: cluster.up --check shows it, with the refusal as a warning.
    preview = planner.plan_cluster(world, settings.clusters["prod"], check=True)
    assert [w for w in preview.warnings if "this preview shows them" in w and "--allow-dirty to cluster.up" in w]


def test_uncommitted_settings_of_the_app_or_cluster_are_refused_for_a_protected_cluster_too():
    settings = settings_with()
    world, _ = world_with(settings, tags={"prod": D1, "stage": D1, C1: D1})
    project = settings.projects[PROJECT]
    world.dirty = {("mvp", "projects", PROJECT)}
    with pytest.raises(UsageError, match="its settings in invoke.yaml have uncommitted changes and cluster prod"):
        planner.plan_deploy(world, project, settings.clusters["prod"])
    assert planner.plan_deploy(world, project, settings.clusters["prod"], allow_dirty=True).steps
    world.dirty = {("mvp", "clusters", "prod")}
    with pytest.raises(UsageError, match="--allow-dirty to cluster.up"):
        planner.plan_cluster(world, settings.clusters["prod"])


def test_a_bad_placeholder_in_the_project_s_environment_is_named_there_not_under_the_cluster():
    settings = settings_with(environment={"URL": "{bogus}"}, per_cluster={"prod": {"environment": {"X": "1"}}})
    world, _ = world_with(settings, tags={"prod": D1, C1: D1})
    with pytest.raises(TemplateError, match=r"config mvp\.projects\.museum-adventure\.environment\.URL: unknown"):
        planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["prod"])


# --- issue 17: what a plan says of the release it moves from and to ------------------------------------


def test_release_lines_name_the_commits_and_each_changed_parameter_environment_key_and_secret():
    from mvp_tasks.plan.release import Release, release_lines
    from mvp_tasks.templates import load_template

    before = settings_with(environment={"LOG_LEVEL": "info", "OLD": "x"})
    after = settings_with(environment={"LOG_LEVEL": "debug"}, secrets=["API_KEY"],
                          per_cluster={"prod": {"parameters": {"DesiredCount": 3}}})
    template = load_template(ROOT / APP_TEMPLATE, ROOT)
    world, _ = world_with(after)
    prod = after.clusters["prod"]
    lines = release_lines(world, Release("a" * 40, before.projects[PROJECT], template),
                          Release("b" * 40, after.projects[PROJECT], template), prod)
    assert lines == [f"~ release {'a' * 12} -> {'b' * 12}", "+ parameter DesiredCount: 3",
                     "~ environment LOG_LEVEL: info -> debug", "- environment OLD: x", "+ secret API_KEY"]
    # The same commit: nothing to say.
    assert release_lines(world, Release("b" * 40, after.projects[PROJECT], template),
                         Release("b" * 40, after.projects[PROJECT], template), prod) == []
