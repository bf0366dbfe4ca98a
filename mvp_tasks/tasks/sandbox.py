"""The built-in local sandbox: AWS APIs emulated by a moto server on loopback."""

from __future__ import annotations

from .. import sandbox as sbx
from .boundary import mvp_task, start


@mvp_task(help={"port": "port for the moto server (default: mvp.sandbox.port)"})
def up(ctx, port=None):
    """Start the local sandbox; every task then targets it."""
    run = start(ctx, "sandbox.up", aws=False)
    state_dir = run.settings.sandbox_dir
    state, started = sbx.start_moto(state_dir, int(port or run.settings.sandbox.port))
    if started:
        run.reporter.changed("aws", f"moto server started on {state.endpoint} (pid {state.pid})")
    else:
        run.reporter.ok("aws", f"moto server already running on {state.endpoint} (pid {state.pid})")
    run.reporter.info(f"state: {state_dir}; tasks now target the sandbox (stop it with `inv sandbox.down`)")
    run.finish()


@mvp_task
def down(ctx):
    """Stop the local sandbox (its state folder stays; AWS state is lost)."""
    run = start(ctx, "sandbox.down", aws=False)
    if sbx.stop_moto(run.settings.sandbox_dir):
        run.reporter.changed("aws", "moto server stopped")
    else:
        run.reporter.ok("aws", "not running")
    run.finish()


@mvp_task(help={"json": "print JSON for scripts"})
def status(ctx, json=False):
    """Show whether the local sandbox runs and where."""
    run = start(ctx, "sandbox.status", aws=False, json_output=json)
    state = sbx.read_moto_state(run.settings.sandbox_dir)
    data = {"aws": {"running": bool(state), "endpoint": state.endpoint if state else None,
                    "pid": state.pid if state else None}}
    if json:
        run.reporter.emit_json(data)
        return
    if state:
        run.reporter.info(f"aws: running on {state.endpoint} (pid {state.pid})")
    else:
        run.reporter.info("aws: stopped (start it with `inv sandbox.up`)")
