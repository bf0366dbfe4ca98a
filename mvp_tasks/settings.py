"""The studio's configuration: defaults declared in code, validated once into frozen dataclasses.

Every key lives under `mvp` so Invoke layers `invoke.yaml`, `-f FILE` and `INVOKE_MVP_*` variables
over `DEFAULTS`. Per-cluster and per-project entries are keyed by the studio's own names, so their
defaults (`CLUSTER_DEFAULTS`, `PROJECT_DEFAULTS`) are applied here, at validation time.
Nothing in this module touches AWS, a shell or the network.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, UsageError

from .defaults import CLUSTER_DEFAULTS, DEFAULTS, PROJECT_DEFAULTS  # noqa: E402

# A CloudFormation stack name: a letter, then letters, digits and hyphens (128 at most).
# Cluster and project names end up in stack names, image tags, paths and shell arguments,
# so they are held to the intersection of what all of those accept.
# Always `fullmatch`: with `match`, `$` also matches before a trailing newline ("stage\n").
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
PROJECT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
PARAMETER_NAME = re.compile(r"^[A-Za-z0-9]{1,255}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9._/-]+)?$")
BUILD_HOST = re.compile(r"^([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(:\d{1,5})?$")
PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
SCALAR = (str, int, float, bool)
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
# An IAM role's ARN: partition, 12-digit account, optional path, name (64 at most).
IAM_ROLE_ARN = re.compile(r"^arn:aws(-cn|-us-gov|-iso|-iso-[a-z])?:iam::\d{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
IAM_ROLE_ARN_TEXT = "an IAM role ARN like arn:aws:iam::123456789012:role/mvp-cloudformation"


@dataclass(frozen=True)
class ClusterSettings:
    name: str
    template: str
    protected: bool
    promote_from: str
    tag: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    cfn_role: str = ""  # CloudFormation's service role for this cluster's stacks; "": none

    @property
    def stack_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class ClusterOverrides:
    """`mvp.projects.NAME.per_cluster.CLUSTER`: what the app takes in that cluster only."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectSettings:
    name: str
    clusters: tuple[str, ...]
    template: str
    parameters: Mapping[str, str]
    build_args: Mapping[str, str]
    repository: str
    # Plain environment variables and the names of secrets (SSM SecureStrings) of the app's container.
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    per_cluster: Mapping[str, ClusterOverrides] = field(default_factory=dict)

    def stack_name(self, cluster: str) -> str:
        return f"{self.name}-{cluster}"

    def _overrides(self, cluster: str) -> ClusterOverrides:
        return self.per_cluster.get(cluster) or ClusterOverrides()

    def secrets_for(self, cluster: str) -> tuple[str, ...]:
        """The project's secrets and the cluster's own, each once, in order."""
        return tuple(dict.fromkeys((*self.secrets, *self._overrides(cluster).secrets)))


@dataclass(frozen=True)
class BuildSettings:
    host: str
    platform: str
    docker: str
    docker_host: str = ""
    network: str = ""
    ssh_key: str = ""
    known_hosts: str = ""


@dataclass(frozen=True)
class SandboxSettings:
    dir: str
    port: int
    registry_port: int


@dataclass(frozen=True)
class RolloutSettings:
    failed_tasks: int = 2


@dataclass(frozen=True)
class StateSettings:
    stack: str = "mvp-deploy-state"
    table: str = ""
    lease: int = 90
    cfn_role: str = ""  # CloudFormation's service role for the store's stack; "" in config: the default cluster's


