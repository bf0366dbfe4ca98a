"""A release of an app to a cluster is one commit: the image built for it, the app's template at
that commit (`git show COMMIT:projects/NAME/TEMPLATE`) and the app's part of invoke.yaml at that
commit (parameters, environment, secret names, its per-cluster values). `release_at` reads one;
`render` turns one into what the app's stack in a cluster is given, so planning (app.promote,
app.rollback, fleet.up) and status (drift) compare a stack with the same rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from . import parameters

if TYPE_CHECKING:
    from ..settings import ClusterSettings, ProjectSettings, Settings
    from ..templates import Template
    from .context import World


@dataclass(frozen=True)
class Release:
    """What one commit gives an app: `commit` ("" for the working tree as it is), the project as
    that commit's invoke.yaml configures it, and its template at that commit."""

    commit: str
    project: ProjectSettings
    template: Template


@dataclass(frozen=True)
class Rendering:
    """An app's stack in a cluster as a release renders it."""

    template: Template
    parameters: Mapping[str, str]
    tags: Mapping[str, str]


def release_at(settings: Settings, project: ProjectSettings, commit: str, memo=None, same_at: str = "") -> Release:
    """The release of `project` at `commit`, read from git (never from the working tree).
    `same_at`: a commit whose files the run reads too (see `changes.file_at`)."""
    from ..errors import ConfigError, TemplateError
    from ..settings import project_from_text
    from ..templates import template_from_text
    from .changes import file_at

    root = settings.root
    where = f"commit {commit[:12]}"
    config = file_at(root, commit, "invoke.yaml", memo, same_at)
    if not config:
        raise ConfigError(f"there is no invoke.yaml at {where} (or the commit is not in this clone)",
                          "fetch the full history (git fetch --unshallow)")
    then = project_from_text(config, project.name, settings.clusters, where, memo)
    path = f"projects/{project.name}/{then.template}"
    body = file_at(root, commit, path, memo, same_at)
    if not body:
        raise TemplateError(f"template {path} not found at {where}")
    return Release(commit, then, template_from_text(body, f"{path} at {commit[:12]}", root / path, memo))


def release_in_tree(settings: Settings, project: ProjectSettings, commit: str, memo=None) -> Release:
    """The release the working tree holds (HEAD's, with any uncommitted change): what `app.deploy`
    and `--check` show (`memo`: the run's, where the template's text was parsed already)."""
    from ..templates import load_template

    path = f"projects/{project.name}/{project.template}"
    return Release(commit, project, load_template(settings.root / path, settings.root,
                                                  f"mvp.projects.{project.name}.template", memo))


def render(world: World, release: Release, cluster: ClusterSettings, check_secrets: bool = True) -> Rendering:
    """The app's stack in `cluster` as `release` renders it: its template with the container's
    environment and secrets, the parameters filled by name, the tags."""
    from ..aws import discovery

    project = release.project
    cluster_stack = world.cluster_stack(cluster)
    image = world.registry.ref(project.repository, cluster.tag)
    placeholders = parameters.app_placeholders(project, cluster, image, release.commit)
    available = {**cluster_stack.outputs, **parameters.app_well_known(project, cluster, image, release.commit)}
    values = parameters.app_parameters(release.template, project, cluster, placeholders, available,
                                       lambda: discovery.cluster_ecs_cluster(world, cluster, cluster_stack))
    environment = parameters.layered(project, cluster, "environment", placeholders)
    template = parameters.with_app_container(release.template, project, cluster, environment, world.memo)
    return Rendering(template, values, {"mvp:cluster": cluster.name, "mvp:project": project.name})


def drift(world: World, rendering: Rendering, stack) -> list[str]:
    """How the stack differs from `rendering` (empty: it equals it): each parameter that differs,
    and whether the template does. A NoEcho parameter's value cannot be read back: left out."""
    from .stacks import MANAGED_TAG, _list_value, effective_parameters, is_unchanged

    effective = effective_parameters(rendering.template, rendering.parameters)
    tags = {**MANAGED_TAG, **rendering.tags}
    out = []
    now = {k: _list_value(v) for k, v in stack.parameters.items()}
    for name, value in sorted(effective.items()):
        if now.get(name) != value and rendering.template.parameters.get(name, {}).get("NoEcho") not in (True, "true"):
            out.append(f"parameter {name}: stack has {now.get(name, '(none)')}, the release {value}")
    if not out and not is_unchanged(world.stacks(), stack, rendering.template, effective, tags, unknown_is_same=True):
        out.append(f"template differs from {rendering.template.label}")
    return out


# --- releases in the history, and the bad marks a rollback leaves ----------------------------------

# Records that are not releases of the app (what it runs did not change with them).
NOT_RELEASES = ("destroy", "secret", "unlock", "push", "build", "unmark", "service rollback")
UNMARK = "unmark"  # `app.unmark`'s record: the commit it names is not bad any more


def releases(records: list) -> list:
    """The successful releases among `records` (newest first): each names the commit it ran."""
    return [r for r in records if r.succeeded and r.commit and r.action not in NOT_RELEASES]


