"""Checks before shipping: what `project.check` reports and what `ci.release` refuses to ship.

Everything here is local (no AWS, no Docker): cfn-lint on the templates the config names, the
config itself, each project's Dockerfile and template, the parameters each template needs against
what it would be given, and the Git LFS state. Each problem is one `Finding`: the file, its line
where it has one, what is wrong, and the fix.

Without AWS the cluster stacks' outputs cannot be read, so an app template's parameters are
checked against the output names its cluster template declares, as `app.deploy` would fill them.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError, MvpError, TemplateError
from .plan import parameters

ERROR = "error"
WARNING = "warning"


EXAMPLE_PROJECT = "museum-adventure"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Finding:
    level: str      # ERROR or WARNING
    file: str       # relative to the repository, as a person would write it
    message: str
    fix: str = ""
    line: int = 0   # 1-based; 0: the finding has no line
    column: int = 0
    target: str = ""  # the project, cluster template or "config" it belongs to

    @property
    def is_error(self) -> bool:
        return self.level == ERROR

    @property
    def where(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"

    @property
    def text(self) -> str:
        """Where, what, and the fix: `file:line:column: message; fix: ...`."""
        text = f"{self.where}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict:
        return {"level": self.level, "file": self.file, "line": self.line or None, "column": self.column or None,
                "message": self.message, "fix": self.fix, "target": self.target}


class CheckFailed(MvpError):
    """A project that fails its checks is not shipped."""

    @classmethod
    def of(cls, name: str, findings: list[Finding]) -> "CheckFailed":
        return cls(f"not shipping {name}: project.check: {describe_errors(findings)}",
                   f"see `inv project.check {name}`")


def errors_in(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.is_error]


def describe_errors(findings: Iterable[Finding]) -> str:
    """The first error, and how many more: one line."""
    errors = errors_in(findings)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0].text}{more}" if errors else "no errors"


# --- where a key is in a YAML file ---------------------------------------------------------------


def key_line(text: str, path: Iterable[str]) -> int:
    """The 1-based line of the key at `path` (e.g. mvp, projects, NAME) in YAML `text`; 0 when it is
    not there or the text is not YAML. Composing builds nodes only, so CloudFormation's short-form
    tags (`!Ref`) need no constructor."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return 0
    line = 0
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return 0
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            return 0
    return line


CONFIG_KEY = re.compile(r"^config (mvp(?:\.[^\s:]+)*):")


def config_finding(exc: MvpError, root: Path, target: str = "config") -> Finding:
    """A config error as a finding on invoke.yaml, at the key's line where invoke.yaml has that key
    (the value may also come from an `-f` file or an INVOKE_MVP_* variable). The one place that reads
    the key path out of a message: config errors name it as `config mvp.a.b: ...`."""
    message = exc.message
    match = CONFIG_KEY.match(message)
    line = 0
    if match:
        try:
            text = (root / "invoke.yaml").read_text(encoding="utf-8")
        except OSError:
            text = ""
        line = key_line(text, match.group(1).split("."))
    return Finding(ERROR, "invoke.yaml", message, exc.hint or "correct the value in invoke.yaml", line,
                   target=target)


def check_config(config: Any, root: Path):
    """`load_settings`, with a config error raised as one line naming invoke.yaml and the key's line."""
    from .settings import load_settings

    try:
        return load_settings(config, root)
    except ConfigError as exc:
        finding = config_finding(exc, Path(root))
        if not finding.line:
            raise  # not from invoke.yaml (an -f file, an INVOKE_MVP_* variable): the message names the key
        raise ConfigError(f"{finding.where}: {exc.message}", exc.hint) from None


# --- cfn-lint -----------------------------------------------------------------------------------

# cfn-lint keeps caches of its own (rules, schemas) that are not documented as thread-safe; the
# planner's threads lint one template at a time.
_LINT_LOCK = threading.Lock()


def lint(body: str, label: str, region: str, memo: Any = None, target: str = "") -> list[Finding]:
    """cfn-lint's errors and warnings for a template's text; each template's text is linted once
    per run (apps copied from one example share one template)."""
    key = ("cfn-lint", hashlib.sha256(body.encode("utf-8")).hexdigest(), region)
    if memo is None:
        matches = _lint(body, region)
    else:
        matches = memo.get(key, lambda: _lint(body, region))
    return [Finding(level, label, message, fix, line, column, target) for level, message, fix, line, column in matches]