@dataclass(frozen=True)
class Settings:
    root: Path
    region: str
    profile: str
    registry: str
    default_cluster: str
    wait_timeout: int
    poll_interval: float
    build: BuildSettings
    sandbox: SandboxSettings
    clusters: Mapping[str, ClusterSettings]
    projects: Mapping[str, ProjectSettings]
    parallel: int = 4
    state: StateSettings = field(default_factory=StateSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    rollback_on_interrupt: bool = False

    def cluster(self, name: str | None, flag: str = "--cluster") -> ClusterSettings:
        """The cluster called `name` (None: `default_cluster`), or a ConfigError with the fix.

        An empty name is refused: `--cluster ''` (an unset shell variable) must not mean the default."""
        if name is not None and not str(name).strip():
            raise UsageError(
                f"{flag}: the cluster name is empty; give one ({', '.join(sorted(self.clusters)) or 'none configured'}), "
                f"or leave {flag} out for the default ({self.default_cluster})"
            )
        name = name or self.default_cluster
        check_cluster_name(name, where=flag)
        if name not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(
                f"unknown cluster '{name}' ({did_you_mean(name, self.clusters)}configured: {known}); "
                "add it under mvp.clusters in invoke.yaml"
            )
        return self.clusters[name]

    def project(self, name: str) -> ProjectSettings:
        check_project_name(name)
        if name not in self.projects:
            known = ", ".join(sorted(self.projects)) or "none"
            raise ConfigError(
                f"unknown project '{name}' ({did_you_mean(name, self.projects)}configured: {known}); "
                "add it under mvp.projects in invoke.yaml"
            )
        return self.projects[name]

    def project_or_default(self, name: str) -> ProjectSettings:
        """A configured project, or the defaults for a `projects/<name>/` folder not yet in invoke.yaml."""
        check_project_name(name)
        if name in self.projects:
            return self.projects[name]
        if not (self.root / "projects" / name).is_dir():
            folders = sorted(p.name for p in (self.root / "projects").glob("*") if p.is_dir())
            maybe = did_you_mean(name, set(folders) | set(self.projects))
            raise ConfigError(f"unknown project '{name}': there is no folder projects/{name}/ "
                              f"({maybe}projects: {', '.join(folders) or 'none'}; configured ones are listed under "
                              "mvp.projects in invoke.yaml)")
        return ProjectSettings(name=name, clusters=(), template=PROJECT_DEFAULTS["template"], parameters={},
                               build_args={}, repository=name)

    def projects_in(self, cluster: str) -> list[ProjectSettings]:
        return [p for p in self.projects.values() if cluster in p.clusters]

    @property
    def sandbox_dir(self) -> Path:
        # load_settings keeps `dir` a relative path without `..`: inside the repository, or a link
        # the user made there (to share one sandbox between clones).
        return (self.root / self.sandbox.dir).resolve()


def did_you_mean(name: str, known: Any) -> str:
    """`did you mean 'prod'? ` for a name close to a known one, else nothing."""
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def check_cluster_name(name: object, where: str = "cluster name") -> str:
    if not isinstance(name, str) or not CLUSTER_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: {name!r} is not a valid cluster name "
            "(a lowercase letter, then lowercase letters, digits or '-', 31 characters at most)"
        )
    return name


def check_project_name(name: object, where: str = "project name") -> str:
    if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: {name!r} is not a valid project name "
            "(a lowercase letter, then lowercase letters, digits or '-', 63 characters at most)"
        )
    return name


# --- validation -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Invoke's DataProxy objects -> plain dicts and lists, so validation sees ordinary types."""
    if hasattr(value, "keys") and callable(value.keys):
        return {k: _plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _part(key: Any) -> str:
    """One key of a path in an error message; a name with a newline would split the one line."""
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", bool: "true/false", str: "a string"}.get(
        type(value), type(value).__name__
    )


class _Reader:
    """Reads one mapping, naming the key path in every error."""

    def __init__(self, data: Any, path: str, allowed: Mapping[str, Any]):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config {path}: expected a mapping, got {_type_name(data)}")
        # YAML turns keys like `on:` or `1:` into non-strings; sort by text so they still get the message.
        unknown = sorted(set(data) - set(allowed), key=str)
        if unknown:
            raise ConfigError(
                f"config {path}.{_part(unknown[0])}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )
        self.data = {**copy.deepcopy(dict(allowed)), **data}
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def str(self, name: str, pattern: re.Pattern | None = None, what: str = "", empty: bool = True) -> str:
        value = self.data[name]
        if value is None:
            value = ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"config {self.key(name)}: expected a string, got {_type_name(value)}")
        if value == "" and empty:
            return value
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(f"config {self.key(name)}: {value!r} is not {what}")
        return value

    def bool(self, name: str) -> bool:
        value = self.data[name]
        # INVOKE_MVP_* variables arrive as strings when the default is not a bool.
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"config {self.key(name)}: expected true or false, got {value!r}")
        return value

    def number(self, name: str, low: float, high: float, integer: bool = True) -> Any:
        value = self.data[name]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(value) if integer else float(value)
        except (TypeError, ValueError):
            kind = "a whole number" if integer else "a number"
            raise ConfigError(f"config {self.key(name)}: expected {kind}, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"config {self.key(name)}: {number} is out of range ({low:g} to {high:g})")
        return number

    def mapping(self, name: str) -> dict:
        value = self.data[name]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"config {self.key(name)}: expected a mapping, got {_type_name(value)}")
        return value

    def scalars(self, name: str, key_pattern: re.Pattern, what: str) -> dict[str, str]:
        """A mapping of names to scalar values, each turned into the string CloudFormation or docker takes."""
        out = {}
        for key, value in self.mapping(name).items():
            path = f"{self.key(name)}.{_part(key)}"
            if not isinstance(key, str) or not key_pattern.fullmatch(key):
                raise ConfigError(f"config {path}: {key!r} is not {what}")
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list) and all(isinstance(v, SCALAR) for v in value):
                # CloudFormation List<...> and CommaDelimitedList parameters take "a,b".
                value = ",".join(str(v) for v in value)
            elif not isinstance(value, SCALAR) or value is None:
                raise ConfigError(f"config {path}: expected a string or number, got {_type_name(value)}")
            out[key] = str(value)
        return out


