"""The built-in local sandbox: AWS APIs emulated by a moto server, a private Docker engine, an OCI
registry and a locally made base image, all on loopback, all state under `mvp.sandbox.dir`."""

from __future__ import annotations

from .boundary import finish, mvp_task, start


def _sandbox():
    """mvp_tasks.sandbox (the moto server's and the services' life cycle), imported by the tasks
    that use it, not with this module: `inv --list` imports this one for the tasks' names and help
    alone. By its full name: the package's attribute `sandbox` is this module (mvp_tasks/__init__.py),
    so `from .. import sandbox` would find this one."""
    import importlib

    return importlib.import_module("mvp_tasks.sandbox")


def _service_lines(world) -> dict:
    sbx = _sandbox()

    services = sbx.get_services(world.settings.sandbox_dir)
    return {
        "docker": {"running": bool(services.docker_host), "host": services.docker_host or None,
                   "client": services.docker_client or None},
        "registry": {"running": bool(services.registry), "address": services.registry or None},
        "base_image": services.base_image or None,
    }


@mvp_task(
    help={
        "port": "port for the moto server (default: mvp.sandbox.port)",
        "aws_only": "start only the AWS emulator, not the Docker engine, registry and base image",
        "json": "print each service's outcome as JSON for scripts",
    }
)
def up(ctx, port=None, aws_only=False, json=False):
    """Start the local sandbox; every task then targets it."""
    sbx = _sandbox()

    world = start(ctx, "sandbox.up", aws=False, json_output=json)
    state_dir = world.settings.sandbox_dir
    sbx.require_writable(state_dir)
    recorded = sbx.read_state_file(state_dir)
    stranger = sbx.get_stranger(recorded) if recorded is not None else ""
    if stranger:
        world.reporter.warn(_left_alone(stranger))
    state, started = sbx.start_moto(state_dir, int(port or world.settings.sandbox.port))
    if started:
        world.reporter.changed("aws", f"moto server started on {state.endpoint} (pid {state.pid})")
    else:
        world.reporter.ok("aws", f"moto server already running on {state.endpoint} (pid {state.pid})")
    if not aws_only:
        before = sbx.get_services(state_dir)
        with world.reporter.progress("starting the Docker engine, registry and base image"):
            code = sbx.run_services_script(world.settings.root, "start", state_dir,
                                           world.settings.sandbox.registry_port, on_line=world.reporter.event)
        after = sbx.get_services(state_dir)
        for name, was, now in (("docker", before.docker_host, after.docker_host),
                               ("registry", before.registry, after.registry)):
            if not now:
                world.reporter.failed(name, "could not be started (see the lines above; `make provision` installs it)")
            elif was == now:
                world.reporter.ok(name, now)
            else:
                world.reporter.changed(name, now)
        if code != 0 and after.docker_host and after.registry:
            world.reporter.failed("base-image", f"{sbx.BASE_IMAGE} could not be built (see the lines above)")
    world.reporter.info(f"state: {state_dir}; tasks now target the sandbox (stop it with `inv sandbox.down`)")
    finish(world)


def _left_alone(stranger: str) -> str:
    sbx = _sandbox()

    return (f"{sbx.STATE_FILE} named {stranger}, which is not the sandbox's moto server "
            "(its pid was reused): left alone")


