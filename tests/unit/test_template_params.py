"""Reading templates from disk, filling their parameters by name, and `{placeholder}` expansion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvp_tasks.errors import TemplateError
from mvp_tasks.templates import expand, expand_all, fill_parameters, load_template, parse_template

KEY = "mvp.clusters.stage.template"
PARAMS_KEY = "mvp.clusters.stage.parameters"

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  ClusterName:
    Type: String
  DesiredCount:
    Type: Number
    Default: 1
  ImageTag:
    Type: String
    Default: latest
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${ClusterName}-jobs"
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Ref ClusterName
      Tags:
        - Key: queue
          Value: !GetAtt Queue.Arn
Outputs:
  QueueUrl:
    Value: !Ref Queue
"""


def write(root: Path, name: str, body: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def template_error(path: Path, root: Path, *fragments: str) -> str:
    with pytest.raises(TemplateError) as info:
        load_template(path, root, KEY)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def template(tmp_path):
    return load_template(write(tmp_path, "infrastructure/cluster.yml", TEMPLATE), tmp_path, KEY)


# --- load_template ----------------------------------------------------------------------------


def test_yaml_template_with_short_form_tags_loads(template):
    assert template.label == "infrastructure/cluster.yml"
    assert template.body == TEMPLATE
    assert dict(template.resources) == {"Queue": "AWS::SQS::Queue", "Bucket": "AWS::S3::Bucket"}
    assert list(template.parameters) == ["ClusterName", "DesiredCount", "ImageTag"]
    assert template.required_parameters() == ["ClusterName"]


def test_short_form_tags_become_long_form_functions():
    data = parse_template(TEMPLATE, "cluster.yml")
    queue = data["Resources"]["Queue"]["Properties"]
    bucket = data["Resources"]["Bucket"]["Properties"]
    assert queue["QueueName"] == {"Fn::Sub": "${ClusterName}-jobs"}
    assert bucket["BucketName"] == {"Ref": "ClusterName"}
    assert bucket["Tags"][0]["Value"] == {"Fn::GetAtt": ["Queue", "Arn"]}


def test_json_template_loads(tmp_path):
    body = json.dumps({
        "Parameters": {"Name": {"Type": "String", "Default": "x"}},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Name"}}}},
    }, indent=2)
    template = load_template(write(tmp_path, "app.json", body), tmp_path, KEY)
    assert dict(template.resources) == {"Queue": "AWS::SQS::Queue"}
    assert template.parameters["Name"]["Default"] == "x"
    assert template.required_parameters() == []


def test_missing_file_names_the_file_and_the_config_key(tmp_path):
    template_error(tmp_path / "infrastructure" / "nope.yml", tmp_path,
                   "template infrastructure/nope.yml not found", f"(set by {KEY})")


def test_a_folder_is_not_a_template(tmp_path):
    (tmp_path / "infrastructure").mkdir()
    template_error(tmp_path / "infrastructure", tmp_path, "not found", KEY)


def test_path_outside_the_root_is_shown_as_given(tmp_path):
    outside = tmp_path / "elsewhere" / "x.yml"
    template_error(outside, tmp_path / "repo", str(outside), "not found")


@pytest.mark.parametrize("bad_line, body", [
    (5, "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n   Broken: indent\n"),
    (7, "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n\n\n  Bucket:\n\tType: AWS::S3::Bucket\n"),
    (5, "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: a: b\n"),
])
def test_yaml_syntax_error_names_the_real_line(tmp_path, bad_line, body):
    message = template_error(write(tmp_path, "bad.yml", body), tmp_path, "template bad.yml:", "YAML error")
    assert f" line {bad_line}:" in message


def test_json_syntax_error_names_the_real_line(tmp_path):
    body = '{\n  "Resources": {\n    "Queue": {"Type": "AWS::SQS::Queue"},\n  }\n}\n'
    template_error(write(tmp_path, "bad.json", body), tmp_path, "template bad.json:", "line 4:")


@pytest.mark.parametrize("body", [
    "Parameters:\n  Name: {Type: String}\n",
    "Resources: {}\n",
    "Resources: [a, b]\n",
    "Resources:\n",
])
def test_template_without_resources_is_refused(tmp_path, body):
    template_error(write(tmp_path, "empty.yml", body), tmp_path, "template empty.yml: no Resources section")


@pytest.mark.parametrize("body", ["", "- a\n- b\n", "just text\n"])
def test_template_that_is_not_a_mapping_is_refused(tmp_path, body):
    template_error(write(tmp_path, "odd.yml", body), tmp_path, "template odd.yml", "mapping")


def test_parameters_must_be_a_mapping(tmp_path):
    body = "Parameters: [A]\nResources:\n  Q: {Type: AWS::SQS::Queue}\n"
    template_error(write(tmp_path, "p.yml", body), tmp_path, "template p.yml: Parameters must be a mapping")


# --- fill_parameters --------------------------------------------------------------------------


def test_configured_beats_available(template):
    values = fill_parameters(template, {"ClusterName": "stage", "ImageTag": "stage"}, {"ImageTag": "v2"}, PARAMS_KEY)
    assert values == {"ClusterName": "stage", "ImageTag": "v2"}


def test_undeclared_available_values_are_dropped(template):
    values = fill_parameters(template, {"ClusterName": "stage", "VpcId": "vpc-1", "Project": "x"}, {}, PARAMS_KEY)
    assert values == {"ClusterName": "stage"}


def test_defaults_are_left_to_cloudformation(template):
    values = fill_parameters(template, {}, {"ClusterName": "stage"}, PARAMS_KEY)
    assert "DesiredCount" not in values and "ImageTag" not in values


def test_undeclared_configured_name_is_an_error(template):
    with pytest.raises(TemplateError) as info:
        fill_parameters(template, {"ClusterName": "stage"}, {"DesiredCnt": "2"}, PARAMS_KEY)
    message = str(info.value)
    assert f"config {PARAMS_KEY}.DesiredCnt:" in message
    assert "template infrastructure/cluster.yml declares no parameter DesiredCnt" in message
    assert "(it declares: ClusterName, DesiredCount, ImageTag)" in message


def test_required_parameter_without_value_is_an_error(template):
    with pytest.raises(TemplateError) as info:
        fill_parameters(template, {"ImageTag": "stage"}, {"DesiredCount": "2"}, PARAMS_KEY)
    message = str(info.value)
    assert "no value for parameter ClusterName" in message
    assert PARAMS_KEY in message and "Default" in message


def test_parameter_declared_as_a_bare_name_counts_as_required(tmp_path):
    body = "Parameters:\n  Name:\nResources:\n  Q: {Type: AWS::SQS::Queue}\n"
    template = load_template(write(tmp_path, "t.yml", body), tmp_path, KEY)
    assert template.required_parameters() == ["Name"]
    with pytest.raises(TemplateError, match="no value for parameter Name"):
        fill_parameters(template, {}, {}, PARAMS_KEY)


# --- expand -----------------------------------------------------------------------------------

PLACEHOLDERS = {"cluster": "stage", "project": "museum-adventure"}


def test_expand_fills_cluster_and_project():
    assert expand("{project}-{cluster}-assets", PLACEHOLDERS, "k") == "museum-adventure-stage-assets"


def test_expand_without_braces_is_unchanged():
    assert expand("plain}", PLACEHOLDERS, "k") == "plain}"


def test_double_braces_are_literal():
    assert expand("{{cluster}} is {cluster}", PLACEHOLDERS, "k") == "{cluster} is stage"


def test_unknown_placeholder_lists_the_allowed_ones():
    with pytest.raises(TemplateError) as info:
        expand("{clustr}-x", PLACEHOLDERS, f"{PARAMS_KEY}.Name")
    assert str(info.value) == (
        f"config {PARAMS_KEY}.Name: unknown placeholder {{clustr}} (allowed: {{cluster}}, {{project}})"
    )


@pytest.mark.parametrize("value", ["{cluster.__class__}", "{cluster[0]}", "{cluster!r}", "{cluster:>9}", "{}", "{0}"])
def test_only_bare_names_are_placeholders(value):
    with pytest.raises(TemplateError, match="unknown placeholder .*allowed: {cluster}, {project}"):
        expand(value, PLACEHOLDERS, "k")


def test_single_brace_is_malformed():
    with pytest.raises(TemplateError, match=r"config k: malformed placeholder .* write \{\{ for a brace"):
        expand("a{b", PLACEHOLDERS, "k")


def test_expand_all_names_the_key_of_the_bad_value():
    assert expand_all({"A": "{cluster}", "B": "x"}, PLACEHOLDERS, PARAMS_KEY) == {"A": "stage", "B": "x"}
    with pytest.raises(TemplateError, match=rf"config {PARAMS_KEY}\.B: unknown placeholder {{nope}}"):
        expand_all({"A": "{cluster}", "B": "{nope}"}, PLACEHOLDERS, PARAMS_KEY)


# --- templates stay inside the repository; cluster parameters must have an effect ---------------


def test_a_template_linked_to_a_file_outside_the_repository_is_refused(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "elsewhere"
    (root / "projects" / "app").mkdir(parents=True)
    outside.mkdir()
    (outside / "deploy.yml").write_text(TEMPLATE)
    (root / "projects" / "app" / "deploy.yml").symlink_to(outside / "deploy.yml")
    with pytest.raises(TemplateError) as info:
        load_template(root / "projects" / "app" / "deploy.yml", root)
    message = str(info.value)
    assert "template projects/app/deploy.yml" in message and "outside the repository" in message
    assert str(outside / "deploy.yml") in message


def test_a_link_that_stays_inside_the_repository_is_read(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "deploy.yml").write_text(TEMPLATE)
    (tmp_path / "deploy.yml").symlink_to(tmp_path / "shared" / "deploy.yml")
    assert "DesiredCount" in load_template(tmp_path / "deploy.yml", tmp_path).parameters


def _studio(tmp_path, cluster_parameters):
    from mvp_tasks.settings import load_settings

    (tmp_path / "infrastructure").mkdir()
    (tmp_path / "infrastructure" / "cluster.yml").write_text(TEMPLATE.replace("  DesiredCount:\n    Type: Number\n    Default: 1\n", ""))
    (tmp_path / "projects" / "web").mkdir(parents=True)
    (tmp_path / "projects" / "web" / "deploy.yml").write_text(TEMPLATE)
    config = {"mvp": {"clusters": {"stage": {"template": "infrastructure/cluster.yml", "parameters": cluster_parameters}},
                      "projects": {"web": {"clusters": ["stage"]}}}}
    return load_settings(config, tmp_path)


def test_a_cluster_parameter_only_an_app_declares_is_refused_with_where_it_belongs(tmp_path):
    from mvp_tasks.templates import check_cluster_parameters

    settings = _studio(tmp_path, {"DesiredCount": 3})
    with pytest.raises(TemplateError) as info:
        check_cluster_parameters(settings)
    message = str(info.value)
    assert message.startswith("config mvp.clusters.stage.parameters.DesiredCount: cluster template "
                              "infrastructure/cluster.yml declares no parameter DesiredCount")
    assert "mvp.projects.web.parameters" in message


def test_a_cluster_parameter_its_template_declares_is_accepted(tmp_path):
    from mvp_tasks.templates import check_cluster_parameters

    check_cluster_parameters(_studio(tmp_path, {"ImageTag": "v1"}))


# --- each template text parsed once in a run ------------------------------------------------------


@pytest.fixture
def parses(monkeypatch):
    """The labels `parse_template` was called with (the parse itself is the real one)."""
    from mvp_tasks import templates

    seen: list[str] = []
    real = templates.parse_template
    monkeypatch.setattr(templates, "parse_template", lambda body, label: seen.append(label) or real(body, label))
    return seen


def test_a_template_text_is_parsed_once_in_a_run_whatever_its_label(parses):
    from mvp_tasks.memo import Memo
    from mvp_tasks.templates import template_from_text

    memo = Memo()
    # A promotion reads each app's template at two commits (and apps made from one example share it).
    a = template_from_text(TEMPLATE, "projects/a/deploy.yml at 1a2b3c4d5e6f", memo=memo)
    b = template_from_text(TEMPLATE, "projects/b/deploy.yml at 2b3c4d5e6f70", memo=memo)
    assert parses == ["projects/a/deploy.yml at 1a2b3c4d5e6f"]
    assert (a.label, b.label) == ("projects/a/deploy.yml at 1a2b3c4d5e6f", "projects/b/deploy.yml at 2b3c4d5e6f70")
    assert (a.parameters, a.resources, a.body) == (b.parameters, b.resources, b.body)
    template_from_text(TEMPLATE + "# another text\n", "c", memo=memo)
    template_from_text(TEMPLATE, "d")  # no run's memo: parsed where asked
    assert parses[1:] == ["c", "d"]


def test_a_template_that_cannot_be_parsed_is_named_by_its_own_label_each_time(parses):
    from mvp_tasks.memo import Memo
    from mvp_tasks.templates import template_from_text

    memo = Memo()
    for label in ("projects/a/deploy.yml at 1a2b3c4d5e6f", "projects/b/deploy.yml at 2b3c4d5e6f70"):
        with pytest.raises(TemplateError, match=f"template {label}: line 3: YAML error"):
            template_from_text("Resources:\n  Queue: [\n", label, memo=memo)
    assert len(parses) == 2  # a failure is not kept


def test_the_container_settings_copy_the_shared_parse_and_leave_it_as_it_was(parses):
    from mvp_tasks.memo import Memo
    from mvp_tasks.templates import parsed_template, template_from_text, with_container_settings

    root = Path(__file__).resolve().parents[2]
    body = (root / "projects/museum-adventure/deploy.yml").read_text()
    memo = Memo()
    template = template_from_text(body, "deploy.yml", memo=memo)
    filled = with_container_settings(template, {"A": "1"}, {}, "k", memo)
    again = with_container_settings(template, {"A": "1"}, {}, "k", memo)
    assert parses == ["deploy.yml"] and again.body == filled.body and "Name: A" in filled.body
    container = parsed_template(body, "deploy.yml", memo)["Resources"]["TaskDefinition"]["Properties"][
        "ContainerDefinitions"][0]
    assert all(e.get("Name") != "A" for e in container.get("Environment") or [])
