"""The studio's projects: check them before they ship (`project.check`), and make a new one from
the example (`project.new`). Neither talks to AWS."""

from __future__ import annotations

from invoke import Exit

from .boundary import finish, mvp_task, project_root, say_errors, start


@mvp_task(
    help={
        "name": "only this project (and the cluster templates it runs on); default: every project",
        "json": "print the findings as JSON for scripts: {findings: [...], errors, warnings}",
    },
    positional=["name"],
)
def check(ctx, name=None, json=False):
    """Check the config, templates (cfn-lint), Dockerfiles, template parameters and Git LFS files."""
    from ..checks import Checker, check_config, errors_in, summary

    check_config(ctx.config, project_root(ctx))  # a config error names invoke.yaml's line
    world = start(ctx, f"project.check {name or ''}".strip(), aws=False, json_output=json)
    findings, checked = Checker(world.settings).check_studio([name] if name is not None else None)
    errors = errors_in(findings)
    if json:
        world.reporter.emit_json({"findings": [f.as_dict() for f in findings], "errors": len(errors),
                                  "warnings": len(findings) - len(errors), "checked": checked})
    else:
        for finding in findings:
            world.reporter.info(str(finding))
        world.reporter.header(("failed: " if errors else "ok: ") + summary(findings, checked))
    if errors:
        say_errors([finding.text for finding in errors])
        raise Exit(code=1)


@mvp_task(
    help={
        "name": "the new project's name: a lowercase letter, then lowercase letters, digits or '-' "
                "(its stacks are NAME-CLUSTER)",
        "clusters": "the clusters it runs in, NAME[,NAME...] (default: mvp.default_cluster)",
        "port": "the port its server listens on and its task definition names (default: the example's, 80)",
        "check": "show what would be made; make nothing",
        "json": "print the outcome as JSON for scripts",
    },
    positional=["name"],
)
def new(ctx, name, clusters=None, port=None, check=False, json=False):
    """Make projects/NAME/ from the example project and add it to invoke.yaml."""
    from ..scaffold import (check_made, create_project, interrupts_as_errors, parse_clusters, parse_port,
                            plan_new_project)

    world = start(ctx, f"project.new {name}", check=check, aws=False, json_output=json)
    settings = world.settings
    folder = settings.root / "projects" / name
    made_before = folder.exists()
    try:
        with interrupts_as_errors():
            planned = plan_new_project(settings, name, parse_clusters(clusters, settings), parse_port(port))
            world.reporter.plan(planned.folder, planned.lines())
            if check:
                world.reporter.changed(name, f"{planned.folder}/ and mvp.projects.{name}")
                finish(world)
                return
            create_project(settings.root, planned, verify=lambda made: check_made(settings, planned, made))
    except KeyboardInterrupt:
        if folder.is_dir() and not made_before:
            raise Exit(f"interrupted after projects/{name}/ and mvp.projects.{name} were made", code=130) from None
        raise Exit("interrupted: nothing was made", code=130) from None
    shown = ", ".join(planned.clusters)
    world.reporter.changed(name, f"made {planned.folder}/ and mvp.projects.{name} (clusters: [{shown}]) in invoke.yaml")
    release = "inv ci.release" + ("" if settings.default_cluster in planned.clusters
                                  else f" --cluster {planned.clusters[0]}")
    world.reporter.info(f"next: commit {planned.folder}/ and invoke.yaml, then `{release}` ships it")
    finish(world)