def _lint(body: str, region: str) -> list[tuple]:
    with _LINT_LOCK:
        from cfnlint.api import ManualArgs, lint as cfn_lint

        matches = cfn_lint(body, config=ManualArgs(regions=[region]))
    out = []
    for m in matches:
        rule = m.rule
        level = {"E": ERROR, "W": WARNING}.get(rule.id[:1])
        if level is None:  # informational rules (I...)
            continue
        fix = f"correct the template ({rule.id}: {rule.shortdesc}"
        # Most rules link a page of their own; the bare project address says nothing more.
        specific = rule.source_url and rule.source_url.rstrip("/") != "https://github.com/aws-cloudformation/cfn-lint"
        fix += f"; {rule.source_url})" if specific else ")"
        out.append((level, f"{rule.id} {m.message}", fix, m.linenumber or 0, m.columnnumber or 0))
    return sorted(set(out), key=lambda f: (f[3], f[4], f[1]))


# --- templates ----------------------------------------------------------------------------------


@dataclass
class _Template:
    """A template as the checks saw it: the parsed one (None when unreadable) and its findings."""

    label: str
    body: str = ""
    template: Any = None  # templates.Template
    findings: list = field(default_factory=list)


def _read_template(path: Path, root: Path, label: str, region: str, memo: Any, target: str,
                   missing: Finding) -> _Template:
    from .templates import load_template

    seen = _Template(label)
    if not path.is_file():
        seen.findings.append(missing)
        return seen
    try:
        seen.body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        seen.findings.append(Finding(ERROR, label, f"cannot be read: {exc}", "make it a readable UTF-8 file",
                                     target=target))
        return seen
    seen.findings += lint(seen.body, label, region, memo, target)
    parse_error = any(f.message.startswith("E0000") for f in seen.findings)
    try:
        seen.template = replace(load_template(path, root), label=label)
    except TemplateError as exc:
        if not parse_error:  # cfn-lint said it already, with the line
            seen.findings.append(Finding(ERROR, label, exc.message, exc.hint or "correct the template",
                                         _line_of(exc.message), target=target))
    return seen


def _line_of(message: str) -> int:
    match = re.search(r": line (\d+):", message)
    return int(match.group(1)) if match else 0


def _parameter_line(seen: _Template, name: str) -> int:
    return key_line(seen.body, ("Parameters", name))


# --- the studio ---------------------------------------------------------------------------------


