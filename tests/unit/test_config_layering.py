"""Invoke's layers over the `mvp.*` defaults: invoke.yaml, an `-f` file, then INVOKE_MVP_* variables.

The in-process tests load the layers in the order `inv` does (collection defaults, project file,
runtime file, shell environment) and validate the result with `load_settings`; the subprocess
tests show the real `inv` wiring reaches the same validation and fails with one line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from invoke import Config

from mvp_tasks import ns
from mvp_tasks.defaults import DEFAULTS
from mvp_tasks.errors import ConfigError
from mvp_tasks.settings import load_settings

from conftest import ROOT, assert_one_line_error, inv_env, run_inv


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No INVOKE_* variable from the developer's shell may leak into a layer."""
    for name in list(os.environ):
        if name.startswith("INVOKE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def repo(tmp_path):
    """A folder holding a copy of the repository's invoke.yaml, as Invoke's project location."""
    dest = tmp_path / "repo"
    dest.mkdir()
    shutil.copy(ROOT / "invoke.yaml", dest / "invoke.yaml")
    return dest


def layered(repo: Path, runtime: dict | None = None) -> Config:
    """The config `inv [-f runtime.yaml] TASK` would build in `repo`, without system or user files."""
    config = Config(lazy=True)
    config.load_collection(ns.configuration())
    config.set_project_location(str(repo))
    config.load_project()
    if runtime is not None:
        path = repo / "extra.yaml"
        path.write_text(yaml.safe_dump(runtime), encoding="utf-8")
        config.set_runtime_path(str(path))
        config.load_runtime()
    config.load_shell_env()
    return config


def settings_of(repo: Path, runtime: dict | None = None):
    return load_settings(layered(repo, runtime), repo)


def one_line_config_error(repo: Path, runtime: dict | None, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        settings_of(repo, runtime)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- the layers, in process -------------------------------------------------------------------


def test_collection_declares_every_default_under_mvp():
    assert ns.configuration() == {"mvp": DEFAULTS}


def test_project_file_layers_over_the_defaults(repo):
    settings = settings_of(repo)
    assert settings.region == "us-east-1"  # invoke.yaml
    assert settings.wait_timeout == DEFAULTS["wait_timeout"]  # only in the defaults
    assert settings.build.platform == DEFAULTS["build"]["platform"]
    assert set(settings.clusters) == {"stage", "prod"}
    assert settings.clusters["prod"].protected is True
    assert settings.root == repo.resolve()


def test_env_vars_override_region_and_default_cluster(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_REGION", "eu-west-1")
    monkeypatch.setenv("INVOKE_MVP_DEFAULT_CLUSTER", "prod")
    settings = settings_of(repo)
    assert settings.region == "eu-west-1"
    assert settings.default_cluster == "prod"
    assert settings.cluster(None).name == "prod"


def test_env_var_for_a_number_is_cast_from_the_default(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_WAIT_TIMEOUT", "60")
    monkeypatch.setenv("INVOKE_MVP_SANDBOX_PORT", "6100")
    settings = settings_of(repo)
    assert settings.wait_timeout == 60
    assert settings.sandbox.port == 6100


def test_runtime_file_merges_deeply_over_the_project_file(repo):
    settings = settings_of(repo, {"mvp": {
        "region": "eu-central-1",
        "wait_timeout": 600,
        "clusters": {"stage": {"tag": "latest"}, "qa": {}},
    }})
    assert settings.region == "eu-central-1"
    assert settings.wait_timeout == 600
    assert set(settings.clusters) == {"stage", "prod", "qa"}
    stage = settings.clusters["stage"]
    assert stage.tag == "latest"
    assert stage.template == "infrastructure/fargate_cluster.yml"  # kept from invoke.yaml
    assert settings.clusters["prod"].protected is True
    assert settings.projects["museum-adventure"].clusters == ("stage", "prod")


def test_runtime_file_beats_env_vars(repo, monkeypatch):
    # Invoke's order: defaults < collection < project file < environment < runtime (-f) file.
    monkeypatch.setenv("INVOKE_MVP_REGION", "eu-west-1")
    monkeypatch.setenv("INVOKE_MVP_DEFAULT_CLUSTER", "prod")
    settings = settings_of(repo, {"mvp": {"region": "eu-central-1"}})
    assert settings.region == "eu-central-1"
    assert settings.default_cluster == "prod"  # the file does not set it, so the variable stands


def test_env_var_overrides_a_nested_key_from_the_project_file(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_CLUSTERS_STAGE_TEMPLATE", "infrastructure/other.yml")
    monkeypatch.setenv("INVOKE_MVP_CLUSTERS_PROD_PROMOTE_FROM", "")
    settings = settings_of(repo)
    assert settings.clusters["stage"].template == "infrastructure/other.yml"
    assert settings.clusters["prod"].template == "infrastructure/fargate_cluster.yml"
    assert settings.clusters["prod"].promote_from == ""


def test_env_var_zero_unprotects_a_cluster(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_CLUSTERS_PROD_PROTECTED", "0")
    assert settings_of(repo).clusters["prod"].protected is False


# --- bad values from a layer: one line naming the key -----------------------------------------


def test_bad_region_from_env_var(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_REGION", "mars")
    one_line_config_error(repo, None, "config mvp.region", "'mars'", "an AWS region name like us-east-1")


def test_unknown_default_cluster_from_env_var(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_DEFAULT_CLUSTER", "qa")
    one_line_config_error(repo, None, "config mvp.default_cluster", "unknown cluster 'qa'", "configured: prod, stage")


def test_invalid_default_cluster_from_env_var(repo, monkeypatch):
    monkeypatch.setenv("INVOKE_MVP_DEFAULT_CLUSTER", "Prod;rm")
    one_line_config_error(repo, None, "config mvp.default_cluster", "'Prod;rm'", "not a valid cluster name")


def test_bad_value_from_runtime_file(repo):
    one_line_config_error(repo, {"mvp": {"clusters": {"prod": {"protected": "maybe"}}}},
                          "config mvp.clusters.prod.protected", "expected true or false")


def test_unknown_key_from_runtime_file(repo):
    one_line_config_error(repo, {"mvp": {"regoin": "eu-west-1"}}, "config mvp.regoin: unknown key")


# --- the real `inv`, as a subprocess ----------------------------------------------------------


def test_inv_accepts_layered_config(studio):
    (studio / "extra.yaml").write_text("mvp:\n  region: eu-central-1\n  wait_timeout: 600\n", encoding="utf-8")
    env = inv_env(INVOKE_MVP_DEFAULT_CLUSTER="prod")
    result = run_inv(studio, "-f", "extra.yaml", "sandbox.status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert '"running": false' in result.stdout


def test_inv_bad_env_var_is_one_line(studio):
    result = run_inv(studio, "sandbox.status", env=inv_env(INVOKE_MVP_REGION="mars"))
    assert_one_line_error(result, "error: config mvp.region", "'mars'")


def test_inv_bad_runtime_file_is_one_line(studio):
    (studio / "extra.yaml").write_text("mvp:\n  default_cluster: qa\n", encoding="utf-8")
    result = run_inv(studio, "-f", "extra.yaml", "sandbox.status")
    assert_one_line_error(result, "error: config mvp.default_cluster", "unknown cluster 'qa'")


def test_inv_non_number_env_var_for_a_numeric_key_is_one_line(studio):
    result = run_inv(studio, "sandbox.status", env=inv_env(INVOKE_MVP_WAIT_TIMEOUT="soon"))
    assert_one_line_error(result, "mvp.wait_timeout", "'soon'")
