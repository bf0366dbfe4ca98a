"""Which projects changed since what runs: the reasons `ci.plan` and `ci.release` give."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..image import git
from ..image.runner import Runner
from ..memo import Memo, remember

if TYPE_CHECKING:
    from ..settings import ClusterSettings, ProjectSettings, Settings

# Files whose change affects every project (the tool itself and how it is installed): how a stack
# is rendered may change with them, so they count for every app in every cluster.
SHARED = ("tasks.py", "mvp_tasks/*", "pyproject.toml")
# The keys of a project's entry in invoke.yaml that shape its release in every cluster it runs in
# (`clusters` and `per_cluster` are read per cluster: only this cluster's part counts).
PROJECT_KEYS = ("template", "parameters", "environment", "secrets", "build_args", "repository")
# The keys of a cluster's entry that shape an app's rendering there (its `parameters` and `template`
# are the cluster stack's own: `cluster.up` ships them, not a release of the app).
CLUSTER_KEYS = ("tag",)
# Top-level keys that shape every image reference.
STUDIO_KEYS = (("registry",), ("region",), ("build", "platform"))


def _node(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    """`value` as {dotted key: leaf}, lists of names as one leaf each (`secrets.API_KEY`); an empty
    mapping, list or None is nothing (so `environment: {}` equals no `environment`)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}"))
        return out
    if isinstance(value, list) and prefix.endswith("secrets"):
        return {f"{prefix}.{name}": True for name in value}
    if value in (None, "", [], {}):
        return {}
    return {prefix: value}


def config_changes(before: Any, after: Any, project: str, cluster: str) -> list[str]:
    """The keys of invoke.yaml (`mvp.` left out) whose change alters `project` in `cluster`, from
    the parsed files `before` and `after`: the project's own keys, its `per_cluster` part of THIS
    cluster, this cluster's tag, and the studio's registry, region and build platform. Another
    cluster's or another project's keys never count."""
    def part(data: Any) -> dict[str, Any]:
        mvp = _node(data, "mvp")
        own = _node(mvp, "projects", project)
        out: dict[str, Any] = {}
        for key in PROJECT_KEYS:
            out.update(_flat(_node(own, key), f"projects.{project}.{key}"))
        out.update(_flat(_node(own, "per_cluster", cluster), f"projects.{project}.per_cluster.{cluster}"))
        for key in CLUSTER_KEYS:
            out.update(_flat(_node(mvp, "clusters", cluster, key), f"clusters.{cluster}.{key}"))
        for path in STUDIO_KEYS:
            out.update(_flat(_node(mvp, *path), ".".join(path)))
        return out

    old, new = part(before), part(after)
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def release_reasons(files: Iterable[str], before: Any, after: Any, project: str, cluster: str,
                    template: str = "deploy.yml") -> list[str]:
    """THE rule of what counts for `project` in `cluster` between two commits, on plain data:
    `files` changed between them, `before`/`after` their parsed invoke.yaml (None where it did not
    change). Counted: the app's build context (files under projects/NAME/ but its template: they
    need a new image), its template, the tool's own code, and `config_changes`. Not counted:
    another app's files, any cluster template (the cluster's: `cluster.up`), other clusters' keys."""
    files = list(files)
    prefix = f"projects/{project}/"
    own_template = f"{prefix}{template}"
    reasons = []
    context = [f for f in files if f.startswith(prefix) and f != own_template]
    if context:
        reasons.append(f"{len(context)} file(s) under {prefix}")
    if own_template in files:
        reasons.append(f"its template {own_template}")
    shared = [f for f in files if any(fnmatch.fnmatch(f, p) for p in SHARED)]
    if shared:
        reasons.append("the tool's own files: " + ", ".join(shared[:3]) + (" ..." if len(shared) > 3 else ""))
    if "invoke.yaml" in files and (before is None or after is None):
        reasons.append("invoke.yaml (not readable as YAML at one of the two commits)")
    elif "invoke.yaml" in files:
        keys = config_changes(before, after, project, cluster)
        if keys:
            shown = ", ".join("mvp." + k for k in keys[:6]) + (" ..." if len(keys) > 6 else "")
            reasons.append(f"its settings in invoke.yaml ({shown})")
    return reasons


def builds_image(files: Iterable[str], before: Any, after: Any, project: str, template: str = "deploy.yml") -> bool:
    """Whether a change needs a new image of `project`: its build context (projects/NAME/ but its
    template), its build arguments or the build platform changed. Else the image of the earlier
    commit is the newer commit's too (retagged server-side, no build)."""
    files = list(files)
    prefix = f"projects/{project}/"
    if any(f.startswith(prefix) and f != f"{prefix}{template}" for f in files):
        return True
    if "invoke.yaml" not in files:
        return False
    return any(".build_args" in k or k == "build.platform" or k.endswith(".repository")
               for k in config_changes(before, after, project, ""))


def _config_section(text: str, keys: list[list[str]]) -> list:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return ["unreadable"]
    out = []
    for path in keys:
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        out.append(node)
    return out