class Checker:
    """One run's checks: each template is read and linted once, whatever asks for it."""

    def __init__(self, settings: Any, memo: Any = None):
        from .memo import Memo

        self.settings = settings
        self.root = Path(settings.root)
        self.region = settings.region or DEFAULT_REGION
        self.memo = memo if memo is not None else Memo()
        try:
            self.config_text = (self.root / "invoke.yaml").read_text(encoding="utf-8")
        except OSError:
            self.config_text = ""

    def _config_line(self, *path: str) -> int:
        return key_line(self.config_text, ("mvp", *path))

    # clusters --------------------------------------------------------------------------------

    def cluster_template(self, cluster: Any) -> _Template:
        return self.memo.get(("check cluster template", cluster.template), lambda: self._cluster_template(cluster))

    def _cluster_template(self, cluster: Any) -> _Template:
        label = cluster.template
        missing = Finding(ERROR, label, "the cluster template is missing",
                          f"restore it, or point mvp.clusters.{cluster.name}.template at one",
                          target=label)
        return _read_template(self.root / cluster.template, self.root, label, self.region, self.memo, label, missing)

    def cluster_outputs(self, cluster: Any) -> tuple[str, ...]:
        """The output names the cluster's template declares (what its stack's outputs will be),
        read without linting it: an app's release needs the names, not the cluster's findings."""
        def read() -> tuple[str, ...]:
            from .templates import parse_template

            try:
                body = (self.root / cluster.template).read_text(encoding="utf-8")
                outputs = parse_template(body, cluster.template).get("Outputs") or {}
            except (OSError, UnicodeDecodeError, TemplateError):
                return ()
            return tuple(outputs) if isinstance(outputs, dict) else ()

        return self.memo.get(("check cluster outputs", cluster.template), read)

    def check_cluster(self, cluster: Any) -> list[Finding]:
        """The cluster's parameters against its template (the lint findings are the template's own)."""
        from .templates import expand

        seen = self.cluster_template(cluster)
        if seen.template is None:
            return []
        key = f"mvp.clusters.{cluster.name}.parameters"
        findings = []
        for source in parameters.cluster_sources(cluster):
            for name, value in source.values.items():
                try:
                    expand(value, parameters.CLUSTER_STAND_INS, f"{key}.{name}")
                except TemplateError as exc:
                    findings.append(Finding(ERROR, "invoke.yaml", exc.message, "use {cluster} or {tag}, or {{ for a brace",
                                            self._config_line(*source.path, name), target=cluster.name))
        given = {name for source in parameters.cluster_sources(cluster) for name in source.values}
        for name in parameters.unfilled(seen.template, given | set(parameters.CLUSTER_WELL_KNOWN)):
            findings.append(Finding(
                ERROR, seen.label,
                f"parameter {name} has no Default and cluster {cluster.name} gives it no value",
                f"set {key}.{name} in invoke.yaml, or give it a Default",
                _parameter_line(seen, name), target=cluster.name))
        return findings

    # projects --------------------------------------------------------------------------------

    def check_project(self, project: Any, clusters: Iterable[Any] | None = None, *, lfs: bool = True,
                      folder: Path | None = None) -> list[Finding]:
        """Every check of one project: its folder, Dockerfile and template (cfn-lint), the parameters
        its template needs in each of `clusters` (default: the clusters it runs in), its LFS files.
        `folder`: where its files are (default projects/NAME/), named as projects/NAME/ all the same."""
        name = project.name
        shown = f"projects/{name}"
        folder = folder or self.root / "projects" / name
        if not folder.is_dir():
            return [Finding(ERROR, f"{shown}/", "the project's folder is missing",
                            f"restore it, or remove mvp.projects.{name} from invoke.yaml", target=name)]
        findings = []
        if not (folder / "Dockerfile").is_file():
            findings.append(Finding(ERROR, f"{shown}/Dockerfile", "the project has no Dockerfile, so no image can be built",
                                    f"add one (projects/{EXAMPLE_PROJECT}/Dockerfile is an example)", target=name))
        label = f"{shown}/{project.template}"
        key = f"mvp.projects.{name}"
        missing = Finding(ERROR, label, "the project's template is missing",
                          f"add it (projects/{EXAMPLE_PROJECT}/deploy.yml is an example), or set {key}.template",
                          target=name)
        seen = _read_template(folder / project.template, self.root, label, self.region, self.memo, name, missing)
        findings += seen.findings
        if seen.template is not None:
            if clusters is None:
                # A project mapped to no cluster yet is checked against every cluster it could run in.
                clusters = ([self.settings.clusters[c] for c in project.clusters if c in self.settings.clusters]
                            or list(self.settings.clusters.values()))
            findings += self._check_app_parameters(project, seen, list(clusters))
            findings += self._check_container_settings(project, seen, list(clusters))
        if lfs:
            findings += self.check_lfs(project)
        return sorted(findings, key=lambda f: (f.file != "invoke.yaml", f.file, f.line, f.column))

    def _placeholder_findings(self, project: Any, what: str) -> list[Finding]:
        """Each wrong placeholder in the project's `what` (its own and every cluster's), at its line."""
        from .templates import expand

        allowed = ", ".join("{" + k + "}" for k in parameters.APP_STAND_INS)
        findings = []
        for source in parameters.app_sources(project, what):
            for name, value in source.values.items():
                try:
                    expand(value, parameters.APP_STAND_INS, f"{source.key}.{name}")
                except TemplateError as exc:
                    findings.append(Finding(ERROR, "invoke.yaml", exc.message, f"use {allowed}, or {{{{ for a brace",
                                            self._config_line(*source.path, name), target=project.name))
        return findings

    def _check_container_settings(self, project: Any, seen: _Template, clusters: list) -> list[Finding]:
        """The template can take the configured environment and secrets (one task definition, its
        containers written out), as `app.deploy` fills them in each cluster. Whether each secret
        is set needs AWS: `inv app.secret.list NAME --cluster C` says, and deploys refuse a missing one."""
        findings = self._placeholder_findings(project, "environment")
        if findings:
            return findings
        for cluster in clusters:
            environment = parameters.layered(project, cluster, "environment", parameters.APP_STAND_INS)
            try:
                parameters.with_app_container(seen.template, project, cluster, environment)
            except TemplateError as exc:
                line = self._config_line("projects", project.name, "environment" if environment else "secrets")
                return [Finding(ERROR, "invoke.yaml", exc.message,
                                "give the template one AWS::ECS::TaskDefinition whose ContainerDefinitions are "
                                "written out, or remove the environment and secrets", line, target=project.name)]
        return []

    def _check_app_parameters(self, project: Any, seen: _Template, clusters: list) -> list[Finding]:
        """As `app.deploy` fills them (plan/parameters.py): the project's parameters, a cluster's
        own (`per_cluster.CLUSTER.parameters`) over them, the names the tool passes, then the
        cluster stack's outputs."""
        template = seen.template
        findings = []
        declared = ", ".join(sorted(template.parameters)) or "none"
        for source in parameters.app_sources(project, "parameters"):
            for name in parameters.undeclared(template, source.values):
                findings.append(Finding(
                    ERROR, "invoke.yaml", f"{source.key}.{name}: template {seen.label} declares no parameter {name}",
                    f"remove it, or declare it in the template's Parameters (it declares: {declared})",
                    self._config_line(*source.path, name), target=project.name))
        findings += self._placeholder_findings(project, "parameters")
        # What no cluster can lack: the project's own values and the names the tool passes.
        lacking: dict[str, list[str]] = {}
        for cluster in clusters:
            given = parameters.app_given_names(project, cluster) | set(self.cluster_outputs(cluster))
            for name in parameters.unfilled(template, given):
                lacking.setdefault(name, []).append(cluster.name)
        if not clusters:
            lacking = {name: [] for name in parameters.unfilled(template, parameters.app_given_names(project))}
        key = f"mvp.projects.{project.name}.parameters"
        for name, where in lacking.items():
            source = (f"neither in invoke.yaml nor an output of the cluster template of {', '.join(where)}"
                      if where else "not in invoke.yaml, and no cluster is configured whose outputs could fill it")
            findings.append(Finding(
                ERROR, seen.label, f"parameter {name} has no Default and gets no value ({source})",
                f"set {key}.{name} in invoke.yaml, give it a Default, or add an output {name} to the cluster template",
                _parameter_line(seen, name), target=project.name))
        return findings

    def check_lfs(self, project: Any) -> list[Finding]:
        """The project's Git LFS files are content, not pointer files (as `app.push` requires)."""
        from .errors import BuildError
        from .image import git
        from .image.runner import Runner

        subdir = f"projects/{project.name}"
        fetch = f'git lfs pull --include "{subdir}/**"'
        try:
            pointers = git.get_lfs_pointer_files(Runner.local(), self.root, subdir, self.memo)
        except BuildError as exc:
            return [Finding(ERROR, ".gitattributes", exc.message, exc.hint, target=project.name)]
        return [Finding(ERROR, path, "a Git LFS pointer file, not its content: the image would ship the pointer",
                        f"fetch it with: {fetch}", target=project.name) for path in pointers]

    # the whole studio -------------------------------------------------------------------------

    def check_settings(self) -> list[Finding]:
        """What `load_settings` cannot see: cluster parameters their template does not declare."""
        from .templates import check_cluster_parameters

        try:
            check_cluster_parameters(self.settings)
        except (ConfigError, TemplateError) as exc:
            return [config_finding(exc, self.root)]
        return []

    def check_studio(self, names: Iterable[str] | None = None) -> tuple[list[Finding], dict]:
        """Every check, for the projects named (default: every configured one), and what was checked."""
        findings = self.check_settings()
        if names is None:
            projects = list(self.settings.projects.values())
            findings += self._unconfigured_folders()
        else:
            projects = [self.settings.project_or_default(n) for n in names]
        clusters = ({c for p in projects for c in p.clusters} if names is not None
                    else set(self.settings.clusters))
        linted: set[str] = set()
        for cluster in (self.settings.clusters[c] for c in sorted(clusters) if c in self.settings.clusters):
            seen = self.cluster_template(cluster)
            if seen.label not in linted:
                linted.add(seen.label)
                findings += seen.findings
            findings += self.check_cluster(cluster)
        for project in projects:
            if project.name not in self.settings.projects:
                findings.append(Finding(WARNING, f"projects/{project.name}/", "not in invoke.yaml: no task ships it",
                                        f"add mvp.projects.{project.name} (clusters: [...]) to invoke.yaml",
                                        target=project.name))
            elif not project.clusters:
                findings.append(Finding(WARNING, "invoke.yaml", f"project {project.name} runs in no cluster",
                                        f"list its clusters under mvp.projects.{project.name}.clusters",
                                        self._config_line("projects", project.name), target=project.name))
            findings += self.check_project(project)
        checked = {"projects": [p.name for p in projects], "cluster_templates": sorted(linted)}
        return findings, checked

    def _unconfigured_folders(self) -> list[Finding]:
        folder = self.root / "projects"
        if not folder.is_dir():
            return []
        return [Finding(WARNING, f"projects/{p.name}/", "a project folder that is not in invoke.yaml: no task ships it",
                        f"add mvp.projects.{p.name} (clusters: [...]) to invoke.yaml, or remove the folder",
                        target=p.name)
                for p in sorted(folder.iterdir())
                if p.is_dir() and not p.name.startswith(".") and p.name not in self.settings.projects
                and (p / "Dockerfile").exists()]


def check_release(settings: Any, project: Any, cluster: Any, memo: Any = None) -> list[Finding]:
    """What `ci.release` checks before it ships `project` to `cluster` (the config was checked when
    the task started): the project, with the parameters it needs in that cluster. The cluster's own
    template is `cluster.up`'s to ship, so its findings do not hold an app back."""
    return Checker(settings, memo).check_project(project, [cluster])


def summary(findings: list[Finding], checked: Mapping[str, list]) -> str:
    errors = len(errors_in(findings))
    warnings = len(findings) - errors
    projects, templates = len(checked.get("projects", ())), len(checked.get("cluster_templates", ()))
    return (f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
            f"(checked: the config, {templates} cluster template{'s' * (templates != 1)}, "
            f"{projects} project{'s' * (projects != 1)})")