def _check_inside(value: str, key: str, example: str) -> None:
    """A configured path stays inside the repository: relative, and no `..` step out of it."""
    from pathlib import PurePosixPath

    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ConfigError(
            f"config {key}: {value!r} is outside the repository; give a path inside the repository, like {example}"
        )


BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An environment variable (and secret) name as ECS and a shell take it.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ENV_NAME_TEXT = "an environment variable name (a letter or '_', then letters, digits or '_')"
OVERRIDE_DEFAULTS: dict[str, Any] = {"parameters": {}, "environment": {}, "secrets": []}


def _secret_names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"config {key}: expected a list of secret names, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise ConfigError(f"config {key}: {name!r} is not {ENV_NAME_TEXT}")
    return tuple(dict.fromkeys(value))


def check_env_name(name: object, where: str) -> str:
    """A secret's or variable's name from the command line: refused before it reaches SSM."""
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise UsageError(f"{where}: {name!r} is not {ENV_NAME_TEXT}, like DATABASE_URL")
    return name


def _overrides(p: "_Reader", path: str, name: str, mapped: list) -> dict[str, ClusterOverrides]:
    out = {}
    for cluster, data in p.mapping("per_cluster").items():
        key = f"{path}.per_cluster.{_part(cluster)}"
        if cluster not in mapped:
            raise ConfigError(
                f"config {key}: project {name} is not mapped to cluster {_part(cluster)} "
                f"(its clusters: {', '.join(mapped) or 'none'}); add it to {path}.clusters or remove this key"
            )
        o = _Reader(data, key, OVERRIDE_DEFAULTS)
        out[cluster] = ClusterOverrides(
            parameters=o.scalars("parameters", PARAMETER_NAME, "a CloudFormation parameter name"),
            environment=o.scalars("environment", ENV_NAME, ENV_NAME_TEXT),
            secrets=_secret_names(o.data["secrets"], f"{key}.secrets"),
        )
    return out


def _check_no_clash(path: str, environment: Mapping[str, str], secrets: tuple[str, ...]) -> None:
    both = sorted(set(environment) & set(secrets))
    if both:
        raise ConfigError(f"config {path}: {both[0]} is both a plain environment variable and a secret; "
                          "keep it in one of environment or secrets")


def load_settings(config: Any, root: Path | str) -> Settings:
    """Validate `config['mvp']` (an Invoke Config or a plain dict) into `Settings`."""
    raw = _plain(config.get("mvp") if hasattr(config, "get") else None)
    top = _Reader(raw, "mvp", DEFAULTS)

    region = top.str("region", REGION, "an AWS region name like us-east-1")
    profile = top.str("profile", re.compile(r"^[A-Za-z0-9_.+=,@-]+$"), "a profile name")
    registry = top.str(
        "registry", REGISTRY, "a registry host like 127.0.0.1:5000 or registry.example.com/team (or empty for ECR)"
    )
    default_cluster = top.str("default_cluster", CLUSTER_NAME, "a valid cluster name", empty=False)
    wait_timeout = top.number("wait_timeout", 1, 24 * 3600)
    poll_interval = top.number("poll_interval", 0.1, 300, integer=False)
    parallel = top.number("parallel", 1, 64)
    rollback_on_interrupt = top.bool("rollback_on_interrupt")
    build, sandbox, state = _build(top), _sandbox(top), _state(top)
    rollout = RolloutSettings(failed_tasks=_Reader(top.data["rollout"], "mvp.rollout", DEFAULTS["rollout"]).number(
        "failed_tasks", 1, 1000))
    clusters = _clusters(top)
    if clusters and default_cluster not in clusters:
        raise ConfigError(
            f"config mvp.default_cluster: unknown cluster '{default_cluster}' (configured: {', '.join(sorted(clusters))})"
        )
    if not state.cfn_role and default_cluster in clusters:
        # The store's stack is planned by whichever cluster comes first: one role for it, not theirs.
        state = dataclasses.replace(state, cfn_role=clusters[default_cluster].cfn_role)
    projects = _projects(top, clusters)

    return Settings(
        root=Path(root).resolve(),
        region=region,
        profile=profile,
        registry=registry.rstrip("/"),
        default_cluster=default_cluster,
        wait_timeout=wait_timeout,
        poll_interval=poll_interval,
        build=build,
        sandbox=sandbox,
        clusters=clusters,
        projects=projects,
        parallel=parallel,
        state=state,
        rollout=rollout,
        rollback_on_interrupt=rollback_on_interrupt,
    )


