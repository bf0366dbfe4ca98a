"""Reading CloudFormation templates from disk and filling their parameters by name.

Pure functions: no AWS calls. A template that cannot be read is a `TemplateError` naming the
file and, for YAML/JSON syntax errors, the line.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import TemplateError
from .aws.stacks import MAX_TEMPLATE_BODY
from .memo import Memo, remember


@dataclass(frozen=True)
class Template:
    path: Path
    label: str  # the path as a person would write it (relative to the repository)
    body: str
    parameters: Mapping[str, Mapping[str, Any]]
    resources: Mapping[str, str]  # logical id -> resource type
    conditions: Mapping[str, str] = field(default_factory=dict)  # logical id -> its Condition, if any

    def required_parameters(self) -> list[str]:
        return [name for name, spec in self.parameters.items() if "Default" not in spec]


def load_template(path: Path, root: Path, config_key: str = "", memo: Memo | None = None) -> Template:
    label = _label(path, root)
    where = f" (set by {config_key})" if config_key else ""
    if not path.is_file():
        raise TemplateError(f"template {label} not found{where}")
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        # A committed symlink (deploy.yml -> /somewhere/else) must not pull a file from outside in.
        raise TemplateError(f"template {label}{where} leads to {real}, outside the repository",
                            "commit the template itself inside the repository instead of a link to it")
    try:
        body = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template {label} cannot be read: {exc}") from None
    return template_from_text(body, label, path, memo)


def template_from_text(body: str, label: str, path: Path | None = None, memo: Memo | None = None) -> Template:
    """A template from its text (`label`: how a person names it, e.g. `projects/app/deploy.yml at
    1a2b3c4d5e6f` for one read from a commit). `memo`: the run's, so that each text is parsed
    once however many commits and apps hold it (`parsed_template`)."""
    if len(body.encode("utf-8")) > MAX_TEMPLATE_BODY:
        raise TemplateError(
            f"template {label} is larger than {MAX_TEMPLATE_BODY} bytes, the most CloudFormation takes inline",
        )
    data = parsed_template(body, label, memo)
    resources = data.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError(f"template {label}: no Resources section; is this a CloudFormation template?")
    parameters = data.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise TemplateError(f"template {label}: Parameters must be a mapping")
    return Template(
        path=path if path is not None else Path(label),
        label=label,
        body=body,
        parameters={k: (v if isinstance(v, dict) else {}) for k, v in parameters.items()},
        resources={k: (v.get("Type", "?") if isinstance(v, dict) else "?") for k, v in resources.items()},
        conditions={k: v["Condition"] for k, v in resources.items()
                    if isinstance(v, dict) and isinstance(v.get("Condition"), str)},
    )


def parsed_template(body: str, label: str, memo: Memo | None = None) -> dict:
    """`parse_template(body, label)`, once per text in a run (`memo`): a promotion reads each app's
    template at two commits, mostly the same text, and parsing YAML is most of planning's CPU.
    The answer is shared: read it, never change it (`with_container_settings` copies it first)."""
    return remember(memo, ("parsed template", body), lambda: parse_template(body, label))


def parse_template(body: str, label: str) -> dict:
    import json

    import yaml
    from cfn_flip import load_json, load_yaml

    try:
        # JSON only when it looks like JSON, so a YAML template's error is reported as YAML.
        data = load_json(body) if body.lstrip().startswith("{") else load_yaml(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"template {label}:{line} YAML error: {problem}") from None
    except json.JSONDecodeError as exc:
        raise TemplateError(f"template {label}: line {exc.lineno}: JSON error: {exc.msg}") from None
    except Exception as exc:  # cfn_flip raises plain exceptions for odd inputs
        raise TemplateError(f"template {label}: cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"template {label}: expected a mapping at the top level")
    return dict(data)


def fill_parameters(template: Template, available: Mapping[str, str], configured: Mapping[str, str],
                    config_key: str) -> dict[str, str]:
    """Values for the template's declared parameters, by name.

    `configured` (from invoke.yaml) wins over `available` (outputs and well-known values). A
    configured name the template does not declare is a mistake worth one line; an undeclared
    available value is simply not passed. A parameter without a default and without a value
    is refused before anything changes.
    """
    for name in configured:
        if name not in template.parameters:
            declared = ", ".join(sorted(template.parameters)) or "none"
            raise TemplateError(
                f"config {config_key}.{name}: template {template.label} declares no parameter {name} "
                f"(it declares: {declared})"
            )
    values = {}
    for name in template.parameters:
        if name in configured:
            values[name] = configured[name]
        elif name in available:
            values[name] = available[name]
    missing = [n for n in template.required_parameters() if n not in values]
    if missing:
        raise TemplateError(
            f"template {template.label}: no value for parameter {', '.join(missing)}; "
            f"set it under {config_key} in invoke.yaml or give it a Default"
        )
    return values


def with_container_settings(template: Template, environment: Mapping[str, str], secrets: Mapping[str, Any],
                            config_key: str, memo: Memo | None = None) -> Template:
    """The template with `environment` ({KEY: value}) and `secrets` ({KEY: ValueFrom}) filled into
    its task definition's first container, over the container's own entries of the same name.

    Done on the loaded template, so adding a variable or a secret is one line of config: no
    template names them. A template given nothing is returned as it is (its text, comments and
    all); one given something is sent re-serialised (the same text for the same config, so an
    unchanged app still reads as unchanged)."""
    if not environment and not secrets:
        return template
    import copy
    import json

    data = copy.deepcopy(parsed_template(template.body, template.label, memo))
    task_definitions = [k for k, v in data["Resources"].items()
                        if isinstance(v, dict) and v.get("Type") == "AWS::ECS::TaskDefinition"]
    if len(task_definitions) != 1:
        found = ", ".join(task_definitions) or "none"
        raise TemplateError(
            f"config {config_key}: template {template.label} needs exactly one AWS::ECS::TaskDefinition to "
            f"give the environment and secrets to (it has: {found})")
    logical = task_definitions[0]
    containers = (data["Resources"][logical].get("Properties") or {}).get("ContainerDefinitions")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise TemplateError(
            f"config {config_key}: template {template.label}: {logical}.Properties.ContainerDefinitions "
            "must be a list of containers written out (not an intrinsic function) to take environment and secrets")
    container = containers[0]
    for field_name, key_name, given in (("Environment", "Value", environment), ("Secrets", "ValueFrom", secrets)):
        if not given:
            continue
        own = container.get(field_name) or []
        if not isinstance(own, list) or not all(isinstance(e, dict) and "Name" in e for e in own):
            raise TemplateError(
                f"config {config_key}: template {template.label}: {logical}'s first container's {field_name} "
                "must be a list of {Name, " + key_name + "} entries to take more")
        kept = [e for e in own if e["Name"] not in given]
        container[field_name] = kept + [{"Name": k, key_name: given[k]} for k in sorted(given)]
    if template.body.lstrip().startswith("{"):
        body = json.dumps(data, indent=2) + "\n"
    else:
        from cfn_flip import dump_yaml

        body = dump_yaml(data)
    if len(body.encode("utf-8")) > MAX_TEMPLATE_BODY:
        raise TemplateError(f"template {template.label} with its environment and secrets is larger than "
                            f"{MAX_TEMPLATE_BODY} bytes, the most CloudFormation takes inline")
    from dataclasses import replace

    return replace(template, body=body)


def check_cluster_parameters(settings: Any) -> None:
    """Refuse a configured cluster parameter that its cluster template does not declare.

    Only `cluster.up` passes cluster parameters, and only to the cluster's own template; a name the
    template lacks would be ignored by every other task. The usual mistake is an app's parameter
    (DesiredCount, ...) put under the cluster, so the message says where that belongs. A template
    that cannot be read is left to the tasks that use it."""
    for cluster in settings.clusters.values():
        if not cluster.parameters:
            continue
        key = f"mvp.clusters.{cluster.name}.parameters"
        try:
            template = load_template(settings.root / cluster.template, settings.root, f"mvp.clusters.{cluster.name}.template")
        except TemplateError:
            continue
        for name in cluster.parameters:
            if name not in template.parameters:
                raise TemplateError(
                    f"config {key}.{name}: cluster template {template.label} declares no parameter {name}, "
                    f"so it would have no effect",
                    _where_it_belongs(settings, name),
                )


def _where_it_belongs(settings: Any, name: str) -> str:
    declaring = []
    for project in settings.projects.values():
        try:
            template = load_template(settings.root / "projects" / project.name / project.template, settings.root)
        except TemplateError:
            continue
        if name in template.parameters:
            declaring.append(project.name)
    if declaring:
        return (f"it is an app template's parameter ({', '.join(declaring)}): set it under "
                f"mvp.projects.{declaring[0]}.parameters, or for one cluster under "
                f"mvp.projects.{declaring[0]}.per_cluster.CLUSTER.parameters")
    return ("an app template's parameter belongs under mvp.projects.NAME.parameters; "
            "a cluster's must be declared in its template's Parameters")


def _label(path: Path, root: Path) -> str:
    """The path as written, relative to the repository (not where a symlink leads)."""
    import os

    for candidate, base in ((Path(os.path.abspath(path)), Path(os.path.abspath(root))),
                            (path.resolve(), root.resolve())):
        try:
            return str(candidate.relative_to(base))
        except ValueError:
            continue
    return str(path)


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def expand(value: str, values: Mapping[str, str], config_key: str) -> str:
    """Fill `{project}`, `{cluster}`, ... placeholders in a configured string; `{{` is a literal brace."""
    if "{" not in value:
        return value
    try:
        # str.format would also honour `{cluster.upper}`, `{cluster[0]}`, `{cluster!r}` and
        # `{cluster:>9}`; only bare names are placeholders, anything else is a mistake.
        for _literal, field_name, spec, conversion in string.Formatter().parse(value):
            if field_name is not None and (field_name not in values or spec or conversion):
                raise KeyError(field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else ""))
        return value.format_map(_Placeholders(values))
    except KeyError as exc:
        allowed = ", ".join("{" + k + "}" for k in sorted(values))
        raise TemplateError(f"config {config_key}: unknown placeholder {{{exc.args[0]}}} (allowed: {allowed})") from None
    except (ValueError, IndexError) as exc:
        raise TemplateError(f"config {config_key}: malformed placeholder in {value!r} ({exc}); write {{{{ for a brace") from None


def expand_all(values: Mapping[str, str], placeholders: Mapping[str, str], config_key: str) -> dict[str, str]:
    return {k: expand(v, placeholders, f"{config_key}.{k}") for k, v in values.items()}
