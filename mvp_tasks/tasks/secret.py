"""`app.secret.*`: an app's secrets in one cluster, SSM SecureStrings under /mvp/<cluster>/<app>/.

A value comes in on stdin (or a prompt with no echo on a terminal) and goes straight to SSM: never
an argument, an output line, a history record or a stack parameter. The app's container gets the
secrets its config names (`mvp.projects.NAME.secrets`) by their ARNs, when its stack is deployed.
"""

from __future__ import annotations

import sys

from ..errors import UsageError
from .boundary import mvp_task, run_plan, start, target_stub

CLUSTER_HELP = "cluster the secret belongs to (default: mvp.default_cluster)"


def _target(world, name: str, cluster: str | None):
    from ..plan.planner import check_mapped

    project, target = world.settings.project(name), world.settings.cluster(cluster)
    check_mapped(world.settings, project, target)
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


JSON_HELP = "print the outcome as JSON for scripts"


@mvp_task(name="set", help={"name": "project the secret is for", "key": "the secret's name, e.g. DATABASE_URL",
                            "cluster": CLUSTER_HELP, "json": JSON_HELP})
def set_(ctx, name, key, cluster=None, json=False):
    """Set an app's secret in a cluster from stdin, or from a prompt that does not echo.

    The value is never shown, logged or kept anywhere else.
    """
    from ..aws.secrets import MAX_VALUE
    from ..plan.planner import plan_secret_set
    from ..settings import check_env_name

    check_env_name(key, "KEY")
    world = start(ctx, f"app.secret.set {name} {key}", json_output=json)
    project, target = _target(world, name, cluster)
    value = read_value(key)
    if not value:
        raise UsageError(f"the value of {key} is empty; nothing was set",
                         "give it on stdin or at the prompt (`inv app.secret.unset` removes a secret)")
    if len(value.encode("utf-8")) > MAX_VALUE:
        raise UsageError(f"the value of {key} is longer than {MAX_VALUE} bytes, the most SSM's standard tier "
                         "holds; nothing was set")
    run_plan(world, "app.secret.set", [(target_stub(project.name, target.name),
                                        lambda world: plan_secret_set(world, project, target, key, value))])


@mvp_task(name="list", help={"name": "project whose secrets to list", "cluster": CLUSTER_HELP,
                             "json": "print JSON for scripts"})
def list_(ctx, name, cluster=None, json=False):
    """List an app's secrets in a cluster: names and when each last changed, never values.


    The configured ones not set yet are listed as missing.
    """
    from ..aws.secrets import secret_path

    world = start(ctx, f"app.secret.list {name}", json_output=json)
    project, target = _target(world, name, cluster)
    found = {s.key: s for s in world.secrets().list(target.name, project.name)}
    configured = project.secrets_for(target.name)
    rows = []
    for key in sorted(set(found) | set(configured)):
        secret = found.get(key)
        rows.append({"key": key, "configured": key in configured, "set": secret is not None,
                     "changed": secret.changed if secret else "", "version": secret.version if secret else 0,
                     "name": secret.name if secret else f"{secret_path(target.name, project.name)}/{key}"})
    if json:
        world.reporter.emit_json(rows)
        return
    if not rows:
        world.reporter.info(f"{project.name}@{target.name}: no secrets configured or set "
                            f"(configure one under mvp.projects.{project.name}.secrets)")
        return
    world.reporter.table(
        ["secret", "state", "last changed (UTC)", "version"],
        [[r["key"], ("set" if r["configured"] else "set, not configured") if r["set"] else
          "MISSING: inv app.secret.set", r["changed"] or "-", str(r["version"] or "-")] for r in rows],
        title=f"secrets of {project.name} in {target.name}")


@mvp_task(help={"name": "project the secret is for", "key": "the secret's name", "cluster": CLUSTER_HELP,
                "check": "show what would be removed; remove nothing",
                "yes": "remove it without asking (needed without a terminal)", "json": JSON_HELP})
def unset(ctx, name, key, cluster=None, check=False, yes=False, json=False):
    """Remove an app's secret from a cluster, after confirmation."""
    from ..plan.planner import plan_secret_unset
    from ..settings import check_env_name

    check_env_name(key, "KEY")
    world = start(ctx, f"app.secret.unset {name} {key}", check=check, yes=yes, json_output=json)
    project, target = _target(world, name, cluster)
    run_plan(world, "app.secret.unset", [(target_stub(project.name, target.name),
                                          lambda world: plan_secret_unset(world, project, target, key))],
             confirm=f"remove secret {key} of {project.name} in {target.name}")