def _build(top: _Reader) -> BuildSettings:
    b = _Reader(top.data["build"], "mvp.build", DEFAULTS["build"])
    return BuildSettings(
        host=b.str("host", BUILD_HOST, "an SSH host like user@build.example.com:22"),
        platform=b.str("platform", PLATFORM, "a platform like linux/amd64", empty=False),
        docker=b.str("docker", re.compile(r"^[A-Za-z0-9_./-]+$"), "a command name or path", empty=False),
        docker_host=b.str("docker_host", re.compile(r"^(unix|tcp|ssh|npipe)://[A-Za-z0-9_./:@-]+$"),
                          "a daemon address like unix:///var/run/docker.sock or tcp://127.0.0.1:2375"),
        network=b.str("network", re.compile(r"^(host|none|default|bridge)$"), "one of host, none, default, bridge"),
        ssh_key=b.str("ssh_key", re.compile(r"^[A-Za-z0-9_./~-]+$"), "a key file path"),
        known_hosts=b.str("known_hosts", re.compile(r"^[A-Za-z0-9_./~-]+$"), "a known_hosts file path"),
    )


def _sandbox(top: _Reader) -> SandboxSettings:
    s = _Reader(top.data["sandbox"], "mvp.sandbox", DEFAULTS["sandbox"])
    sandbox = SandboxSettings(
        dir=s.str("dir", re.compile(r"^[A-Za-z0-9_./-]+$"), "a folder path", empty=False),
        port=s.number("port", 1024, 65535),
        registry_port=s.number("registry_port", 1024, 65535),
    )
    _check_inside(sandbox.dir, "mvp.sandbox.dir", ".sandbox")
    return sandbox


def _state(top: _Reader) -> StateSettings:
    st = _Reader(top.data["state"], "mvp.state", DEFAULTS["state"])
    return StateSettings(
        stack=st.str("stack", STACK_NAME, "a stack name (letters, digits and '-', starting with a letter)",
                     empty=False),
        table=st.str("table", TABLE_NAME, "a DynamoDB table name (3 to 255 of letters, digits, '_', '-', '.')"),
        lease=st.number("lease", 5, 3600),
        cfn_role=st.str("cfn_role", IAM_ROLE_ARN, IAM_ROLE_ARN_TEXT),
    )


def _clusters(top: _Reader) -> dict[str, ClusterSettings]:
    clusters: dict[str, ClusterSettings] = {}
    for name, data in top.mapping("clusters").items():
        path = f"mvp.clusters.{_part(name)}"
        check_cluster_name(name, where=f"config {path}")
        c = _Reader(data, path, CLUSTER_DEFAULTS)
        clusters[name] = ClusterSettings(
            name=name,
            template=c.str("template", re.compile(r"^[A-Za-z0-9_./-]+\.(ya?ml|json|template)$"),
                           "a template path like infrastructure/fargate_cluster.yml", empty=False),
            protected=c.bool("protected"),
            promote_from=c.str("promote_from", CLUSTER_NAME, "a valid cluster name"),
            tag=c.str("tag", IMAGE_TAG, "a valid image tag") or name,
            parameters=c.scalars("parameters", PARAMETER_NAME, "a CloudFormation parameter name"),
            cfn_role=c.str("cfn_role", IAM_ROLE_ARN, IAM_ROLE_ARN_TEXT),
        )
        _check_inside(clusters[name].template, f"{path}.template", "infrastructure/fargate_cluster.yml")
    _check_promotions(clusters)
    return clusters


