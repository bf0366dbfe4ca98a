"""The one place template values and the container environment are layered.

What an app's stack is given, by name: the cluster stack's outputs, the well-known values the
tool passes (`app_well_known`), then invoke.yaml's values, the project's own and the cluster's
own (`per_cluster.CLUSTER`) over them, each with its placeholders (`{project}`, `{cluster}`, ...)
filled. Its container is given the environment layered the same way and the secrets of the
project and of the cluster. A cluster's stack: its well-known values, then its parameters.

`app.deploy` (the planner) fills real values; `project.check` asks the same functions with
stand-ins (`APP_STAND_INS`), so what is checked is what is deployed.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from ..templates import expand_all, fill_parameters, with_container_settings

if TYPE_CHECKING:
    from ..memo import Memo
    from ..settings import ClusterSettings, ProjectSettings
    from ..templates import Template

# --- what the tool passes by name --------------------------------------------------------------


def app_well_known(project: ProjectSettings, cluster: ClusterSettings, image: str, commit: str) -> dict[str, str]:
    """What every app template may take by name besides its config and the cluster stack's outputs
    (and `ClusterName`, found from the cluster stack where the template declares it)."""
    return {"ClusterStack": cluster.stack_name, "EnvironmentName": cluster.name, "ProjectName": project.name,
            "Image": image, "ImageUri": image, "ImageTag": cluster.tag, "Commit": commit}


def cluster_well_known(cluster: ClusterSettings) -> dict[str, str]:
    """What every cluster template may take by name besides its config."""
    return {"ClusterName": cluster.name, "EnvironmentName": cluster.name}


def app_placeholders(project: ProjectSettings, cluster: ClusterSettings, image: str, commit: str) -> dict[str, str]:
    """What a project's parameters and environment may read (`{project}`, ...)."""
    return {"project": project.name, "cluster": cluster.name, "image": image, "tag": cluster.tag, "commit": commit}


def cluster_placeholders(cluster: ClusterSettings) -> dict[str, str]:
    """What a cluster's parameters may read."""
    return {"cluster": cluster.name, "tag": cluster.tag}


# Stand-ins for checks made without AWS (`project.check`): the names are what count.
_PROJECT = SimpleNamespace(name="p")
_CLUSTER = SimpleNamespace(name="c", stack_name="c", tag="c")
APP_STAND_INS = app_placeholders(_PROJECT, _CLUSTER, "registry/p:c", "0" * 40)  # type: ignore[arg-type]
CLUSTER_STAND_INS = cluster_placeholders(_CLUSTER)  # type: ignore[arg-type]
# The names every app template (ClusterName: found from the cluster stack) and every cluster
# template is given besides its config.
APP_WELL_KNOWN = ("ClusterName", *app_well_known(_PROJECT, _CLUSTER, "i", "0"))  # type: ignore[arg-type]
CLUSTER_WELL_KNOWN = tuple(cluster_well_known(_CLUSTER))  # type: ignore[arg-type]


# --- where configured values come from ---------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Configured values of one key of invoke.yaml: `path` is the key below `mvp`."""

    path: tuple[str, ...]
    values: Mapping[str, str]

    @property
    def key(self) -> str:
        return "mvp." + ".".join(self.path)


def app_sources(project: ProjectSettings, what: str, cluster: str | None = None) -> list[Source]:
    """The project's `what` (parameters, environment), then the cluster's own over them: of
    `cluster` only, or (None) of every cluster it has its own values for, in name order."""
    own = [(name, overrides) for name, overrides in sorted(project.per_cluster.items())
           if cluster is None or name == cluster]
    return [Source(("projects", project.name, what), getattr(project, what)),
            *[Source(("projects", project.name, "per_cluster", name, what), getattr(overrides, what))
              for name, overrides in own]]


def cluster_sources(cluster: ClusterSettings) -> list[Source]:
    return [Source(("clusters", cluster.name, "parameters"), cluster.parameters)]


def layered(project: ProjectSettings, cluster: ClusterSettings, what: str,
            placeholders: Mapping[str, str]) -> dict[str, str]:
    """The project's `what` (parameters, environment) with the cluster's own over them, each
    value's placeholders filled and, when one is wrong, named at the key it was written under."""
    out: dict[str, str] = {}
    for source in app_sources(project, what, cluster.name):
        out.update(expand_all(source.values, placeholders, source.key))
    return out


def secret_values(project: ProjectSettings, cluster: ClusterSettings) -> dict[str, str]:
    """The container's secrets in `cluster` ({name: the SSM parameter's ARN}): the project's and
    the cluster's own."""
    from ..aws.secrets import secret_arn

    return {name: secret_arn(cluster.name, project.name, name) for name in project.secrets_for(cluster.name)}


# --- which parameters a template takes -----------------------------------------------------------


def undeclared(template: Template, names: Iterable[str]) -> list[str]:
    """Those of `names` the template declares no parameter for."""
    return [name for name in names if name not in template.parameters]


def unfilled(template: Template, given: Iterable[str]) -> list[str]:
    """The template's parameters without a Default that `given` does not name."""
    given = set(given)
    return [name for name in template.required_parameters() if name not in given]


def app_given_names(project: ProjectSettings, cluster: ClusterSettings | None = None) -> set[str]:
    """Every parameter name an app's stack gets besides the cluster stack's outputs: the
    well-known ones and invoke.yaml's (the project's, and given a cluster, that cluster's own)."""
    sources = app_sources(project, "parameters", cluster.name) if cluster else app_sources(project, "parameters")[:1]
    return {name for source in sources for name in source.values} | set(APP_WELL_KNOWN)


# --- the values of a stack -----------------------------------------------------------------------


def app_parameters(template: Template, project: ProjectSettings, cluster: ClusterSettings,
                   placeholders: Mapping[str, str], available: Mapping[str, str],
                   cluster_name: Callable[[], str]) -> dict[str, str]:
    """The app stack's parameter values: `available` (the cluster stack's outputs and the
    well-known values), invoke.yaml's over them. A configured name the template lacks is refused
    at the key it was written under. `cluster_name`: the ECS cluster's name, asked only where the
    template takes `ClusterName` and invoke.yaml does not give it (finding it may read the
    cluster stack's resources)."""
    for source in app_sources(project, "parameters", cluster.name)[1:]:
        for name in undeclared(template, source.values):
            fill_parameters(template, {}, {name: ""}, source.key)  # raises, naming the per-cluster key
    configured = layered(project, cluster, "parameters", placeholders)
    if "ClusterName" in template.parameters and "ClusterName" not in configured:
        available = {**available, "ClusterName": cluster_name()}
    return fill_parameters(template, available, configured, f"mvp.projects.{project.name}.parameters")


def cluster_parameters(template: Template, cluster: ClusterSettings) -> dict[str, str]:
    """The cluster stack's parameter values: the well-known ones, its invoke.yaml values over them."""
    (source,) = cluster_sources(cluster)
    configured = expand_all(source.values, cluster_placeholders(cluster), source.key)
    return fill_parameters(template, cluster_well_known(cluster), configured, source.key)


def with_app_container(template: Template, project: ProjectSettings, cluster: ClusterSettings,
                       environment: Mapping[str, str], memo: Memo | None = None) -> Template:
    """The template with the app's environment (`layered(..., "environment", ...)`) and its
    secrets in its container (`memo`: the run's, where its text was parsed already)."""
    return with_container_settings(template, environment, secret_values(project, cluster),
                                   f"mvp.projects.{project.name}", memo)
