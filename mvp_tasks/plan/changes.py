"""Which projects changed since what runs: the reasons `ci.plan` and `ci.release` give."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from ..image import git
from ..image.runner import Runner
from ..memo import Memo, remember

if TYPE_CHECKING:
    from ..settings import ClusterSettings, ProjectSettings, Settings

# Files whose change affects every project (the tool itself and how it is installed).
SHARED = ("tasks.py", "mvp_tasks/*", "pyproject.toml")


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
        listing = git.git(local, root, "diff", "--name-only", "-z", deployed, head).stdout
        return git.split_paths(listing)

    return remember(memo, ("git diff", str(root), deployed, head), ask)


def file_at(root: Path, commit: str, path: str, memo: Memo | None = None) -> str:
    """The text of `path` at `commit` ("" where it is not there)."""
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
    reasons = []
    prefix = f"projects/{project.name}/"
    changed_own = [f for f in files if f.startswith(prefix)]
    if changed_own:
        reasons.append(f"{len(changed_own)} file(s) under {prefix}")
    cluster_template = settings.clusters[cluster.name].template
    shared = [f for f in files if f == cluster_template or any(fnmatch.fnmatch(f, p) for p in SHARED)]
    if shared:
        reasons.append("shared files: " + ", ".join(shared[:3]) + (" ..." if len(shared) > 3 else ""))
    if "invoke.yaml" in files:
        # Only the parts of the config that shape this project in this cluster count.
        keys = [["mvp", "projects", project.name], ["mvp", "clusters", cluster.name], ["mvp", "registry"],
                ["mvp", "region"], ["mvp", "build"]]
        before = file_at(root, deployed, "invoke.yaml", memo)
        after = file_at(root, head, "invoke.yaml", memo)
        if _config_section(before, keys) != _config_section(after, keys):
            reasons.append("its settings in invoke.yaml")
    return reasons


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
        ship = (f"inv app.push {name} --cluster {where} then inv app.deploy {name} --cluster {where}, "
                f"or inv ci.release --cluster {where} --only {name}")
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
