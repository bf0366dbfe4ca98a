"""What the studio's CI runs on every push: release the projects that changed."""

from __future__ import annotations

import fnmatch

from ..errors import MvpError
from .boundary import mvp_task, start

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


def get_changed_reasons(run, project, cluster, deployed: str, head: str) -> list[str]:
    """Why `project` must be released in `cluster` (empty: it need not be)."""
    from ..image import git
    from ..image.runner import Runner

    if not deployed:
        return ["nothing deployed yet"]
    if deployed == head:
        return []
    local = Runner.local()
    root = run.settings.root
    known = git.git(local, root, "cat-file", "-e", f"{deployed}^{{commit}}", check=False)
    if not known.ok:
        return [f"deployed commit {deployed[:12]} is not in this clone's history (fetch with full depth)"]
    files = git.git(local, root, "diff", "--name-only", deployed, head).stdout.split()
    reasons = []
    prefix = f"projects/{project.name}/"
    changed_own = [f for f in files if f.startswith(prefix)]
    if changed_own:
        reasons.append(f"{len(changed_own)} file(s) under {prefix}")
    cluster_template = run.settings.clusters[cluster.name].template
    shared = [f for f in files if f == cluster_template or any(fnmatch.fnmatch(f, p) for p in SHARED)]
    if shared:
        reasons.append("shared files: " + ", ".join(shared[:3]) + (" ..." if len(shared) > 3 else ""))
    if "invoke.yaml" in files:
        # Only the parts of the config that shape this project in this cluster count.
        keys = [["mvp", "projects", project.name], ["mvp", "clusters", cluster.name], ["mvp", "registry"],
                ["mvp", "region"], ["mvp", "build"]]
        before = git.git(local, root, "show", f"{deployed}:invoke.yaml", check=False).stdout
        after = git.git(local, root, "show", f"{head}:invoke.yaml", check=False).stdout
        if _config_section(before, keys) != _config_section(after, keys):
            reasons.append("its settings in invoke.yaml")
    return reasons


@mvp_task(
    help={
        "cluster": "cluster to release to (default: mvp.default_cluster)",
        "check": "show which projects would be released and what would change; change nothing",
        "yes": "answer yes to confirmations (needed without a terminal for protected clusters)",
        "host": "build on this SSH host (default: mvp.build.host)",
    }
)
def release(ctx, cluster=None, check=False, yes=False, host=None):
    """Push and deploy every project that changed since the commit running in the cluster."""
    from ..image import git
    from ..image.runner import Runner
    from . import deploying, imaging

    run = start(ctx, "ci.release", check=check, yes=yes)
    target_cluster = run.settings.cluster(cluster)
    projects = run.settings.projects_in(target_cluster.name)
    head = git.get_commit(Runner.local(), run.settings.root)
    builder = None
    try:
        for project in projects:
            target = deploying.open_target(run, project.name, target_cluster.name, builder.registry if builder else None)
            current = target.history.get_current(project.name)
            deployed = (current.commit if current else "") or target.registry.get_commit(
                project.repository, target_cluster.tag)
            stack = target.stacks.get_stack(target.stack_name)
            reasons = get_changed_reasons(run, project, target_cluster, deployed, head)
            if not reasons and stack is not None:
                run.reporter.ok(target.name, f"unchanged since {deployed[:12]}")
                continue
            if not reasons:
                reasons = ["its stack does not exist"]
            run.reporter.info(f"{target.name}: release {head[:12]} ({'; '.join(reasons)})")
            if builder is None:
                builder = imaging.get_builder(run, host)
            target.registry = builder.registry
            revision = imaging.get_revision(run, project, for_push=True, allow_dirty=False)
            previous = target.registry.get_digest(project.repository, target_cluster.tag)
            try:
                if target_cluster.protected and not run.reporter.check:
                    run.reporter.confirm(f"release {project.name} to protected cluster {target_cluster.name}")
                with deploying.recording(target, "release", commit=revision.commit, digest="", restore=previous):
                    _release_one(run, target, builder, project, revision, stack)
            except MvpError as exc:
                # One project's failure does not stop the others; the recap counts it, the exit is non-zero.
                run.reporter.failed(target.name, str(exc))
    finally:
        if builder is not None:
            builder.close()
    run.finish()


def _release_one(run, target, builder, project, revision, stack) -> None:
    from . import deploying, imaging

    target.lock()
    digest, _ = imaging.ensure_pushed(builder, project, revision)
    imaging.ensure_tag(builder, project, revision.tag, target.cluster.tag, expected_digest=digest)
    if run.reporter.check:
        if stack is not None and digest:
            deploying.deploy_stack(target, digest=digest, commit=revision.commit, confirmed=True)
        elif stack is None:
            run.reporter.plan(target.name, [f"+ deploy stack {target.stack_name}"])
        return
    digest = digest or target.registry.get_digest(project.repository, revision.tag)
    deploying.deploy_stack(target, digest=digest, commit=revision.commit, confirmed=True)
    app_stack = deploying.get_app_stack(target)
    # Tasks resolve the cluster tag only when they start: roll unless the running image is this one.
    if stack is not None and deploying.get_rolled_digest(target) != digest:
        state = deploying.roll_service(target, app_stack)
    else:
        state = deploying.wait_for_service(target, app_stack)
    target.record("release", commit=revision.commit, digest=digest)
    deploying.report_rollout(target, state, f"{revision.short} released")
