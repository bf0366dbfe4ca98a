"""git and git-lfs helpers: plain functions of a runner, each command an argument list.

The LFS check exists because a clone made without LFS content holds small pointer files instead
of the images and videos, and `docker build` happily ships them.

Where a run asks for many projects at once (`ci.release` plans one target per project), the
helpers take the run's `Memo`: what is the same for every project (HEAD, whether the tree is
clean, whether git-lfs is installed, the LFS listing) is asked of git once per run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildError
from ..memo import Memo, remember
from .runner import Runner

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
# Pointer files are tiny; anything larger is real content.
LFS_POINTER_MAX = 1024
SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Revision:
    commit: str
    dirty: bool
    # For a dirty tree: a short hash of the uncommitted change, so two dirty builds never share a tag.
    dirty_hash: str = ""

    @property
    def tag(self) -> str:
        return f"{self.commit}-dirty-{self.dirty_hash}" if self.dirty else self.commit

    @property
    def short(self) -> str:
        return self.commit[:12]


def git(runner: Runner, root: Path, *args: str, check: bool = True, what: str = ""):
    return runner.run(["git", "-C", str(root), *args], check=check, what=what or f"git {args[0]}")


def split_paths(listing: str) -> list[str]:
    """The paths of a `git ... -z` listing (NUL-separated, unquoted, spaces kept)."""
    return [path for path in listing.split("\0") if path]


def get_commit(runner: Runner, root: Path, memo: Memo | None = None) -> str:
    return remember(memo, ("git rev-parse HEAD", runner.label, str(root)), lambda: _get_commit(runner, root))


def _get_commit(runner: Runner, root: Path) -> str:
    result = git(runner, root, "rev-parse", "--verify", "HEAD^{commit}", check=False)
    if result.exit_code == 127:
        raise BuildError("git is not installed", "install git (apt-get install git)")
    if not result.ok:
        raise BuildError(f"{root} is not a git repository with a commit",
                         "commit your work first: images are tagged with the commit that built them")
    commit = result.stdout.strip()
    if not SHA.match(commit):
        raise BuildError(f"git answered an unexpected commit id {commit!r}")
    return commit


def get_revision(runner: Runner, root: Path, subdir: str, memo: Memo | None = None) -> Revision:
    """The commit, and whether `subdir` has uncommitted or untracked changes."""
    commit = get_commit(runner, root, memo)
    if memo is not None and is_clean(runner, root, memo):
        return Revision(commit, False)  # a clean tree is clean under every project
    # -z: names as they are (unquoted), so the change's hash is the same whatever git's quotePath.
    status = git(runner, root, "status", "--porcelain", "-z", "--untracked-files=all", "--", subdir).stdout
    if not status.strip():
        return Revision(commit, False)
    diff = git(runner, root, "diff", "HEAD", "--binary", "--", subdir).stdout
    digest = hashlib.sha256((status + diff).encode()).hexdigest()[:8]
    return Revision(commit, True, digest)


def is_clean(runner: Runner, root: Path, memo: Memo | None = None) -> bool:
    """True when the whole work tree has no uncommitted or untracked change (asked once per run)."""
    return remember(memo, ("git status", runner.label, str(root)), lambda: not git(
        runner, root, "status", "--porcelain", "-z", "--untracked-files=all").stdout.strip("\0 \n"))


def get_remote_url(runner: Runner, root: Path) -> str:
    result = git(runner, root, "config", "--get", "remote.origin.url", check=False)
    url = result.stdout.strip() if result.ok else ""
    # Credentials embedded in a remote URL must never end up in an image label.
    return re.sub(r"//[^/@]+@", "//", url)


def uses_lfs(root: Path) -> bool:
    """True when any .gitattributes in the repository routes files through the LFS filter."""
    for attributes in [root / ".gitattributes", *root.glob("projects/*/.gitattributes")]:
        try:
            text = attributes.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any("filter=lfs" in line and not line.lstrip().startswith("#") for line in text.splitlines()):
            return True
    return False


def is_pointer_file(path: Path) -> bool:
    try:
        if path.stat().st_size >= LFS_POINTER_MAX:
            return False
        with path.open("rb") as fh:
            return fh.read(len(LFS_POINTER)) == LFS_POINTER
    except OSError:
        return False


def get_lfs_pointer_files(runner: Runner, root: Path, subdir: str, memo: Memo | None = None) -> list[str]:
    """LFS-tracked files under `subdir` that are still pointer files (content not checked out)."""
    if not uses_lfs(root):
        return []
    installed = remember(memo, ("git lfs version", runner.label),
                         lambda: runner.run(["git", "lfs", "version"], check=False).ok)
    if not installed:
        raise BuildError(
            "this repository stores files in Git LFS (filter=lfs in .gitattributes) but git-lfs is not installed",
            f"install it (apt-get install git-lfs), then run: git lfs install && git lfs pull --include \"{subdir}/**\"",
        )
    if memo is None:
        entries = _lfs_files(runner, root, "--include", f"{subdir}/**")
    else:
        # The whole repository's listing once, for every project: its names are the repository's
        # paths, so those under `subdir/` are what `--include subdir/**` lists.
        entries = [entry for entry in memo.get(("git lfs ls-files", runner.label, str(root)),
                                                lambda: _lfs_files(runner, root))
                   if entry.get("name", "").startswith(f"{subdir}/")]
    pointers: set[str] = set()
    for entry in entries:
        name = entry.get("name", "")
        # "checkout": false is git-lfs's own word that the working file is a pointer.
        if entry.get("checkout") is False or is_pointer_file(root / name):
            pointers.add(name)
    # Belt and braces: any small file under the project that starts like a pointer is one.
    for path in (root / subdir).rglob("*"):
        if path.is_file() and ".git" not in path.parts and is_pointer_file(path):
            pointers.add(str(path.relative_to(root)))
    return sorted(pointers)


def _lfs_files(runner: Runner, root: Path, *include: str) -> list[dict]:
    """`git lfs ls-files --json` (the files LFS tracks), empty when it gives no such answer."""
    listing = git(runner, root, "lfs", "ls-files", "--json", *include, check=False)
    if listing.ok and listing.stdout.strip().startswith("{"):
        return list(json.loads(listing.stdout).get("files") or [])
    return []


def check_lfs(runner: Runner, root: Path, subdir: str, memo: Memo | None = None) -> None:
    pointers = get_lfs_pointer_files(runner, root, subdir, memo)
    if pointers:
        shown = ", ".join(pointers[:5]) + (f" and {len(pointers) - 5} more" if len(pointers) > 5 else "")
        raise BuildError(
            f"{len(pointers)} Git LFS file(s) under {subdir}/ are pointer files, not content: {shown}",
            f"fetch them with: git lfs pull --include \"{subdir}/**\"",
        )
