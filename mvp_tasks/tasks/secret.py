"""`app.secret.*`: an app's secrets in one cluster, SSM SecureStrings under /mvp/<cluster>/<app>/.

A value comes in on stdin (or a prompt with no echo on a terminal) and goes straight to SSM: never
an argument, an output line, a history record or a stack parameter. The app's container gets the
secrets its config names (`mvp.projects.NAME.secrets`) by their ARNs, when its stack is deployed.
"""

from __future__ import annotations

import sys

from ..errors import UsageError
from .boundary import mvp_task, start

CLUSTER_HELP = "cluster the secret belongs to (default: mvp.default_cluster)"


def _target(run, name: str, cluster: str | None):
    from ..plan.planner import check_mapped

    project, target = run.settings.project(name), run.settings.cluster(cluster)
    check_mapped(run.settings, project, target)
    return project, target


def read_value(key: str) -> str:
    """The value from stdin (a pipe or a file: everything, less one final newline), or typed at a
    prompt that does not echo it."""
    if sys.stdin is None:
        raise UsageError(f"no value for {key}: give it on stdin, e.g. `printf %s \"$VALUE\" | inv app.secret.set ...`")
    if sys.stdin.isatty():
        import getpass

        try:
            value = getpass.getpass(f"value of {key} (not shown): ")
        except EOFError:
            value = ""
    else:
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"the value of {key} is not UTF-8 text; nothing was set") from None
        value = value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    return value


def _record(world, target, project: str, message: str) -> None:
    """The secret's change in the app's history (its name, never its value), where the cluster has
    a deploy store; a cluster not made yet has no history to keep it in."""
    from ..errors import MvpError

    try:
        store = world.history(target)
    except MvpError:
        return
    try:
        store.record(project, action="secret", commit="", digest="", outcome="succeeded", by=world.caller,
                     message=message)
    except MvpError as exc:  # the secret itself has changed: say so, and that the history lacks it
        world.reporter.warn(f"{project}@{target.name}: {message}, but the history could not record it: {exc}")


@mvp_task(name="set", help={"name": "project the secret is for", "key": "the secret's name, e.g. DATABASE_URL",
                            "cluster": CLUSTER_HELP})
def set_(ctx, name, key, cluster=None):
    """Set an app's secret in a cluster from stdin, or from a prompt that does not echo.

    The value is never shown, logged or kept anywhere else.
    """
    from ..aws.secrets import MAX_VALUE
    from ..settings import check_env_name
    from ..world import World

    check_env_name(key, "KEY")
    run = start(ctx, f"app.secret.set {name} {key}")
    project, target = _target(run, name, cluster)
    value = read_value(key)
    if not value:
        raise UsageError(f"the value of {key} is empty; nothing was set",
                         "give it on stdin or at the prompt (`inv app.secret.unset` removes a secret)")
    if len(value.encode("utf-8")) > MAX_VALUE:
        raise UsageError(f"the value of {key} is longer than {MAX_VALUE} bytes, the most SSM's standard tier "
                         "holds; nothing was set")
    world = World(run.settings, run.reporter, run.aws)
    version = world.secrets().put(target.name, project.name, key, value)
    _record(world, target, project.name, f"set secret {key} (version {version})")
    where = f"{project.name}@{target.name}"
    run.reporter.info(f"changed: {where}  secret {key} set (version {version})")
    if key not in project.secrets_for(target.name):
        run.reporter.warn(f"{key} is not in mvp.projects.{project.name}.secrets, so the app does not get it; "
                          "add it there and deploy")
    else:
        run.reporter.info(f"running tasks read it when they start: `inv app.update {project.name} "
                          f"--cluster {target.name}` rolls them")


@mvp_task(name="list", help={"name": "project whose secrets to list", "cluster": CLUSTER_HELP,
                             "json": "print JSON for scripts"})
def list_(ctx, name, cluster=None, json=False):
    """List an app's secrets in a cluster: names and when each last changed, never values.

    The configured ones not set yet are listed as missing.
    """
    from ..aws.secrets import secret_path
    from ..world import World

    run = start(ctx, f"app.secret.list {name}", json_output=json)
    project, target = _target(run, name, cluster)
    world = World(run.settings, run.reporter, run.aws)
    found = {s.key: s for s in world.secrets().list(target.name, project.name)}
    configured = project.secrets_for(target.name)
    rows = []
    for key in sorted(set(found) | set(configured)):
        secret = found.get(key)
        rows.append({"key": key, "configured": key in configured, "set": secret is not None,
                     "changed": secret.changed if secret else "", "version": secret.version if secret else 0,
                     "name": secret.name if secret else f"{secret_path(target.name, project.name)}/{key}"})
    if json:
        run.reporter.emit_json(rows)
        return
    if not rows:
        run.reporter.info(f"{project.name}@{target.name}: no secrets configured or set "
                          f"(configure one under mvp.projects.{project.name}.secrets)")
        return
    run.reporter.table(
        ["secret", "state", "last changed (UTC)", "version"],
        [[r["key"], ("set" if r["configured"] else "set, not configured") if r["set"] else
          "MISSING: inv app.secret.set", r["changed"] or "-", str(r["version"] or "-")] for r in rows],
        title=f"secrets of {project.name} in {target.name}")


@mvp_task(help={"name": "project the secret is for", "key": "the secret's name", "cluster": CLUSTER_HELP,
                "yes": "remove it without asking (needed without a terminal)"})
def unset(ctx, name, key, cluster=None, yes=False):
    """Remove an app's secret from a cluster, after confirmation."""
    from ..settings import check_env_name
    from ..world import World

    check_env_name(key, "KEY")
    run = start(ctx, f"app.secret.unset {name} {key}", yes=yes)
    project, target = _target(run, name, cluster)
    world = World(run.settings, run.reporter, run.aws)
    secrets = world.secrets()
    where = f"{project.name}@{target.name}"
    if key not in {s.key for s in secrets.list(target.name, project.name)}:
        run.reporter.info(f"ok: {where}  no secret {key} is set; nothing to remove")
        return
    configured = key in project.secrets_for(target.name)
    run.reporter.confirm(f"remove secret {key} of {project.name} in {target.name}"
                         + (" (the config still names it: its next deploy will be refused)" if configured else ""))
    if not secrets.delete(target.name, project.name, key):
        run.reporter.info(f"ok: {where}  secret {key} was already gone")
        return
    _record(world, target, project.name, f"removed secret {key}")
    run.reporter.info(f"changed: {where}  secret {key} removed")
    if configured:
        run.reporter.warn(f"mvp.projects.{project.name}.secrets still names {key}: remove it there, or set it "
                          f"again, before the next deploy; running tasks keep the value they started with")