def changed_files(root: Path, deployed: str, head: str, memo: Memo | None = None) -> list[str] | None:
    """The files that differ between commits `deployed` and `head` (None: `deployed` is not in
    this clone). The same for every project deployed at that commit: asked once per run."""

    def ask() -> list[str] | None:
        local = Runner.local()
        known = git.git(local, root, "cat-file", "-e", f"{deployed}^{{commit}}", check=False)
        if not known.ok:
            return None
        # -z: git quotes names with non-ASCII bytes or odd characters otherwise ("caf\303\251.png"),
        # and names may hold spaces; NUL is the one byte no path can contain.
        listing = git.git(local, root, "diff", "--name-only", "--no-renames", "-z", deployed, head).stdout
        return git.split_paths(listing)

    return remember(memo, ("git diff", str(root), deployed, head), ask)


def file_at(root: Path, commit: str, path: str, memo: Memo | None = None, same_at: str = "") -> str:
    """The text of `path` at `commit` ("" where it is not there). `same_at`: another commit whose
    text of `path` the run reads too (a promotion reads each app's template at the release it
    moves from and the one it moves to): where git says the file is the same at both, that one is
    read, once for both (the two commits' `changed_files`, asked once in the run)."""
    if same_at and same_at != commit and memo is not None:
        from ..errors import MvpError

        try:
            files = changed_files(root, commit, same_at, memo)  # None: `commit` is not in this clone
        except (MvpError, OSError):  # git cannot compare them: each is read on its own
            files = None
        if files is not None and path not in files:
            commit = same_at
    return remember(memo, ("git show", str(root), commit, path), lambda: git.git(
        Runner.local(), root, "show", f"{commit}:{path}", check=False).stdout)


def get_changed_reasons(settings: Settings, project: ProjectSettings, cluster: ClusterSettings, deployed: str,
                        head: str, memo: Memo | None = None) -> list[str]:
    """Why `project` must be released in `cluster` (empty: it need not be). `memo`: the run's
    `Memo`, so that what git says is asked once for every project."""

    if not deployed:
        return ["nothing deployed yet"]
    if deployed == head:
        return []
    root = settings.root
    files = changed_files(root, deployed, head, memo)
    if files is None:
        return [f"deployed commit {deployed[:12]} is not in this clone's history (fetch with full depth)"]
    before = after = None
    if "invoke.yaml" in files:
        before = load_config(file_at(root, deployed, "invoke.yaml", memo), memo)
        after = load_config(file_at(root, head, "invoke.yaml", memo), memo)
    return release_reasons(files, before, after, project.name, cluster.name, project.template)


def load_config(text: str, memo: Memo | None = None) -> Any:
    """invoke.yaml's text parsed (None where it is not YAML: then every key reads as changed), once
    per text in a run (`memo`); read it, never change it."""
    import yaml

    from ..settings import config_from_text

    try:
        return config_from_text(text, memo)
    except yaml.YAMLError:
        return None


def head_commit(root: Path, memo: Memo | None = None) -> str:
    """HEAD's commit, or "" outside git (or without git): then nothing is said about it. The one
    reading of HEAD (`World.head_commit` asks it, once per run)."""
    from ..errors import MvpError

    try:
        return git.get_commit(Runner.local(), root, memo)
    except (MvpError, OSError):
        return ""


def unshipped(settings: Settings, project: ProjectSettings, cluster: ClusterSettings, tag_commit: str, head: str,
              memo: Memo | None = None) -> str:
    """What HEAD changed for `project` that the cluster's tag (built from `tag_commit`) does not
    have, and the command that ships it; "" when there is nothing to say."""
    if not head or not tag_commit or tag_commit == head:
        return ""
    reasons = get_changed_reasons(settings, project, cluster, tag_commit, head, memo)
    if not reasons:
        return ""
    name, where = project.name, cluster.name
    if cluster.promote_from:
        ship = (f"release it to {cluster.promote_from} (inv ci.release --cluster {cluster.promote_from} --only {name}), "
                f"then inv app.promote {name} --tag {cluster.tag}")
    else:
        # app.deploy alone ships HEAD: builds or retags its image, moves the tag, updates the stack, rolls.
        ship = f"inv app.deploy {name} --cluster {where}"
    return (f"HEAD {head[:12]} has changes for {name} that tag {cluster.tag} ({tag_commit[:12]}) does not "
            f"have ({'; '.join(reasons)}); to ship them: {ship}")


def dirty_config(root: Path, keys: list[list[str]], memo: Memo | None = None) -> bool:
    """Whether the parts `keys` of invoke.yaml differ from HEAD's (uncommitted changes that shape
    a stack: its parameters, environment, secrets); outside git, no."""
    if not dirty_template(root, "invoke.yaml", memo):
        return False
    from pathlib import Path

    try:
        now = (Path(root) / "invoke.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _config_section(now, keys) != _config_section(file_at(root, "HEAD", "invoke.yaml", memo), keys)


def dirty_template(root: Path, path: str, memo: Memo | None = None) -> bool:
    """Whether the template at `path` (relative to the repository) has uncommitted changes;
    outside git nothing can be told, so no."""
    from ..errors import MvpError
    from ..image import git
    from ..image.runner import Runner

    try:
        return git.get_revision(Runner.local(), root, path, memo).dirty
    except (MvpError, OSError):
        return False
