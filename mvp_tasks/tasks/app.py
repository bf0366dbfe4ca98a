"""The apps in projects/<name>/: build and publish their images (deploy and promote come later)."""

from __future__ import annotations

from .boundary import mvp_task, start

HOST_HELP = "build on this SSH host (user@host[:port]) instead of locally (default: mvp.build.host)"


@mvp_task(
    help={
        "name": "project to build: a folder under projects/",
        "allow_dirty": "build even with uncommitted changes under the project (tagged <commit>-dirty-<hash>)",
        "host": HOST_HELP,
        "check": "show what would be built; build nothing",
    }
)
def build(ctx, name, allow_dirty=False, host=None, check=False):
    """Build a project's image, tagged with the commit that built it."""
    from . import imaging

    run = start(ctx, f"app.build {name}", check=check, aws=False)
    project = run.settings.project_or_default(name)
    imaging.check_project_files(run, project)
    revision = imaging.get_revision(run, project, for_push=False, allow_dirty=allow_dirty)
    builder = imaging.get_builder(run, host)
    try:
        imaging.ensure_built(builder, project, revision)
    finally:
        builder.close()
    run.finish()


@mvp_task(
    help={
        "name": "project to push: a folder under projects/",
        "cluster": "also point this cluster's tag at the image (default: mvp.default_cluster)",
        "allow_dirty": "push a throwaway image from uncommitted changes (never gets a cluster tag)",
        "host": HOST_HELP,
        "check": "show what would be built, pushed and tagged; change nothing",
    }
)
def push(ctx, name, cluster=None, allow_dirty=False, host=None, check=False):
    """Build if needed, push the commit tag, and point the cluster tag at that image."""
    from . import imaging

    run = start(ctx, f"app.push {name}", check=check)
    project = run.settings.project_or_default(name)
    target = run.settings.cluster(cluster)
    if project.clusters and target.name not in project.clusters:
        from ..errors import UsageError

        raise UsageError(
            f"project {project.name} does not run in cluster {target.name} "
            f"(mvp.projects.{project.name}.clusters: {', '.join(project.clusters)})"
        )
    imaging.check_project_files(run, project)
    revision = imaging.get_revision(run, project, for_push=True, allow_dirty=allow_dirty)
    builder = imaging.get_builder(run, host)
    try:
        digest, _ = imaging.ensure_pushed(builder, project, revision)
        if revision.dirty:
            run.reporter.skipped(f"{project.name}:{target.tag}", "dirty builds never get a cluster tag")
        else:
            imaging.ensure_tag(builder, project, revision.tag, target.tag, expected_digest=digest)
    finally:
        builder.close()
    run.finish()