@mvp_task(help={
    "json": "print each service's outcome as JSON for scripts",
    "forget": "also forget that this repository uses its sandbox: AWS tasks then target AWS (by default they "
              "refuse while the sandbox is down)",
})
def down(ctx, json=False, forget=False):
    """Stop the local sandbox (its state folder stays; the emulated AWS state is lost)."""
    sbx = _sandbox()

    world = start(ctx, "sandbox.down", aws=False, json_output=json)
    state_dir = world.settings.sandbox_dir
    if state_dir.exists():
        # Checked first: a folder that cannot be written must not leave half the sandbox stopped.
        sbx.require_writable(state_dir)
    stopped = sbx.stop_moto(state_dir, forget=bool(forget))
    if stopped.stranger:
        world.reporter.warn(_left_alone(stopped.stranger))
    if stopped.stopped:
        world.reporter.changed("aws", "moto server stopped")
    else:
        world.reporter.ok("aws", "not running")
    if sbx.get_services(state_dir).any:
        sbx.run_services_script(world.settings.root, "stop", state_dir, on_line=world.reporter.event)
        world.reporter.changed("services", "Docker engine and registry stopped")
    if forget:
        world.reporter.info("tasks now target AWS (AWS_REGION / AWS_PROFILE); `inv sandbox.up` starts the sandbox again")
    elif (state_dir / sbx.USED_FILE).exists():
        world.reporter.info("AWS tasks refuse to run until `inv sandbox.up`; `inv sandbox.down --forget` makes them "
                            "target AWS instead")
    finish(world)


@mvp_task(help={"json": "print JSON for scripts"})
def status(ctx, json=False):
    """Show whether the local sandbox runs and where."""
    sbx = _sandbox()

    world = start(ctx, "sandbox.status", aws=False, json_output=json)
    state = sbx.read_moto_state(world.settings.sandbox_dir)
    data = {"aws": {"running": bool(state), "endpoint": state.endpoint if state else None,
                    "pid": state.pid if state else None}}
    data.update(_service_lines(world))
    if json:
        world.reporter.emit_json(data)
        return
    recorded = sbx.read_state_file(world.settings.sandbox_dir) if state is None else None
    stranger = sbx.get_stranger(recorded) if recorded is not None else ""
    world.reporter.info(f"aws: running on {state.endpoint} (pid {state.pid})" if state
                        else "aws: stopped (start it with `inv sandbox.up`)"
                        + (f"; {sbx.STATE_FILE} names {stranger}, which is not its moto server" if stranger else ""))
    world.reporter.info("docker: " + (data["docker"]["host"] or "stopped"))
    world.reporter.info("registry: " + (data["registry"]["address"] or "stopped"))


@mvp_task(
    help={
        "name": "project whose service should fail (default: the project whose folder you are in)",
        "cluster": "cluster (default: mvp.default_cluster)",
        "reason": "how its new tasks fail: image (cannot be pulled), exit (the container exits 1), health "
                  "(ELB health checks fail) or stuck (they never leave PENDING: the rollout hangs)",
        "clear": "stop failing: new deployments succeed again",
    },
    positional=["name"],
)
def fail(ctx, name=None, cluster=None, reason=None, clear=False):
    """Make an app's next deployments in the sandbox fail, as ECS's do (rehearse a bad day)."""
    from ..aws.discovery import service_names
    from ..errors import UsageError
    from ..plan.planner import check_mapped, get_app_stack
    from ..sandbox_ecs import REASONS, send_mark
    from .boundary import project_name

    if clear == bool(reason):
        raise UsageError("give --reason image|exit|health|stuck, or --clear", "e.g. inv sandbox.fail museum-adventure "
                         "--cluster stage --reason image")
    if reason and reason not in REASONS:
        raise UsageError(f"--reason {reason} is not one of {', '.join(REASONS)}")
    world = start(ctx, f"sandbox.fail {name or ''}".strip())
    project = world.settings.project(project_name(world, name, "sandbox.fail"))
    target = world.settings.cluster(cluster)
    check_mapped(world.settings, project, target)
    world.cluster_stack(target)
    ecs_cluster, service = service_names(world, get_app_stack(world, project, target), target)
    send_mark(world.aws.target.endpoint_url, ecs_cluster, service, "" if clear else reason)
    key = f"{project.name}@{target.name}"
    if clear:
        world.reporter.changed(key, f"service {service}: new deployments succeed again")
    else:
        how = "hang (stuck)" if reason == "stuck" else f"fail ({reason})"
        world.reporter.changed(key, f"service {service}: new deployments {how} until "
                                    f"`inv sandbox.fail {project.name} --cluster {target.name} --clear`")
    finish(world)
