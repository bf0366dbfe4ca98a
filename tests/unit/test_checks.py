"""`project.check`'s checks (mvp_tasks/checks.py) and `project.new`'s scaffold (mvp_tasks/scaffold.py),
on small studios made in a temporary folder: every finding one line with its file, line and fix;
invoke.yaml edited as text with every other line kept; nothing half-made on a failure."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from mvp_tasks import scaffold
from mvp_tasks.checks import CheckFailed, Checker, Finding, check_config, check_release, key_line
from mvp_tasks.errors import ConfigError, MvpError
from mvp_tasks.scaffold import ScaffoldError, add_project_entry, create_project, plan_new_project
from mvp_tasks.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]

CLUSTER = """\
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  ClusterName:
    Type: String
Resources:
  Cluster:
    Type: AWS::ECS::Cluster
    Properties:
      ClusterName: !Ref ClusterName
Outputs:
  VpcId:
    Value: !Ref Cluster
"""

APP = """\
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  VpcId:
    Type: String
  Image:
    Type: String
  Size:
    Type: Number
    Default: 1
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      DelaySeconds: !Ref Size
      Tags:
        - Key: vpc
          Value: !Ref VpcId
        - Key: image
          Value: !Ref Image
"""

CONFIG = """\
# the studio's map
mvp:
  region: us-east-1
  clusters:
    stage:
      template: infrastructure/cluster.yml
  projects:
    app:
      clusters: [stage]