def released_in(records: list, digest: str) -> str:
    """The commit whose release runs image `digest`, from one app's `records` in one cluster
    (newest first): the newest release of that image (a config-only release retags an earlier
    commit's image, whose label names that earlier commit), else any successful record of it
    but a destroy; "" where the history does not say."""
    found = next((r.commit for r in releases(records) if r.digest == digest), "")
    return found or next((r.commit for r in records if r.succeeded and r.commit and r.digest == digest
                          and r.action != "destroy"), "")


def bad_commits(records: list) -> dict[str, object]:
    """{commit: the rollback record that left it}: the releases `app.rollback` rolled back from, in
    `records` (one app in one cluster, newest first). A rollback's record names the release it
    returned to; the release before it in the history is the one it left. A later successful
    release of that very commit (an explicit `app.deploy` of it, or a rollback to it), or a later
    `app.unmark` of it, clears the mark."""
    done = releases(records)
    position = {id(r): i for i, r in enumerate(done)}
    bad: dict[str, object] = {}
    cleared: set[str] = set()
    for record in records:
        if record.action == UNMARK:
            commit = unmarked_commit(record)
            if commit and commit not in bad:
                cleared.add(commit)
            continue
        i = position.get(id(record))
        if i is None:
            continue
        if record.action != "rollback":
            if record.commit not in bad:
                cleared.add(record.commit)
            continue
        left = done[i + 1].commit if i + 1 < len(done) else ""
        if left and left != record.commit and left not in cleared and left not in bad:
            bad[left] = record
        if record.commit not in bad:
            cleared.add(record.commit)  # rolled back to on purpose: not bad since
    return bad


def unmark_message(commit: str) -> str:
    """The message of `app.unmark`'s record. The record names no commit of its own (a record with a
    commit is a release, what runs: `ClusterStore.get_current`); its message names the one cleared."""
    return f"unmarked {commit}: it may be shipped again"


def unmarked_commit(record) -> str:
    """The commit an `app.unmark` record cleared ("" for any other record)."""
    import re

    if record.action != UNMARK or not record.succeeded:
        return ""
    found = re.match(r"unmarked ([0-9a-f]{40})\b", record.message or "")
    return found.group(1) if found else ""


def unmark_command(project: str, cluster: str, commit: str) -> str:
    return f"inv app.unmark {project} --cluster {cluster} --commit {commit[:12]}"


def bad_line(project: str, cluster: str, commit: str, mark) -> str:
    """Why `commit` is skipped, and what clears the mark."""
    return (f"{commit[:12]} is marked bad for {project} in {cluster} (rolled back {mark.at[:16].replace('T', ' ')} UTC "
            f"to {mark.commit[:12]}); it is not shipped again: a newer commit that changes {project} ships as "
            f"usual, or clear the mark with `{unmark_command(project, cluster, commit)}`, or ship it on purpose "
            f"with `inv app.deploy {project} --cluster {cluster}` at that commit")


# --- what a plan says of a release it moves from and to -----------------------------------------------


def release_lines(world: World, before: Release | None, after: Release, cluster: ClusterSettings) -> list[str]:
    """The commit a target moves from and to, and each parameter, environment key and secret name of
    the app's configuration in `cluster` that differs between the two releases (no secret's value:
    only names are configured)."""
    from ..errors import MvpError

    if before is None or (before.commit and before.commit == after.commit):
        return []
    out = [f"~ release {before.commit[:12] or '(unknown)'} -> {after.commit[:12] or 'the working tree'}"]
    image = world.registry.ref(after.project.repository, cluster.tag)

    def values(release: Release, what: str) -> dict[str, str]:
        placeholders = parameters.app_placeholders(release.project, cluster, image, release.commit)
        try:
            return parameters.layered(release.project, cluster, what, placeholders)
        except MvpError:  # a value the other release cannot fill: say its raw value, not nothing
            return {k: str(v) for src in parameters.app_sources(release.project, what, cluster.name)
                    for k, v in src.values.items()}

    for what, word in (("parameters", "parameter"), ("environment", "environment")):
        old, new = values(before, what), values(after, what)
        hidden = {n for n, spec in after.template.parameters.items()
                  if spec.get("NoEcho") in (True, "true")} if what == "parameters" else set()
        for key in sorted(set(old) | set(new)):
            if key in hidden:
                if old.get(key) != new.get(key):
                    out.append(f"~ {word} {key} (value not shown)")
            elif key not in old:
                out.append(f"+ {word} {key}: {new[key]}")
            elif key not in new:
                out.append(f"- {word} {key}: {old[key]}")
            elif old[key] != new[key]:
                out.append(f"~ {word} {key}: {old[key]} -> {new[key]}")
    old_secrets, new_secrets = set(before.project.secrets_for(cluster.name)), set(after.project.secrets_for(cluster.name))
    out += [f"+ secret {name}" for name in sorted(new_secrets - old_secrets)]
    out += [f"- secret {name}" for name in sorted(old_secrets - new_secrets)]
    return out
