"""`load_settings`: the repo's own invoke.yaml, defaults, and one clear line for every bad value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mvp_tasks.errors import ConfigError, UsageError
from mvp_tasks.settings import CLUSTER_DEFAULTS, DEFAULTS, PROJECT_DEFAULTS, load_settings

ROOT = Path(__file__).resolve().parents[2]

# The smallest valid map: two clusters, prod promoting from stage, one project in both.
BASE = {
    "clusters": {
        "stage": {},
        "prod": {"protected": True, "promote_from": "stage"},
    },
    "projects": {"museum-adventure": {"clusters": ["stage", "prod"]}},
}


def config(**changes) -> dict:
    """`{"mvp": BASE}` with top-level keys replaced by `changes`."""
    mvp = copy.deepcopy(BASE)
    mvp.update(changes)
    return {"mvp": mvp}


def with_cluster(name: str, **keys) -> dict:
    cfg = config()
    cfg["mvp"]["clusters"].setdefault(name, {}).update(keys)
    return cfg


def with_project(name: str, **keys) -> dict:
    cfg = config()
    cfg["mvp"]["projects"].setdefault(name, {"clusters": ["stage"]}).update(keys)
    return cfg


def shown(name: str) -> str:
    """How a key appears in an error path: a name that would break the line is quoted."""
    return name if name.isprintable() else repr(name)


def config_error(cfg: dict, *fragments: str) -> str:
    """Assert `cfg` is refused with one line holding every fragment; return that line."""
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, ROOT)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- the repository's own configuration -------------------------------------------------------


@pytest.fixture(scope="module")
def repo_settings():
    data = yaml.safe_load((ROOT / "invoke.yaml").read_text(encoding="utf-8"))
    return load_settings(data, ROOT)


def test_repo_config_defines_stage_and_prod(repo_settings):
    assert set(repo_settings.clusters) == {"stage", "prod"}
    assert repo_settings.default_cluster == "stage"
    assert repo_settings.region == "us-east-1"
    assert repo_settings.root == ROOT


def test_repo_config_protects_prod_which_promotes_from_stage(repo_settings):
    prod, stage = repo_settings.clusters["prod"], repo_settings.clusters["stage"]
    assert prod.protected is True
    assert prod.promote_from == "stage"
    assert stage.protected is False
    assert stage.promote_from == ""


def test_repo_config_maps_museum_adventure_to_both_clusters(repo_settings):
    project = repo_settings.project("museum-adventure")
    assert project.clusters == ("stage", "prod")
    assert [p.name for p in repo_settings.projects_in("prod")] == ["museum-adventure"]
    assert project.stack_name("prod") == "museum-adventure-prod"


def test_repo_config_tag_defaults_to_cluster_name(repo_settings):
    assert repo_settings.clusters["stage"].tag == "stage"
    assert repo_settings.clusters["prod"].tag == "prod"


def test_repo_config_repository_defaults_to_project_name(repo_settings):
    assert repo_settings.projects["museum-adventure"].repository == "museum-adventure"


def test_repo_config_templates_exist(repo_settings):
    for cluster in repo_settings.clusters.values():
        assert (ROOT / cluster.template).is_file(), cluster.template


# --- defaults ---------------------------------------------------------------------------------


def test_empty_config_takes_every_default():
    settings = load_settings({}, ROOT)
    assert settings.region == DEFAULTS["region"]
    assert settings.registry == DEFAULTS["registry"]
    assert settings.default_cluster == DEFAULTS["default_cluster"]
    assert settings.wait_timeout == DEFAULTS["wait_timeout"]
    assert settings.poll_interval == DEFAULTS["poll_interval"]
    assert settings.build.platform == DEFAULTS["build"]["platform"]
    assert settings.build.docker == DEFAULTS["build"]["docker"]
    assert settings.sandbox.port == DEFAULTS["sandbox"]["port"]
    assert settings.sandbox.dir == DEFAULTS["sandbox"]["dir"]
    assert settings.clusters == {} and settings.projects == {}


def test_partial_nested_mapping_keeps_the_other_defaults():
    settings = load_settings(config(build={"host": "ci@build.example.com:2222"}), ROOT)
    assert settings.build.host == "ci@build.example.com:2222"
    assert settings.build.platform == DEFAULTS["build"]["platform"]
    assert settings.build.docker == DEFAULTS["build"]["docker"]


def test_cluster_and_project_defaults_apply_when_keys_are_absent():
    settings = load_settings(config(), ROOT)
    stage = settings.clusters["stage"]
    assert stage.template == CLUSTER_DEFAULTS["template"]
    assert stage.protected is False
    assert dict(stage.parameters) == {}
    project = settings.projects["museum-adventure"]
    assert project.template == PROJECT_DEFAULTS["template"]
    assert dict(project.parameters) == {} and dict(project.build_args) == {}


def test_explicit_tag_and_repository_override_the_name_defaults():
    cfg = config()
    cfg["mvp"]["clusters"]["prod"]["tag"] = "release"
    cfg["mvp"]["projects"]["museum-adventure"]["repository"] = "studio/museum"
    settings = load_settings(cfg, ROOT)
    assert settings.clusters["prod"].tag == "release"
    assert settings.projects["museum-adventure"].repository == "studio/museum"


def test_defaults_are_not_mutated_by_loading():
    before = copy.deepcopy(DEFAULTS)
    load_settings(config(build={"host": "h"}, sandbox={"port": 6000}), ROOT)
    assert DEFAULTS == before


# --- values that arrive as strings or scalars -------------------------------------------------


@pytest.mark.parametrize("text, expected", [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_protected_accepts_string_booleans_from_env_vars(text, expected):
    settings = load_settings(with_cluster("prod", protected=text), ROOT)
    assert settings.clusters["prod"].protected is expected


def test_numbers_given_as_strings_are_accepted():
    settings = load_settings(config(wait_timeout="60", poll_interval="0.5"), ROOT)
    assert settings.wait_timeout == 60
    assert settings.poll_interval == 0.5


def test_parameter_values_become_cloudformation_strings():
    cfg = with_cluster("stage", parameters={
        "DesiredCount": 2, "Spot": True, "Off": False, "Ratio": 0.5,
        "Subnets": ["a", "b"], "Name": "web",
    })
    params = load_settings(cfg, ROOT).clusters["stage"].parameters
    assert dict(params) == {
        "DesiredCount": "2", "Spot": "true", "Off": "false", "Ratio": "0.5",
        "Subnets": "a,b", "Name": "web",
    }


def test_project_clusters_may_be_one_name():
    settings = load_settings(with_project("museum-adventure", clusters="prod"), ROOT)
    assert settings.projects["museum-adventure"].clusters == ("prod",)


def test_registry_trailing_slash_is_dropped():
    assert load_settings(config(registry="registry.example.com/team/"), ROOT).registry == "registry.example.com/team"


# --- Settings lookups -------------------------------------------------------------------------


def test_cluster_none_is_the_default_cluster():
    settings = load_settings(config(default_cluster="prod"), ROOT)
    assert settings.cluster(None).name == "prod"
    assert settings.cluster("stage").name == "stage"


def test_unknown_cluster_lists_the_configured_ones():
    settings = load_settings(config(), ROOT)
    with pytest.raises(ConfigError) as info:
        settings.cluster("nope")
    assert "'nope'" in str(info.value) and "configured: prod, stage" in str(info.value)
    assert "mvp.clusters" in str(info.value)


def test_unknown_project_lists_the_configured_ones():
    settings = load_settings(config(), ROOT)
    with pytest.raises(ConfigError) as info:
        settings.project("nope")
    assert "'nope'" in str(info.value) and "configured: museum-adventure" in str(info.value)


def test_invalid_cluster_name_on_the_command_line_is_refused():
    settings = load_settings(config(), ROOT)
    with pytest.raises(ConfigError, match="--cluster: 'a;b' is not a valid cluster name"):
        settings.cluster("a;b")
    with pytest.raises(ConfigError, match="--name: 'a;b' is not a valid cluster name"):
        settings.cluster("a;b", flag="--name")


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_cluster_name_is_refused_not_taken_as_the_default(empty):
    settings = load_settings(config(), ROOT)
    with pytest.raises(UsageError, match="--cluster: the cluster name is empty") as info:
        settings.cluster(empty)
    assert "stage" in str(info.value)
    assert settings.cluster(None).name == settings.default_cluster


def _with_clusters(**clusters):
    data = config()
    data["mvp"]["clusters"] = {name: dict(value) for name, value in clusters.items()}
    data["mvp"]["projects"] = {}
    return data


def test_a_promotion_cycle_is_refused():
    with pytest.raises(ConfigError, match=r"promotion cycle (stage -> prod -> stage|prod -> stage -> prod)"):
        load_settings(_with_clusters(stage={"promote_from": "prod"}, prod={"promote_from": "stage"}), ROOT)


def test_a_longer_promotion_cycle_is_refused_and_a_chain_is_not():
    with pytest.raises(ConfigError, match="promotion cycle"):
        load_settings(_with_clusters(a={"promote_from": "c"}, b={"promote_from": "a"}, c={"promote_from": "b"},
                                     stage={}), ROOT)
    settings = load_settings(_with_clusters(stage={}, qa={"promote_from": "stage"}, prod={"promote_from": "qa"}), ROOT)
    assert settings.clusters["prod"].promote_from == "qa"


@pytest.mark.parametrize("template", ["../x.yml", "/etc/x.yml", "infrastructure/../../x.yml"])
def test_a_cluster_template_outside_the_repository_is_refused(template):
    with pytest.raises(ConfigError, match=r"mvp.clusters.stage.template: .* is outside the repository"):
        load_settings(_with_clusters(stage={"template": template}), ROOT)


@pytest.mark.parametrize("folder", ["../sbx", "/tmp/sbx", "a/../../b"])
def test_the_sandbox_folder_stays_inside_the_repository(folder):
    data = config()
    data["mvp"]["sandbox"] = {"dir": folder}
    with pytest.raises(ConfigError, match=r"mvp.sandbox.dir: .* is outside the repository"):
        load_settings(data, ROOT)


# --- one line naming the key and what is allowed ----------------------------------------------


def test_unknown_top_level_key():
    config_error({"mvp": {"regoin": "us-east-1"}}, "config mvp.regoin: unknown key", "allowed:", "region")


def test_unknown_top_level_keys_that_yaml_made_non_strings():
    # `on:` and `1:` become True and 1 in YAML; they must not crash the sorting of unknown keys.
    config_error({"mvp": {"regoin": 1, 1: "x", True: "y"}}, "unknown key", "allowed:")


def test_unknown_key_with_a_newline_stays_on_one_line():
    config_error({"mvp": {"region\n": "x"}}, "config mvp.'region\\n': unknown key")


def test_unknown_cluster_key():
    config_error(with_cluster("stage", protectd=True),
                 "config mvp.clusters.stage.protectd: unknown key", "protected", "promote_from")


def test_unknown_project_key():
    config_error(with_project("museum-adventure", clusterz=["stage"]),
                 "config mvp.projects.museum-adventure.clusterz: unknown key", "clusters", "repository")


def test_unknown_nested_key():
    config_error(config(build={"hots": "x"}), "config mvp.build.hots: unknown key", "host")


def test_protected_must_be_a_boolean():
    config_error(with_cluster("prod", protected="maybe"),
                 "config mvp.clusters.prod.protected", "expected true or false", "'maybe'")


def test_rollback_on_interrupt_is_off_by_default_and_a_boolean():
    assert load_settings(config(), ROOT).rollback_on_interrupt is False
    assert load_settings(config(rollback_on_interrupt="true"), ROOT).rollback_on_interrupt is True
    config_error(config(rollback_on_interrupt="soon"), "config mvp.rollback_on_interrupt", "expected true or false")


def test_wait_timeout_must_be_a_number():
    config_error(config(wait_timeout="soon"), "config mvp.wait_timeout", "expected a whole number", "'soon'")


def test_wait_timeout_range():
    config_error(config(wait_timeout=0), "config mvp.wait_timeout", "out of range")


def test_cluster_parameters_must_be_a_mapping():
    config_error(with_cluster("stage", parameters=["DesiredCount=2"]),
                 "config mvp.clusters.stage.parameters", "expected a mapping, got a list")


def test_cluster_entry_must_be_a_mapping():
    config_error(config(clusters={"stage": "yes"}), "config mvp.clusters.stage", "expected a mapping, got a string")


def test_parameter_value_must_be_a_scalar():
    config_error(with_cluster("stage", parameters={"Size": {"min": 1}}),
                 "config mvp.clusters.stage.parameters.Size", "expected a string or number")


@pytest.mark.parametrize("value, kind", [(5, "int"), ({"stage": True}, "a mapping")])
def test_project_clusters_must_be_a_list(value, kind):
    config_error(with_project("museum-adventure", clusters=value),
                 "config mvp.projects.museum-adventure.clusters", "expected a list of cluster names", kind)


def test_project_clusters_with_a_nested_list_is_one_line_not_a_crash():
    config_error(with_project("museum-adventure", clusters=[["stage"]]),
                 "config mvp.projects.museum-adventure.clusters", "unknown cluster", "configured: prod, stage")


@pytest.mark.parametrize("name", ["Stage_1", "1stage", "st age", "a/b", "..", "Stage", "stage\n", "a" * 32])
def test_invalid_cluster_names(name):
    cfg = config()
    cfg["mvp"]["clusters"][name] = {}
    config_error(cfg, f"config mvp.clusters.{shown(name)}", repr(name), "not a valid cluster name", "lowercase letter")


def test_project_mapped_to_unknown_cluster():
    config_error(with_project("museum-adventure", clusters=["stage", "qa"]),
                 "config mvp.projects.museum-adventure.clusters", "unknown cluster 'qa'", "configured: prod, stage")


def test_promote_from_unknown_cluster():
    config_error(with_cluster("prod", promote_from="qa"),
                 "config mvp.clusters.prod.promote_from", "unknown cluster 'qa'", "configured: prod, stage")


def test_promote_from_itself():
    config_error(with_cluster("prod", promote_from="prod"),
                 "config mvp.clusters.prod.promote_from", "cannot promote from itself")


def test_default_cluster_unknown():
    config_error(config(default_cluster="qa"),
                 "config mvp.default_cluster", "unknown cluster 'qa'", "configured: prod, stage")


@pytest.mark.parametrize("region", ["mars", "US-EAST-1", "us-east", "us_east_1", "us-east-1\n", "us-east-1 "])
def test_invalid_region(region):
    config_error(config(region=region), "config mvp.region", repr(region), "an AWS region name like us-east-1")


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1"])
def test_valid_regions(region):
    assert load_settings(config(region=region), ROOT).region == region


@pytest.mark.parametrize("registry", ["a b", "host:port", "https://registry.example.com", "reg;rm -rf /"])
def test_invalid_registry(registry):
    config_error(config(registry=registry), "config mvp.registry", repr(registry), "a registry host like")


@pytest.mark.parametrize("registry", ["127.0.0.1:5000", "registry.example.com/team", "localhost:5000/a/b"])
def test_valid_registries(registry):
    assert load_settings(config(registry=registry), ROOT).registry == registry


def test_parameter_name_with_a_dash():
    config_error(with_cluster("stage", parameters={"Desired-Count": 2}),
                 "config mvp.clusters.stage.parameters.Desired-Count", "not a CloudFormation parameter name")


def test_build_arg_name_with_a_dash():
    config_error(with_project("museum-adventure", build_args={"NODE-ENV": "prod"}),
                 "config mvp.projects.museum-adventure.build_args.NODE-ENV", "not a build argument name")


@pytest.mark.parametrize("name", ["foo;rm", "../x", "a b", "$(id)", "Foo", "foo\n"])
def test_project_names_with_shell_metacharacters(name):
    cfg = config()
    cfg["mvp"]["projects"][name] = {"clusters": ["stage"]}
    config_error(cfg, f"config mvp.projects.{shown(name)}", repr(name), "not a valid project name")


def test_project_template_must_stay_inside_the_project():
    config_error(with_project("museum-adventure", template="app/../../other/deploy.yml"),
                 "config mvp.projects.museum-adventure.template", "must stay inside projects/museum-adventure/")


def test_image_tag_with_a_trailing_newline():
    config_error(with_cluster("stage", tag="v1\n"), "config mvp.clusters.stage.tag", "not a valid image tag")


def test_build_host_cannot_be_an_ssh_option():
    config_error(config(build={"host": "-oProxyCommand=id"}), "config mvp.build.host", "not an SSH host")


# --- another commit's invoke.yaml, parsed once in a run ---------------------------------------------


def test_another_commits_invoke_yaml_is_parsed_once_in_a_run_for_every_app_and_question(monkeypatch):
    from mvp_tasks.memo import Memo
    from mvp_tasks.plan.changes import load_config
    from mvp_tasks.settings import project_from_text

    text = yaml.safe_dump(with_project("shop", clusters=["stage"]))
    settings = load_settings(config(), ROOT)
    parsed: list[str] = []
    real = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda stream: parsed.append(stream) or real(stream))
    memo = Memo()
    # Every app of a promotion reads the same commit's invoke.yaml, and what changed reads it too.
    museum = project_from_text(text, "museum-adventure", settings.clusters, "commit 1a2b3c4d5e6f", memo)
    shop = project_from_text(text, "shop", settings.clusters, "commit 1a2b3c4d5e6f", memo)
    data = load_config(text, memo)
    assert (museum.clusters, shop.clusters) == (("stage", "prod"), ("stage",))
    assert data["mvp"]["projects"]["shop"] == {"clusters": ["stage"]}
    assert parsed == [text]
    project_from_text(text, "shop", settings.clusters, "commit 1a2b3c4d5e6f")  # no run's memo: parsed anew
    assert load_config("mvp: [", memo) is None and len(parsed) == 3  # not YAML: None, as before


def test_another_commits_invoke_yaml_that_is_not_yaml_is_named_at_that_commit_each_time():
    from mvp_tasks.memo import Memo
    from mvp_tasks.settings import project_from_text

    settings = load_settings(config(), ROOT)
    memo = Memo()
    for where in ("commit 1a2b3c4d5e6f", "commit 2b3c4d5e6f70"):
        with pytest.raises(ConfigError, match=f"invoke.yaml at {where} is not YAML"):
            project_from_text("mvp: [", "shop", settings.clusters, where, memo)