def _check_promotions(clusters: Mapping[str, ClusterSettings]) -> None:
    for cluster in clusters.values():
        if cluster.promote_from and cluster.promote_from not in clusters:
            raise ConfigError(
                f"config mvp.clusters.{cluster.name}.promote_from: unknown cluster '{cluster.promote_from}' "
                f"(configured: {', '.join(sorted(clusters))})"
            )
        if cluster.promote_from == cluster.name:
            raise ConfigError(f"config mvp.clusters.{cluster.name}.promote_from: a cluster cannot promote from itself")
    for cluster in clusters.values():
        chain = [cluster.name]
        while clusters[chain[-1]].promote_from:
            chain.append(clusters[chain[-1]].promote_from)
            if chain[-1] == cluster.name:
                raise ConfigError(
                    f"config mvp.clusters.{cluster.name}.promote_from: promotion cycle {' -> '.join(chain)}; "
                    "images must flow one way (e.g. stage -> prod): remove promote_from from the first cluster"
                )
            if chain[-1] in chain[:-1]:
                break  # a cycle that does not pass through this cluster: reported for its own members


def _projects(top: _Reader, clusters: Mapping[str, ClusterSettings]) -> dict[str, ProjectSettings]:
    return {name: _project(name, data, clusters) for name, data in top.mapping("projects").items()}


def _mapped_clusters(p: _Reader, path: str, name: str, clusters: Mapping[str, ClusterSettings]) -> list:
    mapped = p.data["clusters"]
    if isinstance(mapped, str):
        mapped = [mapped]
    if not isinstance(mapped, list):
        raise ConfigError(f"config {path}.clusters: expected a list of cluster names, got {_type_name(mapped)}")
    for cluster in mapped:
        if not isinstance(cluster, str) or cluster not in clusters:
            raise ConfigError(
                f"config {path}.clusters: unknown cluster {cluster!r} "
                f"(configured: {', '.join(sorted(clusters)) or 'none'})"
            )
        if len(f"{name}-{cluster}") > 128:
            raise ConfigError(f"config {path}: stack name '{name}-{cluster}' is longer than 128 characters")
    return mapped


def _project(name: Any, data: Any, clusters: Mapping[str, ClusterSettings]) -> ProjectSettings:
    path = f"mvp.projects.{_part(name)}"
    check_project_name(name, where=f"config {path}")
    p = _Reader(data, path, PROJECT_DEFAULTS)
    mapped = _mapped_clusters(p, path, name, clusters)
    project = ProjectSettings(
        name=name,
        clusters=tuple(dict.fromkeys(mapped)),
        template=p.str("template", re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.(ya?ml|json|template)$"),
                       "a template path inside the project like deploy.yml", empty=False),
        parameters=p.scalars("parameters", PARAMETER_NAME, "a CloudFormation parameter name"),
        build_args=p.scalars("build_args", BUILD_ARG, "a build argument name"),
        repository=p.str("repository", re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$"),
                         "a repository name (lowercase letters, digits, '.', '_', '-', '/')") or name,
        environment=p.scalars("environment", ENV_NAME, ENV_NAME_TEXT),
        secrets=_secret_names(p.data["secrets"], f"{path}.secrets"),
        per_cluster=_overrides(p, path, name, list(dict.fromkeys(mapped))),
    )
    _check_no_clash(path, project.environment, project.secrets)
    for cluster, overrides in project.per_cluster.items():
        # Layered as plan/parameters.py layers them: the cluster's own over the project's.
        _check_no_clash(f"{path}.per_cluster.{cluster}", {**project.environment, **overrides.environment},
                        project.secrets_for(cluster))
    if ".." in project.template:
        raise ConfigError(f"config {path}.template: must stay inside projects/{name}/")
    return project


def config_from_text(text: str, memo: Any = None) -> Any:
    """invoke.yaml's text parsed (`yaml.YAMLError` where it is not YAML), once per text in a run
    (`memo`: the run's `Memo`): every app of a promotion reads the same commits' invoke.yaml. The
    answer is shared: read it, never change it."""
    import yaml

    from .memo import remember

    return remember(memo, ("parsed invoke.yaml", text), lambda: yaml.safe_load(text) or {})


def project_from_text(text: str, name: str, clusters: Mapping[str, ClusterSettings], where: str,
                      memo: Any = None) -> ProjectSettings:
    """Project `name` as invoke.yaml's text `text` (another commit's) configures it, validated as
    `load_settings` validates it, against today's `clusters`. Read-only: what a release at that
    commit was given (`where` names the commit in errors; `memo`: see `config_from_text`)."""
    import yaml

    try:
        data = config_from_text(text, memo)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invoke.yaml at {where} is not YAML: {str(exc).splitlines()[0]}") from None
    projects = (data.get("mvp") or {}).get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, dict) or name not in projects:
        raise ConfigError(f"invoke.yaml at {where} does not configure project {name}")
    try:
        return _project(name, _plain(projects[name]), clusters)
    except ConfigError as exc:
        raise ConfigError(f"invoke.yaml at {where}: {exc.message}", exc.hint) from None