"""


def write(root: Path, files: dict[str, str | None]) -> None:
    for name, text in files.items():
        path = root / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def studio(root: Path, **files: str | None) -> Path:
    """A small studio: one cluster template, one app, invoke.yaml; `files` (path with / as __) replace or delete."""
    write(root, {"infrastructure/cluster.yml": CLUSTER, "projects/app/deploy.yml": APP,
                 "projects/app/Dockerfile": "FROM scratch\n", "invoke.yaml": CONFIG})
    write(root, {name.replace("__", "/"): text for name, text in files.items()})
    return root


def settings_of(root: Path):
    return load_settings(yaml.safe_load((root / "invoke.yaml").read_text()), root)


def findings_of(root: Path, names=None) -> list[Finding]:
    findings, _ = Checker(settings_of(root)).check_studio(names)
    return findings


def errors(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.is_error]


def one(findings: list[Finding], fragment: str) -> Finding:
    matching = [f for f in findings if fragment in str(f)]
    assert len(matching) == 1, [str(f) for f in findings]
    return matching[0]


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# --- findings -------------------------------------------------------------------------------------


def test_a_finding_is_one_line_with_its_file_line_and_fix():
    finding = Finding("error", "projects/a/deploy.yml", "E3002 bad property", "correct the template", 12, 7)
    assert str(finding) == "error: projects/a/deploy.yml:12:7: E3002 bad property; fix: correct the template"
    assert str(Finding("warning", "projects/a/", "not configured")) == "warning: projects/a/: not configured"


def test_check_failed_is_one_line_naming_the_first_error_and_the_command():
    findings = [Finding("warning", "x", "w"), Finding("error", "a.yml", "first", "fix a", 3),
                Finding("error", "b.yml", "second")]
    message = str(CheckFailed.of("app", findings))
    assert "\n" not in message
    assert message == "not shipping app: project.check: a.yml:3: first; fix: fix a (and 1 more) " \
                      "(see `inv project.check app`)"


def test_key_line_finds_nested_keys_in_templates_with_short_form_tags():
    assert key_line(APP, ["Parameters", "Image"]) == line_of(APP, "  Image:")
    assert key_line(CONFIG, ["mvp", "projects", "app", "clusters"]) == line_of(CONFIG, "clusters: [stage]")
    assert key_line(CONFIG, ["mvp", "projects", "nope"]) == 0
    assert key_line("a: [\n", ["a"]) == 0


# --- the studio -----------------------------------------------------------------------------------


def test_a_clean_studio_has_no_findings(tmp_path):
    findings, checked = Checker(settings_of(studio(tmp_path))).check_studio()
    assert findings == []
    assert checked == {"projects": ["app"], "cluster_templates": ["infrastructure/cluster.yml"]}


def test_a_lint_error_names_the_template_and_its_line(tmp_path):
    broken = APP.replace("      DelaySeconds: !Ref Size\n", "      DelaySeconds: !Ref Size\n      NotAProperty: 1\n")
    findings = findings_of(studio(tmp_path, **{"projects__app__deploy.yml": broken}))
    finding = one(findings, "E3002")
    assert finding.is_error and finding.file == "projects/app/deploy.yml"
    assert finding.line == line_of(broken, "NotAProperty")
    assert str(finding).startswith(f"error: projects/app/deploy.yml:{finding.line}:")
    assert "fix: correct the template" in str(finding)


def test_a_yaml_syntax_error_is_one_finding_with_its_line(tmp_path):
    broken = APP.replace("  Image:\n", "  Image: [\n")
    findings = findings_of(studio(tmp_path, **{"projects__app__deploy.yml": broken}))
    (finding,) = [f for f in findings if f.is_error]
    assert finding.file == "projects/app/deploy.yml" and finding.line > 0 and "E0000" in finding.message


def test_a_required_parameter_with_no_value_names_its_line_and_the_fix(tmp_path):
    template = APP.replace("  Image:\n", "  ApiKey:\n    Type: String\n  Image:\n").replace(
        "          Value: !Ref Image\n", "          Value: !Ref Image\n        - Key: key\n          Value: !Ref ApiKey\n")
    findings = findings_of(studio(tmp_path, **{"projects__app__deploy.yml": template}))
    finding = one(findings, "ApiKey")
    assert finding.is_error and finding.file == "projects/app/deploy.yml"
    assert finding.line == line_of(template, "  ApiKey:")
    assert "cluster template of stage" in finding.message
    assert "set mvp.projects.app.parameters.ApiKey in invoke.yaml, give it a Default" in finding.fix
    # VpcId comes from the cluster template's outputs and Image is a name the tool passes: no finding.
    assert errors(findings) == [str(finding)]


def test_a_required_parameter_set_in_the_config_is_filled(tmp_path):
    config = CONFIG + "      parameters:\n        Image: my/image\n"
    template = APP.replace("  Image:\n", "  ApiKey:\n    Type: String\n  Image:\n").replace(
        "          Value: !Ref Image\n", "          Value: !Ref Image\n        - Key: key\n          Value: !Ref ApiKey\n")
    config = config.replace("Image: my/image", "ApiKey: '{project}-{cluster}'")
    assert findings_of(studio(tmp_path, **{"invoke.yaml": config, "projects__app__deploy.yml": template})) == []


def test_a_parameter_only_one_cluster_template_gives_names_the_other_cluster(tmp_path):
    config = CONFIG.replace("  projects:\n", "    prod:\n      template: infrastructure/other.yml\n  projects:\n")
    config = config.replace("clusters: [stage]", "clusters: [stage, prod]")
    other = CLUSTER.replace("  VpcId:\n", "  Vpc:\n")
    findings = findings_of(studio(tmp_path, **{"invoke.yaml": config, "infrastructure__other.yml": other}))
    finding = one(findings, "parameter VpcId")
    assert "the cluster template of prod)" in finding.message


def test_a_parameter_one_cluster_gives_of_its_own_is_filled_there_only(tmp_path):
    template = APP.replace("  Image:\n", "  ApiKey:\n    Type: String\n  Image:\n").replace(
        "          Value: !Ref Image\n", "          Value: !Ref Image\n        - Key: key\n          Value: !Ref ApiKey\n")
    config = CONFIG.replace("  projects:\n", "    prod:\n      template: infrastructure/cluster.yml\n  projects:\n")
    config = config.replace("clusters: [stage]", "clusters: [stage, prod]") + (
        "      per_cluster:\n        stage:\n          parameters:\n            ApiKey: k\n            Sise: 2\n")
    findings = findings_of(studio(tmp_path, **{"invoke.yaml": config, "projects__app__deploy.yml": template}))
    assert "the cluster template of prod)" in one(findings, "parameter ApiKey").message
    typo = one(findings, "Sise")
    assert (typo.file, typo.line) == ("invoke.yaml", line_of(config, "Sise"))
    assert typo.message.startswith("mvp.projects.app.per_cluster.stage.parameters.Sise: template")
    assert len(errors(findings)) == 2


def test_environment_for_a_template_without_a_task_definition_names_the_config_line(tmp_path):
    config = CONFIG + "      environment:\n        GREETING: hi\n"
    findings = findings_of(studio(tmp_path, **{"invoke.yaml": config}))  # APP holds a queue, no task
    finding = one(findings, "exactly one AWS::ECS::TaskDefinition")
    assert finding.is_error and (finding.file, finding.line) == ("invoke.yaml", line_of(config, "environment:"))
    task = APP + ("  Task:\n    Type: AWS::ECS::TaskDefinition\n    Properties:\n      ContainerDefinitions:\n"
                  "        - Name: web\n          Image: !Ref Image\n")
    assert errors(findings_of(studio(tmp_path, **{"invoke.yaml": config, "projects__app__deploy.yml": task}))) == []


def test_an_unknown_placeholder_in_the_environment_names_its_config_line(tmp_path):
    config = CONFIG + "      environment:\n        URL: '{bogus}'\n"
    finding = one(findings_of(studio(tmp_path, **{"invoke.yaml": config})), "{bogus}")
    assert finding.is_error and (finding.file, finding.line) == ("invoke.yaml", line_of(config, "URL:"))
    assert "mvp.projects.app.environment.URL" in finding.message


def test_a_configured_parameter_the_template_lacks_names_the_config_line(tmp_path):
    config = CONFIG + "      parameters:\n        DesiredCont: 2\n        Size: '{nope}'\n"
    findings = findings_of(studio(tmp_path, **{"invoke.yaml": config}))
    lacking = one(findings, "DesiredCont")
    assert (lacking.file, lacking.line) == ("invoke.yaml", line_of(config, "DesiredCont"))
    assert "declares no parameter DesiredCont" in lacking.message and "it declares: Image, Size, VpcId" in lacking.fix
    placeholder = one(findings, "{nope}")
    assert (placeholder.file, placeholder.line) == ("invoke.yaml", line_of(config, "Size:"))


def test_a_cluster_parameter_its_template_lacks_is_a_config_finding(tmp_path):
    config = CONFIG.replace("      template: infrastructure/cluster.yml\n",
                            "      template: infrastructure/cluster.yml\n      parameters:\n        Size: 3\n")
    finding = one(findings_of(studio(tmp_path, **{"invoke.yaml": config})), "Size")
    assert (finding.file, finding.line) == ("invoke.yaml", line_of(config, "Size: 3"))
    assert "it is an app template's parameter (app)" in finding.fix


def test_a_cluster_template_parameter_with_no_value(tmp_path):
    cluster = CLUSTER.replace("Parameters:\n", "Parameters:\n  Owner:\n    Type: String\n").replace(
        "      ClusterName: !Ref ClusterName\n",
        "      ClusterName: !Ref ClusterName\n      Tags:\n        - Key: owner\n          Value: !Ref Owner\n")
    finding = one(findings_of(studio(tmp_path, **{"infrastructure__cluster.yml": cluster})), "Owner")
    assert (finding.file, finding.line) == ("infrastructure/cluster.yml", line_of(cluster, "  Owner:"))
    assert "set mvp.clusters.stage.parameters.Owner" in finding.fix


def test_missing_dockerfile_and_template_are_errors_with_their_fix(tmp_path):
    root = studio(tmp_path, projects__app__Dockerfile=None, **{"projects__app__deploy.yml": None})
    found = errors(findings_of(root))
    assert found == [
        "error: projects/app/Dockerfile: the project has no Dockerfile, so no image can be built; "
        "fix: add one (projects/museum-adventure/Dockerfile is an example)",
        "error: projects/app/deploy.yml: the project's template is missing; "
        "fix: add it (projects/museum-adventure/deploy.yml is an example), or set mvp.projects.app.template",
    ]


def test_a_configured_project_without_its_folder(tmp_path):
    root = studio(tmp_path)
    shutil.rmtree(root / "projects" / "app")
    assert errors(findings_of(root)) == [
        "error: projects/app/: the project's folder is missing; fix: restore it, or remove mvp.projects.app from invoke.yaml"]


def test_lfs_pointer_files_are_errors_with_the_fetch_command(tmp_path):
    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed")
    root = studio(tmp_path, **{".gitattributes": "*.png filter=lfs diff=lfs merge=lfs -text\n",
                               "projects__app__img__hero.png":
                                   "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n"})
    finding = one(findings_of(root), "hero.png")
    assert finding.is_error and finding.file == "projects/app/img/hero.png"
    assert finding.fix == 'fetch it with: git lfs pull --include "projects/app/**"'


def test_warnings_do_not_count_as_errors(tmp_path):
    config = CONFIG + "    idle:\n      clusters: []\n"
    root = studio(tmp_path, **{"invoke.yaml": config, "projects__idle__Dockerfile": "FROM scratch\n",
                               "projects__idle__deploy.yml": APP, "projects__stray__Dockerfile": "FROM scratch\n"})
    findings = findings_of(root)
    assert errors(findings) == []
    assert {str(f) for f in findings} == {
        "warning: invoke.yaml:10: project idle runs in no cluster; fix: list its clusters under mvp.projects.idle.clusters",
        "warning: projects/stray/: a project folder that is not in invoke.yaml: no task ships it; "
        "fix: add mvp.projects.stray (clusters: [...]) to invoke.yaml, or remove the folder",
    }


def test_one_named_project_is_checked_with_its_clusters_only(tmp_path):
    broken = APP.replace("      DelaySeconds: !Ref Size\n", "      DelaySeconds: !Ref Size\n      NotAProperty: 1\n")
    config = CONFIG + "    other:\n      clusters: [stage]\n"
    root = studio(tmp_path, **{"invoke.yaml": config, "projects__other__Dockerfile": "FROM scratch\n",
                               "projects__other__deploy.yml": broken})
    findings, checked = Checker(settings_of(root)).check_studio(["app"])
    assert findings == [] and checked["projects"] == ["app"]
    assert errors(findings_of(root, ["other"]))


def test_check_release_holds_back_only_the_project_own_errors(tmp_path):
    cluster = CLUSTER.replace("    Properties:\n", "    Properties:\n      NotAProperty: 1\n", 1)
    root = studio(tmp_path, **{"infrastructure__cluster.yml": cluster, "projects__app__Dockerfile": None})
    settings = settings_of(root)
    found = check_release(settings, settings.projects["app"], settings.clusters["stage"])
    assert [f.file for f in found if f.is_error] == ["projects/app/Dockerfile"]


def test_a_config_error_names_invoke_yaml_and_the_key_line(tmp_path):
    config = CONFIG.replace("      template: infrastructure/cluster.yml\n",
                            "      template: infrastructure/cluster.yml\n      protectd: true\n")
    root = studio(tmp_path, **{"invoke.yaml": config})
    with pytest.raises(ConfigError) as info:
        check_config(yaml.safe_load(config), root)
    assert str(info.value).startswith(f"invoke.yaml:{line_of(config, 'protectd')}: config mvp.clusters.stage.protectd:")


# --- project.new: invoke.yaml ----------------------------------------------------------------------

ENTRY = {"clusters": ["stage", "prod"]}


def added(text: str, name: str = "gift-shop", entry: dict = ENTRY) -> str:
    new = add_project_entry(text, name, entry)
    old = yaml.safe_load(text) or {}
    old.setdefault("mvp", {})
    old["mvp"]["projects"] = {**(old["mvp"].get("projects") or {}), name: entry}
    assert yaml.safe_load(new) == old
    return new


def test_the_studio_config_keeps_every_line_and_gets_the_entry_after_the_last_project():
    text = (ROOT / "invoke.yaml").read_text()
    new = added(text, entry={"clusters": ["stage"], "parameters": {"ContainerPort": 8080}})
    assert new.startswith(text)
    assert new[len(text):] == "    gift-shop:\n      clusters: [stage]\n      parameters:\n        ContainerPort: 8080\n"


def test_comments_after_the_last_project_stay_below_the_new_entry():
    text = ("mvp:\n  projects:\n    app:\n      clusters: [stage]  # only stage\n\n"
            "  # where images go\n  registry: ''\n# the end\n")
    assert added(text) == ("mvp:\n  projects:\n    app:\n      clusters: [stage]  # only stage\n"
                           "    gift-shop:\n      clusters: [stage, prod]\n\n"
                           "  # where images go\n  registry: ''\n# the end\n")


def test_the_file_own_indentation_is_kept():
    text = "mvp:\n    projects:\n        app:\n            clusters:\n                - stage\n"
    assert added(text).endswith("        app:\n            clusters:\n                - stage\n"
                                "        gift-shop:\n            clusters: [stage, prod]\n")


@pytest.mark.parametrize("text, expected", [
    ("mvp:\n  projects: {}  # none yet\n  region: us-east-1\n",
     "mvp:\n  projects:  # none yet\n    gift-shop:\n      clusters: [stage, prod]\n  region: us-east-1\n"),
    ("mvp:\n  projects:\n  region: us-east-1\n",
     "mvp:\n  projects:\n    gift-shop:\n      clusters: [stage, prod]\n  region: us-east-1\n"),
    ("mvp:\n  region: us-east-1\n# after\n",
     "mvp:\n  region: us-east-1\n  projects:\n    gift-shop:\n      clusters: [stage, prod]\n# after\n"),
    ("other: 1\n", "other: 1\nmvp:\n  projects:\n    gift-shop:\n      clusters: [stage, prod]\n"),
    ("", "mvp:\n  projects:\n    gift-shop:\n      clusters: [stage, prod]\n"),
    ("mvp:\n  projects:\n    app: {clusters: [stage]}",
     "mvp:\n  projects:\n    app: {clusters: [stage]}\n    gift-shop:\n      clusters: [stage, prod]\n"),
], ids=["empty-flow", "null", "no-projects", "no-mvp", "empty-file", "no-final-newline"])
def test_other_layouts(text, expected):
    assert added(text) == expected


@pytest.mark.parametrize("text", ["mvp: {projects: {app: {clusters: [stage]}}}\n",
                                  "mvp:\n  projects: {app: {clusters: [stage]}}\n", "- a\n"])
def test_a_layout_it_cannot_extend_is_refused_with_what_to_add(text):
    with pytest.raises(ScaffoldError) as info:
        add_project_entry(text, "gift-shop", ENTRY)
    assert "add mvp.projects.gift-shop by hand (clusters: [stage, prod])" in str(info.value)


def test_an_edit_that_reads_back_differently_is_refused():
    text = CONFIG
    with pytest.raises(ScaffoldError, match="without changing anything else"):
        scaffold.check_new_config(settings_of_text(text), text, text.replace("us-east-1", "eu-west-1") +
                                  "    gift-shop:\n      clusters: [stage]\n", "gift-shop", {"clusters": ["stage"]})


def settings_of_text(text: str, root: Path = ROOT):
    return load_settings(yaml.safe_load(text), root)


# --- project.new: planning and making --------------------------------------------------------------


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the studio's config, cluster template and example project."""
    for name in ("invoke.yaml", "infrastructure", "projects/museum-adventure"):
        source, dest = ROOT / name, tmp_path / name
        if source.is_dir():
            shutil.copytree(source, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    return tmp_path


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_new_project_names_itself_and_passes_the_checks(repo):
    settings = settings_of(repo)
    planned = plan_new_project(settings, "gift-shop", ("stage",), None)
    assert sorted(planned.files) == ["Dockerfile", "deploy.yml", "site/index.html"]
    assert "museum-adventure" not in planned.files["deploy.yml"] + planned.files["Dockerfile"]
    assert "gift-shop" in planned.files["deploy.yml"] and "<h1>gift-shop</h1>" in planned.files["site/index.html"]
    assert planned.entry == {"clusters": ["stage"]}

    create_project(repo, planned, verify=lambda made: scaffold.check_made(settings, planned, made))

    assert listing(repo / "projects" / "gift-shop") == {k: v.encode() for k, v in planned.files.items()}
    assert [p.name for p in (repo / "projects").iterdir()] != [] and not [
        p for p in (repo / "projects").iterdir() if p.name.startswith(".")]
    after = settings_of(repo)
    assert after.projects["gift-shop"].clusters == ("stage",)
    findings, _ = Checker(after).check_studio()
    assert errors(findings) == [], errors(findings)


def test_a_port_goes_to_the_config_the_dockerfile_and_nginx(repo):
    planned = plan_new_project(settings_of(repo), "gift-shop", ("stage", "prod"), 8080)
    assert planned.entry == {"clusters": ["stage", "prod"], "parameters": {"ContainerPort": 8080}}
    dockerfile = planned.files["Dockerfile"]
    assert "EXPOSE 8080\n" in dockerfile and "EXPOSE 80\n" not in dockerfile
    assert "COPY nginx.conf /etc/nginx/conf.d/default.conf\n" in dockerfile
    assert "listen       8080;" in planned.files["nginx.conf"]
    # The port the example already serves on changes nothing.
    same = plan_new_project(settings_of(repo), "gift-shop", ("stage",), 80)
    assert "nginx.conf" not in same.files and "parameters" not in same.entry


@pytest.mark.parametrize("name, fragment", [
    ("museum-adventure", "projects/museum-adventure/ exists already"),
    ("Gift_Shop", "is not a valid project name"),
    ("9lives", "is not a valid project name"),
    ("a" * 64, "is not a valid project name"),
])
def test_a_name_that_exists_or_cannot_be_a_stack_name_is_refused(repo, name, fragment):
    before = listing(repo)
    with pytest.raises(MvpError, match=fragment):
        plan_new_project(settings_of(repo), name, ("stage",), None)
    assert listing(repo) == before


def test_a_configured_name_without_its_folder_is_refused(repo):
    (repo / "invoke.yaml").write_text((repo / "invoke.yaml").read_text() + "    ghost:\n      clusters: [stage]\n")
    with pytest.raises(ScaffoldError, match="mvp.projects.ghost is configured already"):
        plan_new_project(settings_of(repo), "ghost", ("stage",), None)


@pytest.mark.parametrize("value, fragment", [("stage,qa", "unknown cluster 'qa'"), ("stage,", "an empty name")])
def test_unknown_or_empty_clusters_are_refused(repo, value, fragment):
    with pytest.raises(MvpError, match=fragment):
        scaffold.parse_clusters(value, settings_of(repo))
    assert scaffold.parse_clusters("prod,stage,prod", settings_of(repo)) == ("prod", "stage")
    assert scaffold.parse_clusters(None, settings_of(repo)) == ("stage",)


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1", "8080.5"])
def test_a_port_that_is_not_a_port_is_refused(value):
    with pytest.raises(MvpError, match="--port"):
        scaffold.parse_port(value)


def failing(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("how", ["verify refuses", "interrupted while verifying", "config rename fails",
                                 "interrupted at the config rename"])
def test_a_failure_or_an_interrupt_midway_leaves_nothing(repo, monkeypatch, how):
    settings = settings_of(repo)
    planned = plan_new_project(settings, "gift-shop", ("stage",), 8080)
    mode = stat.S_IMODE((repo / "invoke.yaml").stat().st_mode)
    before = listing(repo)
    verify = None
    if how == "verify refuses":
        verify = failing(ScaffoldError("no"))
    elif how == "interrupted while verifying":
        verify = failing(KeyboardInterrupt())
    else:
        monkeypatch.setattr(scaffold.os, "replace", failing(OSError("disk full") if "fails" in how
                                                             else KeyboardInterrupt()))
    with pytest.raises((MvpError, KeyboardInterrupt)):
        create_project(repo, planned, verify=verify)
    assert listing(repo) == before
    assert stat.S_IMODE((repo / "invoke.yaml").stat().st_mode) == mode
    assert not [p.name for p in [*repo.iterdir(), *(repo / "projects").iterdir()] if p.name.startswith(".")]


def test_a_config_changed_meanwhile_is_not_overwritten(repo):
    planned = plan_new_project(settings_of(repo), "gift-shop", ("stage",), None)
    (repo / "invoke.yaml").write_text((repo / "invoke.yaml").read_text() + "# edited\n")
    before = listing(repo)
    with pytest.raises(ScaffoldError, match="invoke.yaml changed while project.new ran"):
        create_project(repo, planned)
    assert listing(repo) == before


def test_the_config_keeps_its_permissions(repo):
    os.chmod(repo / "invoke.yaml", 0o640)
    create_project(repo, plan_new_project(settings_of(repo), "gift-shop", ("stage",), None))
    assert stat.S_IMODE((repo / "invoke.yaml").stat().st_mode) == 0o640
    assert stat.S_IMODE((repo / "projects" / "gift-shop").stat().st_mode) == 0o777 & ~scaffold._umask()
